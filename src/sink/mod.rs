//! Sinks: where events leave weir. Every sink is driven by the same loop:
//! events are encoded into the sink's pending batch as they arrive, and the
//! batch is delivered when it reaches `max_events` or `max_bytes`, when
//! `timeout` passes after its first event, or when the inputs close.
//! Once delivery succeeds, the batches it covered are released, which
//! acknowledges their bytes to the sources.
//!
//! A sink that cannot deliver retries with exponential backoff and full
//! jitter (honouring a server's `Retry-After`) until it succeeds, until
//! `retry.max_duration` passes — then the sink may set the batch aside in its
//! dead-letter file — or, once the pipeline is stopping, until its grace
//! period ends. Acknowledgement is positive (see `ack`): a batch is
//! acknowledged only when it was delivered or set aside; whatever a sink
//! lets go of otherwise stays unacknowledged, and a file source reads it
//! again after a restart.

pub mod console;
pub mod dead_letter;
pub mod elasticsearch;
pub mod file;
pub mod loki;

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::component::{CheckCx, Kind, SinkContext, SinkKind, SinkSpec};
use crate::config::units::{ByteSize, Dur};
use crate::event::{Event, SharedBatch};
use crate::http::Backoff;
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Registry};

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

/// A destination for batches of events.
pub trait Sink: Send {
    /// Adds one event to the pending batch; returns the bytes it added.
    fn encode(&mut self, event: &Event) -> usize;
    /// Delivers the pending batch. On error the same batch is tried again.
    fn deliver(&mut self) -> impl Future<Output = Result<(), DeliveryError>> + Send;
    /// Retries ran out (`retry.max_duration`): set the pending batch aside
    /// (dead letter) and return true, or return false to leave it
    /// unacknowledged. The default cannot set anything aside.
    fn give_up(&mut self, _reason: &str) -> bool {
        false
    }
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

/// The batches a sink has encoded and not yet delivered.
#[derive(Default)]
struct Held {
    batches: Vec<SharedBatch>,
    events: usize,
    bytes: usize,
}

impl Held {
    /// Delivered (or set aside): every batch is acknowledged.
    fn settle(&mut self) {
        for b in self.batches.drain(..) {
            b.delivered();
        }
        (self.events, self.bytes) = (0, 0);
    }

    /// Not delivered: the batches are let go without an acknowledgement, so
    /// their sources never checkpoint past them.
    fn abandon(&mut self) {
        self.batches.clear();
        (self.events, self.bytes) = (0, 0);
    }
}

/// How one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Delivered, or dead-lettered after `retry.max_duration`.
    Done,
    /// Given up after `retry.max_duration` with nowhere to set it aside.
    Abandoned,
    /// The grace period after a stop ran out first.
    Expired,
}

/// Runs a sink until its inputs close, then delivers what is left; or,
/// once a stop was asked for, until the grace period ends, leaving what
/// it could not deliver unacknowledged.
pub async fn drive<S: Sink>(
    name: String,
    mut sink: S,
    mut input: mpsc::Receiver<SharedBatch>,
    batch: BatchConfig,
    retry: RetryConfig,
    metrics: SinkMetrics,
    shutdown: Shutdown,
) {
    let r = Retrying {
        name: &name,
        metrics: &metrics,
        shutdown: &shutdown,
    };
    let mut backoff = Backoff::new(retry);
    let mut held = Held::default();
    let mut deadline: Option<Instant> = None;
    loop {
        let full = held.events >= batch.max_events || held.bytes as u64 >= batch.max_bytes.0;
        let due = deadline.is_some_and(|d| Instant::now() >= d);
        if !held.batches.is_empty() && (full || due) {
            deadline = None;
            if deliver(&r, &mut sink, &mut held, &mut backoff).await == Delivery::Expired {
                return r.expire(held, input);
            }
            continue;
        }
        let next = tokio::select! {
            b = input.recv() => b,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => continue,
            _ = shutdown.expired() => return r.expire(held, input),
        };
        let Some(b) = next else { break };
        if b.events.is_empty() {
            // Nothing to deliver (a filter kept none of it): done already.
            b.delivered();
            continue;
        }
        for e in b.events.iter() {
            held.bytes += sink.encode(e);
        }
        held.events += b.events.len();
        held.batches.push(b);
        deadline.get_or_insert_with(|| Instant::now() + batch.timeout.0);
    }
    if !held.batches.is_empty()
        && deliver(&r, &mut sink, &mut held, &mut backoff).await == Delivery::Expired
    {
        r.expire(held, input);
    }
}

struct Retrying<'a> {
    name: &'a str,
    metrics: &'a SinkMetrics,
    shutdown: &'a Shutdown,
}

impl Retrying<'_> {
    /// The grace period is over: what the sink holds and what waits in its
    /// input is let go unacknowledged, and counted.
    fn expire(&self, mut held: Held, mut input: mpsc::Receiver<SharedBatch>) {
        let mut events = held.events;
        held.abandon();
        input.close();
        while let Ok(b) = input.try_recv() {
            events += b.events.len();
        }
        if events > 0 && self.metrics.on_disk {
            tracing::info!(
                sink = self.name,
                events,
                "the grace period ended; what was not delivered stays in the disk buffer and is sent after a restart"
            );
        } else if events > 0 {
            self.metrics.undelivered.add(events as u64);
            tracing::error!(
                sink = self.name,
                events,
                "the grace period ended before these events were delivered; they stay unacknowledged (file sources read them again after a restart)"
            );
        }
    }
}

/// Delivers the held batches, retrying until they are delivered, until
/// `retry.max_duration`, or until the grace period after a stop runs out.
/// A stop does not cut retries short: they go on within the grace period.
async fn deliver<S: Sink>(
    r: &Retrying<'_>,
    sink: &mut S,
    held: &mut Held,
    backoff: &mut Backoff,
) -> Delivery {
    let (name, events) = (r.name, held.events);
    let started = Instant::now();
    backoff.reset();
    let mut attempt = 0u32;
    let mut woken_by_stop = r.shutdown.is_triggered();
    loop {
        if attempt > 0 {
            r.metrics.retries.inc();
        }
        attempt += 1;
        let result = tokio::select! {
            res = sink.deliver() => res,
            _ = r.shutdown.expired() => return Delivery::Expired,
        };
        let e = match result {
            Ok(()) => {
                r.metrics.events_out.add(events as u64);
                r.metrics.bytes_out.add(held.bytes as u64);
                held.settle();
                return Delivery::Done;
            }
            Err(e) => e,
        };
        r.metrics.errors.inc();
        if backoff.exhausted(started.elapsed()) {
            let reason = format!("retry_exhausted: {}", e.message);
            r.metrics.given_up.add(events as u64);
            if sink.give_up(&reason) {
                tracing::error!(sink = name, error = %e.message, events, "gave up after retry.max_duration; the batch is in the dead-letter file");
                held.settle();
                return Delivery::Done;
            }
            tracing::error!(sink = name, error = %e.message, events, "gave up after retry.max_duration; the batch stays unacknowledged (file sources read it again after a restart)");
            r.metrics.undelivered.add(events as u64);
            held.abandon();
            return Delivery::Abandoned;
        }
        let wait = backoff.wait(e.retry_after);
        if r.shutdown.is_triggered() {
            tracing::warn!(sink = name, error = %e.message, attempt, retry_in = ?wait, "delivery failed while stopping; retrying until the grace period ends");
        } else {
            tracing::warn!(sink = name, error = %e.message, attempt, retry_in = ?wait, "delivery failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A stop retries once at once rather than sleep out a long backoff.
            _ = r.shutdown.wait(), if !woken_by_stop => woken_by_stop = true,
            _ = r.shutdown.expired() => return Delivery::Expired,
        }
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
    fn encode(&mut self, event: &Event) -> usize {
        event.line().len()
    }
    async fn deliver(&mut self) -> Result<(), DeliveryError> {
        Ok(())
    }
}
