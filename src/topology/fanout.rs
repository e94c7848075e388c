//! Fan-out: one component's output delivered to every component that lists it
//! in `inputs`, through bounded channels so that a slow sink slows its sources
//! down instead of filling memory.

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

    /// Sends from an async task, waiting while a consumer is full.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let shared = Arc::new(batch);
        let mut delivered = false;
        for tx in &self.senders {
            delivered |= tx.send(Arc::clone(&shared)).await.is_ok();
        }
        if delivered || self.senders.is_empty() {
            Ok(())
        } else {
            Err(Closed)
        }
    }

    /// Sends from a source's own thread, blocking while a consumer is full.
    pub fn send_blocking(&self, batch: Batch) -> Result<(), Closed> {
        let shared = Arc::new(batch);
        let mut delivered = false;
        for tx in &self.senders {
            delivered |= tx.blocking_send(Arc::clone(&shared)).is_ok();
        }
        if delivered || self.senders.is_empty() {
            Ok(())
        } else {
            Err(Closed)
        }
    }
}
