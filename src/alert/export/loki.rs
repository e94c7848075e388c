//! `weir rules export --to loki`: the pipeline's rules as a Loki ruler file,
//! each derived metric a rule reads replaced by the LogQL metric query over
//! the logs weir ships (see [`super::logql`] for the log pipeline).
//!
//! The rewrite walks the PromQL AST and maps only shapes with an exact
//! LogQL counterpart: `rate`/`increase` of a derived counter (a count, or
//! a sum of an `unwrap`ped field), `histogram_quantile` over the rate of a
//! derived histogram's buckets (`quantile_over_time`), aggregations, and
//! binary operators between such vectors and numbers. Everything else is a
//! refusal with a reason: the rule is named on standard error and left out.
//! Labels a derived metric does not have are empty, as in weir's own
//! evaluation: grouping by them is grouping by nothing.

use std::path::PathBuf;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{
    AggregateExpr, Call, Expr, LabelModifier, MatrixSelector, Offset, VectorMatchCardinality,
};

use super::logql::{Lookup, Source, number};
use super::{Export, duration, file_names};
use crate::config::Pipeline;
use crate::metrics::rules::RuleConfig;

/// Builds the Loki export of `pipeline`'s rules; `selector` overrides the
/// Loki sink's stream selector.
pub fn export(pipeline: &Pipeline, selector: Option<&str>) -> Result<Export, String> {
    let Some(alerting) = &pipeline.alerting else {
        return Err(format!(
            "{}: no `alerting:` section, so no rules to export",
            pipeline.origin
        ));
    };
    let src = Source::new(pipeline, selector)?;
    let mut ex = Export::default();
    let metrics_inputs: Vec<&Vec<String>> = pipeline
        .sinks
        .iter()
        .filter(|s| s.kind.metrics().is_some())
        .map(|s| &s.inputs)
        .collect();
    if let Some(l) = pipeline.sinks.iter().find(|s| s.kind.loki().is_some())
        && metrics_inputs.iter().any(|i| **i != l.inputs)
    {
        ex.notes.push(format!(
            "warning: the Loki sink `{}` reads other inputs than the metrics sink; LogQL counts what Loki has",
            l.name
        ));
    }
    let mut sources: Vec<String> = Vec::new();
    for g in &alerting.groups {
        if !sources.contains(&g.file) {
            sources.push(g.file.clone());
        }
    }
    let names = file_names(&sources);
    let (mut done, mut total) = (0, 0);
    for (file, name) in sources.iter().zip(&names) {
        let mut text = format!(
            "# Written by `weir rules export --to loki` from {file}: the rules in LogQL over {}.\ngroups:\n",
            src.selector
        );
        let mut any = false;
        for g in alerting.groups.iter().filter(|g| &g.file == file) {
            let mut kept = Vec::new();
            for r in &g.group.rules {
                total += 1;
                match rewrite(&src, &r.expr) {
                    Ok(e) => kept.push((r, e)),
                    Err(why) => ex.notes.push(format!(
                        "refused: {file}: group {:?}, rule {:?}: {why}",
                        g.group.name, r.name
                    )),
                }
            }
            if !kept.is_empty() {
                done += kept.len();
                any = true;
                super::write_group(&mut text, &g.group, kept.into_iter());
            }
        }
        if any {
            ex.files.push((PathBuf::from(name), text));
        }
    }
    ex.notes.push(format!(
        "{done} of {total} rules exported to Loki ({} refused)",
        total - done
    ));
    Ok(ex)
}

/// An expression rewritten: its text, and whether it is a binary
/// expression (wrapped in parentheses as an operand).
struct Out {
    text: String,
    binary: bool,
}

fn plain(text: String) -> Out {
    Out {
        text,
        binary: false,
    }
}

/// `expr` in LogQL, or why not.
pub fn rewrite(src: &Source, expr: &Expr) -> Result<String, String> {
    walk(src, expr).map(|o| o.text)
}

fn walk(src: &Source, e: &Expr) -> Result<Out, String> {
    match e {
        Expr::NumberLiteral(n) => Ok(plain(number(n.val))),
        Expr::Paren(p) => Ok(plain(format!("({})", walk(src, &p.expr)?.text))),
        Expr::Binary(b) => {
            let op = b.op.to_string();
            if !matches!(
                op.as_str(),
                "+" | "-"
                    | "*"
                    | "/"
                    | "%"
                    | "^"
                    | "=="
                    | "!="
                    | ">"
                    | "<"
                    | ">="
                    | "<="
                    | "and"
                    | "or"
                    | "unless"
            ) {
                return Err(format!("operator `{op}` has no LogQL equivalent"));
            }
            let mut bool_ = "";
            if let Some(m) = &b.modifier {
                if m.matching.is_some() {
                    return Err("on()/ignoring() vector matching is not mapped".into());
                }
                if !matches!(
                    m.card,
                    VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany
                ) {
                    return Err("group_left/group_right is not mapped".into());
                }
                if m.fill_values != Default::default() {
                    return Err("fill modifiers are not mapped".into());
                }
                if m.return_bool {
                    bool_ = " bool";
                }
            }
            let side = |x: &Expr| -> Result<String, String> {
                let o = walk(src, x)?;
                Ok(if o.binary {
                    format!("({})", o.text)
                } else {
                    o.text
                })
            };
            Ok(Out {
                text: format!("{} {op}{bool_} {}", side(&b.lhs)?, side(&b.rhs)?),
                binary: true,
            })
        }
        Expr::Aggregate(a) => aggregate(src, a),
        Expr::Call(c) => call(src, c, None),
        Expr::VectorSelector(vs) => {
            let name = vs.name.as_deref().unwrap_or("(a selector without a name)");
            Err(match src.lookup(name) {
                Lookup::Refused(why) => why,
                _ => format!(
                    "reads `{name}`'s running total since weir started; only rate()/increase() over a range map to LogQL"
                ),
            })
        }
        Expr::MatrixSelector(_) => Err("a range vector outside rate()/increase()".into()),
        Expr::Subquery(_) => Err("subqueries have no LogQL equivalent".into()),
        Expr::Unary(_) => Err("unary minus is not mapped".into()),
        Expr::StringLiteral(_) | Expr::Extension(_) => Err("not a vector or number".into()),
    }
}

fn grouping(m: &Option<LabelModifier>) -> String {
    match m {
        None => String::new(),
        Some(LabelModifier::Include(l)) => format!(" by ({})", l.labels.join(", ")),
        Some(LabelModifier::Exclude(l)) => format!(" without ({})", l.labels.join(", ")),
    }
}

fn aggregate(src: &Source, a: &AggregateExpr) -> Result<Out, String> {
    let op = a.op.to_string();
    if !matches!(
        op.as_str(),
        "sum" | "avg" | "min" | "max" | "count" | "stddev" | "stdvar" | "topk" | "bottomk"
    ) {
        return Err(format!("aggregation `{op}` has no LogQL equivalent"));
    }
    // sum by (g) (rate(counter[r])): one LogQL sum, straight over the logs.
    if op == "sum"
        && let Expr::Call(c) = &*a.expr
        && matches!(c.func.name, "rate" | "increase")
    {
        let g = match &a.modifier {
            None => Some(Vec::new()),
            Some(LabelModifier::Include(l)) => Some(l.labels.clone()),
            Some(LabelModifier::Exclude(_)) => None,
        };
        if let Some(g) = g {
            return call(src, c, Some(g));
        }
    }
    let inner = walk(src, &a.expr)?.text;
    let text = match &a.param {
        Some(p) => match &**p {
            Expr::NumberLiteral(n) => {
                format!("{op}{} ({}, {inner})", grouping(&a.modifier), number(n.val))
            }
            _ => return Err(format!("`{op}` with a parameter that is not a number")),
        },
        None => format!("{op}{} ({inner})", grouping(&a.modifier)),
    };
    Ok(plain(text))
}

/// The matchers of a selector on the metric's labels; a matcher on a label
/// the metric lacks is decided here (it tests the empty value).
fn matchers<'m>(ms: &'m MatrixSelector, labels: &[String]) -> Result<Vec<&'m Matcher>, String> {
    let mut out = Vec::new();
    let name = ms.vs.name.as_deref().unwrap_or_default();
    for m in &ms.vs.matchers.matchers {
        if m.name == "__name__" {
            if matches!(m.op, MatchOp::Equal) && m.value == name {
                continue;
            }
            return Err("a matcher on __name__ is not mapped".into());
        }
        if labels.contains(&m.name) {
            out.push(m);
            continue;
        }
        let empty_matches = match &m.op {
            MatchOp::Equal => m.value.is_empty(),
            MatchOp::NotEqual => !m.value.is_empty(),
            MatchOp::Re(_) | MatchOp::NotRe(_) => {
                let re = regex::Regex::new(&format!("^(?:{})$", m.value))
                    .map_err(|e| format!("regex `{}`: {e}", m.value))?;
                re.is_match("") == matches!(m.op, MatchOp::Re(_))
            }
        };
        if !empty_matches {
            return Err(format!(
                "`{name}` has no label `{}`, so `{m}` never matches",
                m.name
            ));
        }
    }
    if !ms.vs.matchers.or_matchers.is_empty() {
        return Err("`or` in a selector is not mapped".into());
    }
    Ok(out)
}

fn range(ms: &MatrixSelector) -> Result<String, String> {
    if ms.vs.at.is_some() {
        return Err("the @ modifier is not mapped".into());
    }
    let mut r = format!("[{}]", duration(ms.range.as_millis() as i64));
    match &ms.vs.offset {
        None => {}
        Some(Offset::Pos(d)) => r.push_str(&format!(" offset {}", duration(d.as_millis() as i64))),
        Some(Offset::Neg(_)) => return Err("a negative offset is not mapped".into()),
    }
    Ok(r)
}

fn label_names(rule: &RuleConfig) -> Vec<String> {
    rule.labels.iter().map(|(k, _)| k.clone()).collect()
}

/// A scale factor as written after a LogQL expression.
fn scaled(scale: f64) -> String {
    if scale == 1.0 {
        return String::new();
    }
    let inv = 1.0 / scale;
    if (inv - inv.round()).abs() < 1e-9 && inv.round() > 1.0 {
        format!(" / {}", number(inv.round()))
    } else {
        format!(" * {}", number(scale))
    }
}

/// `rate`/`increase` of a counter (summed by `group`, or by all its labels)
/// and `histogram_quantile`.
fn call(src: &Source, c: &Call, group: Option<Vec<String>>) -> Result<Out, String> {
    let name = c.func.name;
    if name == "histogram_quantile" {
        return quantile(src, c);
    }
    if !matches!(name, "rate" | "increase") {
        return Err(format!("function {name}() is not mapped to LogQL"));
    }
    let Some(Expr::MatrixSelector(ms)) = c.args.args.first().map(|a| &**a) else {
        return Err(format!("{name}() of something other than a selector"));
    };
    let series = ms.vs.name.as_deref().unwrap_or_default();
    let rules = match src.lookup(series) {
        Lookup::Counter(r) => r,
        Lookup::Buckets(_) => {
            return Err(format!(
                "{name}() of histogram buckets outside histogram_quantile"
            ));
        }
        Lookup::Refused(why) => return Err(why),
    };
    let labels = label_names(rules[0]);
    let ms_ = matchers(ms, &labels)?;
    let out: Vec<String> = match group {
        Some(g) => labels.iter().filter(|l| g.contains(l)).cloned().collect(),
        None => labels.clone(),
    };
    let mut materialize = out.clone();
    for m in &ms_ {
        if !materialize.contains(&m.name) {
            materialize.push(m.name.clone());
        }
    }
    if rules.len() > 1 {
        disjoint(src, &rules, &materialize)?;
    }
    let r = range(ms)?;
    let mut branches = Vec::new();
    for rule in &rules {
        let (mut pipe, numeric) = src.pipeline(rule, &materialize, &ms_)?;
        let text = match &rule.value {
            None => {
                let f = if name == "rate" {
                    "rate"
                } else {
                    "count_over_time"
                };
                if numeric {
                    pipe.push_str(" | __error__=\"\"");
                }
                format!("{f}({pipe} {r})")
            }
            Some(field) => {
                if rule.scale <= 0.0 {
                    return Err(format!("`{}` has scale {} ≤ 0", rule.name, rule.scale));
                }
                let l = src.label_of(field)?;
                // weir skips negative and non-numeric values.
                pipe.push_str(&format!(" | {l} >= 0 | unwrap {l} | __error__=\"\""));
                let f = if name == "rate" {
                    "rate"
                } else {
                    "sum_over_time"
                };
                format!("{f}({pipe} {r}){}", scaled(rule.scale))
            }
        };
        branches.push(text);
    }
    let by = if out.is_empty() {
        "sum".to_string()
    } else {
        format!("sum by ({})", out.join(", "))
    };
    Ok(plain(format!("{by} ({})", branches.join(" or "))))
}

/// Several rules feed one counter: their LogQL series are unioned with
/// `or`, which is a sum only when no log line can match two of them.
/// Proven when each pair tests one field for different values and that
/// field's label survives to the union unchanged.
fn disjoint(src: &Source, rules: &[&RuleConfig], materialize: &[String]) -> Result<(), String> {
    let keys: Vec<Vec<(String, String)>> = rules
        .iter()
        .map(|r| {
            let mut keys = Vec::new();
            let mut add = |c: &crate::transform::condition::ConditionConfig| {
                if let (Some(f), Some(v)) = (&c.field, &c.equals) {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        o => o.to_string(),
                    };
                    keys.push((f.clone(), v));
                }
            };
            if let Some(c) = &r.when {
                add(c);
                for c in c.all.iter().flatten() {
                    add(c);
                }
            }
            keys
        })
        .collect();
    for i in 0..rules.len() {
        for j in i + 1..rules.len() {
            let apart = keys[i].iter().any(|(f, v)| {
                keys[j].iter().any(|(g, w)| {
                    f == g && v != w && src.label_of(f).is_ok_and(|l| !materialize.contains(&l))
                })
            });
            if !apart {
                return Err(format!(
                    "`{}` is derived by several rules that may match the same line; LogQL cannot add them exactly",
                    rules[i].name
                ));
            }
        }
    }
    Ok(())
}

/// `histogram_quantile(q, rate(h_bucket[r]))` or with `sum by (le, …)`.
fn quantile(src: &Source, c: &Call) -> Result<Out, String> {
    let (Some(q), Some(inner)) = (c.args.args.first(), c.args.args.get(1)) else {
        return Err("histogram_quantile() needs two arguments".into());
    };
    let Expr::NumberLiteral(q) = &**q else {
        return Err("histogram_quantile() with a quantile that is not a number".into());
    };
    if !(0.0..=1.0).contains(&q.val) {
        return Err("a quantile outside [0, 1]".into());
    }
    let (call, group): (&Call, Option<Vec<String>>) = match &**inner {
        Expr::Call(c) => (c, None),
        Expr::Aggregate(a) if a.op.to_string() == "sum" && a.param.is_none() => {
            match (&a.modifier, &*a.expr) {
                (Some(LabelModifier::Include(l)), Expr::Call(c))
                    if l.labels.iter().any(|x| x == "le") =>
                {
                    (
                        c,
                        Some(l.labels.iter().filter(|x| *x != "le").cloned().collect()),
                    )
                }
                _ => {
                    return Err(
                        "histogram_quantile() over a sum that does not keep `le` (by (le, …))"
                            .into(),
                    );
                }
            }
        }
        Expr::VectorSelector(vs) => {
            let n = vs.name.as_deref().unwrap_or_default();
            return Err(match src.lookup(n) {
                Lookup::Refused(why) => why,
                _ => format!("histogram_quantile() of `{n}` without rate()"),
            });
        }
        _ => {
            return Err(
                "histogram_quantile() of an expression that is not rate(…_bucket[range])".into(),
            );
        }
    };
    if !matches!(call.func.name, "rate" | "increase") {
        return Err(format!("histogram_quantile() over {}()", call.func.name));
    }
    let Some(Expr::MatrixSelector(ms)) = call.args.args.first().map(|a| &**a) else {
        return Err("histogram_quantile() of something other than a selector".into());
    };
    let series = ms.vs.name.as_deref().unwrap_or_default();
    let rule = match src.lookup(series) {
        Lookup::Buckets(r) if r.len() == 1 => r[0],
        Lookup::Buckets(_) => {
            return Err(format!(
                "`{series}` is observed by several rules; not mapped"
            ));
        }
        Lookup::Counter(_) => {
            return Err(format!("`{series}` is a counter, not histogram buckets"));
        }
        Lookup::Refused(why) => return Err(why),
    };
    if ms.vs.matchers.matchers.iter().any(|m| m.name == "le") {
        return Err("a matcher on `le` is not mapped".into());
    }
    if rule.scale <= 0.0 {
        return Err(format!("`{}` has scale {} ≤ 0", rule.name, rule.scale));
    }
    let labels = label_names(rule);
    let ms_ = matchers(ms, &labels)?;
    let out: Vec<String> = match group {
        Some(g) => labels.iter().filter(|l| g.contains(l)).cloned().collect(),
        None => labels.clone(),
    };
    let mut materialize = out.clone();
    for m in &ms_ {
        if !materialize.contains(&m.name) {
            materialize.push(m.name.clone());
        }
    }
    let field = rule
        .value
        .as_deref()
        .expect("a histogram has a value field");
    let (mut pipe, _) = src.pipeline(rule, &materialize, &ms_)?;
    let l = src.label_of(field)?;
    pipe.push_str(&format!(" | unwrap {l} | __error__=\"\""));
    let scale = scaled(rule.scale);
    Ok(Out {
        text: format!(
            "quantile_over_time({}, {pipe} {}) by ({}){scale}",
            number(q.val),
            range(ms)?,
            out.join(", ")
        ),
        binary: !scale.is_empty(),
    })
}

#[cfg(test)]
#[path = "loki_tests.rs"]
mod tests;
