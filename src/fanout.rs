//! Fan-out: one component's output delivered to every component that lists it
//! in `inputs`, through bounded channels so that a slow sink slows its sources
//! down instead of filling memory.
//!
//! Each consumer gets the same events (shared, not copied) and an
//! acknowledgement of its own, so the source hears of the batch only when
//! every consumer has settled it. A consumer that has gone away drops what
//! it was sent, which counts as not delivered.
//!
//! Every batch also passes the component's [`TapPoint`], which costs one
//! atomic load while nobody runs `weir tap` (see `tap`).

use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::event::{Batch, SharedBatch};
use crate::tap::TapPoint;

/// How many batches wait in one channel before the sender waits.
pub const CHANNEL_BATCHES: usize = 4;

/// All downstream consumers are gone; the sender should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// The channels one component sends to. Clones share the list: the
/// topology keeps one to rewire it when the pipeline is reloaded, while the
/// component sends through its own. The component closes it when it ends,
/// which lets the channels downstream close once every sender is gone.
#[derive(Debug, Clone, Default)]
pub struct Fanout {
    inner: Arc<RwLock<Wiring>>,
    /// Where `weir tap` looks at what this component sends.
    tap: Arc<TapPoint>,
}

#[derive(Debug, Default)]
struct Wiring {
    senders: Vec<mpsc::Sender<SharedBatch>>,
    closed: bool,
}

impl Fanout {
    pub fn new(senders: Vec<mpsc::Sender<SharedBatch>>) -> Self {
        let f = Fanout::default();
        f.set(senders);
        f
    }

    /// The same fan-out, its batches offered to `tap` (the component's
    /// tap point, which outlives this fan-out across reloads).
    pub fn with_tap(mut self, tap: Arc<TapPoint>) -> Self {
        self.tap = tap;
        self
    }

    /// Sends to these channels from now on (ignored once closed).
    pub fn set(&self, senders: Vec<mpsc::Sender<SharedBatch>>) {
        let mut w = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !w.closed {
            w.senders = senders;
        }
    }

    /// The component is done sending: its channels are let go for good.
    pub fn close(&self) {
        let mut w = self.inner.write().unwrap_or_else(|e| e.into_inner());
        w.closed = true;
        w.senders.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.senders().is_empty()
    }

    fn senders(&self) -> Vec<mpsc::Sender<SharedBatch>> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .senders
            .clone()
    }

    /// One batch per consumer: the last one takes the batch's own
    /// acknowledgement, the others forks of it. With no consumer at all
    /// there is nobody to deliver to, and the batch is settled here.
    fn split(&self, n: usize, batch: Batch) -> Vec<SharedBatch> {
        let Batch { events, mut ack } = batch;
        let events = Arc::new(events);
        self.tap.offer(&events);
        if n == 0 {
            if let Some(a) = ack {
                a.delivered();
            }
            return Vec::new();
        }
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
        let senders = self.senders();
        let mut delivered = senders.is_empty();
        for (tx, b) in senders.iter().zip(self.split(senders.len(), batch)) {
            delivered |= tx.send(b).await.is_ok();
        }
        if delivered { Ok(()) } else { Err(Closed) }
    }

    /// Sends from a source's own thread, blocking while a consumer is full.
    pub fn send_blocking(&self, batch: Batch) -> Result<(), Closed> {
        let senders = self.senders();
        let mut delivered = senders.is_empty();
        for (tx, b) in senders.iter().zip(self.split(senders.len(), batch)) {
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
    fn a_tap_sees_the_events_but_holds_no_acknowledgement() {
        use crate::tap::{ComponentInfo, Role, Taps};
        let taps = Taps::new(&crate::telemetry::Registry::default());
        taps.set_components(vec![ComponentInfo {
            name: "src".into(),
            role: Role::Source,
            inputs: vec![],
        }]);
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let (a_tx, mut a_rx) = mpsc::channel(1);
        let out = Fanout::new(vec![a_tx]).with_tap(taps.point("src"));
        let mut tap = taps.subscribe(&["src".into()]).unwrap();
        let mut b = batch(ack_tx);
        b.events.push(crate::event::Event::from_text("x".into(), 0));
        out.send_blocking(b).unwrap();
        a_rx.try_recv().unwrap().delivered();
        assert!(
            ack_rx.try_recv().unwrap().delivered,
            "settled while the tap still holds the events"
        );
        assert_eq!(tap.rx.try_recv().unwrap().events.len(), 1);
    }

    #[test]
    fn no_consumer_settles_at_once() {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        Fanout::default().send_blocking(batch(ack_tx)).unwrap();
        assert!(ack_rx.try_recv().unwrap().delivered);
    }
}

#[cfg(test)]
mod rewiring {
    use super::*;

    #[test]
    fn a_closed_fanout_lets_its_channels_close() {
        let (tx, mut rx) = mpsc::channel(1);
        let f = Fanout::new(vec![tx]);
        let topology_copy = f.clone();
        f.close();
        let (tx2, _rx2) = mpsc::channel(1);
        topology_copy.set(vec![tx2]);
        assert!(topology_copy.is_empty(), "a closed fanout stays closed");
        assert!(rx.try_recv().is_err());
        assert!(rx.is_closed());
    }

    #[test]
    fn rewiring_moves_later_batches_to_the_new_channel() {
        let (old_tx, mut old_rx) = mpsc::channel(4);
        let (new_tx, mut new_rx) = mpsc::channel(4);
        let f = Fanout::new(vec![old_tx]);
        f.send_blocking(Batch::default()).unwrap();
        f.set(vec![new_tx]);
        f.send_blocking(Batch::default()).unwrap();
        assert!(old_rx.try_recv().is_ok());
        assert!(old_rx.try_recv().is_err());
        assert!(old_rx.is_closed(), "the old consumer drains and ends");
        assert!(new_rx.try_recv().is_ok());
    }
}
