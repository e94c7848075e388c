//! Sinks: where events leave weir. Every sink is driven by the same loop:
//! events are encoded into the sink's pending batch as they arrive, and the
//! batch is delivered when it reaches `max_events` or `max_bytes`, when
//! `timeout` passes after its first event, or when the inputs close.
//! Once delivery succeeds, the batches it covered are released, which
//! acknowledges their bytes to the sources.
//!
//! A sink that cannot deliver retries with backoff until it succeeds or the
//! pipeline stops; at a stop, what was not delivered stays unacknowledged.

pub mod console;
pub mod file;

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

/// The `blackhole` sink takes no options besides `inputs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

/// A destination for batches of events.
pub trait Sink: Send {
    /// Adds one event to the pending batch; returns the bytes it added.
    fn encode(&mut self, event: &Event) -> usize;
    /// Delivers the pending batch. On error the same batch is tried again.
    fn deliver(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Counters every sink keeps.
#[derive(Clone)]
pub struct SinkMetrics {
    events_out: Counter,
    bytes_out: Counter,
    errors: Counter,
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
                "Failed delivery attempts (each is retried), by sink.",
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
    metrics: SinkMetrics,
    shutdown: Shutdown,
) {
    let mut held: Vec<SharedBatch> = Vec::new();
    let (mut events, mut bytes) = (0usize, 0usize);
    let mut deadline: Option<Instant> = None;
    loop {
        let full = events >= batch.max_events || bytes as u64 >= batch.max_bytes.0;
        let due = deadline.is_some_and(|d| Instant::now() >= d);
        if !held.is_empty() && (full || due) {
            deliver(
                &name, &mut sink, &mut held, &metrics, &shutdown, events, bytes,
            )
            .await;
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
        deliver(
            &name, &mut sink, &mut held, &metrics, &shutdown, events, bytes,
        )
        .await;
    }
}

async fn deliver<S: Sink>(
    name: &str,
    sink: &mut S,
    held: &mut Vec<SharedBatch>,
    metrics: &SinkMetrics,
    shutdown: &Shutdown,
    events: usize,
    bytes: usize,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match sink.deliver().await {
            Ok(()) => {
                metrics.events_out.add(events as u64);
                metrics.bytes_out.add(bytes as u64);
                break;
            }
            Err(e) => {
                metrics.errors.inc();
                if shutdown.is_triggered() {
                    tracing::error!(sink = name, error = %e, events, "delivery failed while stopping; these events stay unacknowledged and are read again after a restart");
                    for b in held.iter() {
                        if let Some(ack) = &b.ack {
                            ack.fail();
                        }
                    }
                    break;
                }
                tracing::warn!(sink = name, error = %e, retry_in = ?backoff, "delivery failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    // Dropping the batches acknowledges them (unless failed above).
    held.clear();
}

/// Discards everything; for benchmarks and dry runs.
#[derive(Default)]
pub struct Blackhole;

impl Sink for Blackhole {
    fn encode(&mut self, event: &Event) -> usize {
        event.line().len()
    }
    async fn deliver(&mut self) -> Result<(), String> {
        Ok(())
    }
}
