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
//! dead-letter file — or until the pipeline stops, in which case what was
//! not delivered stays unacknowledged and is read again after a restart.

pub mod console;
pub mod dead_letter;
pub mod elasticsearch;
pub mod file;
pub mod http;
pub mod loki;

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::units::{ByteSize, Dur};
use crate::event::{Event, SharedBatch};
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

/// How a sink retries.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Dur,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Dur,
    /// Give up on a batch after this long (default: never; backpressure
    /// reaches the sources instead).
    pub max_duration: Option<Dur>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_duration: None,
        }
    }
}

fn default_initial_backoff() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_max_backoff() -> Dur {
    Dur(Duration::from_secs(300))
}

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

/// A small xorshift generator for backoff jitter (not for anything secret).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Jitter(seed | 1)
    }

    /// A duration uniformly drawn from [0, max] ("full jitter").
    pub fn up_to(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        max.mul_f64(unit)
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
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
}

impl SinkMetrics {
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
            undelivered: registry.counter(
                "weir_sink_undelivered_events_total",
                "Events a sink could not deliver before weir stopped (left unacknowledged: file sources read them again after a restart).",
                &l,
            ),
            given_up: registry.counter(
                "weir_sink_given_up_events_total",
                "Events whose delivery was abandoned after retry.max_duration (dead-lettered where the sink can), by sink.",
                &l,
            ),
        }
    }
}

/// Runs a sink until its inputs close, then delivers what is left.
pub async fn drive<S: Sink>(
    name: String,
    mut sink: S,
    mut input: mpsc::Receiver<SharedBatch>,
    batch: BatchConfig,
    retry: RetryConfig,
    metrics: SinkMetrics,
    shutdown: Shutdown,
) {
    let mut jitter = Jitter::new();
    let mut held: Vec<SharedBatch> = Vec::new();
    let (mut events, mut bytes) = (0usize, 0usize);
    let mut deadline: Option<Instant> = None;
    loop {
        let full = events >= batch.max_events || bytes as u64 >= batch.max_bytes.0;
        let due = deadline.is_some_and(|d| Instant::now() >= d);
        if !held.is_empty() && (full || due) {
            let r = Retrying {
                name: &name,
                retry: &retry,
                metrics: &metrics,
                shutdown: &shutdown,
            };
            deliver(r, &mut sink, &mut held, &mut jitter, events, bytes).await;
            (events, bytes, deadline) = (0, 0, None);
            continue;
        }
        let next = match deadline {
            Some(d) => tokio::select! {
                b = input.recv() => b,
                _ = tokio::time::sleep_until(d) => continue,
            },
            None => input.recv().await,
        };
        let Some(b) = next else { break };
        for e in &b.events {
            bytes += sink.encode(e);
        }
        events += b.events.len();
        held.push(b);
        deadline.get_or_insert_with(|| Instant::now() + batch.timeout.0);
    }
    if !held.is_empty() {
        let r = Retrying {
            name: &name,
            retry: &retry,
            metrics: &metrics,
            shutdown: &shutdown,
        };
        deliver(r, &mut sink, &mut held, &mut jitter, events, bytes).await;
    }
}

struct Retrying<'a> {
    name: &'a str,
    retry: &'a RetryConfig,
    metrics: &'a SinkMetrics,
    shutdown: &'a Shutdown,
}

async fn deliver<S: Sink>(
    r: Retrying<'_>,
    sink: &mut S,
    held: &mut Vec<SharedBatch>,
    jitter: &mut Jitter,
    events: usize,
    bytes: usize,
) {
    let name = r.name;
    let started = Instant::now();
    let mut backoff = r.retry.initial_backoff.0;
    let mut attempt = 0u32;
    loop {
        if attempt > 0 {
            r.metrics.retries.inc();
        }
        attempt += 1;
        let e = match sink.deliver().await {
            Ok(()) => {
                r.metrics.events_out.add(events as u64);
                r.metrics.bytes_out.add(bytes as u64);
                break;
            }
            Err(e) => e,
        };
        r.metrics.errors.inc();
        if r.shutdown.is_triggered() {
            tracing::error!(sink = name, error = %e.message, events, "delivery failed while stopping; these events stay unacknowledged and are read again after a restart");
            r.metrics.undelivered.add(events as u64);
            fail(held);
            break;
        }
        if r.retry
            .max_duration
            .is_some_and(|m| started.elapsed() >= m.0)
        {
            let reason = format!("retry_exhausted: {}", e.message);
            r.metrics.given_up.add(events as u64);
            if sink.give_up(&reason) {
                tracing::error!(sink = name, error = %e.message, events, "gave up after retry.max_duration; the batch is in the dead-letter file");
            } else {
                tracing::error!(sink = name, error = %e.message, events, "gave up after retry.max_duration; the batch stays unacknowledged");
                r.metrics.undelivered.add(events as u64);
                fail(held);
            }
            break;
        }
        let mut wait = jitter.up_to(backoff);
        if let Some(after) = e.retry_after {
            wait = wait.max(after);
        }
        tracing::warn!(sink = name, error = %e.message, attempt, retry_in = ?wait, "delivery failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = r.shutdown.wait() => {}
        }
        backoff = (backoff * 2).min(r.retry.max_backoff.0);
    }
    // Dropping the batches acknowledges them (unless failed above).
    held.clear();
}

fn fail(held: &[SharedBatch]) {
    for b in held {
        if let Some(ack) = &b.ack {
            ack.fail();
        }
    }
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
