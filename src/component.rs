//! The component registry: which YAML `type` is which module.
//!
//! Every source, transform and sink kind lives in one module that owns its
//! settings type, its check and its start: the module exports a [`Kind`]
//! whose `check` reads the component's YAML (reporting every problem with
//! its position through [`CheckCx`]) and returns a *spec* — the settings
//! with everything compiled that can be compiled ahead (globs, regexes,
//! rules, templates). `weir validate` stops there; `weir run` starts the
//! specs it was given, with no second compile. The tables below are the
//! only place that names the kinds: adding one is its module and one line
//! here.
//!
//! This module does not wire components together (the topology does) and
//! knows no kind's settings.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use crate::config::CheckCx;
use crate::event::SharedBatch;
use crate::fanout::Fanout;
use crate::shutdown::Shutdown;
use crate::source::SourceContext;
use crate::telemetry::Registry;

/// One kind of component: its YAML `type` and how to check its settings.
pub struct Kind<S: ?Sized> {
    pub name: &'static str,
    /// Reads the settings (everything but `type` and `inputs`); `None`
    /// when they have problems, which are recorded in the context.
    pub check: fn(&mut CheckCx<'_>) -> Option<Arc<S>>,
}

/// A checked source, ready to run on a thread of its own.
pub trait SourceSpec: Debug + Send + Sync {
    /// Reads until the input ends (`--once`) or the source is stopped.
    fn run(&self, ctx: SourceContext) -> Result<(), String>;

    /// How many bytes a `--once` replay would read now, if known (for
    /// its progress display).
    fn replay_bytes(&self) -> Option<u64> {
        None
    }
}

/// A checked transform.
pub trait TransformSpec: Debug + Send + Sync {
    fn start(&self, cx: TransformContext) -> JoinHandle<()>;
}

/// A checked sink.
pub trait SinkSpec: Debug + Send + Sync {
    /// Starts the sink's task. Fails only for what depends on the machine
    /// at start (a CA file that went away, a client that cannot be built).
    fn start(&self, cx: SinkContext) -> Result<JoinHandle<()>, String>;

    /// A `metrics` sink's settings (what it derives), for the rule lints,
    /// exports and back-tests; `None` for every other sink.
    fn metrics(&self) -> Option<&crate::metrics::MetricsConfig> {
        None
    }

    /// A `loki` sink's settings (the stream labels it attaches), for the
    /// LogQL rule export; `None` for every other sink.
    fn loki(&self) -> Option<&crate::sink::loki::config::LokiConfig> {
        None
    }
}

/// What a transform is started with.
pub struct TransformContext {
    pub name: String,
    pub input: mpsc::Receiver<SharedBatch>,
    pub output: Fanout,
    pub registry: Registry,
}

/// What a sink is started with.
pub struct SinkContext {
    pub name: String,
    pub input: mpsc::Receiver<SharedBatch>,
    pub registry: Registry,
    pub data_dir: PathBuf,
    /// The pipeline's stop: deliver within its grace period.
    pub shutdown: Shutdown,
    /// In `--once` runs with alert rules: the back-test a metrics sink
    /// drives on the events' own time.
    pub backtest: Option<Arc<crate::alert::backtest::Backtest>>,
    /// The input comes from a disk buffer: what the sink does not deliver
    /// stays there (it is not lost when the grace period ends).
    pub buffered_on_disk: bool,
}

pub type SourceKind = Kind<dyn SourceSpec>;
pub type TransformKind = Kind<dyn TransformSpec>;
pub type SinkKind = Kind<dyn SinkSpec>;

pub const SOURCES: &[SourceKind] = &[
    crate::source::file::KIND,
    crate::source::stdin::KIND,
    crate::source::demo::KIND,
];

pub const TRANSFORMS: &[TransformKind] = &[crate::transform::FILTER];

pub const SINKS: &[SinkKind] = &[
    crate::sink::file::KIND,
    crate::sink::console::KIND,
    crate::sink::BLACKHOLE,
    crate::metrics::KIND,
    crate::sink::loki::KIND,
    crate::sink::elasticsearch::KIND,
];

/// The kind called `name` in `table`.
pub fn find<'a, S: ?Sized>(table: &'a [Kind<S>], name: &str) -> Option<&'a Kind<S>> {
    table.iter().find(|k| k.name == name)
}

/// The names in `table`, for messages.
pub fn names<S: ?Sized>(table: &[Kind<S>]) -> Vec<&'static str> {
    table.iter().map(|k| k.name).collect()
}
