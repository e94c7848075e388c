//! Lints for alert rules that can never fire, or not as they say: rules
//! that pass `promtool check rules` but read what the pipeline does not
//! make, in a way it cannot answer. `weir validate` prints them as
//! warnings (`--strict` makes them an error).
//!
//! Against the pipeline's [`catalog::Catalog`] (what weir serves and the
//! rules' history holds):
//!
//! 1. [`LintKind::NoBuckets`]: `histogram_quantile` over a series without
//!    `le` (a histogram's bare name, a counter): it returns nothing.
//! 2. [`LintKind::NeverTrue`]: `histogram_quantile(φ, …) > X` where X is at
//!    or above the largest finite bucket bound: the quantile never exceeds
//!    it (Prometheus 2.42 returns that bound when the rank falls in `+Inf`).
//! 3. [`LintKind::UnknownMetric`]: a metric no sink derives and weir does
//!    not expose (`up`: weir scrapes no targets), with the nearest name.
//! 4. [`LintKind::DroppedLabel`]: an annotation or label template reads
//!    `$labels.x` (or `.Labels.x`) and the expression's result cannot have
//!    `x` ([`labels::result_labels`]).
//! 5. [`LintKind::RateUnits`]: a bare per-second `rate()`/`irate()` compared
//!    with a number while the rule's name or annotations speak per minute,
//!    per hour, or of a count over N minutes; and [`LintKind::RateOfGauge`]:
//!    `rate()`/`irate()`/`increase()` of a gauge.
//! 6. [`LintKind::DailyByDate`]: an alert over a per-day cost gauge
//!    (`date` label) that does not pick one date, so yesterday's series,
//!    kept `keep_days` at its final value, goes on firing after midnight.
//!
//! Without a catalog (a bare rule file with no `--pipeline`) only 4 and
//! the first half of 5 run, with every metric's labels and type unknown:
//! nothing can be told there about which metrics exist. (Linting against
//! the embedded default pipeline instead would flag every metric of any
//! other application as unknown.)

pub mod catalog;
pub mod labels;
mod rates;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::LazyLock;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use regex::Regex;

use crate::alert::live::config::LoadedGroup;
use crate::alert::rules::{Rule, RuleKind};
use crate::config::node::{Pos, edit_distance};
use catalog::{Catalog, MetricType, Origin, Part};
use labels::{LabelSet, result_labels};

/// Which lint a warning is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LintKind {
    NoBuckets,
    NeverTrue,
    UnknownMetric,
    DroppedLabel,
    RateUnits,
    RateOfGauge,
    DailyByDate,
}

/// One warning about one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Lint {
    pub file: String,
    /// Where the rule starts.
    pub pos: Pos,
    pub rule: String,
    pub kind: LintKind,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: rule {:?}: {}",
            self.file, self.pos, self.rule, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Lints every rule of `groups`; `catalog` is what the pipeline serves,
/// `None` when there is no pipeline to lint against.
pub fn lint_groups(groups: &[LoadedGroup], catalog: Option<&Catalog>) -> Vec<Lint> {
    let mut out = Vec::new();
    for g in groups {
        for r in &g.group.rules {
            let mut found = Vec::new();
            lint_rule(r, catalog, &mut found);
            out.extend(found.into_iter().map(|(kind, message, hint)| Lint {
                file: g.file.clone(),
                pos: r.pos,
                rule: r.name.clone(),
                kind,
                message,
                hint,
            }));
        }
    }
    out
}

/// Lints a checked pipeline's own alert rules against its catalog.
pub fn lint_pipeline(p: &crate::config::Pipeline) -> Vec<Lint> {
    let groups = p.alerting.as_ref().map_or(&[][..], |a| &a.groups[..]);
    lint_groups(groups, Some(&Catalog::of_pipeline(p, groups)))
}

pub(super) type Found = Vec<(LintKind, String, Option<String>)>;

fn lint_rule(r: &Rule, cat: Option<&Catalog>, out: &mut Found) {
    let alert = match &r.kind {
        RuleKind::Alerting(a) => Some(a),
        RuleKind::Recording => None,
    };
    let mut quantile_args = Vec::new();
    if let Some(cat) = cat {
        walk(&r.expr, &mut |e| {
            no_buckets(e, cat, out, &mut quantile_args);
            never_true(e, cat, out);
            rates::rate_of_gauge(e, cat, out);
        });
        unknown_metrics(&r.expr, cat, &quantile_args, out);
    }
    let Some(alert) = alert else {
        return;
    };
    let templates = r.labels.iter().map(|(k, v)| ("label", k, v));
    let templates = templates.chain(alert.annotations.iter().map(|(k, v)| ("annotation", k, v)));
    dropped_labels(&r.expr, cat, templates, out);
    let mut text = r.name.clone();
    for (_, v) in &alert.annotations {
        text.push('\n');
        text.push_str(v);
    }
    rates::rate_units(&r.expr, &text, out);
    if let Some(cat) = cat {
        daily_by_date(&r.expr, cat, out);
    }
}

/// Calls `f` on `e` and every expression inside it.
fn walk<'a>(e: &'a Expr, f: &mut impl FnMut(&'a Expr)) {
    f(e);
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, f);
            }
            walk(&a.expr, f);
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, f)),
        _ => {}
    }
}

/// The selectors in `e`, matrix ones included.
fn selectors(e: &Expr) -> Vec<&VectorSelector> {
    let mut out = Vec::new();
    walk(e, &mut |e| match e {
        Expr::VectorSelector(v) => out.push(v),
        Expr::MatrixSelector(m) => out.push(&m.vs),
        _ => {}
    });
    out
}

pub(super) fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        e => e,
    }
}

fn number(e: &Expr) -> Option<f64> {
    match unparen(e) {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Unary(u) => number(&u.expr).map(|v| -v),
        _ => None,
    }
}

/// A comparison without `bool` of an expression with a number, as
/// (expression, operator as if the expression were on the left, number).
pub(super) fn compared_with_number(e: &Expr) -> Option<(&Expr, &'static str, f64)> {
    let Expr::Binary(b) = unparen(e) else {
        return None;
    };
    if !b.op.is_comparison_operator() || b.modifier.as_ref().is_some_and(|m| m.return_bool) {
        return None;
    }
    let op = b.op.to_string();
    let flipped = match op.as_str() {
        ">" => "<",
        ">=" => "<=",
        "<" => ">",
        "<=" => ">=",
        "==" => "==",
        _ => "!=",
    };
    let op_static = match op.as_str() {
        ">" => ">",
        ">=" => ">=",
        "<" => "<",
        "<=" => "<=",
        "==" => "==",
        _ => "!=",
    };
    match (number(&b.lhs), number(&b.rhs)) {
        (None, Some(n)) => Some((&b.lhs, op_static, n)),
        (Some(n), None) => Some((&b.rhs, flipped, n)),
        _ => None,
    }
}

fn list(v: &[f64]) -> String {
    v.iter().map(f64::to_string).collect::<Vec<_>>().join(", ")
}

/// Lint 1.
fn no_buckets<'a>(e: &'a Expr, cat: &Catalog, out: &mut Found, args: &mut Vec<&'a Expr>) {
    let Expr::Call(c) = e else {
        return;
    };
    if c.func.name != "histogram_quantile" || c.args.args.len() != 2 {
        return;
    }
    let arg = &c.args.args[1];
    args.push(arg);
    if result_labels(arg, Some(cat)).may_have("le") {
        return;
    }
    let phi = c.args.args[0].to_string();
    let Some(sel) = selectors(arg).into_iter().next() else {
        return;
    };
    let name = sel.name.clone().unwrap_or_default();
    let (what, hint) = match cat.find(&name) {
        Some(f) if matches!(f.family.kind, MetricType::Histogram(_)) && f.part == Part::Whole => (
            format!(
                "`{name}` is a histogram, served only as `{name}_bucket`, `{name}_sum` and `{name}_count`"
            ),
            format!(
                "histogram_quantile({phi}, sum by (le) (rate({name}_bucket[5m]))), with more labels in `by` to keep them"
            ),
        ),
        Some(f) => (
            format!(
                "`{name}` is a {}, not a histogram's `_bucket` series",
                kind_word(&f.family.kind)
            ),
            "histogram_quantile reads the `_bucket` series of a histogram (`type: histogram` in the pipeline)".to_string(),
        ),
        None => (
            "what it reads has no `le` label".to_string(),
            "histogram_quantile reads the `_bucket` series of a histogram, by `le`".to_string(),
        ),
    };
    out.push((
        LintKind::NoBuckets,
        format!(
            "histogram_quantile() over `{}` has no `le` buckets to read ({what}): it returns nothing, so this never fires",
            arg
        ),
        Some(hint),
    ));
}

fn kind_word(k: &MetricType) -> &'static str {
    match k {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram(_) => "histogram",
        MetricType::Unknown => "recorded series",
    }
}

/// Lint 2.
fn never_true(e: &Expr, cat: &Catalog, out: &mut Found) {
    let Some((side, op, x)) = compared_with_number(e) else {
        return;
    };
    let Expr::Call(c) = unparen(side) else {
        return;
    };
    if c.func.name != "histogram_quantile" || c.args.args.len() != 2 {
        return;
    }
    if !number(&c.args.args[0]).is_some_and(|phi| (0.0..=1.0).contains(&phi)) {
        return;
    }
    // Every series it reads must be a histogram's buckets we know.
    let mut hists = Vec::new();
    for s in selectors(&c.args.args[1]) {
        match s.name.as_deref().and_then(|n| cat.find(n)) {
            Some(f) if f.part == Part::Bucket => {
                if let MetricType::Histogram(b) = &f.family.kind {
                    hists.push((f.family.name.as_str(), b));
                }
            }
            _ => return,
        }
    }
    let Some(largest) = hists
        .iter()
        .filter_map(|(_, b)| b.last().copied())
        .reduce(f64::max)
    else {
        return;
    };
    let never = match op {
        ">" => x >= largest,
        ">=" => x > largest,
        "==" => x > largest,
        _ => false,
    };
    if !never {
        return;
    }
    let (name, buckets) = hists[0];
    let default = buckets[..] == crate::metrics::store::DEFAULT_BUCKETS[..];
    let mut more: Vec<f64> = buckets.clone();
    more.extend([x, 2.0 * x].into_iter().filter(|v| *v > largest));
    out.push((
        LintKind::NeverTrue,
        format!(
            "histogram_quantile() never returns more than the largest finite bucket bound, and `{name}` has buckets [{}]{}: `{op} {x}` can never be true",
            list(buckets),
            if default { " (the default)" } else { "" }
        ),
        Some(format!(
            "give the pipeline's `{name}` rule buckets past {x}, e.g. `buckets: [{}]`",
            list(&more)
        )),
    ));
}

/// Lint 3. Names given to histogram_quantile directly are lint 1's.
fn unknown_metrics(e: &Expr, cat: &Catalog, quantile_args: &[&Expr], out: &mut Found) {
    let covered: Vec<&str> = quantile_args
        .iter()
        .flat_map(|a| selectors(a))
        .filter_map(|s| s.name.as_deref())
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    let names = cat.series_names();
    for s in selectors(e) {
        let Some(name) = s.name.as_deref() else {
            continue;
        };
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        match cat.find(name) {
            Some(f) if f.exists() => {}
            Some(_) if covered.contains(&name) => {}
            Some(_) => out.push((
                LintKind::UnknownMetric,
                format!(
                    "reads `{name}`, a histogram: there is no such series, only `{name}_bucket`, `{name}_sum` and `{name}_count`"
                ),
                Some(format!(
                    "`rate({name}_sum[5m]) / rate({name}_count[5m])` is the mean, histogram_quantile over `{name}_bucket` a quantile"
                )),
            )),
            None => {
                let hint = if name == "up" {
                    "weir scrapes no targets, so there is no `up`; judge a service by what its logs derive (its error or request counters), or by `absent_over_time(...)` of one".to_string()
                } else {
                    unknown_hint(name, &names)
                };
                out.push((
                    LintKind::UnknownMetric,
                    format!(
                        "reads `{name}`, which no sink of this pipeline derives and weir does not expose: it is always empty"
                    ),
                    Some(hint),
                ));
            }
        }
    }
}

/// The nearest names to an unknown one: a typo's fix, else the names of
/// the same first word (`llm_…`), else the nearest by edit distance.
fn unknown_hint(name: &str, names: &[String]) -> String {
    let nearest = names
        .iter()
        .map(|n| (edit_distance(name, n), n))
        .min_by_key(|(d, _)| *d);
    if let Some((d, n)) = nearest
        && d <= 2
    {
        return format!("did you mean `{n}`?");
    }
    let prefix = name.split('_').next().unwrap_or(name);
    let alike: Vec<String> = names
        .iter()
        .filter(|n| n.split('_').next() == Some(prefix))
        .map(|n| format!("`{n}`"))
        .collect();
    if !alike.is_empty() {
        return format!(
            "derive it with a `metrics` sink rule; this pipeline has {}",
            alike.join(", ")
        );
    }
    match nearest {
        Some((d, n)) if d <= name.chars().count() / 3 => {
            format!(
                "the nearest name this pipeline has is `{n}`; or derive it with a `metrics` sink rule"
            )
        }
        _ => "derive it with a `metrics` sink rule, or drop the rule".to_string(),
    }
}

static LABEL_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\$labels|\.Labels)\.([A-Za-z_][A-Za-z0-9_]*)").expect("valid regex")
});

/// Lint 4.
fn dropped_labels<'a>(
    e: &Expr,
    cat: Option<&Catalog>,
    templates: impl Iterator<Item = (&'static str, &'a String, &'a String)>,
    out: &mut Found,
) {
    let result = result_labels(e, cat);
    let mut base = LabelSet::empty();
    for s in selectors(e) {
        let l = match (s.name.as_deref(), cat) {
            (Some(n), Some(c)) => c.find(n).map_or(LabelSet::Any, |f| f.labels()),
            _ => LabelSet::Any,
        };
        base = base.union(&l);
    }
    for (what, key, template) in templates {
        let mut seen: Vec<&str> = Vec::new();
        for cap in LABEL_REF.captures_iter(template) {
            let label = cap.get(1).map_or("", |m| m.as_str());
            if label == "__name__" || seen.contains(&label) || result.may_have(label) {
                continue;
            }
            seen.push(label);
            let hint = match &base {
                LabelSet::Known(l) if l.contains(label) => format!(
                    "the metric has `{label}` but the expression drops it; keep it, e.g. `sum by ({label}) (...)`, or drop `{label}` from the {what}"
                ),
                LabelSet::Any => format!(
                    "the expression drops it; keep it, e.g. `sum by ({label}) (...)`, or drop `{label}` from the {what}"
                ),
                LabelSet::Known(_) => {
                    let target = if matches!(label, "instance" | "job") {
                        " (weir's series carry no `instance` or `job` target label)"
                    } else {
                        ""
                    };
                    format!(
                        "no metric it reads has the label `{label}`{target}; drop it from the {what}"
                    )
                }
            };
            out.push((
                LintKind::DroppedLabel,
                format!(
                    "{what} `{key}` reads `$labels.{label}`, but the expression's result has no `{label}` label (its labels: {}): it always expands to \"\"",
                    result.describe()
                ),
                Some(hint),
            ));
        }
    }
}

/// Lint 6.
fn daily_by_date(e: &Expr, cat: &Catalog, out: &mut Found) {
    let threshold = compared_with_number(e).map(|(_, op, n)| (op, n));
    let mut seen: Vec<&str> = Vec::new();
    for s in selectors(e) {
        let Some(name) = s.name.as_deref() else {
            continue;
        };
        let Some(f) = cat.find(name) else {
            continue;
        };
        let Origin::Cost { keep_days } = f.family.origin else {
            continue;
        };
        let picks_day = s
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == "date" && m.op == MatchOp::Equal);
        if picks_day || !f.labels().may_have("date") || seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let rolling = match (name, threshold) {
            ("llm_daily_budget_remaining_usd", _) | (_, None) => {
                "sum(increase(llm_costs_total_usd[24h])) > scalar(llm_daily_budget_usd)".to_string()
            }
            (_, Some((_, n))) => format!("sum(increase(llm_costs_total_usd[24h])) > {n}"),
        };
        out.push((
            LintKind::DailyByDate,
            format!(
                "`{name}` has one series per day (label `date`) and weir keeps the last {keep_days} days (`keep_days`), each at its final value: after midnight this still compares yesterday's series, so an alert raised one day keeps firing until that day is dropped"
            ),
            Some(format!(
                "a rule cannot name today's date, and `max without (date)` still takes past days; compare a rolling day of the cost counter instead: `{rolling}`"
            )),
        ));
    }
}

/// Lints a bare rule file: against `pipeline`'s catalog (with its own
/// `alerting:` groups' recordings and the file's), or with the lints that
/// need no catalog when there is no pipeline.
pub fn lint_rule_file(
    file: &str,
    rules: &crate::alert::rules::RuleFile,
    pipeline: Option<&crate::config::Pipeline>,
) -> Vec<Lint> {
    let groups: Vec<LoadedGroup> = rules
        .groups
        .iter()
        .map(|g| LoadedGroup {
            file: file.to_string(),
            group: g.clone(),
        })
        .collect();
    let Some(p) = pipeline else {
        return lint_groups(&groups, None);
    };
    let mut all = p.alerting.as_ref().map_or(Vec::new(), |a| a.groups.clone());
    all.extend(groups.iter().cloned());
    lint_groups(&groups, Some(&Catalog::of_pipeline(p, &all)))
}
