//! Fan-out: one component's output delivered to every component that lists it
//! in `inputs`, through bounded channels so that a slow sink slows its sources
//! down instead of filling memory.
//!
//! Each consumer gets the same events (shared, not copied) and an
//! acknowledgement of its own, so the source hears of the batch only when
//! every consumer has settled it. A consumer that has gone away drops what
//! it was sent, which counts as not delivered.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::{Batch, SharedBatch};

/// How many batches wait in one channel before the sender waits.
pub const CHANNEL_BATCHES: usize = 4;

/// All downstream consumers are gone; the sender should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[derive(Debug, Clone, Default)]
pub struct Fanout {
    senders: Vec<mpsc::Sender<SharedBatch>>,
}

impl Fanout {
    pub fn new(senders: Vec<mpsc::Sender<SharedBatch>>) -> Self {
        Fanout { senders }
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// One batch per consumer: the last one takes the batch's own
    /// acknowledgement, the others forks of it. With no consumer at all
    /// there is nobody to deliver to, and the batch is settled here.
    fn split(&self, batch: Batch) -> Vec<SharedBatch> {
        let Batch { events, mut ack } = batch;
        if self.senders.is_empty() {
            if let Some(a) = ack {
                a.delivered();
            }
            return Vec::new();
        }
        let events = Arc::new(events);
        let n = self.senders.len();
        (0..n)
            .map(|i| SharedBatch {
                events: Arc::clone(&events),
                ack: if i + 1 == n {
                    ack.take()
                } else {
                    ack.as_ref().map(|a| a.fork())
                },
            })
            .collect()
    }

    /// Sends from an async task, waiting while a consumer is full.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let mut delivered = self.senders.is_empty();
        for (tx, b) in self.senders.iter().zip(self.split(batch)) {
            delivered |= tx.send(b).await.is_ok();
        }
        if delivered { Ok(()) } else { Err(Closed) }
    }

    /// Sends from a source's own thread, blocking while a consumer is full.
    pub fn send_blocking(&self, batch: Batch) -> Result<(), Closed> {
        let mut delivered = self.senders.is_empty();
        for (tx, b) in self.senders.iter().zip(self.split(batch)) {
            delivered |= tx.blocking_send(b).is_ok();
        }
        if delivered { Ok(()) } else { Err(Closed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{Ack, AckToken, Settlement};

    fn batch(tx: std::sync::mpsc::Sender<Settlement>) -> Batch {
        let token = AckToken {
            stream: 1,
            seq: 0,
            end_offset: 10,
        };
        Batch {
            events: Vec::new(),
            ack: Some(Ack::new(token, tx)),
        }
    }

    #[test]
    fn every_consumer_must_settle() {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let (a_tx, mut a_rx) = mpsc::channel(1);
        let (b_tx, mut b_rx) = mpsc::channel(1);
        let out = Fanout::new(vec![a_tx, b_tx]);
        out.send_blocking(batch(ack_tx)).unwrap();
        a_rx.try_recv().unwrap().delivered();
        assert!(
            ack_rx.try_recv().is_err(),
            "the second sink has not settled"
        );
        b_rx.try_recv().unwrap().delivered();
        assert!(ack_rx.try_recv().unwrap().delivered);
    }

    #[test]
    fn a_consumer_that_went_away_means_not_delivered() {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let (a_tx, mut a_rx) = mpsc::channel(1);
        let (b_tx, b_rx) = mpsc::channel(1);
        drop(b_rx);
        let out = Fanout::new(vec![a_tx, b_tx]);
        out.send_blocking(batch(ack_tx)).unwrap();
        a_rx.try_recv().unwrap().delivered();
        assert!(!ack_rx.try_recv().unwrap().delivered);
    }

    #[test]
    fn no_consumer_settles_at_once() {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        Fanout::default().send_blocking(batch(ack_tx)).unwrap();
        assert!(ack_rx.try_recv().unwrap().delivered);
    }
}
