//! What the pipeline's `metrics` sinks derive, seen by role: which family
//! counts the API's requests, which measures their latency, which counts
//! tool calls, … A family is recognised by the events its rules match
//! (`when: {field: event, equals: api_request}`), so a metric renamed in
//! the YAML is still found; a family whose rules match no event value is
//! recognised by the plan's name. Label names are found by the field their
//! template reads (`endpoint: "{{ path }}"`), or else by the plan's name.

use std::collections::BTreeSet;

use crate::config::Pipeline;
use crate::metrics::cost::CostConfig;
use crate::metrics::rules::RuleConfig;
use crate::metrics::store::Kind;
use crate::template::TemplateConfig;
use crate::transform::condition::ConditionConfig;

/// A family's type, without a histogram's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// One family a metrics sink serves.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: Type,
    /// Label names, as the store registered them.
    pub labels: Vec<String>,
    /// Per rule feeding the family: the values its `when` tests for
    /// equality (`api_request`, `success`, …).
    pub rules: Vec<BTreeSet<String>>,
    /// Label name → the fields its templates read, over all its rules.
    pub label_fields: Vec<(String, BTreeSet<String>)>,
}

impl Family {
    /// Whether some rule of the family matches `event`.
    fn about(&self, event: &str) -> bool {
        self.rules.iter().any(|r| r.contains(event))
    }

    /// Whether every rule about `event` counts all of them (tests nothing
    /// else for equality, such as `status: success`).
    fn whole(&self, event: &str) -> bool {
        self.rules
            .iter()
            .filter(|r| r.contains(event))
            .all(|r| r.len() == 1)
    }

    /// The label filled from `field`, or else the label called `fallback`.
    pub fn label(&self, field: &str, fallback: &str) -> Option<String> {
        self.label_fields
            .iter()
            .find(|(_, fields)| fields.contains(field))
            .map(|(l, _)| l.clone())
            .or_else(|| self.labels.iter().find(|l| l.as_str() == fallback).cloned())
    }
}

/// Everything the pipeline's metrics sinks derive.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    pub families: Vec<Family>,
    /// The first `costs:` block, if any sink has one.
    pub costs: Option<CostConfig>,
    /// How many metrics sinks there are.
    pub sinks: usize,
    /// Whether some metrics sink pushes by remote write.
    pub remote_write: bool,
}

/// The fields a label template reads: `{{ path }}` → `path`.
fn template_fields(t: &TemplateConfig) -> BTreeSet<String> {
    match t {
        TemplateConfig::Field { field, .. } => [field.clone()].into(),
        TemplateConfig::Template(s) => {
            let mut out = BTreeSet::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                let name = after[..end].trim();
                if !name.is_empty() {
                    out.insert(name.to_string());
                }
                rest = &after[end + 2..];
            }
            out
        }
    }
}

/// The values a condition tests for equality (`equals`, `one_of`), in
/// `all` and `any` too; not under `not`.
fn equalities(c: &ConditionConfig, out: &mut BTreeSet<String>) {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(v) = &c.equals {
        out.insert(text(v));
    }
    for v in c.one_of.iter().flatten() {
        out.insert(text(v));
    }
    for sub in c.all.iter().chain(c.any.iter()).flatten() {
        equalities(sub, out);
    }
}

fn rule_equalities(r: &RuleConfig) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(w) = &r.when {
        equalities(w, &mut out);
    }
    out
}

impl Derived {
    /// What `p`'s metrics sinks derive; `None` when it has none.
    pub fn of(p: &Pipeline) -> Option<Derived> {
        let mut d = Derived::default();
        for sink in &p.sinks {
            let Some(cfg) = sink.kind.metrics() else {
                continue;
            };
            d.sinks += 1;
            d.remote_write |= cfg.remote_write.is_some();
            if d.costs.is_none() {
                d.costs = cfg.costs.clone();
            }
            // Checked when the pipeline was: this compiles again, no more.
            let Ok(prepared) = cfg.prepare() else {
                continue;
            };
            for (name, kind, labels) in prepared.families() {
                let kind = match kind {
                    Kind::Counter => Type::Counter,
                    Kind::Gauge => Type::Gauge,
                    Kind::Histogram { .. } => Type::Histogram,
                };
                let mut fam = Family {
                    name: name.to_string(),
                    kind,
                    labels: labels.to_vec(),
                    rules: Vec::new(),
                    label_fields: labels
                        .iter()
                        .map(|l| (l.clone(), BTreeSet::new()))
                        .collect(),
                };
                for r in cfg.rules.iter().filter(|r| r.name == name) {
                    fam.rules.push(rule_equalities(r));
                    for (label, t) in r.labels.iter() {
                        if let Some((_, fields)) =
                            fam.label_fields.iter_mut().find(|(l, _)| l == label)
                        {
                            fields.extend(template_fields(t));
                        }
                    }
                }
                if !d.families.iter().any(|f| f.name == fam.name) {
                    d.families.push(fam);
                }
            }
        }
        (d.sinks > 0).then_some(d)
    }

    /// The family of type `kind` derived from `event` (or, when no rule of
    /// it tests an event, called `plan_name`). With `whole`, only a family
    /// that counts every such event (not only the successful ones).
    pub fn find(&self, kind: Type, event: &str, plan_name: &str, whole: bool) -> Option<&Family> {
        let of_kind = || self.families.iter().filter(move |f| f.kind == kind);
        of_kind()
            .find(|f| f.about(event) && (!whole || f.whole(event)))
            .or_else(|| {
                of_kind().find(|f| f.name == plan_name && f.rules.iter().all(BTreeSet::is_empty))
            })
    }

    /// A counter with a label filled from `field` (or called `field`),
    /// preferring one derived from `event`; and that label.
    pub fn counter_with_label(&self, field: &str, event: &str) -> Option<(&Family, String)> {
        let mut found: Vec<(&Family, String)> = self
            .families
            .iter()
            .filter(|f| f.kind == Type::Counter)
            .filter_map(|f| f.label(field, field).map(|l| (f, l)))
            .collect();
        found.sort_by_key(|(f, _)| !f.about(event));
        found.into_iter().next()
    }

    /// A counter about memory operations (an event or a name mentioning
    /// memory) with a label filled from `status`.
    pub fn memory(&self) -> Option<(&Family, String)> {
        self.families
            .iter()
            .filter(|f| f.kind == Type::Counter)
            .filter(|f| {
                f.name.contains("memory") || f.rules.iter().flatten().any(|v| v.contains("memory"))
            })
            .find_map(|f| f.label("status", "status").map(|l| (f, l)))
    }

    /// The family called `name` (the cost block's fixed names).
    pub fn named(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }
}
