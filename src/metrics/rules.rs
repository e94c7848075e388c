//! Log-to-metric rules: which events count, into which series, by how much.
//!
//! ```yaml
//! - name: fastapi_request_duration_seconds
//!   type: histogram            # counter | gauge | histogram
//!   when: {field: event, equals: api_request}
//!   value: duration_ms         # counter: add it (default +1); gauge: set/inc/dec by it; histogram: observe it
//!   scale: 0.001               # ms → s
//!   labels:
//!     method: "{{ method }}"   # a template over fields
//!     kind: api                # a fixed value
//!     error_type: {field: error, pattern: '^(\w+)'}   # a field's first regex capture
//! ```
//!
//! A label whose field is missing is empty, never an error. An event whose
//! value field is missing or not a number is skipped for that rule and
//! counted. Names and label names are checked against Prometheus' rules.

use serde::Deserialize;

use crate::config::invalid::Invalid;
use crate::config::ordered::OrderedMap;

use super::store::{DEFAULT_BUCKETS, FamilyId, Kind, Store};
use crate::event::Event;
use crate::template::{Template, TemplateConfig};
use crate::transform::condition::{Condition, ConditionConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GaugeAction {
    Set,
    Inc,
    Dec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MetricType,
    #[serde(default)]
    pub help: String,
    pub when: Option<ConditionConfig>,
    #[serde(default)]
    pub labels: OrderedMap<TemplateConfig>,
    pub value: Option<String>,
    #[serde(default = "one")]
    pub scale: f64,
    pub action: Option<GaugeAction>,
    pub buckets: Option<Vec<f64>>,
    pub max_series: Option<usize>,
}

fn one() -> f64 {
    1.0
}

fn err(path: &[&str], message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
    }
}

/// Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

#[derive(Debug, Clone)]
enum Action {
    CounterAdd,
    GaugeSet,
    GaugeAdd(f64),
    Observe,
}

/// A compiled rule bound to its family in the store.
#[derive(Debug, Clone)]
pub struct Rule {
    pub family: FamilyId,
    pub name: String,
    when: Option<Condition>,
    labels: Vec<Template>,
    value: Option<String>,
    scale: f64,
    action: Action,
}

impl RuleConfig {
    /// Checks the rule and registers its family in `store`.
    pub fn compile<S: std::hash::BuildHasher + Clone>(
        &self,
        store: &mut Store<S>,
        default_max_series: usize,
    ) -> Result<Rule, Invalid> {
        if !valid_metric_name(&self.name) {
            return Err(err(
                &["name"],
                format!(
                    "`{}` is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                    self.name
                ),
            ));
        }
        let mut label_names = Vec::new();
        let mut labels = Vec::new();
        for (name, spec) in self.labels.iter() {
            if !valid_label_name(name) {
                return Err(err(
                    &["labels", name],
                    format!(
                        "`{name}` is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                    ),
                ));
            }
            if name == "le" && self.kind == MetricType::Histogram {
                return Err(err(
                    &["labels", name],
                    "`le` is the bucket label of a histogram; name this label differently",
                ));
            }
            label_names.push(name.clone());
            labels.push(Template::compile(spec).map_err(|(sub, m)| {
                let mut path = vec!["labels", name.as_str()];
                path.extend(sub);
                err(&path, m)
            })?);
        }
        let when = match &self.when {
            None => None,
            Some(c) => Some(c.compile().map_err(|e| e.under("when"))?),
        };
        let (kind, action) = match self.kind {
            MetricType::Counter => {
                if self.action.is_some() {
                    return Err(err(
                        &["action"],
                        "`action` is for gauges; a counter adds `value` (or 1)",
                    ));
                }
                (Kind::Counter, Action::CounterAdd)
            }
            MetricType::Gauge => {
                let action = match (self.action, &self.value) {
                    (Some(GaugeAction::Set) | None, Some(_)) => Action::GaugeSet,
                    (Some(GaugeAction::Set) | None, None) => {
                        return Err(err(
                            &["value"],
                            "a gauge that is set needs `value: <field>`; or use `action: inc` / `dec`",
                        ));
                    }
                    (Some(GaugeAction::Inc), _) => Action::GaugeAdd(1.0),
                    (Some(GaugeAction::Dec), _) => Action::GaugeAdd(-1.0),
                };
                (Kind::Gauge, action)
            }
            MetricType::Histogram => {
                if self.value.is_none() {
                    return Err(err(
                        &["value"],
                        "a histogram observes a number: add `value: <field>`",
                    ));
                }
                let buckets = self
                    .buckets
                    .clone()
                    .unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
                if buckets.is_empty()
                    || buckets.windows(2).any(|w| w[0] >= w[1])
                    || buckets.iter().any(|b| !b.is_finite())
                {
                    return Err(err(
                        &["buckets"],
                        "buckets must be finite and strictly increasing (+Inf is added for you)",
                    ));
                }
                (Kind::Histogram { buckets }, Action::Observe)
            }
        };
        if self.action.is_some() && self.kind != MetricType::Gauge {
            return Err(err(&["action"], "`action` applies to gauges only"));
        }
        let max_series = self.max_series.unwrap_or(default_max_series);
        let family = store
            .family(&self.name, &self.help, kind, &label_names, max_series)
            .map_err(|m| err(&["name"], m))?;
        Ok(Rule {
            family,
            name: self.name.clone(),
            when,
            labels,
            value: self.value.clone(),
            scale: self.scale,
            action,
        })
    }
}

/// What applying a rule to an event did, for the self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    NotMatched,
    Updated,
    /// Matched, but the value field was missing or not a number.
    BadValue,
}

impl Rule {
    /// The condition, for callers that index rules (see `Condition::split_key`).
    pub fn when(&self) -> Option<&Condition> {
        self.when.as_ref()
    }

    /// Applies the rule to one event. `key` and `values` are scratch space.
    pub fn apply<S: std::hash::BuildHasher + Clone>(
        &self,
        event: &Event,
        store: &mut Store<S>,
        key: &mut String,
        values: &mut Vec<String>,
    ) -> Applied {
        self.apply_if(self.when.as_ref(), event, store, key, values)
    }

    /// Applies the rule if `condition` (part of its own, the rest already
    /// known to hold) matches.
    pub fn apply_if<S: std::hash::BuildHasher + Clone>(
        &self,
        condition: Option<&Condition>,
        event: &Event,
        store: &mut Store<S>,
        key: &mut String,
        values: &mut Vec<String>,
    ) -> Applied {
        if let Some(c) = condition
            && !c.matches(event)
        {
            return Applied::NotMatched;
        }
        let v = match (&self.value, &self.action) {
            (_, Action::GaugeAdd(d)) => match &self.value {
                None => *d,
                Some(f) => match event.get_f64(f) {
                    Some(x) if x.is_finite() => x * self.scale * d,
                    _ => return Applied::BadValue,
                },
            },
            (None, _) => 1.0,
            (Some(f), _) => match event.get_f64(f) {
                Some(x) if x.is_finite() => x * self.scale,
                _ => return Applied::BadValue,
            },
        };
        if matches!(self.action, Action::CounterAdd) && v < 0.0 {
            return Applied::BadValue;
        }
        values.resize(self.labels.len(), String::new());
        for (slot, label) in values.iter_mut().zip(&self.labels) {
            slot.clear();
            label.render(event, slot);
        }
        let series = store.series(self.family, values, key);
        match self.action {
            Action::CounterAdd | Action::GaugeAdd(_) => store.add(self.family, series, v),
            Action::GaugeSet => store.set(self.family, series, v),
            Action::Observe => store.observe(self.family, series, v),
        }
        Applied::Updated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str, store: &mut Store) -> Result<Rule, Invalid> {
        crate::config::node::Node::parse(yaml)
            .unwrap()
            .deserialize::<RuleConfig>()
            .unwrap()
            .compile(store, 100)
    }

    fn ev(line: &str) -> Event {
        crate::decode::json::decode_object(line.into(), 0).unwrap()
    }

    fn render(store: &Store) -> String {
        let mut s = String::new();
        store.render(&mut s);
        s
    }

    #[test]
    fn counter_with_templates_static_and_missing_fields() {
        let mut st = Store::default();
        let r = rule(
            "name: req_total\ntype: counter\nwhen: {field: event, equals: api}\nlabels: {path: '{{ path }}', code: '{{status}}', kind: web, who: 'u-{{ user }}'}\n",
            &mut st,
        )
        .unwrap();
        let (mut k, mut v) = (String::new(), Vec::new());
        assert_eq!(
            r.apply(
                &ev(r#"{"event":"api","path":"/chat","status":200}"#),
                &mut st,
                &mut k,
                &mut v
            ),
            Applied::Updated
        );
        r.apply(
            &ev(r#"{"event":"api","path":"/chat","status":200,"user":"x"}"#),
            &mut st,
            &mut k,
            &mut v,
        );
        assert_eq!(
            r.apply(&ev(r#"{"event":"other"}"#), &mut st, &mut k, &mut v),
            Applied::NotMatched
        );
        let out = render(&st);
        assert!(
            out.contains("req_total{path=\"/chat\",code=\"200\",kind=\"web\",who=\"u-\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("req_total{path=\"/chat\",code=\"200\",kind=\"web\",who=\"u-x\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn counter_by_field_histogram_with_scale_and_bad_values() {
        let mut st = Store::default();
        let tokens = rule("name: tok_total\ntype: counter\nvalue: n\n", &mut st).unwrap();
        let hist = rule(
            "name: lat_seconds\ntype: histogram\nvalue: ms\nscale: 0.001\nbuckets: [0.1, 1]\n",
            &mut st,
        )
        .unwrap();
        let (mut k, mut v) = (String::new(), Vec::new());
        tokens.apply(&ev(r#"{"n": 120}"#), &mut st, &mut k, &mut v);
        tokens.apply(&ev(r#"{"n": "30"}"#), &mut st, &mut k, &mut v);
        assert_eq!(
            tokens.apply(&ev(r#"{"n": "many"}"#), &mut st, &mut k, &mut v),
            Applied::BadValue
        );
        assert_eq!(
            tokens.apply(&ev(r#"{"n": -1}"#), &mut st, &mut k, &mut v),
            Applied::BadValue
        );
        hist.apply(&ev(r#"{"ms": 250}"#), &mut st, &mut k, &mut v);
        hist.apply(&ev(r#"{"ms": 50}"#), &mut st, &mut k, &mut v);
        let out = render(&st);
        assert!(out.contains("tok_total 150\n"), "{out}");
        assert!(
            out.contains("lat_seconds_bucket{le=\"0.1\"} 1\nlat_seconds_bucket{le=\"1\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("lat_seconds_count 2\n"), "{out}");
    }

    #[test]
    fn gauges_go_up_and_down_across_rules() {
        let mut st = Store::default();
        let up = rule(
            "name: active\ntype: gauge\nwhen: {field: e, equals: open}\naction: inc\n",
            &mut st,
        )
        .unwrap();
        let down = rule(
            "name: active\ntype: gauge\nwhen: {field: e, equals: close}\naction: dec\n",
            &mut st,
        )
        .unwrap();
        let set = rule("name: temp\ntype: gauge\nvalue: t\n", &mut st).unwrap();
        let (mut k, mut v) = (String::new(), Vec::new());
        for e in [r#"{"e":"open"}"#, r#"{"e":"open"}"#, r#"{"e":"close"}"#] {
            up.apply(&ev(e), &mut st, &mut k, &mut v);
            down.apply(&ev(e), &mut st, &mut k, &mut v);
        }
        set.apply(&ev(r#"{"t": 3.5}"#), &mut st, &mut k, &mut v);
        set.apply(&ev(r#"{"t": 1.5}"#), &mut st, &mut k, &mut v);
        let out = render(&st);
        assert!(out.contains("active 1\n"), "{out}");
        assert!(out.contains("temp 1.5\n"), "{out}");
    }

    #[test]
    fn regex_label_takes_the_first_group() {
        let mut st = Store::default();
        let r = rule("name: err_total\ntype: counter\nlabels: {error_type: {field: error, pattern: '^(\\w+)'}}\n", &mut st).unwrap();
        let (mut k, mut v) = (String::new(), Vec::new());
        r.apply(
            &ev(r#"{"error":"ReadTimeout: timed out"}"#),
            &mut st,
            &mut k,
            &mut v,
        );
        assert!(render(&st).contains("err_total{error_type=\"ReadTimeout\"} 1\n"));
    }

    #[test]
    fn names_and_shapes_are_checked() {
        let mut st = Store::default();
        assert_eq!(
            rule("name: 1bad\ntype: counter\n", &mut st)
                .unwrap_err()
                .path,
            ["name"]
        );
        assert_eq!(
            rule("name: ok\ntype: counter\nlabels: {__x: a}\n", &mut st)
                .unwrap_err()
                .path,
            ["labels", "__x"]
        );
        assert_eq!(
            rule("name: h\ntype: histogram\n", &mut st)
                .unwrap_err()
                .path,
            ["value"]
        );
        assert_eq!(
            rule(
                "name: h\ntype: histogram\nvalue: v\nlabels: {le: x}\n",
                &mut st
            )
            .unwrap_err()
            .path,
            ["labels", "le"]
        );
        assert_eq!(
            rule(
                "name: h\ntype: histogram\nvalue: v\nbuckets: [1, 0.5]\n",
                &mut st
            )
            .unwrap_err()
            .path,
            ["buckets"]
        );
        assert_eq!(
            rule("name: g\ntype: gauge\n", &mut st).unwrap_err().path,
            ["value"]
        );
        assert_eq!(
            rule("name: t\ntype: counter\nlabels: {a: '{{ }}'}\n", &mut st)
                .unwrap_err()
                .path,
            ["labels", "a"]
        );
        rule("name: same\ntype: counter\n", &mut st).unwrap();
        assert!(
            rule("name: same\ntype: gauge\naction: inc\n", &mut st)
                .unwrap_err()
                .message
                .contains("one name, one type")
        );
    }
}
