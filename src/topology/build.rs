//! Starting one component of a checked pipeline from its spec: a sink or
//! transform as an async task, a source on a thread of its own.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::component::{SinkContext, SinkSpec, SourceSpec, TransformContext, TransformSpec};
use crate::config::Component;
use crate::event::SharedBatch;
use crate::fanout::Fanout;
use crate::shutdown::Shutdown;
use crate::source::SourceContext;
use crate::telemetry::Registry;

/// What every component is started with.
#[derive(Clone)]
pub struct Context {
    pub registry: Registry,
    pub data_dir: PathBuf,
    /// The pipeline's stop (sinks deliver within its grace period).
    pub shutdown: Shutdown,
    pub once: bool,
    pub backtest: Option<Arc<crate::alert::backtest::Backtest>>,
    /// Where `weir tap` looks at what components send.
    pub taps: crate::tap::Taps,
}

/// Starts a sink reading `rx`; `stop` is its own (see the topology).
pub fn sink(
    c: &Component<Arc<dyn SinkSpec>>,
    rx: mpsc::Receiver<SharedBatch>,
    stop: Shutdown,
    cx: &Context,
) -> Result<JoinHandle<()>, String> {
    let (input, buffer) = crate::buffer::attach(
        c.buffer,
        &c.name,
        &cx.data_dir,
        rx,
        stop.clone(),
        &cx.registry,
    )?;
    let task = c.kind.start(SinkContext {
        name: c.name.clone(),
        input,
        registry: cx.registry.clone(),
        data_dir: cx.data_dir.clone(),
        shutdown: stop,
        backtest: cx.backtest.clone(),
        buffered_on_disk: matches!(c.buffer, crate::buffer::Buffer::Disk(_)),
    })?;
    let Some(buffer) = buffer else {
        return Ok(task);
    };
    // The sink is done once its buffer is too (a disk buffer's ledger and
    // last fsync come after the sink's last delivery).
    Ok(tokio::spawn(async move {
        let sink = task.await;
        let buffered = buffer.await;
        for e in [sink.err(), buffered.err()].into_iter().flatten() {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }))
}

/// Starts a transform reading `rx` and sending to `out`.
pub fn transform(
    c: &Component<Arc<dyn TransformSpec>>,
    rx: mpsc::Receiver<SharedBatch>,
    out: Fanout,
    cx: &Context,
) -> JoinHandle<()> {
    c.kind.start(TransformContext {
        name: c.name.clone(),
        input: rx,
        output: out,
        registry: cx.registry.clone(),
    })
}

/// Runs a source on a thread of its own; `done` hears how it ended.
pub fn source(
    c: &Component<Arc<dyn SourceSpec>>,
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
    let spec = Arc::clone(&c.kind);
    std::thread::Builder::new()
        .name(format!("source-{}", c.name))
        .spawn(move || {
            let r = spec.run(ctx);
            // Nothing more comes from it: the channels downstream may close.
            out.close();
            done(r);
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start source {}: {e}", c.name))
}
