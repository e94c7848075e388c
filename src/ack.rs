//! End-to-end acknowledgements: how a source learns which of its bytes every
//! sink has delivered, so that a checkpoint never runs ahead of delivery.
//!
//! Acknowledgement is **positive**. A source attaches one [`Ack`] to each
//! batch it sends. Every component that receives the batch holds its own
//! `Ack` (a fan-out to three sinks makes three, with [`Ack::fork`]), and each
//! holder must say explicitly that its part is done with [`Ack::delivered`]:
//! written, accepted by the server, or set aside in a dead-letter file. An
//! `Ack` that is dropped without that — a task cancelled at the end of the
//! grace period, a panic, a batch left in a channel nobody reads — counts as
//! **not delivered**. When the last holder lets go, the source gets one
//! [`Settlement`] saying which of the two it was.
//!
//! The source feeds settlements to an [`AckTracker`], which turns
//! out-of-order reports into the highest offset below which everything is
//! delivered. A batch that was not delivered holds its stream's offset where
//! it is for the rest of the run, so a restart reads it again
//! (at-least-once). Persisting the offset is the checkpoint store's job.
//!
//! This module knows nothing of files, sinks or channels.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Identifies one input stream of a source, such as one tailed file.
pub type StreamId = u64;

/// Which bytes a batch covers: `stream` up to `end_offset`, sent as the
/// `seq`-th batch of that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckToken {
    pub stream: StreamId,
    pub seq: u64,
    pub end_offset: u64,
}

/// What became of a batch, reported to its source once every holder has
/// let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub token: AckToken,
    /// Every holder said it delivered its part. False when at least one
    /// holder dropped its [`Ack`] without doing so.
    pub delivered: bool,
}

/// Called once a batch is settled, after its report is sent: lets a source
/// that sleeps between reads wake up and checkpoint at once.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    token: AckToken,
    holders: AtomicUsize,
    lost: AtomicBool,
    tx: mpsc::Sender<Settlement>,
    wake: Option<Waker>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("token", &self.token)
            .field("holders", &self.holders)
            .finish_non_exhaustive()
    }
}

/// One holder's obligation to report on a batch. Not `Clone`: a new holder
/// is made with [`Ack::fork`], so every holder is counted.
#[derive(Debug)]
pub struct Ack {
    shared: Arc<Shared>,
    settled: bool,
}

impl Ack {
    pub fn new(token: AckToken, tx: mpsc::Sender<Settlement>) -> Self {
        Self::waking(token, tx, None)
    }

    /// Like [`Ack::new`], and calls `wake` once the report is sent.
    pub fn waking(token: AckToken, tx: mpsc::Sender<Settlement>, wake: Option<Waker>) -> Self {
        Ack {
            shared: Arc::new(Shared {
                token,
                holders: AtomicUsize::new(1),
                lost: AtomicBool::new(false),
                tx,
                wake,
            }),
            settled: false,
        }
    }

    /// Another holder of the same batch, who must report too.
    pub fn fork(&self) -> Ack {
        self.shared.holders.fetch_add(1, Ordering::SeqCst);
        Ack {
            shared: Arc::clone(&self.shared),
            settled: false,
        }
    }

    /// This holder's part is delivered (or dead-lettered, or filtered out
    /// on purpose).
    pub fn delivered(mut self) {
        self.settled = true;
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.lost.store(true, Ordering::SeqCst);
        }
        if self.shared.holders.fetch_sub(1, Ordering::SeqCst) == 1 {
            let settlement = Settlement {
                token: self.shared.token,
                delivered: !self.shared.lost.load(Ordering::SeqCst),
            };
            // The source may be gone already (shutdown); nothing to tell then.
            let _ = self.shared.tx.send(settlement);
            if let Some(wake) = &self.shared.wake {
                wake();
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Delivered,
    Lost,
}

#[derive(Debug, Default)]
struct StreamState {
    /// Batches sent and not yet committed, oldest first: (seq, end, state).
    pending: VecDeque<(u64, u64, State)>,
    next_seq: u64,
    committed: u64,
    in_flight: usize,
    lost: u64,
}

/// Turns settlements into committed offsets per stream.
#[derive(Debug, Default)]
pub struct AckTracker {
    streams: HashMap<StreamId, StreamState>,
}

impl AckTracker {
    /// Starts tracking a stream whose bytes before `offset` are already safe.
    pub fn open(&mut self, stream: StreamId, offset: u64) {
        self.streams.insert(
            stream,
            StreamState {
                committed: offset,
                ..Default::default()
            },
        );
    }

    /// Records that a batch ending at `end_offset` is being sent; returns its token.
    pub fn sent(&mut self, stream: StreamId, end_offset: u64) -> AckToken {
        let st = self.streams.entry(stream).or_default();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.in_flight += 1;
        st.pending.push_back((seq, end_offset, State::InFlight));
        AckToken {
            stream,
            seq,
            end_offset,
        }
    }

    /// Applies one settlement; returns the stream's new committed offset if
    /// it moved. A batch that was not delivered stops the stream's offset
    /// from moving past it again.
    pub fn settled(&mut self, s: Settlement) -> Option<u64> {
        let st = self.streams.get_mut(&s.token.stream)?;
        let front_seq = st.pending.front()?.0;
        let idx = s.token.seq.checked_sub(front_seq)? as usize;
        let entry = st.pending.get_mut(idx)?;
        if entry.2 != State::InFlight {
            return None;
        }
        st.in_flight -= 1;
        if s.delivered {
            entry.2 = State::Delivered;
        } else {
            entry.2 = State::Lost;
            st.lost += 1;
        }
        let before = st.committed;
        while let Some(&(_, end, State::Delivered)) = st.pending.front() {
            st.committed = end;
            st.pending.pop_front();
        }
        (st.committed != before).then_some(st.committed)
    }

    /// Everything below this offset of `stream` has been delivered.
    pub fn committed(&self, stream: StreamId) -> Option<u64> {
        self.streams.get(&stream).map(|s| s.committed)
    }

    /// Whether every batch sent on `stream` has been settled, one way or
    /// the other.
    pub fn is_idle(&self, stream: StreamId) -> bool {
        self.streams.get(&stream).is_none_or(|s| s.in_flight == 0)
    }

    /// The bytes of `stream` sent but not yet committed: how far its
    /// checkpoint is behind what was handed to the sinks.
    pub fn unsettled_bytes(&self, stream: StreamId) -> u64 {
        self.streams.get(&stream).map_or(0, |s| {
            s.pending
                .back()
                .map_or(0, |&(_, end, _)| end.saturating_sub(s.committed))
        })
    }

    /// How many batches of `stream` were not delivered.
    pub fn lost(&self, stream: StreamId) -> u64 {
        self.streams.get(&stream).map_or(0, |s| s.lost)
    }

    /// Forgets a stream (file released).
    pub fn close(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(seq: u64) -> AckToken {
        AckToken {
            stream: 7,
            seq,
            end_offset: 99,
        }
    }

    fn ok(token: AckToken) -> Settlement {
        Settlement {
            token,
            delivered: true,
        }
    }

    #[test]
    fn commits_only_the_contiguous_delivered_prefix() {
        let mut t = AckTracker::default();
        t.open(1, 10);
        let a = t.sent(1, 20);
        let b = t.sent(1, 30);
        let c = t.sent(1, 40);
        assert_eq!(t.settled(ok(b)), None, "b is done but a is not");
        assert_eq!(t.committed(1), Some(10));
        assert_eq!(t.settled(ok(a)), Some(30));
        assert!(!t.is_idle(1));
        assert_eq!(t.unsettled_bytes(1), 10, "c (30..40) is out");
        assert_eq!(t.settled(ok(c)), Some(40));
        assert!(t.is_idle(1));
        assert_eq!(t.unsettled_bytes(1), 0);
        assert_eq!(t.settled(ok(c)), None, "a repeated report changes nothing");
    }

    #[test]
    fn a_lost_batch_holds_the_offset_for_good() {
        let mut t = AckTracker::default();
        t.open(1, 0);
        let a = t.sent(1, 20);
        let b = t.sent(1, 30);
        let c = t.sent(1, 40);
        assert_eq!(t.settled(ok(a)), Some(20));
        assert_eq!(
            t.settled(Settlement {
                token: b,
                delivered: false
            }),
            None
        );
        assert_eq!(t.settled(ok(c)), None, "c is delivered but b never will be");
        assert_eq!(t.committed(1), Some(20));
        assert!(t.is_idle(1), "nothing is in flight any more");
        assert_eq!(t.lost(1), 1);
    }

    #[test]
    fn settles_once_after_the_last_holder_reports() {
        let (tx, rx) = mpsc::channel();
        let first = Ack::new(token(0), tx);
        let second = first.fork();
        first.delivered();
        assert!(rx.try_recv().is_err(), "one holder is left");
        second.delivered();
        assert_eq!(rx.try_recv(), Ok(ok(token(0))));
        assert!(rx.try_recv().is_err(), "reported once");
    }

    #[test]
    fn a_dropped_ack_means_not_delivered() {
        let (tx, rx) = mpsc::channel();
        let first = Ack::new(token(1), tx.clone());
        let second = first.fork();
        drop(second); // e.g. a sink task cancelled at the grace period
        first.delivered();
        assert_eq!(
            rx.try_recv(),
            Ok(Settlement {
                token: token(1),
                delivered: false
            })
        );

        drop(Ack::new(token(2), tx));
        assert!(!rx.try_recv().unwrap().delivered);
    }

    #[test]
    fn holders_on_other_threads_are_counted() {
        let (tx, rx) = mpsc::channel();
        let root = Ack::new(token(3), tx);
        let forks: Vec<Ack> = (0..8).map(|_| root.fork()).collect();
        root.delivered();
        let threads: Vec<_> = forks
            .into_iter()
            .map(|a| std::thread::spawn(move || a.delivered()))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(rx.try_recv(), Ok(ok(token(3))));
        assert!(rx.try_recv().is_err());
    }
}
