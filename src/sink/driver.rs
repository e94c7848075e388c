//! The loop every sink runs. Events are encoded into the sink's open batch
//! as they arrive; the batch is sealed when it reaches `max_events` or
//! `max_bytes`, when `timeout` passes after its first event, or when the
//! inputs close, and then sent.
//!
//! While one sealed batch is in flight — or waiting for its retry — the next
//! one is encoded, up to its limits: a network sink compresses and encodes
//! while the server works on the last request. Only one batch is ever in
//! flight, so batches reach the server in the order their events came in
//! (Loki's streams need that), and a retry never overtakes anything.
//!
//! A batch that fails is sent again with exponential backoff and full
//! jitter (honouring a server's `Retry-After`) until it is delivered, until
//! `retry.max_duration` passes — then the sink may set it aside in its
//! dead-letter file — or, once the pipeline is stopping, until the grace
//! period ends. A stop does not cut retries short: they go on within the
//! grace period. The driver knows nothing of HTTP or of what an answer
//! means: the sink's `answer` says whether the batch is delivered.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{BatchConfig, Call, DeliveryError, RetryConfig, Sink, SinkMetrics};
use crate::ack::Ack;
use crate::event::SharedBatch;
use crate::http::Backoff;
use crate::shutdown::Shutdown;

/// What one sink batch owes its sources: the acknowledgements of the
/// input batches encoded into it. Their events are let go once encoded —
/// the sink's batch holds what it sends — so a batch in flight costs its
/// encoded bytes, not its events too.
#[derive(Default)]
struct Held {
    acks: Vec<Ack>,
    events: usize,
    bytes: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.events == 0
    }

    fn is_full(&self, limits: &BatchConfig) -> bool {
        self.events >= limits.max_events || self.bytes as u64 >= limits.max_bytes.0
    }

    /// Delivered (or set aside): every input batch is acknowledged.
    fn settle(self) {
        for a in self.acks {
            a.delivered();
        }
    }

    /// Not delivered: the acknowledgements are dropped unsent, so the
    /// sources never checkpoint past these batches.
    fn abandon(self) {
        drop(self.acks);
    }
}

/// The sealed batch being delivered, and how far its delivery got.
struct Flight<S: Sink> {
    held: Held,
    batch: S::Batch,
    started: Instant,
    attempt: u32,
    phase: Phase<S::Reply>,
    /// A stop already cut one backoff short.
    woken_by_stop: bool,
}

enum Phase<R> {
    /// The request is out; this waits for its reply.
    Sending(Call<R>),
    /// The last attempt failed; this is the backoff before the next.
    Waiting(Pin<Box<tokio::time::Sleep>>),
}

enum Step<R> {
    Reply(R),
    Again,
}

impl<S: Sink> Flight<S> {
    async fn step(&mut self) -> Step<S::Reply> {
        match &mut self.phase {
            Phase::Sending(call) => Step::Reply(call.await),
            Phase::Waiting(sleep) => {
                sleep.as_mut().await;
                Step::Again
            }
        }
    }

    fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Waiting(_))
    }

    fn send_again(&mut self, sink: &mut S, metrics: &SinkMetrics) {
        metrics.retries.inc();
        self.attempt += 1;
        self.phase = Phase::Sending(sink.send(&mut self.batch));
    }
}

/// The next step of the flight, or never if there is none.
async fn step_of<S: Sink>(flight: &mut Option<Flight<S>>) -> Step<S::Reply> {
    match flight {
        Some(f) => f.step().await,
        None => std::future::pending().await,
    }
}

/// Runs a sink until its inputs close, then delivers what is left; or,
/// once a stop was asked for, until the grace period ends, leaving what
/// it could not deliver unacknowledged.
pub async fn drive<S: Sink>(
    name: String,
    mut sink: S,
    mut input: mpsc::Receiver<SharedBatch>,
    limits: BatchConfig,
    retry: RetryConfig,
    metrics: SinkMetrics,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(retry);
    let mut open = Held::default();
    let mut deadline: Option<Instant> = None;
    let mut flight: Option<Flight<S>> = None;
    let mut closed = false;
    loop {
        let full = open.is_full(&limits);
        if flight.is_none() && !open.is_empty() {
            let due = closed || full || deadline.is_some_and(|d| Instant::now() >= d);
            if due {
                deadline = None;
                backoff.reset();
                let mut batch = sink.seal();
                let call = sink.send(&mut batch);
                flight = Some(Flight {
                    held: std::mem::take(&mut open),
                    batch,
                    started: Instant::now(),
                    attempt: 1,
                    phase: Phase::Sending(call),
                    woken_by_stop: shutdown.is_triggered(),
                });
                continue;
            }
        }
        if closed && flight.is_none() {
            return;
        }
        let waiting = flight.as_ref().is_some_and(Flight::is_waiting);
        let woken = flight.as_ref().is_some_and(|f| f.woken_by_stop);
        tokio::select! {
            biased;
            _ = shutdown.expired() => {
                return expire(&name, &metrics, flight.map(|f| f.held), open, input);
            }
            step = step_of(&mut flight) => {
                let f = flight.as_mut().expect("a step comes from a flight");
                let reply = match step {
                    Step::Again => {
                        f.send_again(&mut sink, &metrics);
                        continue;
                    }
                    Step::Reply(reply) => reply,
                };
                match sink.answer(&mut f.batch, reply) {
                    Ok(()) => {
                        let f = flight.take().expect("checked above");
                        metrics.events_out.add(f.held.events as u64);
                        metrics.bytes_out.add(f.held.bytes as u64);
                        f.held.settle();
                        sink.recycle(f.batch);
                    }
                    Err(e) => {
                        metrics.errors.inc();
                        if backoff.exhausted(f.started.elapsed()) {
                            let f = flight.take().expect("checked above");
                            give_up(&name, &metrics, &mut sink, f, &e);
                        } else {
                            let wait = backoff.wait(e.retry_after);
                            let attempt = f.attempt;
                            if shutdown.is_triggered() {
                                tracing::warn!(sink = %name, error = %e.message, attempt, retry_in = ?wait, "delivery failed while stopping; retrying until the grace period ends");
                            } else {
                                tracing::warn!(sink = %name, error = %e.message, attempt, retry_in = ?wait, "delivery failed; retrying");
                            }
                            f.phase = Phase::Waiting(Box::pin(tokio::time::sleep(wait)));
                        }
                    }
                }
            }
            // A stop retries once at once rather than sleep out a long backoff.
            _ = shutdown.wait(), if waiting && !woken => {
                let f = flight.as_mut().expect("waiting means a flight");
                f.woken_by_stop = true;
                f.send_again(&mut sink, &metrics);
            }
            b = input.recv(), if !closed && !full => {
                let Some(b) = b else {
                    closed = true;
                    continue;
                };
                if b.events.is_empty() {
                    // Nothing to deliver (a filter kept none of it): done already.
                    b.delivered();
                    continue;
                }
                for e in b.events.iter() {
                    open.bytes += sink.encode(e);
                }
                open.events += b.events.len();
                open.acks.extend(b.ack);
                deadline.get_or_insert_with(|| Instant::now() + limits.timeout.0);
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if flight.is_none() && deadline.is_some() => {}
        }
    }
}

/// Retries ran out (`retry.max_duration`): the batch goes to the
/// dead-letter file if the sink has one, and is acknowledged; otherwise it
/// is let go unacknowledged.
fn give_up<S: Sink>(
    name: &str,
    metrics: &SinkMetrics,
    sink: &mut S,
    mut f: Flight<S>,
    e: &DeliveryError,
) {
    let events = f.held.events;
    metrics.given_up.add(events as u64);
    let reason = format!("retry_exhausted: {}", e.message);
    if sink.give_up(&mut f.batch, &reason) {
        tracing::error!(sink = name, error = %e.message, events, "gave up after retry.max_duration; the batch is in the dead-letter file");
        f.held.settle();
    } else {
        tracing::error!(sink = name, error = %e.message, events, "gave up after retry.max_duration; the batch stays unacknowledged (file sources read it again after a restart)");
        metrics.undelivered.add(events as u64);
        f.held.abandon();
    }
    sink.recycle(f.batch);
}

/// The grace period is over: what the sink holds — in flight and being
/// encoded — and what waits in its input is let go unacknowledged, and
/// counted.
fn expire(
    name: &str,
    metrics: &SinkMetrics,
    in_flight: Option<Held>,
    open: Held,
    mut input: mpsc::Receiver<SharedBatch>,
) {
    let mut events = open.events + in_flight.as_ref().map_or(0, |h| h.events);
    open.abandon();
    if let Some(h) = in_flight {
        h.abandon();
    }
    input.close();
    while let Ok(b) = input.try_recv() {
        events += b.events.len();
    }
    if events > 0 && metrics.on_disk {
        tracing::info!(
            sink = name,
            events,
            "the grace period ended; what was not delivered stays in the disk buffer and is sent after a restart"
        );
    } else if events > 0 {
        metrics.undelivered.add(events as u64);
        tracing::error!(
            sink = name,
            events,
            "the grace period ended before these events were delivered; they stay unacknowledged (file sources read them again after a restart)"
        );
    }
}

/// One delivery attempt of `batch`, as the driver makes it: for tests of
/// a sink on its own.
#[cfg(test)]
pub async fn attempt<S: Sink>(sink: &mut S, batch: &mut S::Batch) -> Result<(), DeliveryError> {
    let reply = sink.send(batch).await;
    sink.answer(batch, reply)
}
