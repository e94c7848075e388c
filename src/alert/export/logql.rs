//! The LogQL side of the Loki export: which events a derived metric
//! counts, as a log pipeline over the streams weir ships.
//!
//! A metrics rule `when: {field: event, equals: api_request}` with labels
//! `endpoint: "{{ path }}"` becomes
//! `{app="feynman"} | json | event="api_request" | label_format endpoint=path`:
//! the stream selector (the Loki sink's fixed labels), the `json` parser
//! (the lines are shipped as the app wrote them), the condition as label
//! filters, and the metric's labels made from the fields. A JSON field with
//! the name of a stream label is `<name>_extracted` in LogQL, unless that
//! stream label is the field itself.
//!
//! Refused (an `Err` with the reason), since LogQL cannot say it exactly:
//! regex-capture labels, templates mixing text and fields, `equals: ""`,
//! patterns that match an empty value, and `not` around a numeric test.

use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher};

use crate::config::Pipeline;
use crate::metrics::rules::{MetricType, RuleConfig, valid_label_name};
use crate::template::{Part, Template, TemplateConfig};
use crate::transform::condition::ConditionConfig;

/// What a series name read by a rule is, for the rewrite.
pub enum Lookup<'a> {
    /// A counter and the rules that add to it.
    Counter(Vec<&'a RuleConfig>),
    /// A histogram's `_bucket` series, and the rules that observe it.
    Buckets(Vec<&'a RuleConfig>),
    /// No LogQL equivalent; why.
    Refused(String),
}

/// The derived metrics of a pipeline and the streams its logs are in.
#[derive(Debug, Default)]
pub struct Source<'a> {
    pub rules: Vec<&'a RuleConfig>,
    pub costs: bool,
    /// `{app="feynman"}`.
    pub selector: String,
    /// Stream label name → the field it is exactly (`{{ level }}`), if so.
    pub stream_labels: BTreeMap<String, Option<String>>,
}

const COST_NAMES: &[&str] = &[
    "llm_tokens_used_total",
    "llm_costs_total_usd",
    "llm_daily_costs_usd",
    "llm_daily_budget_remaining_usd",
    "llm_daily_budget_usd",
];

impl<'a> Source<'a> {
    /// The metrics sinks' rules and the Loki sink's streams of `pipeline`;
    /// `selector` (e.g. `{app="feynman"}`) overrides the sink's.
    pub fn new(pipeline: &'a Pipeline, selector: Option<&str>) -> Result<Source<'a>, String> {
        let mut src = Source::default();
        for s in &pipeline.sinks {
            if let Some(m) = s.kind.metrics() {
                src.rules.extend(m.rules.iter());
                src.costs |= m.costs.is_some();
            }
        }
        let loki = pipeline.sinks.iter().find_map(|s| s.kind.loki());
        if let Some(cfg) = loki {
            if cfg.line != "original" && cfg.line != "event" {
                return Err("the Loki sink ships a templated `line`, not the JSON the rules read; LogQL's `json` cannot recover the fields".into());
            }
            let mut fixed = Vec::new();
            for (name, t) in cfg.labels.iter() {
                let field = match t {
                    TemplateConfig::Template(s) if !s.contains("{{") => {
                        fixed.push(format!("{name}={}", quote(s)));
                        None
                    }
                    TemplateConfig::Template(s) => single_field(s),
                    TemplateConfig::Field {
                        field,
                        pattern: None,
                    } => Some(field.clone()),
                    TemplateConfig::Field { .. } => None,
                };
                src.stream_labels.insert(name.clone(), field);
            }
            fixed.sort();
            src.selector = format!("{{{}}}", fixed.join(", "));
        }
        match selector {
            Some(s) => {
                let s = s.trim();
                if !(s.starts_with('{') && s.ends_with('}') && s.len() > 2) {
                    return Err(format!(
                        "--selector `{s}` is not a LogQL stream selector such as '{{app=\"feynman\"}}'"
                    ));
                }
                for part in s[1..s.len() - 1].split(',') {
                    let name = part.split(['=', '!', '~']).next().unwrap_or("").trim();
                    if !name.is_empty() {
                        src.stream_labels.entry(name.to_string()).or_insert(None);
                    }
                }
                src.selector = s.to_string();
            }
            None if loki.is_none() => {
                return Err(format!(
                    "{} has no `loki` sink to take the stream selector from; give one with --selector '{{app=\"feynman\"}}'",
                    pipeline.origin
                ));
            }
            None => {}
        }
        Ok(src)
    }

    /// What `series` is.
    pub fn lookup(&self, series: &str) -> Lookup<'a> {
        let of = |kind: MetricType, name: &str| -> Vec<&'a RuleConfig> {
            self.rules
                .iter()
                .copied()
                .filter(|r| r.kind == kind && r.name == name)
                .collect()
        };
        let counters = of(MetricType::Counter, series);
        if !counters.is_empty() {
            return Lookup::Counter(counters);
        }
        if let Some(base) = series.strip_suffix("_bucket") {
            let h = of(MetricType::Histogram, base);
            if !h.is_empty() {
                return Lookup::Buckets(h);
            }
        }
        let reason = if !of(MetricType::Gauge, series).is_empty() {
            format!(
                "`{series}` is a gauge: its value is state built up by set/inc/dec since weir started, which no LogQL range query rebuilds"
            )
        } else if !of(MetricType::Histogram, series).is_empty() {
            format!(
                "`{series}` is a histogram's name, not a series (it has _bucket, _sum and _count); only histogram_quantile over rate(…_bucket[range]) maps"
            )
        } else if ["_sum", "_count"].iter().any(|s| {
            series
                .strip_suffix(s)
                .is_some_and(|b| !of(MetricType::Histogram, b).is_empty())
        }) {
            format!(
                "`{series}`: a histogram's _sum and _count are not mapped (only histogram_quantile over _bucket)"
            )
        } else if self.costs && COST_NAMES.contains(&series) {
            format!(
                "`{series}` is a cost counter (tokens split by type, priced from weir's table, booked per day): not mapped to LogQL"
            )
        } else if series.starts_with("weir_") {
            format!("`{series}` is one of weir's self-metrics: about weir, not in the logs")
        } else if series == "up" {
            "`up` is Prometheus' scrape health, not in the logs".to_string()
        } else if series.starts_with("ALERTS") {
            format!("`{series}` is rule state, not in the logs")
        } else {
            format!("`{series}` is not derived by this pipeline (no metrics rule makes it)")
        };
        Lookup::Refused(reason)
    }

    /// The LogQL label a top-level JSON field is parsed into.
    pub fn label_of(&self, field: &str) -> Result<String, String> {
        if !valid_label_name(field) {
            return Err(format!(
                "field `{field}` is not a label name LogQL's json parser keeps as is"
            ));
        }
        Ok(match self.stream_labels.get(field) {
            None => field.to_string(),
            Some(Some(f)) if f == field => field.to_string(),
            Some(_) => format!("{field}_extracted"),
        })
    }

    /// The log pipeline of one metrics rule: selector, `json`, the rule's
    /// condition, `label_format` for the labels in `materialize`, then
    /// `matchers` (the PromQL selector's, on the metric's labels). The
    /// flag says numeric tests need a final `__error__=""`.
    pub fn pipeline(
        &self,
        rule: &RuleConfig,
        materialize: &[String],
        matchers: &[&Matcher],
    ) -> Result<(String, bool), String> {
        let mut out = format!("{} | json", self.selector);
        let mut numeric = false;
        if let Some(c) = &rule.when {
            let f = self.condition(c)?;
            numeric = f.numeric();
            match f {
                Filter::And(parts) => {
                    for p in parts {
                        out.push_str(&format!(" | {}", p.render(true)));
                    }
                }
                f => out.push_str(&format!(" | {}", f.render(true))),
            }
        }
        let mut formats = Vec::new();
        let mut sources: Vec<String> = Vec::new();
        for (name, t) in rule.labels.iter() {
            if !materialize.contains(name) {
                continue;
            }
            let t = Template::compile(t).map_err(|(_, m)| m)?;
            let field = match &t {
                Template::Static(s) => {
                    formats.push(format!("{name}={}", quote(s)));
                    continue;
                }
                Template::Parts(parts) => match parts.as_slice() {
                    [Part::Field(f)] => f.clone(),
                    _ => {
                        return Err(format!(
                            "label `{name}` of `{}` mixes text and fields; not mapped",
                            rule.name
                        ));
                    }
                },
                Template::Field(f, None) => f.clone(),
                Template::Field(_, Some(_)) => {
                    return Err(format!(
                        "label `{name}` of `{}` is a regex capture of a field, which LogQL's label_format cannot reproduce exactly",
                        rule.name
                    ));
                }
            };
            let src = self.label_of(&field)?;
            if sources.contains(&src) {
                return Err(format!(
                    "two labels of `{}` are made from field `{field}`; not mapped",
                    rule.name
                ));
            }
            sources.push(src.clone());
            if &src != name {
                formats.push(format!("{name}={src}"));
            }
        }
        if !formats.is_empty() {
            out.push_str(&format!(" | label_format {}", formats.join(", ")));
        }
        for m in matchers {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::Re(_) => "=~",
                MatchOp::NotRe(_) => "!~",
            };
            out.push_str(&format!(" | {}{op}{}", m.name, quote(&m.value)));
        }
        Ok((out, numeric))
    }

    /// A condition as LogQL label filters.
    pub fn condition(&self, c: &ConditionConfig) -> Result<Filter, String> {
        if let Some(list) = &c.all {
            return Ok(Filter::And(
                list.iter()
                    .map(|c| self.condition(c))
                    .collect::<Result<_, _>>()?,
            ));
        }
        if let Some(list) = &c.any {
            return Ok(Filter::Or(
                list.iter()
                    .map(|c| self.condition(c))
                    .collect::<Result<_, _>>()?,
            ));
        }
        if let Some(inner) = &c.not {
            return self.condition(inner)?.negate();
        }
        let field = c.field.as_deref().unwrap_or_default();
        let label = self.label_of(field)?;
        let leaf = |op: Op, value: String| Filter::Leaf {
            label: label.clone(),
            op,
            value,
        };
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let nonempty = |s: String| -> Result<String, String> {
            if s.is_empty() {
                Err(format!(
                    "a test of `{field}` against the empty string: LogQL cannot tell an empty field from a missing one"
                ))
            } else {
                Ok(s)
            }
        };
        let mut tests = Vec::new();
        if let Some(v) = &c.equals {
            tests.push(leaf(Op::Eq, nonempty(text(v))?));
        }
        if let Some(v) = &c.not_equals {
            tests.push(leaf(Op::Ne, nonempty(text(v))?));
        }
        if let Some(vs) = &c.one_of {
            let alts = vs
                .iter()
                .map(|v| Ok(leaf(Op::Eq, nonempty(text(v))?)))
                .collect::<Result<Vec<_>, String>>()?;
            tests.push(Filter::Or(alts));
        }
        if let Some(p) = &c.matches {
            if regex::Regex::new(p).is_ok_and(|re| re.is_match("")) {
                return Err(format!(
                    "pattern `{p}` of `{field}` matches an empty value, which LogQL cannot tell from a missing field"
                ));
            }
            // weir's `matches` is unanchored; LogQL's =~ is anchored.
            tests.push(leaf(Op::Re, format!("(?s:.*)(?:{p})(?s:.*)")));
        }
        if let Some(b) = c.exists {
            tests.push(leaf(if b { Op::Ne } else { Op::Eq }, String::new()));
        }
        for (v, op) in [
            (c.gt, Op::Gt),
            (c.gte, Op::Ge),
            (c.lt, Op::Lt),
            (c.lte, Op::Le),
        ] {
            if let Some(v) = v {
                tests.push(leaf(op, number(v)));
            }
        }
        Ok(match tests.len() {
            1 => tests.pop().expect("one"),
            _ => Filter::And(tests),
        })
    }
}

/// The field of a template that is exactly `{{ field }}`.
fn single_field(t: &str) -> Option<String> {
    let inner = t.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    (!inner.is_empty() && !inner.contains(['{', '}', ' '])).then(|| inner.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Re,
    Nre,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A LogQL label filter expression.
#[derive(Debug, Clone)]
pub enum Filter {
    Leaf {
        label: String,
        op: Op,
        value: String,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

impl Filter {
    fn numeric(&self) -> bool {
        match self {
            Filter::Leaf { op, .. } => matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le),
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(Filter::numeric),
        }
    }

    fn negate(self) -> Result<Filter, String> {
        Ok(match self {
            Filter::Leaf { label, op, value } => {
                let op = match op {
                    Op::Eq => Op::Ne,
                    Op::Ne => Op::Eq,
                    Op::Re => Op::Nre,
                    Op::Nre => Op::Re,
                    _ => {
                        return Err(format!(
                            "`not` around a numeric test of `{label}`: weir's is true for a non-number, LogQL's drops it"
                        ));
                    }
                };
                Filter::Leaf { label, op, value }
            }
            Filter::And(fs) => Filter::Or(
                fs.into_iter()
                    .map(Filter::negate)
                    .collect::<Result<_, _>>()?,
            ),
            Filter::Or(fs) => Filter::And(
                fs.into_iter()
                    .map(Filter::negate)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    fn render(&self, top: bool) -> String {
        match self {
            Filter::Leaf { label, op, value } => {
                let op_s = match op {
                    Op::Eq => "=",
                    Op::Ne => "!=",
                    Op::Re => "=~",
                    Op::Nre => "!~",
                    Op::Gt => " > ",
                    Op::Ge => " >= ",
                    Op::Lt => " < ",
                    Op::Le => " <= ",
                };
                if op_s.starts_with(' ') {
                    format!("{label}{op_s}{value}")
                } else {
                    format!("{label}{op_s}{}", quote(value))
                }
            }
            Filter::And(fs) | Filter::Or(fs) if fs.len() == 1 => fs[0].render(top),
            Filter::And(fs) => {
                let s = fs
                    .iter()
                    .map(|f| f.render(false))
                    .collect::<Vec<_>>()
                    .join(" and ");
                if top { s } else { format!("({s})") }
            }
            Filter::Or(fs) => {
                let s = fs
                    .iter()
                    .map(|f| f.render(false))
                    .collect::<Vec<_>>()
                    .join(" or ");
                if top { s } else { format!("({s})") }
            }
        }
    }
}

/// A LogQL (Go) double-quoted string.
pub fn quote(s: &str) -> String {
    crate::alert::promql::format::go_quote(s)
}

/// A number as PromQL/LogQL read it.
pub fn number(v: f64) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(yaml: &str) -> ConditionConfig {
        crate::config::node::Node::parse(yaml)
            .unwrap()
            .deserialize()
            .unwrap()
    }

    fn src() -> Source<'static> {
        Source {
            selector: "{app=\"feynman\"}".into(),
            stream_labels: BTreeMap::from([
                ("app".into(), None),
                ("level".into(), Some("level".into())),
            ]),
            ..Default::default()
        }
    }

    fn filter(yaml: &str) -> Result<String, String> {
        src().condition(&cond(yaml)).map(|f| f.render(true))
    }

    #[test]
    fn conditions_as_label_filters() {
        assert_eq!(
            filter("{field: event, equals: api_request}").unwrap(),
            "event=\"api_request\""
        );
        assert_eq!(
            filter("{all: [{field: event, equals: tool_call}, {field: status, equals: error}]}")
                .unwrap(),
            "event=\"tool_call\" and status=\"error\""
        );
        assert_eq!(
            filter(
                "{any: [{field: level, one_of: [ERROR, CRITICAL]}, {field: error, exists: true}]}"
            )
            .unwrap(),
            "(level=\"ERROR\" or level=\"CRITICAL\") or error!=\"\""
        );
        assert_eq!(
            filter("{field: app, exists: false}").unwrap(),
            "app_extracted=\"\""
        );
        assert_eq!(
            filter("{not: {all: [{field: path, matches: '^/health'}, {field: x, not_equals: 1}]}}")
                .unwrap(),
            "path!~\"(?s:.*)(?:^/health)(?s:.*)\" or x=\"1\""
        );
        assert_eq!(
            filter("{field: status_code, gte: 500, lt: 600}").unwrap(),
            "status_code >= 500 and status_code < 600"
        );
    }

    #[test]
    fn conditions_that_do_not_map() {
        assert!(
            filter("{field: a, equals: ''}")
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            filter("{field: a, matches: 'x*'}")
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            filter("{not: {field: a, gt: 1}}")
                .unwrap_err()
                .contains("numeric")
        );
        assert!(
            filter("{field: a.b, equals: x}")
                .unwrap_err()
                .contains("label name")
        );
    }
}
