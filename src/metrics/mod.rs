//! Derived metrics: counters, gauges and histograms computed from events by
//! rules written in the pipeline, plus LLM token and cost counters, served
//! with weir's own metrics at `/metrics` and optionally pushed by
//! Prometheus remote write.
//!
//! The `metrics` sink owns the compiled rules; the series live in a
//! [`Store`] behind a mutex that the sink takes once per batch and the API
//! takes once per scrape. Nothing here is per-event shared state.

pub mod cost;
pub mod remote_write;
pub mod rules;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::component::{CheckCx, Kind, SinkContext, SinkKind, SinkSpec};
use crate::config::invalid::Invalid;
use crate::event::SharedBatch;
use crate::telemetry::{Counter, Registry};
use crate::transform::condition::Condition;
use cost::{CostConfig, Costs};
use remote_write::RemoteWriteConfig;
use rules::{Applied, Rule, RuleConfig};
pub use store::Store;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    pub costs: Option<CostConfig>,
    /// Default bound on the series of each metric.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    pub remote_write: Option<RemoteWriteConfig>,
}

fn default_max_series() -> usize {
    10_000
}

/// The store every scrape reads.
pub type SharedStore = Arc<Mutex<Store>>;

impl crate::telemetry::Render for Mutex<Store> {
    fn render(&self, out: &mut String) {
        self.lock().expect("metrics store lock").render(out);
    }
}

/// Rules indexed by the value of one field they all test for equality
/// (usually `event`), so each event is checked against the few rules that
/// can match instead of all of them.
struct Dispatch {
    field: String,
    /// Value → (rule, what else that rule checks).
    by_value: HashMap<String, Vec<(usize, Option<Condition>)>>,
}

/// Compiled rules and cost counters of one `metrics` sink.
pub struct Derived {
    rules: Vec<Rule>,
    dispatch: Vec<Dispatch>,
    /// Rules without an indexable equality.
    always: Vec<usize>,
    /// The cost counters' condition split like the rules'.
    costs_key: Option<(String, Vec<String>, Option<Condition>)>,
    costs: Option<Costs>,
    pub store: SharedStore,
    value_errors: Vec<Counter>,
    overflow: Vec<(usize, Counter, u64)>,
    events: Counter,
}

impl MetricsConfig {
    /// Lints that do not stop a pipeline, as `promtool check metrics` would.
    pub fn warnings(&self) -> Vec<(Vec<String>, String)> {
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            if r.kind == rules::MetricType::Counter && !r.name.ends_with("_total") {
                out.push((
                    vec!["rules".into(), i.to_string(), "name".into()],
                    format!(
                        "counter `{}` does not end in `_total` (kept as written)",
                        r.name
                    ),
                ));
            }
            if r.kind != rules::MetricType::Counter && r.name.ends_with("_total") {
                out.push((
                    vec!["rules".into(), i.to_string(), "name".into()],
                    format!("`{}` ends in `_total` but is not a counter", r.name),
                ));
            }
        }
        out
    }

    /// Compiles the rules and the cost counters into their store, with no
    /// counter registered yet: what `weir validate` checks and `weir run`
    /// then starts.
    pub fn prepare(&self) -> Result<Prepared, Invalid> {
        let mut store = Store::default();
        let mut compiled = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let rule = r
                .compile(&mut store, self.max_series)
                .map_err(|e| e.under(i).under("rules"))?;
            compiled.push(rule);
        }
        let costs = match &self.costs {
            None => None,
            Some(c) => Some(
                c.compile(&mut store, self.max_series, Counter::default())
                    .map_err(|e| e.under("costs"))?,
            ),
        };
        if let Some(rw) = &self.remote_write {
            rw.check().map_err(|(key, message)| Invalid {
                path: vec!["remote_write".into(), key.into()],
                message,
            })?;
        }
        Ok(Prepared {
            store,
            rules: compiled,
            costs,
        })
    }
}

/// A metrics sink's rules and cost counters, compiled (see
/// [`MetricsConfig::prepare`]).
pub struct Prepared {
    store: Store,
    rules: Vec<Rule>,
    costs: Option<Costs>,
}

impl Prepared {
    /// The families the sink serves, as registered in its store: name,
    /// type (a histogram's buckets) and label names.
    pub fn families(&self) -> impl Iterator<Item = (&str, &store::Kind, &[String])> {
        self.store
            .families
            .iter()
            .map(|f| (f.name.as_str(), &f.kind, f.label_names.as_slice()))
    }

    /// Registers the sink's self-metrics: the sink can run.
    pub fn register(self, registry: &Registry, sink: &str) -> Derived {
        let Prepared {
            store,
            rules: compiled,
            mut costs,
        } = self;
        if let Some(c) = costs.as_mut() {
            c.count_unpriced_in(registry.counter(
                "weir_llm_unpriced_events_total",
                "LLM events whose model is missing from the price table (counted at cost 0).",
                &[("sink", sink)],
            ));
        }
        let value_errors = compiled
            .iter()
            .map(|r| {
                registry.counter(
                    "weir_metric_value_errors_total",
                    "Events a metric rule matched but whose value field was missing or not a usable number.",
                    &[("metric", &r.name)],
                )
            })
            .collect();
        let overflow = (0..store.families.len())
            .map(|f| {
                let c = registry.counter(
                    "weir_metric_overflow_samples_total",
                    "Samples sent to a metric's __overflow__ series because it reached max_series.",
                    &[("metric", &store.families[f].name)],
                );
                (f, c, 0)
            })
            .collect();
        let events = registry.counter(
            "weir_events_out_total",
            "Events delivered, by sink.",
            &[("sink", sink)],
        );
        let mut dispatch: Vec<Dispatch> = Vec::new();
        let mut always = Vec::new();
        for (i, r) in compiled.iter().enumerate() {
            match r.when().and_then(|c| c.split_key()) {
                Some((field, values, rest)) => {
                    let d = match dispatch.iter().position(|d| d.field == field) {
                        Some(d) => d,
                        None => {
                            dispatch.push(Dispatch {
                                field,
                                by_value: HashMap::new(),
                            });
                            dispatch.len() - 1
                        }
                    };
                    for v in values {
                        dispatch[d]
                            .by_value
                            .entry(v)
                            .or_default()
                            .push((i, rest.clone()));
                    }
                }
                None => always.push(i),
            }
        }
        let costs_key = costs
            .as_ref()
            .and_then(|c| c.when())
            .and_then(|w| w.split_key());
        Derived {
            dispatch,
            always,
            costs_key,
            rules: compiled,
            costs,
            store: Arc::new(Mutex::new(store)),
            value_errors,
            overflow,
            events,
        }
    }
}

impl Derived {
    /// Applies every rule to every event of a batch, under one lock.
    pub fn apply(&mut self, events: &[crate::event::Event]) {
        let mut key = String::new();
        let mut values = Vec::new();
        let mut bad = vec![0u64; self.rules.len()];
        let mut store = self.store.lock().expect("metrics store lock");
        let costs_field = self.costs_key.as_ref().map(|(f, _, _)| f.as_str());
        let costs_field_dispatched =
            costs_field.is_some_and(|f| self.dispatch.iter().any(|d| d.field == f));
        for e in events {
            // The value of the cost counters' indexed field, when a rule
            // dispatch already looked it up (usually `event`).
            let mut costs_value = None;
            for d in &self.dispatch {
                let Some(value) = e.get_text(&d.field) else {
                    continue;
                };
                if costs_field == Some(d.field.as_str()) {
                    costs_value = Some(value.clone());
                }
                let Some(rules) = d.by_value.get(value.as_ref()) else {
                    continue;
                };
                for (i, rest) in rules {
                    if self.rules[*i].apply_if(rest.as_ref(), e, &mut store, &mut key, &mut values)
                        == Applied::BadValue
                    {
                        bad[*i] += 1;
                    }
                }
            }
            for &i in &self.always {
                if self.rules[i].apply(e, &mut store, &mut key, &mut values) == Applied::BadValue {
                    bad[i] += 1;
                }
            }
            if let Some(c) = self.costs.as_mut() {
                match &self.costs_key {
                    // Book only events whose indexed field has a listed value.
                    Some((field, values, rest)) => {
                        let value = match costs_value {
                            Some(v) => Some(v),
                            None if costs_field_dispatched => None,
                            None => e.get_text(field),
                        };
                        if value.is_some_and(|v| values.iter().any(|x| *x == v)) {
                            c.apply_if(rest.as_ref(), e, &mut store, &mut key);
                        }
                    }
                    None => {
                        c.apply(e, &mut store, &mut key);
                    }
                }
            }
        }
        for (fam, counter, seen) in self.overflow.iter_mut() {
            let now = store.families[*fam].overflowed;
            if now > *seen {
                if *seen == 0 {
                    let f = &store.families[*fam];
                    tracing::warn!(metric = %f.name, max_series = f.max_series, "metric reached max_series; new label sets go to its __overflow__ series");
                }
                counter.add(now - *seen);
                *seen = now;
            }
        }
        drop(store);
        for (c, n) in self.value_errors.iter().zip(bad) {
            c.add(n);
        }
        self.events.add(events.len() as u64);
    }
}

/// The `metrics` sink kind.
pub const KIND: SinkKind = Kind {
    name: "metrics",
    check,
};

struct Spec {
    cfg: MetricsConfig,
    /// Compiled at check; taken by the (one) start.
    prepared: Mutex<Option<Prepared>>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSpec")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl SinkSpec for Spec {
    fn metrics(&self) -> Option<&MetricsConfig> {
        Some(&self.cfg)
    }

    fn start(&self, cx: SinkContext) -> Result<tokio::task::JoinHandle<()>, String> {
        let prepared = self.prepared.lock().expect("metrics spec lock").take();
        let prepared = match prepared {
            Some(p) => p,
            None => self.cfg.prepare().map_err(|e| e.message)?,
        };
        let derived = prepared.register(&cx.registry, &cx.name);
        cx.registry.set_render(&cx.name, derived.store.clone());
        let mut pusher = None;
        let mut awaiting = None;
        if let Some(rw) = self.cfg.remote_write.clone() {
            let waiting = remote_write::AwaitingPush::default();
            pusher = Some(remote_write::start(
                rw,
                derived.store.clone(),
                waiting.clone(),
                &cx.registry,
                &cx.name,
                cx.shutdown.clone(),
            )?);
            awaiting = Some(waiting);
        }
        let input = cx.input;
        if let Some(bt) = cx.backtest.filter(|b| b.claim()) {
            let registry = cx.registry.clone();
            return Ok(tokio::spawn(async move {
                crate::alert::backtest::drive(derived, input, bt, registry).await;
                if let Some((stop, done)) = pusher {
                    let _ = stop.send(());
                    let _ = done.await;
                }
            }));
        }
        Ok(tokio::spawn(async move {
            run(derived, input, awaiting).await;
            if let Some((stop, done)) = pusher {
                let _ = stop.send(());
                let _ = done.await;
            }
        }))
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<std::sync::Arc<dyn SinkSpec>> {
    let cfg: MetricsConfig = cx.typed()?;
    let prepared = match cfg.prepare() {
        Ok(p) => p,
        Err(e) => {
            cx.report(e);
            return None;
        }
    };
    for (path, message) in cfg.warnings() {
        cx.warn(&path, message);
    }
    Some(std::sync::Arc::new(Spec {
        cfg,
        prepared: Mutex::new(Some(prepared)),
    }))
}

/// Runs a `metrics` sink until its inputs close. A batch is acknowledged
/// once it has been counted — or, when the sink pushes by remote write,
/// once a push that includes it has been accepted (`awaiting_push`).
pub async fn run(
    mut derived: Derived,
    mut input: mpsc::Receiver<SharedBatch>,
    awaiting_push: Option<remote_write::AwaitingPush>,
) {
    while let Some(batch) = input.recv().await {
        derived.apply(&batch.events);
        match &awaiting_push {
            Some(w) => w.hold(batch),
            None => batch.delivered(),
        }
    }
}
