//! Evaluating rule groups at one time, as Prometheus 2.42's `Group.Eval`
//! does.
//!
//! Rules of a group run in order. Each rule's expression is evaluated by
//! the engine over a [`Layered`] storage: the base series (what weir
//! derives from logs) with the results of rules written so far on top, in
//! a [`RuleResults`] store — so a recording rule feeds later rules of the
//! same group and of later groups, and `ALERTS` can be queried. A series a
//! rule wrote at the previous evaluation and no longer returns gets a
//! stale marker; a rule whose evaluation fails writes nothing and keeps
//! its previous series (as Prometheus).
//!
//! [`RuleResults`] keeps only the history the loaded rules can read: the
//! longest range, offset and subquery window plus the 5 m lookback
//! ([`history_ms`]). `@` modifiers that pin a selector to a fixed time are
//! not bounded by this and can see nothing older than that window.
//!
//! Subqueries without a step use the engine's 1 m (a Prometheus server uses
//! its global evaluation interval, 1 m by default).
//!
//! Deliberately not here: scheduling groups at their intervals (the
//! caller passes each evaluation time), restoring `for` state after a
//! restart, and sending alerts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use promql_parser::label::Matcher;
use promql_parser::parser::{Expr, Offset};

use super::promql::value::METRIC_NAME;
use super::promql::{Engine, Labels, Sample, Series, Storage, Value, Vector};
use super::rules::{RuleGroup, RuleKind};
use super::state::{AlertRuleDef, AlertRuleState, Expander};

/// Prometheus' default lookback delta.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Samples written by rules, newest last, with bounded history.
#[derive(Debug, Clone, Default)]
pub struct RuleResults {
    series: BTreeMap<Labels, VecDeque<(i64, f64)>>,
    retention_ms: i64,
}

impl RuleResults {
    /// A store keeping `retention_ms` of history before the newest
    /// evaluation time.
    pub fn new(retention_ms: i64) -> Self {
        RuleResults {
            series: BTreeMap::new(),
            retention_ms,
        }
    }

    /// A store keeping what the rules of `groups` can read.
    pub fn for_groups(groups: &[RuleGroup]) -> Self {
        let need = groups
            .iter()
            .flat_map(|g| &g.rules)
            .map(|r| history_ms(&r.expr))
            .max()
            .unwrap_or(0);
        RuleResults::new(need.max(LOOKBACK_MS))
    }

    /// How much history is kept, in ms.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Adds a sample; one at the time of the newest replaces it, one older
    /// than the newest is dropped (Prometheus refuses out-of-order ones).
    pub fn append(&mut self, labels: Labels, t_ms: i64, v: f64) {
        let s = self.series.entry(labels).or_default();
        match s.back_mut() {
            Some(last) if last.0 == t_ms => last.1 = v,
            Some(last) if last.0 > t_ms => {}
            _ => s.push_back((t_ms, v)),
        }
    }

    /// Drops samples older than `now_ms - retention`, and series left empty.
    pub fn trim(&mut self, now_ms: i64) {
        let oldest = now_ms.saturating_sub(self.retention_ms);
        self.series.retain(|_, s| {
            while s.front().is_some_and(|(t, _)| *t < oldest) {
                s.pop_front();
            }
            !s.is_empty()
        });
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of samples held.
    pub fn sample_count(&self) -> usize {
        self.series.values().map(VecDeque::len).sum()
    }
}

impl Storage for RuleResults {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<Series> {
        let mut out = Vec::new();
        for (labels, samples) in &self.series {
            if !matchers.iter().all(|m| m.is_match(labels.get(&m.name))) {
                continue;
            }
            let picked: Vec<(i64, f64)> = samples
                .iter()
                .filter(|(t, _)| (start_ms..=end_ms).contains(t))
                .copied()
                .collect();
            if !picked.is_empty() {
                out.push(Series {
                    labels: labels.clone(),
                    samples: picked,
                });
            }
        }
        out
    }
}

/// A base storage with rule results on top. A series in both gets the
/// samples of both, the rule's winning at the same timestamp.
pub struct Layered<'a> {
    pub base: &'a dyn Storage,
    pub top: &'a RuleResults,
}

impl Storage for Layered<'_> {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<Series> {
        let mut by_labels: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for s in self.base.select(matchers, start_ms, end_ms) {
            by_labels.insert(s.labels, s.samples);
        }
        for s in self.top.select(matchers, start_ms, end_ms) {
            let samples = by_labels.entry(s.labels).or_default();
            if samples.is_empty() {
                *samples = s.samples;
                continue;
            }
            let mut merged: BTreeMap<i64, f64> = samples.drain(..).collect();
            merged.extend(s.samples);
            *samples = merged.into_iter().collect();
        }
        by_labels
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples })
            .collect()
    }
}

/// How far before the evaluation time an evaluation of `expr` reads, in
/// ms: lookback for instant selectors, ranges, positive offsets and
/// subquery windows, nested. `@` is not accounted for.
pub fn history_ms(expr: &Expr) -> i64 {
    let offset = |o: &Option<Offset>| match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        _ => 0,
    };
    match expr {
        Expr::VectorSelector(vs) => LOOKBACK_MS + offset(&vs.offset),
        Expr::MatrixSelector(ms) => ms.range.as_millis() as i64 + offset(&ms.vs.offset),
        Expr::Subquery(sq) => {
            sq.range.as_millis() as i64 + offset(&sq.offset) + history_ms(&sq.expr)
        }
        Expr::Aggregate(a) => {
            let p = a.param.as_deref().map_or(0, history_ms);
            p.max(history_ms(&a.expr))
        }
        Expr::Unary(u) => history_ms(&u.expr),
        Expr::Binary(b) => history_ms(&b.lhs).max(history_ms(&b.rhs)),
        Expr::Paren(p) => history_ms(&p.expr),
        Expr::Call(c) => c.args.args.iter().map(|a| history_ms(a)).max().unwrap_or(0),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => 0,
    }
}

/// Adds to `out` the metric names `expr`'s selectors read; false when a
/// selector names no single metric (`{job="x"}`, `{__name__=~"a|b"}`),
/// so that any series may be read.
pub fn selector_names(expr: &Expr, out: &mut std::collections::HashSet<String>) -> bool {
    let vs_name = |vs: &promql_parser::parser::VectorSelector,
                   out: &mut std::collections::HashSet<String>| {
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == METRIC_NAME && m.op == promql_parser::label::MatchOp::Equal)
                .map(|m| m.value.clone())
        });
        match name {
            Some(n) if vs.matchers.or_matchers.is_empty() => {
                out.insert(n);
                true
            }
            _ => false,
        }
    };
    match expr {
        Expr::VectorSelector(vs) => vs_name(vs, out),
        Expr::MatrixSelector(ms) => vs_name(&ms.vs, out),
        Expr::Subquery(sq) => selector_names(&sq.expr, out),
        Expr::Aggregate(a) => {
            let p = a.param.as_deref().is_none_or(|p| selector_names(p, out));
            selector_names(&a.expr, out) && p
        }
        Expr::Unary(u) => selector_names(&u.expr, out),
        Expr::Binary(b) => {
            let l = selector_names(&b.lhs, out);
            selector_names(&b.rhs, out) && l
        }
        Expr::Paren(p) => selector_names(&p.expr, out),
        Expr::Call(c) => c.args.args.iter().all(|a| selector_names(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => true,
    }
}

/// What one rule did at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    pub rule: String,
    /// The samples written (recorded series, or `ALERTS` and
    /// `ALERTS_FOR_STATE`); empty when the evaluation failed.
    pub samples: Vector,
    /// Why the evaluation failed (the rule's health is then "bad").
    pub error: Option<String>,
}

/// The per-rule state kept between evaluations.
#[derive(Debug, Clone, Default)]
struct RuleRun {
    alerts: AlertRuleState,
    /// Series written at the last successful evaluation.
    previous: BTreeSet<Labels>,
}

/// A rule group and the state its evaluations carry.
#[derive(Debug, Clone)]
pub struct GroupEval {
    group: RuleGroup,
    runs: Vec<RuleRun>,
    /// The step of subqueries that give none: Prometheus' global
    /// `evaluation_interval` (1 m unless set).
    subquery_step_ms: i64,
}

impl GroupEval {
    pub fn new(group: RuleGroup) -> Self {
        let runs = vec![RuleRun::default(); group.rules.len()];
        GroupEval {
            group,
            runs,
            subquery_step_ms: 60_000,
        }
    }

    /// Subqueries without a step use `ms` (the global evaluation interval).
    pub fn with_subquery_step_ms(mut self, ms: i64) -> Self {
        self.subquery_step_ms = ms.max(1);
        self
    }

    pub fn group(&self) -> &RuleGroup {
        &self.group
    }

    /// The alert state of the rule at `index` (empty for recording rules).
    pub fn alerts(&self, index: usize) -> Option<&AlertRuleState> {
        self.runs.get(index).map(|r| &r.alerts)
    }

    /// Mutable alert state, e.g. to take the alerts due for sending.
    pub fn alerts_mut(&mut self, index: usize) -> Option<&mut AlertRuleState> {
        self.runs.get_mut(index).map(|r| &mut r.alerts)
    }

    /// Evaluates every rule at `ts`, in order, reading `base` and the rule
    /// results, and writing into the rule results.
    pub fn eval(
        &mut self,
        ts: i64,
        base: &dyn Storage,
        results: &mut RuleResults,
        exp: &Expander,
    ) -> Vec<RuleOutcome> {
        results.trim(ts);
        let mut outcomes = Vec::with_capacity(self.group.rules.len());
        for (rule, run) in self.group.rules.iter().zip(&mut self.runs) {
            let value = {
                let layered = Layered { base, top: results };
                Engine::new(&layered)
                    .with_subquery_step_ms(self.subquery_step_ms)
                    .instant(&rule.expr, ts)
            };
            let evaluated = match value {
                Ok(Value::Vector(v)) => Ok(v),
                Ok(Value::Scalar { v, .. }) => Ok(vec![Sample {
                    labels: Labels::new(),
                    t: ts,
                    v,
                }]),
                Ok(_) => Err("rule result is not a vector or scalar".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let written = evaluated.and_then(|vector| match &rule.kind {
                RuleKind::Recording => record(&rule.name, &rule.labels, vector, self.group.limit),
                RuleKind::Alerting(spec) => {
                    let def = AlertRuleDef {
                        name: &rule.name,
                        for_ms: spec.for_ms,
                        keep_firing_for_ms: spec.keep_firing_for_ms,
                        labels: &rule.labels,
                        annotations: &spec.annotations,
                    };
                    run.alerts.eval(&def, ts, &vector, self.group.limit, exp)
                }
            });
            match written {
                Ok(samples) => {
                    let mut returned = BTreeSet::new();
                    for s in &samples {
                        results.append(s.labels.clone(), ts, s.v);
                        returned.insert(s.labels.clone());
                    }
                    for gone in run.previous.difference(&returned) {
                        results.append(gone.clone(), ts, super::promql::value::stale_nan());
                    }
                    run.previous = returned;
                    outcomes.push(RuleOutcome {
                        rule: rule.name.clone(),
                        samples,
                        error: None,
                    });
                }
                Err(e) => outcomes.push(RuleOutcome {
                    rule: rule.name.clone(),
                    samples: Vec::new(),
                    error: Some(e),
                }),
            }
        }
        outcomes
    }
}

/// Evaluates groups in order at `ts`, each seeing the results of those
/// before it.
pub fn eval_groups(
    groups: &mut [GroupEval],
    ts: i64,
    base: &dyn Storage,
    results: &mut RuleResults,
    exp: &Expander,
) -> Vec<Vec<RuleOutcome>> {
    groups
        .iter_mut()
        .map(|g| g.eval(ts, base, results, exp))
        .collect()
}

/// A recording rule's output: the metric renamed, rule labels applied.
fn record(
    name: &str,
    labels: &[(String, String)],
    vector: Vector,
    limit: usize,
) -> Result<Vector, String> {
    let mut out: Vector = vector
        .into_iter()
        .map(|mut s| {
            s.labels.set(METRIC_NAME, name);
            for (k, v) in labels {
                s.labels.set(k, v);
            }
            s
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    if out.windows(2).any(|w| w[0].labels == w[1].labels) {
        return Err(
            "vector contains metrics with the same labelset after applying rule labels".into(),
        );
    }
    if limit > 0 && out.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
