//! The evaluator: [`Engine::instant`] and [`Engine::range`] over a
//! [`Storage`], with Prometheus 2.42 semantics.
//!
//! Prometheus evaluates every query as a range evaluation; here each step
//! is an independent instant evaluation, which gives the same values
//! (subquery steps are aligned to absolute multiples of their step, `@`
//! times are absolute, `start()`/`end()` are the outer query's). Selector
//! windows follow 2.42: the lookback is `[t - 5m, t]` and a range
//! `m[r]` is `[t - r, t]`, both ends inclusive (3.x opens the left end).
//!
//! Deliberately not done: native histograms, query limits (max samples,
//! timeouts), statistics, and 3.x-only syntax — those are refused with
//! [`EvalError::Unsupported`] by [`check_supported`] before evaluating.

use std::fmt;
use std::time::{Duration, SystemTime};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use promql_parser::parser::value::ValueType;

use super::storage::Storage;
use super::value::{Labels, METRIC_NAME, Matrix, Sample, Series, Value, Vector, is_stale_nan};
use super::{aggregate, binary, functions};

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// Valid PromQL this evaluator does not implement (or that is not
    /// PromQL as Prometheus 2.42 knows it); never answered approximately.
    Unsupported(String),
    /// An error Prometheus itself raises for this query and data (e.g.
    /// many-to-many matching), with Prometheus' message.
    Query(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Unsupported(m) => write!(f, "unsupported: {m}"),
            EvalError::Query(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EvalError {}

pub(crate) fn query_err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Query(msg.into()))
}

/// Evaluates expressions against a storage.
pub struct Engine<'s> {
    storage: &'s dyn Storage,
    lookback_ms: i64,
    subquery_step_ms: i64,
}

impl<'s> Engine<'s> {
    /// An engine with Prometheus' defaults: 5 m lookback, and subqueries
    /// without a step use 1 m (what promtool's test engine uses; a server
    /// uses its global evaluation interval).
    pub fn new(storage: &'s dyn Storage) -> Self {
        Engine {
            storage,
            lookback_ms: 5 * 60 * 1000,
            subquery_step_ms: 60 * 1000,
        }
    }

    /// Changes the lookback delta.
    pub fn with_lookback_ms(mut self, ms: i64) -> Self {
        self.lookback_ms = ms;
        self
    }

    /// Changes the step of subqueries written without one (`x[1h:]`).
    pub fn with_subquery_step_ms(mut self, ms: i64) -> Self {
        self.subquery_step_ms = ms.max(1);
        self
    }

    /// Evaluates `expr` at `t_ms`, as a Prometheus instant query.
    /// Vector samples carry `t_ms` as their timestamp.
    pub fn instant(&self, expr: &Expr, t_ms: i64) -> Result<Value, EvalError> {
        check_supported(expr)?;
        let ev = Ev {
            eng: self,
            start: t_ms,
            end: t_ms,
        };
        Ok(match ev.eval(expr, t_ms)? {
            Value::Vector(mut v) => {
                for s in &mut v {
                    s.t = t_ms;
                }
                Value::Vector(v)
            }
            Value::Scalar { v, .. } => Value::Scalar { t: t_ms, v },
            Value::String { v, .. } => Value::String { t: t_ms, v },
            m => m,
        })
    }

    /// Evaluates `expr` at every `step_ms` from `start_ms` to `end_ms`, as a
    /// Prometheus range query: one series per label set, sorted by labels;
    /// a scalar expression gives one series without labels.
    pub fn range(
        &self,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Matrix, EvalError> {
        check_supported(expr)?;
        if let Some(e) = range_type_error(expr) {
            return query_err(e);
        }
        if step_ms <= 0 {
            return query_err("zero or negative query resolution step widths are not accepted");
        }
        let ev = Ev {
            eng: self,
            start: start_ms,
            end: end_ms,
        };
        let mut out: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
        let mut ts = start_ms;
        while ts <= end_ms {
            match ev.eval(expr, ts)? {
                Value::Scalar { v, .. } => out.entry(Labels::new()).or_default().push((ts, v)),
                Value::Vector(vec) => {
                    for s in vec {
                        out.entry(s.labels).or_default().push((ts, s.v));
                    }
                }
                other => {
                    return query_err(format!("unexpected {} in range query", other.type_name()));
                }
            }
            ts += step_ms;
        }
        Ok(out
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples })
            .collect())
    }
}

/// Why `expr` cannot be a range query (a range vector or a string), if it
/// cannot: Prometheus' message.
pub fn range_type_error(expr: &Expr) -> Option<String> {
    let name = match expr.value_type() {
        ValueType::Scalar | ValueType::Vector => return None,
        ValueType::Matrix => "range vector",
        _ => "string",
    };
    Some(format!(
        "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
    ))
}

/// Refuses what this evaluator does not do, before evaluating anything.
pub fn check_supported(expr: &Expr) -> Result<(), EvalError> {
    let unsupported = |m: String| Err(EvalError::Unsupported(m));
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !aggregate::KNOWN.contains(&op.as_str()) {
                return unsupported(format!("aggregation {op} is not in Prometheus 2.42"));
            }
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return unsupported("fill() modifiers are Prometheus 3.x".into());
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs),
        Expr::Call(c) => {
            functions::check_function(c.func.name)?;
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Extension(_) => unsupported("extension expressions".into()),
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), EvalError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(EvalError::Unsupported(
            "`or` inside label matchers is Prometheus 3.x".into(),
        ));
    }
    Ok(())
}

/// One evaluation: the outer query's start and end (for `start()` and
/// `end()`) and the engine.
pub(crate) struct Ev<'a> {
    pub(crate) eng: &'a Engine<'a>,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// A range vector argument evaluated at one step, with its window.
pub(crate) struct RangeArg {
    pub(crate) series: Matrix,
    pub(crate) range_start: i64,
    pub(crate) range_end: i64,
    pub(crate) range_ms: i64,
}

pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

/// The label matchers of a selector, with the metric name as a matcher.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut ms = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name
        && !ms.iter().any(|m| m.name == METRIC_NAME)
    {
        ms.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    ms
}

impl Ev<'_> {
    /// The time a selector with `at` and `offset` reads at, for step `ts`.
    pub(crate) fn sel_time(
        &self,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
        ts: i64,
    ) -> i64 {
        self.at_time(at, ts) - offset_ms(offset)
    }

    pub(crate) fn at_time(&self, at: &Option<AtModifier>, ts: i64) -> i64 {
        match at {
            None => ts,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(t)) => system_time_ms(t),
        }
    }

    /// Evaluates `e` at step `ts`.
    pub(crate) fn eval(&self, e: &Expr, ts: i64) -> Result<Value, EvalError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar { t: ts, v: n.val }),
            Expr::StringLiteral(s) => Ok(Value::String {
                t: ts,
                v: s.val.clone(),
            }),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Value::Scalar { t, v } => Ok(Value::Scalar { t, v: -v }),
                Value::Vector(vec) => {
                    let out: Vector = vec
                        .into_iter()
                        .map(|s| Sample {
                            labels: s.labels.without_name(),
                            t: ts,
                            v: -s.v,
                        })
                        .collect();
                    check_unique(&out)?;
                    Ok(Value::Vector(out))
                }
                other => query_err(format!("unary minus on {}", other.type_name())),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.vector_selector(vs, ts))),
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.matrix_selector(ms, ts).series)),
            Expr::Subquery(sq) => Ok(Value::Matrix(self.subquery(sq, ts)?.series)),
            Expr::Call(c) => functions::call(self, c, ts),
            Expr::Aggregate(a) => aggregate::aggregate(self, a, ts),
            Expr::Binary(b) => binary::binary(self, b, ts),
            Expr::Extension(_) => Err(EvalError::Unsupported("extension expressions".into())),
        }
    }

    /// Evaluates `e`, which must give an instant vector.
    pub(crate) fn eval_vector(&self, e: &Expr, ts: i64) -> Result<Vector, EvalError> {
        match self.eval(e, ts)? {
            Value::Vector(v) => Ok(v),
            other => query_err(format!(
                "expected instant vector, got {}",
                other.type_name()
            )),
        }
    }

    /// Evaluates `e`, which must give a scalar.
    pub(crate) fn eval_scalar(&self, e: &Expr, ts: i64) -> Result<f64, EvalError> {
        match self.eval(e, ts)? {
            Value::Scalar { v, .. } => Ok(v),
            other => query_err(format!("expected scalar, got {}", other.type_name())),
        }
    }

    /// An instant vector selector: per series the newest sample in
    /// `[t - lookback, t]`, none if that sample is a stale marker. Samples
    /// keep their own timestamps.
    pub(crate) fn vector_selector(&self, vs: &VectorSelector, ts: i64) -> Vector {
        let t = self.sel_time(&vs.at, &vs.offset, ts);
        let ms = selector_matchers(vs);
        let mut out = Vec::new();
        for s in self.eng.storage.select(&ms, t - self.eng.lookback_ms, t) {
            if let Some(&(st, v)) = s.samples.iter().rfind(|(st, _)| *st <= t)
                && st >= t - self.eng.lookback_ms
                && !is_stale_nan(v)
            {
                out.push(Sample {
                    labels: s.labels,
                    t: st,
                    v,
                });
            }
        }
        out
    }

    /// A range selector: per series the samples in `[t - range, t]`
    /// without stale markers; series without samples are left out.
    pub(crate) fn matrix_selector(&self, ms: &MatrixSelector, ts: i64) -> RangeArg {
        let end = self.sel_time(&ms.vs.at, &ms.vs.offset, ts);
        let range = duration_ms(&ms.range);
        let start = end - range;
        let mut series = Vec::new();
        for mut s in self
            .eng
            .storage
            .select(&selector_matchers(&ms.vs), start, end)
        {
            s.samples
                .retain(|(t, v)| *t >= start && *t <= end && !is_stale_nan(*v));
            if !s.samples.is_empty() {
                series.push(s);
            }
        }
        RangeArg {
            series,
            range_start: start,
            range_end: end,
            range_ms: range,
        }
    }

    /// A subquery: the inner expression at every multiple of the step in
    /// `[t - range, t]` (t after `@` and offset), one series per label set.
    pub(crate) fn subquery(&self, sq: &SubqueryExpr, ts: i64) -> Result<RangeArg, EvalError> {
        let end = self.sel_time(&sq.at, &sq.offset, ts);
        let range = duration_ms(&sq.range);
        let step = match &sq.step {
            Some(d) if !d.is_zero() => duration_ms(d),
            _ => self.eng.subquery_step_ms,
        };
        let lo = end - range;
        // Go's integer division truncates towards zero; so does Rust's.
        let mut t = step * (lo / step);
        if t < lo {
            t += step;
        }
        let mut acc: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
        while t <= end {
            match self.eval(&sq.expr, t)? {
                Value::Vector(vec) => {
                    for s in vec {
                        acc.entry(s.labels).or_default().push((t, s.v));
                    }
                }
                Value::Scalar { v, .. } => acc.entry(Labels::new()).or_default().push((t, v)),
                other => {
                    return query_err(format!("subquery of {} is not allowed", other.type_name()));
                }
            }
            t += step;
        }
        Ok(RangeArg {
            series: acc
                .into_iter()
                .map(|(labels, samples)| Series { labels, samples })
                .collect(),
            range_start: lo,
            range_end: end,
            range_ms: range,
        })
    }

    /// Evaluates a range argument (a range selector or a subquery).
    pub(crate) fn eval_range_arg(&self, e: &Expr, ts: i64) -> Result<RangeArg, EvalError> {
        match unparen(e) {
            Expr::MatrixSelector(ms) => Ok(self.matrix_selector(ms, ts)),
            Expr::Subquery(sq) => self.subquery(sq, ts),
            other => query_err(format!("expected range vector, got {other}")),
        }
    }
}

/// Prometheus' check that a result vector has no two equal label sets.
pub(crate) fn check_unique(v: &Vector) -> Result<(), EvalError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return query_err("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}
