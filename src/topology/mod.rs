//! The topology: a checked [`Pipeline`] turned into running components.
//!
//! Every transform and sink gets one bounded input channel; every source and
//! transform a [`Fanout`] to the channels of the components that name it in
//! `inputs`. Sources run on threads of their own, transforms and sinks as
//! async tasks. Stopping is a cascade: sources stop reading and drop their
//! senders, which closes the channels downstream, so each transform ends after
//! its last batch and each sink delivers what it holds and ends.

pub mod fanout;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{Pipeline, SinkKind, SourceKind, TransformKind};
use crate::event::SharedBatch;
use crate::shutdown::Shutdown;
use crate::sink::{self, BatchConfig, Blackhole, RetryConfig, SinkMetrics};
use crate::source::{self, SourceContext};
use crate::telemetry::Registry;
use crate::transform;
use fanout::{CHANNEL_BATCHES, Fanout};

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every source finished or was stopped, and the sinks delivered all they held.
    Drained,
    /// The grace period passed before the sinks were done.
    GraceExpired,
    /// A source failed.
    Failed(String),
}

/// How long after the grace period the topology still waits for its
/// components to let go of what they hold.
const GRACE_BACKSTOP: Duration = Duration::from_secs(1);

/// Starts the pipeline and runs it to the end. `shutdown` stops it.
pub async fn run(
    pipeline: &Pipeline,
    registry: &Registry,
    shutdown: &Shutdown,
    once: bool,
    mut on_started: impl FnMut(),
) -> Outcome {
    let mut receivers: HashMap<String, mpsc::Receiver<SharedBatch>> = HashMap::new();
    let mut outputs: HashMap<String, Vec<mpsc::Sender<SharedBatch>>> = HashMap::new();
    let consumers = pipeline
        .transforms
        .iter()
        .map(|c| (&c.name, &c.inputs))
        .chain(pipeline.sinks.iter().map(|c| (&c.name, &c.inputs)));
    for (name, inputs) in consumers {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        receivers.insert(name.clone(), rx);
        for input in inputs {
            outputs.entry(input.clone()).or_default().push(tx.clone());
        }
    }
    let mut fanout_of = |name: &str| Fanout::new(outputs.remove(name).unwrap_or_default());

    let mut sinks = Vec::new();
    for c in &pipeline.sinks {
        let rx = receivers.remove(&c.name).expect("channel made above");
        let metrics = SinkMetrics::new(registry, &c.name);
        let (name, stop) = (c.name.clone(), shutdown.clone());
        let handle = match &c.kind {
            SinkKind::Metrics(cfg) => {
                let derived = match cfg.compile(registry, &c.name) {
                    Ok(d) => d,
                    Err(e) => return Outcome::Failed(format!("sink {}: {}", c.name, e.message)),
                };
                registry.add_render(derived.store.clone());
                let mut pusher = None;
                let mut awaiting = None;
                if let Some(rw) = cfg.remote_write.clone() {
                    let waiting = crate::metrics::remote_write::AwaitingPush::default();
                    match crate::metrics::remote_write::start(
                        rw,
                        derived.store.clone(),
                        waiting.clone(),
                        registry,
                        &c.name,
                        stop,
                    ) {
                        Ok(p) => pusher = Some(p),
                        Err(e) => return Outcome::Failed(format!("sink {}: {e}", c.name)),
                    }
                    awaiting = Some(waiting);
                }
                tokio::spawn(async move {
                    crate::metrics::run(derived, rx, awaiting).await;
                    if let Some((stop, done)) = pusher {
                        let _ = stop.send(());
                        let _ = done.await;
                    }
                })
            }
            SinkKind::File(cfg) => {
                let sink = match sink::file::FileSink::new(cfg) {
                    Ok(s) => s,
                    Err(e) => return Outcome::Failed(format!("sink {}: {e}", c.name)),
                };
                let batch = cfg.batch.unwrap_or_default();
                tokio::spawn(sink::drive(
                    name,
                    sink,
                    rx,
                    batch,
                    RetryConfig::default(),
                    metrics,
                    stop,
                ))
            }
            SinkKind::Elasticsearch(cfg) => {
                let sink = match sink::elasticsearch::ElasticsearchSink::new(
                    cfg,
                    &c.name,
                    &pipeline.data_dir,
                    registry,
                ) {
                    Ok(s) => s,
                    Err(e) => return Outcome::Failed(format!("sink {}: {e}", c.name)),
                };
                let (batch, retry) = (sink.batch_config(), sink.retry_config());
                tokio::spawn(sink::drive(name, sink, rx, batch, retry, metrics, stop))
            }
            SinkKind::Loki(cfg) => {
                let sink =
                    match sink::loki::LokiSink::new(cfg, &c.name, &pipeline.data_dir, registry) {
                        Ok(s) => s,
                        Err(e) => return Outcome::Failed(format!("sink {}: {e}", c.name)),
                    };
                let (batch, retry) = (sink.batch_config(), sink.retry_config());
                tokio::spawn(sink::drive(name, sink, rx, batch, retry, metrics, stop))
            }
            SinkKind::Console(cfg) => {
                let batch = cfg.batch.unwrap_or(BatchConfig {
                    timeout: crate::config::units::Dur(Duration::from_millis(100)),
                    ..BatchConfig::default()
                });
                tokio::spawn(sink::drive(
                    name,
                    sink::console::Console::default(),
                    rx,
                    batch,
                    RetryConfig::default(),
                    metrics,
                    stop,
                ))
            }
            SinkKind::Blackhole(_) => tokio::spawn(sink::drive(
                name,
                Blackhole,
                rx,
                BatchConfig::default(),
                RetryConfig::default(),
                metrics,
                stop,
            )),
        };
        sinks.push((c.name.clone(), handle));
    }

    let mut transforms = Vec::new();
    for c in &pipeline.transforms {
        let rx = receivers.remove(&c.name).expect("channel made above");
        let out = fanout_of(&c.name);
        match &c.kind {
            TransformKind::Filter(_, cond) => {
                let f = transform::Filter::new(cond.clone(), registry, &c.name);
                transforms.push(tokio::spawn(transform::run(f, rx, out)));
            }
        }
    }

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Result<(), String>)>();
    let mut running = 0;
    for c in &pipeline.sources {
        let ctx = SourceContext {
            name: c.name.clone(),
            output: fanout_of(&c.name),
            shutdown: shutdown.clone(),
            once,
            registry: registry.clone(),
            data_dir: pipeline.data_dir.clone(),
        };
        let kind = c.kind.clone();
        let done = done_tx.clone();
        let name = c.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("source-{name}"))
            .spawn(move || {
                let r = match kind {
                    SourceKind::File(cfg) => source::file::run(cfg, ctx),
                    SourceKind::Stdin(cfg) => source::stdin::run(cfg, ctx),
                };
                let _ = done.send((name, r));
            });
        if let Err(e) = spawned {
            shutdown.trigger();
            return Outcome::Failed(format!("cannot start source {}: {e}", c.name));
        }
        running += 1;
    }
    drop(done_tx);
    drop(outputs);
    on_started();
    let progress = once.then(|| tokio::spawn(report_progress(registry.clone())));

    let mut failure = None;
    while running > 0 {
        tokio::select! {
            Some((name, r)) = done_rx.recv() => {
                running -= 1;
                if let Err(e) = r {
                    tracing::error!(source = %name, error = %e, "source failed; stopping the pipeline");
                    failure.get_or_insert(format!("source {name}: {e}"));
                    shutdown.trigger();
                }
            }
            _ = shutdown.wait() => break,
        }
    }
    if shutdown.is_triggered() {
        tracing::info!(grace_period = ?pipeline.grace_period, "stopping: delivering what is in flight");
    }
    let drain = async {
        // Sources exit promptly once the flag is set; then the channels close.
        while running > 0 && done_rx.recv().await.is_some() {
            running -= 1;
        }
        for t in transforms {
            let _ = t.await;
        }
        let mut crashed = None;
        for (name, s) in sinks {
            if let Err(e) = s.await {
                // Its batches were dropped unacknowledged: not lost, read
                // again after a restart.
                tracing::error!(sink = %name, error = %e, "sink task failed; what it held stays unacknowledged");
                crashed.get_or_insert(format!("sink {name} failed: {e}"));
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

/// A progress line every 10 s during `--once` replays, which can be long.
async fn report_progress(registry: Registry) {
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tick.tick().await;
        let lines = registry.sum("weir_lines_read_total");
        let bytes = registry.sum("weir_bytes_read_total");
        let out = registry.sum("weir_events_out_total");
        let secs = start.elapsed().as_secs_f64();
        tracing::info!(
            "replay: {lines} lines read ({:.1} MB, {:.0} lines/s), {out} events delivered",
            bytes as f64 / 1e6,
            lines as f64 / secs
        );
    }
}
