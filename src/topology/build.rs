//! Starting one component of a checked pipeline: a sink or transform as an
//! async task, a source on a thread of its own.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::fanout::Fanout;
use crate::config::{Component, SinkKind, SourceKind, TransformKind};
use crate::event::SharedBatch;
use crate::shutdown::Shutdown;
use crate::sink::{self, BatchConfig, Blackhole, RetryConfig, SinkMetrics};
use crate::source::{self, SourceContext};
use crate::telemetry::Registry;
use crate::transform;

/// What every component is started with.
#[derive(Clone)]
pub struct Context {
    pub registry: Registry,
    pub data_dir: PathBuf,
    /// The pipeline's stop (sinks deliver within its grace period).
    pub shutdown: Shutdown,
    pub once: bool,
}

/// Starts a sink reading `rx`.
pub fn sink(
    c: &Component<SinkKind>,
    rx: mpsc::Receiver<SharedBatch>,
    cx: &Context,
) -> Result<JoinHandle<()>, String> {
    let registry = &cx.registry;
    let metrics = SinkMetrics::new(registry, &c.name);
    let (name, stop) = (c.name.clone(), cx.shutdown.clone());
    let fail = |e: String| format!("sink {}: {e}", c.name);
    let handle = match &c.kind {
        SinkKind::Metrics(cfg) => {
            let derived = cfg
                .compile(registry, &c.name)
                .map_err(|e| fail(e.message))?;
            registry.set_render(&c.name, derived.store.clone());
            let mut pusher = None;
            let mut awaiting = None;
            if let Some(rw) = cfg.remote_write.clone() {
                let waiting = crate::metrics::remote_write::AwaitingPush::default();
                pusher = Some(
                    crate::metrics::remote_write::start(
                        rw,
                        derived.store.clone(),
                        waiting.clone(),
                        registry,
                        &c.name,
                        stop,
                    )
                    .map_err(fail)?,
                );
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
            let sink = sink::file::FileSink::new(cfg).map_err(fail)?;
            let batch = cfg.batch.unwrap_or_default();
            let retry = RetryConfig::default();
            tokio::spawn(sink::drive(name, sink, rx, batch, retry, metrics, stop))
        }
        SinkKind::Elasticsearch(cfg) => {
            let sink =
                sink::elasticsearch::ElasticsearchSink::new(cfg, &c.name, &cx.data_dir, registry)
                    .map_err(fail)?;
            let (batch, retry) = (sink.batch_config(), sink.retry_config());
            tokio::spawn(sink::drive(name, sink, rx, batch, retry, metrics, stop))
        }
        SinkKind::Loki(cfg) => {
            let sink =
                sink::loki::LokiSink::new(cfg, &c.name, &cx.data_dir, registry).map_err(fail)?;
            let (batch, retry) = (sink.batch_config(), sink.retry_config());
            tokio::spawn(sink::drive(name, sink, rx, batch, retry, metrics, stop))
        }
        SinkKind::Console(cfg) => {
            let batch = cfg.batch.unwrap_or(BatchConfig {
                timeout: crate::config::units::Dur(Duration::from_millis(100)),
                ..BatchConfig::default()
            });
            let sink = sink::console::Console::default();
            let retry = RetryConfig::default();
            tokio::spawn(sink::drive(name, sink, rx, batch, retry, metrics, stop))
        }
        SinkKind::Blackhole(_) => {
            let (batch, retry) = (BatchConfig::default(), RetryConfig::default());
            tokio::spawn(sink::drive(
                name, Blackhole, rx, batch, retry, metrics, stop,
            ))
        }
    };
    Ok(handle)
}

/// Starts a transform reading `rx` and sending to `out`.
pub fn transform(
    c: &Component<TransformKind>,
    rx: mpsc::Receiver<SharedBatch>,
    out: Fanout,
    cx: &Context,
) -> JoinHandle<()> {
    match &c.kind {
        TransformKind::Filter(_, cond) => {
            let f = transform::Filter::new(cond.clone(), &cx.registry, &c.name);
            tokio::spawn(transform::run(f, rx, out))
        }
    }
}

/// Runs a source on a thread of its own; `done` hears how it ended.
pub fn source(
    c: &Component<SourceKind>,
    out: Fanout,
    stop: Shutdown,
    cx: &Context,
    done: impl FnOnce(Result<(), String>) + Send + 'static,
) -> Result<(), String> {
    let ctx = SourceContext {
        name: c.name.clone(),
        output: out.clone(),
        shutdown: stop,
        once: cx.once,
        registry: cx.registry.clone(),
        data_dir: cx.data_dir.clone(),
    };
    let kind = c.kind.clone();
    std::thread::Builder::new()
        .name(format!("source-{}", c.name))
        .spawn(move || {
            let r = match kind {
                SourceKind::File(cfg) => source::file::run(cfg, ctx),
                SourceKind::Stdin(cfg) => source::stdin::run(cfg, ctx),
            };
            // Nothing more comes from it: the channels downstream may close.
            out.close();
            done(r);
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start source {}: {e}", c.name))
}
