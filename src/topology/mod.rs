//! The topology: a checked [`Pipeline`] turned into running components, kept
//! running across reloads.
//!
//! Every transform and sink gets one bounded input channel; every source and
//! transform a [`Fanout`] to the channels of the components that name it in
//! `inputs`. Sources run on threads of their own, transforms and sinks as
//! async tasks.
//!
//! **Reload** applies a newly checked pipeline to the running one: a
//! component whose settings or inputs are unchanged keeps running with its
//! channel, its buffered batches and its checkpoints. A changed or removed
//! sink or transform is taken out of its producers' fan-outs, so its channel
//! closes, it delivers what it holds and ends; its replacement starts once
//! it has (so a Loki stream's order holds across the change). A changed or
//! removed source is stopped, writes its final checkpoints, and its
//! replacement resumes from them. New components start at once.
//!
//! **Stopping** is a cascade: sources stop reading and close their
//! fan-outs, which closes the channels downstream, so each transform ends
//! after its last batch and each sink delivers what it holds and ends —
//! within the grace period, after which sinks let go of the rest
//! unacknowledged.

mod build;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use std::sync::Arc;

use crate::component::{SinkSpec, SourceSpec, TransformSpec};
use crate::config::{Component, ConfigErrors, Pipeline};
use crate::event::SharedBatch;
use crate::fanout::{CHANNEL_BATCHES, Fanout};
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Gauge, Registry};
use build::Context;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every source finished or was stopped, and the sinks delivered all they held.
    Drained,
    /// The grace period passed before the sinks were done.
    GraceExpired,
    /// A component could not start, a source failed, or a task crashed.
    Failed(RunError),
}

/// What can go wrong with a checked pipeline once it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// A component could not start: a CA file that cannot be read, an HTTP
    /// client that cannot be built, a thread that cannot be spawned.
    Start { component: String, reason: String },
    /// A source stopped on an error it could not get past.
    Source { name: String, reason: String },
    /// A component's task panicked; what it held stays unacknowledged.
    Crashed { component: String, reason: String },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Start { component, reason } => {
                write!(f, "{component} cannot start: {reason}")
            }
            RunError::Source { name, reason } => write!(f, "source {name}: {reason}"),
            RunError::Crashed { component, reason } => write!(f, "{component} failed: {reason}"),
        }
    }
}

impl std::error::Error for RunError {}

fn start_error(kind: &str, name: &str) -> impl FnOnce(String) -> RunError {
    let component = format!("{kind} {name}");
    move |reason| RunError::Start { component, reason }
}

/// How long after the grace period the topology still waits for its
/// components to let go of what they hold.
const GRACE_BACKSTOP: Duration = Duration::from_secs(1);

/// A request to re-read the pipeline file and apply it; the answer says
/// what changed, or why nothing did.
pub struct ReloadRequest {
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// Reads the pipeline again, for reloads.
pub type Loader = Box<dyn Fn() -> Result<Pipeline, ConfigErrors> + Send>;

/// How a running topology reloads: the requests, how it reads the
/// pipeline again, and what else is told once a new one is applied (the
/// alert rules, which live outside the topology).
pub struct Reloading {
    pub requests: mpsc::Receiver<ReloadRequest>,
    pub load: Loader,
    pub applied: Box<dyn Fn(&Pipeline) + Send>,
}

/// What the loop hears from a source thread when it ends.
struct SourceEnded {
    name: String,
    generation: u64,
    result: Result<(), String>,
}

struct RunningSource {
    /// The settings it was started with, to tell whether a reload changes it.
    config: String,
    output: Fanout,
    stop: Shutdown,
    generation: u64,
}

struct RunningNode {
    config: String,
    inputs: Vec<String>,
    input: mpsc::WeakSender<SharedBatch>,
    /// Transforms only.
    output: Option<Fanout>,
    /// Sinks only: their own stop, triggered by the pipeline's or when a
    /// reload replaces them (so a sink stuck retrying gives way within
    /// the grace period instead of holding its replacement back).
    stop: Option<Shutdown>,
    task: JoinHandle<()>,
}

/// The running pipeline.
struct Topology {
    cx: Context,
    grace: Duration,
    sources: HashMap<String, RunningSource>,
    transforms: HashMap<String, RunningNode>,
    sinks: HashMap<String, RunningNode>,
    /// Sources stopped by a reload whose replacement waits for them to end.
    replacing: HashMap<String, Component<Arc<dyn SourceSpec>>>,
    /// Sources whose threads have not ended yet, by name and generation.
    alive: HashSet<(String, u64)>,
    /// Replaced sinks and transforms still delivering what they hold.
    retiring: Vec<(String, JoinHandle<()>)>,
    next_generation: u64,
    ended_tx: mpsc::UnboundedSender<SourceEnded>,
}

/// `weir_config_reloads_total{outcome}` and the last outcome.
struct ReloadMetrics {
    ok: Counter,
    failed: Counter,
    last_ok: Gauge,
}

impl ReloadMetrics {
    fn new(r: &Registry) -> Self {
        let help = "Pipeline reloads (SIGHUP, POST /-/reload), by outcome.";
        let last_ok = r.gauge(
            "weir_config_last_reload_successful",
            "Whether the last reload applied the pipeline file (1) or it was invalid and the running pipeline stayed (0).",
            &[],
        );
        last_ok.set(1);
        ReloadMetrics {
            ok: r.counter("weir_config_reloads_total", help, &[("outcome", "success")]),
            failed: r.counter("weir_config_reloads_total", help, &[("outcome", "failure")]),
            last_ok,
        }
    }
}

/// Starts the pipeline and runs it to the end. `shutdown` stops it;
/// requests on `reloads` re-read it with `load` and apply it; `taps` is
/// kept current with the running components.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    pipeline: &Pipeline,
    registry: &Registry,
    shutdown: &Shutdown,
    once: bool,
    reloading: Reloading,
    backtest: Option<Arc<crate::alert::backtest::Backtest>>,
    taps: &crate::tap::Taps,
    on_started: impl FnOnce(),
) -> Outcome {
    let Reloading {
        requests: mut reloads,
        load,
        applied: on_reloaded,
    } = reloading;
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
    let mut t = Topology {
        cx: Context {
            registry: registry.clone(),
            data_dir: pipeline.data_dir.clone(),
            shutdown: shutdown.clone(),
            once,
            backtest,
            taps: taps.clone(),
        },
        grace: pipeline.grace_period,
        sources: HashMap::new(),
        transforms: HashMap::new(),
        sinks: HashMap::new(),
        replacing: HashMap::new(),
        alive: HashSet::new(),
        retiring: Vec::new(),
        next_generation: 0,
        ended_tx,
    };
    if let Err(e) = t.apply(pipeline) {
        shutdown.trigger();
        t.stop_sources();
        return Outcome::Failed(e);
    }
    on_started();
    let metrics = ReloadMetrics::new(registry);
    let progress = once.then(|| {
        let total = pipeline
            .sources
            .iter()
            .filter_map(|c| c.kind.replay_bytes())
            .reduce(|a, b| a + b);
        tokio::spawn(crate::progress::replay(registry.clone(), total))
    });

    let mut failure = None;
    while !t.alive.is_empty() || !t.replacing.is_empty() {
        tokio::select! {
            Some(ended) = ended_rx.recv() => {
                if let Some(e) = t.source_ended(ended) {
                    failure.get_or_insert(e);
                    shutdown.trigger();
                    break;
                }
            }
            Some(req) = reloads.recv() => {
                let answer = t.reload(&load, &metrics, &*on_reloaded);
                if let Some(reply) = req.reply {
                    let _ = reply.send(answer);
                }
            }
            _ = shutdown.wait() => break,
        }
    }
    if shutdown.is_triggered() {
        tracing::info!(grace_period = ?t.grace, "stopping: delivering what is in flight");
    }
    t.stop_sources();
    t.replacing.clear();
    let drain = async {
        // Sources exit promptly once stopped; then the channels close.
        while !t.alive.is_empty() {
            let Some(ended) = ended_rx.recv().await else {
                break;
            };
            t.alive.remove(&(ended.name, ended.generation));
        }
        for (_, node) in t.transforms.drain() {
            let _ = node.task.await;
        }
        let mut crashed = None;
        let sinks = t.sinks.drain().map(|(n, s)| (n, s.task));
        for (name, task) in sinks.chain(t.retiring.drain(..)).collect::<Vec<_>>() {
            if let Err(e) = task.await {
                // Its batches were dropped unacknowledged: not lost, read
                // again after a restart.
                tracing::error!(component = %name, error = %e, "task failed; what it held stays unacknowledged");
                crashed.get_or_insert(RunError::Crashed {
                    component: name,
                    reason: e.to_string(),
                });
            }
        }
        crashed
    };
    // Sinks stop by themselves when the grace period ends, leaving what they
    // could not deliver unacknowledged; this only backs that up.
    let deadline = async {
        shutdown.expired().await;
        tokio::time::sleep(GRACE_BACKSTOP).await;
    };
    let (drained, crashed) = tokio::select! {
        c = drain => (true, c),
        _ = deadline => (false, None),
    };
    let failure = failure.or(crashed);
    if let Some(p) = progress {
        p.abort();
    }
    match (failure, drained) {
        (Some(f), _) => Outcome::Failed(f),
        (None, true) => Outcome::Drained,
        (None, false) => Outcome::GraceExpired,
    }
}

/// The pipeline's components as `weir tap` resolves them.
fn tap_components(p: &Pipeline) -> Vec<crate::tap::ComponentInfo> {
    use crate::tap::{ComponentInfo, Role};
    fn info<K>(role: Role) -> impl Fn(&Component<K>) -> ComponentInfo {
        move |c| ComponentInfo {
            name: c.name.clone(),
            role,
            inputs: c.inputs.clone(),
        }
    }
    let mut out: Vec<ComponentInfo> = p.sources.iter().map(info(Role::Source)).collect();
    out.extend(p.transforms.iter().map(info(Role::Transform)));
    out.extend(p.sinks.iter().map(info(Role::Sink)));
    out
}

/// The running components (name, settings) that `wanted` drops or changes.
fn changed_or_gone<'a, K: std::fmt::Debug>(
    running: impl Iterator<Item = (&'a String, &'a str)>,
    wanted: &HashMap<&str, &Component<K>>,
) -> Vec<String> {
    running
        .filter(|(n, config)| {
            wanted
                .get(n.as_str())
                .is_none_or(|c| config_of(c) != *config)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// The settings of a component as a comparable text: reload rebuilds a
/// component exactly when this changes.
fn config_of<K: std::fmt::Debug>(c: &Component<K>) -> String {
    format!("{:?} <- {:?} via {:?}", c.kind, c.inputs, c.buffer)
}

impl Topology {
    /// Makes the running components what `p` describes (see the module
    /// documentation); returns a summary of what changed.
    fn apply(&mut self, p: &Pipeline) -> Result<String, RunError> {
        let mut changes = Vec::new();
        // Channels made here are held strongly until they are wired in.
        let mut fresh: Vec<mpsc::Sender<SharedBatch>> = Vec::new();

        let wanted: HashMap<&str, &Component<Arc<dyn SinkSpec>>> =
            p.sinks.iter().map(|c| (c.name.as_str(), c)).collect();
        let stale = changed_or_gone(
            self.sinks.iter().map(|(n, r)| (n, r.config.as_str())),
            &wanted,
        );
        let mut predecessors: HashMap<String, JoinHandle<()>> = HashMap::new();
        for name in stale {
            let old = self.sinks.remove(&name).expect("listed above");
            if let Some(stop) = &old.stop {
                // Deliver what it holds within the grace period, then let go.
                stop.trigger();
            }
            predecessors.insert(name, old.task);
        }
        for c in &p.sinks {
            if self.sinks.contains_key(&c.name) {
                continue;
            }
            let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
            let before = predecessors.remove(&c.name);
            changes.push(format!(
                "{} sink {}",
                if before.is_some() { "rebuilt" } else { "added" },
                c.name
            ));
            let stop = self.sink_stop();
            let task = match before {
                None => build::sink(c, rx, stop.clone(), &self.cx)
                    .map_err(start_error("sink", &c.name))?,
                Some(old) => {
                    // Start it once the old one has delivered what it holds.
                    let (c, cx, stop) = (c.clone(), self.cx.clone(), stop.clone());
                    tokio::spawn(async move {
                        let _ = old.await;
                        match build::sink(&c, rx, stop, &cx) {
                            Ok(task) => {
                                let _ = task.await;
                            }
                            Err(e) => tracing::error!(error = %e, "cannot start the reloaded sink"),
                        }
                    })
                }
            };
            self.sinks.insert(
                c.name.clone(),
                RunningNode {
                    config: config_of(c),
                    inputs: c.inputs.clone(),
                    input: tx.downgrade(),
                    output: None,
                    stop: Some(stop),
                    task,
                },
            );
            fresh.push(tx);
        }
        for (name, task) in predecessors {
            changes.push(format!("removed sink {name}"));
            self.retiring.push((format!("sink {name}"), task));
        }

        let wanted: HashMap<&str, &Component<Arc<dyn TransformSpec>>> =
            p.transforms.iter().map(|c| (c.name.as_str(), c)).collect();
        let stale = changed_or_gone(
            self.transforms.iter().map(|(n, r)| (n, r.config.as_str())),
            &wanted,
        );
        for name in stale {
            let old = self.transforms.remove(&name).expect("listed above");
            changes.push(format!(
                "{} transform {name}",
                if wanted.contains_key(name.as_str()) {
                    "rebuilt"
                } else {
                    "removed"
                }
            ));
            self.retiring.push((format!("transform {name}"), old.task));
        }
        // New transforms: every channel first, then each output wired to
        // its consumers before anything can reach the transform's input.
        let mut starting = Vec::new();
        for c in &p.transforms {
            if self.transforms.contains_key(&c.name) {
                continue;
            }
            if !changes
                .iter()
                .any(|m| m.ends_with(&format!("transform {}", c.name)))
            {
                changes.push(format!("added transform {}", c.name));
            }
            let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
            let out = Fanout::default().with_tap(self.cx.taps.point(&c.name));
            starting.push((c, rx, out.clone()));
            self.transforms.insert(
                c.name.clone(),
                RunningNode {
                    config: config_of(c),
                    inputs: c.inputs.clone(),
                    input: tx.downgrade(),
                    output: Some(out),
                    stop: None,
                    task: tokio::spawn(async {}),
                },
            );
            fresh.push(tx);
        }
        for (c, rx, out) in starting {
            out.set(self.senders_for(&c.name));
            let task = build::transform(c, rx, out, &self.cx);
            if let Some(node) = self.transforms.get_mut(&c.name) {
                node.task = task;
            }
        }

        let wanted: HashMap<&str, &Component<Arc<dyn SourceSpec>>> =
            p.sources.iter().map(|c| (c.name.as_str(), c)).collect();
        let stale = changed_or_gone(
            self.sources.iter().map(|(n, r)| (n, r.config.as_str())),
            &wanted,
        );
        for name in stale {
            let old = self.sources.remove(&name).expect("listed above");
            old.stop.trigger();
            match wanted.get(name.as_str()) {
                Some(c) => {
                    changes.push(format!("rebuilt source {name}"));
                    self.replacing.insert(name, (*c).clone());
                }
                None => changes.push(format!("removed source {name}")),
            }
        }
        for c in &p.sources {
            if self.sources.contains_key(&c.name) || self.replacing.contains_key(&c.name) {
                continue;
            }
            changes.push(format!("added source {}", c.name));
            self.start_source(c)?;
        }

        self.rewire();
        drop(fresh);
        self.cx.taps.set_components(tap_components(p));
        if changes.is_empty() {
            Ok("nothing changed".into())
        } else {
            Ok(changes.join(", "))
        }
    }

    /// Starts a source with its fan-out already wired, so that nothing it
    /// reads goes nowhere.
    fn start_source(&mut self, c: &Component<Arc<dyn SourceSpec>>) -> Result<(), RunError> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let stop = Shutdown::with_grace(self.grace);
        if self.cx.shutdown.is_triggered() {
            stop.trigger();
        }
        let output = Fanout::new(self.senders_for(&c.name)).with_tap(self.cx.taps.point(&c.name));
        let (name, ended) = (c.name.clone(), self.ended_tx.clone());
        build::source(c, output.clone(), stop.clone(), &self.cx, move |result| {
            let _ = ended.send(SourceEnded {
                name,
                generation,
                result,
            });
        })
        .map_err(start_error("source", &c.name))?;
        self.alive.insert((c.name.clone(), generation));
        self.sources.insert(
            c.name.clone(),
            RunningSource {
                config: config_of(c),
                output,
                stop,
                generation,
            },
        );
        Ok(())
    }

    /// The input channels of the components that read `name` now.
    fn senders_for(&self, name: &str) -> Vec<mpsc::Sender<SharedBatch>> {
        self.transforms
            .values()
            .chain(self.sinks.values())
            .filter(|n| n.inputs.iter().any(|i| i == name))
            .filter_map(|n| n.input.upgrade())
            .collect()
    }

    /// Points every producer's fan-out at the consumers that read it now.
    fn rewire(&self) {
        for (name, t) in &self.transforms {
            if let Some(out) = &t.output {
                out.set(self.senders_for(name));
            }
        }
        for (name, s) in &self.sources {
            s.output.set(self.senders_for(name));
        }
    }

    /// A source thread ended. Returns its error, which stops the pipeline.
    fn source_ended(&mut self, ended: SourceEnded) -> Option<RunError> {
        self.alive.remove(&(ended.name.clone(), ended.generation));
        let current = self
            .sources
            .get(&ended.name)
            .is_some_and(|s| s.generation == ended.generation);
        if current {
            self.sources.remove(&ended.name);
        }
        if let Err(e) = ended.result {
            tracing::error!(source = %ended.name, error = %e, "source failed; stopping the pipeline");
            return Some(RunError::Source {
                name: ended.name,
                reason: e,
            });
        }
        if let Some(c) = self.replacing.remove(&ended.name) {
            // Its predecessor wrote its final checkpoints: resume from them.
            if let Err(e) = self.start_source(&c) {
                return Some(e);
            }
            self.rewire();
        }
        None
    }

    /// A sink's own stop: triggered with the pipeline's, or alone when a
    /// reload replaces the sink.
    fn sink_stop(&self) -> Shutdown {
        let stop = Shutdown::with_grace(self.grace);
        let (pipeline, sink) = (self.cx.shutdown.clone(), stop.clone());
        tokio::spawn(async move {
            pipeline.wait().await;
            sink.trigger();
        });
        stop
    }

    fn stop_sources(&self) {
        for s in self.sources.values() {
            s.stop.trigger();
        }
    }

    /// Re-reads the pipeline and applies it; an invalid file changes nothing.
    fn reload(
        &mut self,
        load: &Loader,
        m: &ReloadMetrics,
        on_reloaded: &dyn Fn(&Pipeline),
    ) -> Result<String, String> {
        let p = match load() {
            Ok(p) => p,
            Err(errors) => {
                m.failed.inc();
                m.last_ok.set(0);
                for e in &errors.0 {
                    tracing::error!("reload: {e}");
                }
                tracing::error!(
                    "reload failed: the pipeline file has errors; the running pipeline stays as it was"
                );
                return Err(errors.to_string());
            }
        };
        if p.data_dir != self.cx.data_dir {
            tracing::warn!("reload: a new data_dir takes effect only after a restart");
        }
        match self.apply(&p) {
            Ok(summary) => {
                on_reloaded(&p);
                m.ok.inc();
                m.last_ok.set(1);
                tracing::info!(changes = %summary, "pipeline reloaded");
                Ok(summary)
            }
            Err(e) => {
                m.failed.inc();
                m.last_ok.set(0);
                tracing::error!(error = %e, "reload failed while starting a component");
                Err(e.to_string())
            }
        }
    }
}
