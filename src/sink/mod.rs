//! Sinks: where events leave weir. Every sink kind implements [`Sink`]
//! and is run by the same loop ([`driver`]): events are encoded into the
//! sink's open batch as they arrive, a full or due batch is sealed and
//! sent, and the next one is encoded while it is in flight. Once delivery
//! succeeds, the batches it covered are released, which acknowledges their
//! bytes to the sources.
//!
//! Acknowledgement is positive (see `ack`): a batch is acknowledged only
//! when it was delivered or set aside; whatever a sink lets go of otherwise
//! stays unacknowledged, and a file source reads it again after a restart.

pub mod console;
pub mod dead_letter;
mod driver;
pub mod elasticsearch;
pub mod file;
pub mod loki;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{CheckCx, Kind, SinkContext, SinkKind, SinkSpec};
use crate::config::units::{ByteSize, Dur};
use crate::event::Event;
use crate::telemetry::{Counter, Registry};
use driver::drive;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_timeout(),
        }
    }
}

fn default_max_events() -> usize {
    10_000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}

pub use crate::http::RetryConfig;

/// Why a delivery failed, and what the server asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryError {
    pub message: String,
    /// The server's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl From<String> for DeliveryError {
    fn from(message: String) -> Self {
        DeliveryError {
            message,
            retry_after: None,
        }
    }
}

/// The `blackhole` sink takes no options besides `inputs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

/// What waits for a delivery's reply: the network part of an attempt,
/// owning everything it needs, so the next batch can be encoded meanwhile.
pub type Call<R> = Pin<Box<dyn Future<Output = R> + Send>>;

/// A reply that is already there: for sinks that deliver in place (files,
/// standard output), whose `send` does the work.
pub fn done<R: Send + 'static>(reply: R) -> Call<R> {
    Box::pin(std::future::ready(reply))
}

/// A destination for batches of events.
///
/// The driver encodes events into the sink's open batch, seals it, and
/// makes delivery attempts: `send` starts one (building the request from
/// the batch), and `answer` reads its reply. The batch stays the driver's
/// between attempts, so a retry sends what is left of it while the sink
/// encodes the next.
pub trait Sink: Send {
    /// A sealed batch: what one delivery sends, and sends again on retry.
    type Batch: Send;
    /// What an attempt comes back with.
    type Reply: Send + 'static;
    /// Adds one event to the open batch; returns the bytes it added.
    fn encode(&mut self, event: &Event) -> usize;
    /// Takes the open batch for delivery; the sink starts an empty one.
    fn seal(&mut self) -> Self::Batch;
    /// Starts an attempt to deliver `batch`.
    fn send(&mut self, batch: &mut Self::Batch) -> Call<Self::Reply>;
    /// What the reply means: `Ok` once the batch is delivered (or the parts
    /// the server refused are set aside), `Err` to try again with what is
    /// left of it.
    fn answer(&mut self, batch: &mut Self::Batch, reply: Self::Reply) -> Result<(), DeliveryError>;
    /// Retries ran out (`retry.max_duration`): set the batch aside (dead
    /// letter) and return true, or return false to leave it
    /// unacknowledged. The default cannot set anything aside.
    fn give_up(&mut self, _batch: &mut Self::Batch, _reason: &str) -> bool {
        false
    }
    /// A batch the driver is done with, for the sink to reuse its buffers.
    fn recycle(&mut self, _batch: Self::Batch) {}
}

/// Counters every sink keeps.
#[derive(Clone)]
pub struct SinkMetrics {
    events_out: Counter,
    bytes_out: Counter,
    errors: Counter,
    retries: Counter,
    given_up: Counter,
    undelivered: Counter,
    /// The sink reads from a disk buffer: what it lets go of at the end of
    /// the grace period stays there, so it is not undelivered.
    on_disk: bool,
}

impl SinkMetrics {
    /// `weir_sink_undelivered_events_total` of sink `name`, for parts of a
    /// sink that are not driven by [`drive`] (remote write).
    pub fn undelivered(registry: &Registry, name: &str) -> Counter {
        registry.counter(
            "weir_sink_undelivered_events_total",
            "Events a sink let go of undelivered: the grace period ended, or retries ran out with no dead-letter file (left unacknowledged: file sources read them again after a restart).",
            &[("sink", name)],
        )
    }

    pub fn new(registry: &Registry, name: &str) -> Self {
        let l = [("sink", name)];
        SinkMetrics {
            events_out: registry.counter("weir_events_out_total", "Events delivered, by sink.", &l),
            bytes_out: registry.counter(
                "weir_bytes_out_total",
                "Encoded bytes delivered, by sink.",
                &l,
            ),
            errors: registry.counter(
                "weir_sink_errors_total",
                "Failed delivery attempts, by sink.",
                &l,
            ),
            retries: registry.counter("weir_sink_retries_total", "Delivery attempts that were retries, by sink.", &l),
            undelivered: Self::undelivered(registry, name),
            given_up: registry.counter(
                "weir_sink_given_up_events_total",
                "Events whose delivery was abandoned after retry.max_duration (dead-lettered where the sink can), by sink.",
                &l,
            ),
            on_disk: false,
        }
    }

    /// For a sink fed by a disk buffer.
    pub fn on_disk(mut self, on_disk: bool) -> Self {
        self.on_disk = on_disk;
        self
    }
}

/// Runs `sink` as its own task, driven by [`drive`] with the sink's
/// counters; what every sink kind's start does.
pub fn spawn<S: Sink + 'static>(
    cx: SinkContext,
    sink: S,
    batch: BatchConfig,
    retry: RetryConfig,
) -> tokio::task::JoinHandle<()> {
    let metrics = SinkMetrics::new(&cx.registry, &cx.name).on_disk(cx.buffered_on_disk);
    tokio::spawn(drive(
        cx.name,
        sink,
        cx.input,
        batch,
        retry,
        metrics,
        cx.shutdown,
    ))
}

/// The `blackhole` sink kind.
pub const BLACKHOLE: SinkKind = Kind {
    name: "blackhole",
    check: check_blackhole,
};

#[derive(Debug)]
struct BlackholeSpec;

impl SinkSpec for BlackholeSpec {
    fn start(&self, cx: SinkContext) -> Result<tokio::task::JoinHandle<()>, String> {
        let (batch, retry) = (BatchConfig::default(), RetryConfig::default());
        Ok(spawn(cx, Blackhole, batch, retry))
    }
}

fn check_blackhole(cx: &mut CheckCx<'_>) -> Option<std::sync::Arc<dyn SinkSpec>> {
    let BlackholeConfig {} = cx.typed()?;
    Some(std::sync::Arc::new(BlackholeSpec))
}

/// Discards everything; for benchmarks and dry runs.
#[derive(Default)]
pub struct Blackhole;

impl Sink for Blackhole {
    type Batch = ();
    type Reply = ();
    fn encode(&mut self, event: &Event) -> usize {
        event.line().len()
    }
    fn seal(&mut self) {}
    fn send(&mut self, _batch: &mut ()) -> Call<()> {
        done(())
    }
    fn answer(&mut self, _batch: &mut (), _reply: ()) -> Result<(), DeliveryError> {
        Ok(())
    }
}
