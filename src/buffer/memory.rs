//! The bounded memory buffer: a queue of batches in front of a sink, held
//! to `max_events` events and `max_bytes` bytes of lines.
//!
//! While the queue is under its bounds it takes what the fan-out sends;
//! once full it stops taking (`block`: the sources wait) or drops what
//! arrives (`drop_newest`, counted). Batches keep their acknowledgements,
//! so nothing is acknowledged before the sink delivers it; if the sink goes
//! away (the grace period ended) what the queue holds is let go
//! unacknowledged and counted as undelivered.

use std::collections::VecDeque;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{BufferMetrics, WhenFull};
use crate::event::SharedBatch;

/// The bound of `drop_newest` without one of its own.
pub const DEFAULT_MAX_EVENTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    pub max_events: usize,
    pub max_bytes: u64,
    pub when_full: WhenFull,
}

fn size(b: &SharedBatch) -> (usize, u64) {
    let bytes = b.events.iter().map(|e| e.line().len() as u64).sum();
    (b.events.len(), bytes)
}

/// Starts the queue between `input` and the returned receiver.
pub fn start(
    name: &str,
    cfg: MemoryConfig,
    mut input: mpsc::Receiver<SharedBatch>,
    metrics: BufferMetrics,
) -> (mpsc::Receiver<SharedBatch>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<SharedBatch>(1);
    let name = name.to_string();
    let task = tokio::spawn(async move {
        let mut queue: VecDeque<SharedBatch> = VecDeque::new();
        let (mut events, mut bytes) = (0usize, 0u64);
        let mut open = true;
        let mut warned = false;
        metrics.events.set(0);
        metrics.bytes.set(0);
        while open || !queue.is_empty() {
            let room = queue.is_empty() || (events < cfg.max_events && bytes < cfg.max_bytes);
            let take = open && (room || cfg.when_full == WhenFull::DropNewest);
            tokio::select! {
                b = input.recv(), if take => match b {
                    None => open = false,
                    Some(b) if !room => {
                        let (n, _) = size(&b);
                        metrics.discarded.add(n as u64);
                        if !warned {
                            warned = true;
                            tracing::warn!(sink = %name, "the memory buffer is full; dropping the newest batches (when_full: drop_newest), counted in weir_buffer_discarded_events_total");
                        }
                        // Dropped on purpose, as configured.
                        b.delivered();
                    }
                    Some(b) => {
                        let (n, s) = size(&b);
                        events += n;
                        bytes += s;
                        metrics.events.add(n as i64);
                        metrics.bytes.add(s as i64);
                        queue.push_back(b);
                    }
                },
                permit = tx.reserve(), if !queue.is_empty() => match permit {
                    Ok(permit) => {
                        let b = queue.pop_front().expect("not empty");
                        let (n, s) = size(&b);
                        events -= n;
                        bytes -= s;
                        metrics.events.add(-(n as i64));
                        metrics.bytes.add(-(s as i64));
                        permit.send(b);
                    }
                    Err(_) => {
                        // The sink is gone: what is held stays unacknowledged.
                        let held: usize = queue.drain(..).map(|b| b.events.len()).sum();
                        input.close();
                        let mut rest = 0;
                        while let Ok(b) = input.try_recv() {
                            rest += b.events.len();
                        }
                        metrics.undelivered.add((held + rest) as u64);
                        metrics.events.set(0);
                        metrics.bytes.set(0);
                        return;
                    }
                },
            }
        }
    });
    (rx, task)
}
