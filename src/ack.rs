//! End-to-end acknowledgements: how a source learns which of its bytes every
//! sink has accepted, so that a checkpoint never runs ahead of delivery.
//!
//! A source attaches one [`AckNotifier`] to each batch it sends. The batch may
//! be shared by several sinks and split by transforms; every holder keeps a
//! reference. When the last reference is dropped the notifier reports the
//! batch's [`AckToken`] back to the source — unless some holder called
//! [`AckNotifier::fail`], in which case the bytes stay unacknowledged and a
//! restart reads them again (at-least-once).
//!
//! The source feeds those reports to an [`AckTracker`], which turns
//! out-of-order acknowledgements into the highest offset below which
//! everything is delivered. Persisting that offset is the checkpoint store's job.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Reports a batch's token to its source when the last holder lets go.
#[derive(Debug)]
pub struct AckNotifier {
    token: AckToken,
    failed: AtomicBool,
    tx: mpsc::Sender<AckToken>,
}

impl AckNotifier {
    pub fn new(token: AckToken, tx: mpsc::Sender<AckToken>) -> Self {
        AckNotifier {
            token,
            failed: AtomicBool::new(false),
            tx,
        }
    }

    /// Marks the batch as not delivered: its bytes will not be acknowledged.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }
}

impl Drop for AckNotifier {
    fn drop(&mut self) {
        if !self.failed.load(Ordering::Relaxed) {
            // The source may be gone already (shutdown); nothing to tell then.
            let _ = self.tx.send(self.token);
        }
    }
}

#[derive(Debug, Default)]
struct StreamState {
    /// Batches sent and not yet committed, oldest first: (seq, end, acked).
    pending: VecDeque<(u64, u64, bool)>,
    next_seq: u64,
    committed: u64,
}

/// Turns acknowledgements into committed offsets per stream.
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
        st.pending.push_back((seq, end_offset, false));
        AckToken {
            stream,
            seq,
            end_offset,
        }
    }

    /// Applies one acknowledgement; returns the stream's new committed offset
    /// if it moved.
    pub fn acked(&mut self, token: AckToken) -> Option<u64> {
        let st = self.streams.get_mut(&token.stream)?;
        let front_seq = st.pending.front()?.0;
        let idx = token.seq.checked_sub(front_seq)? as usize;
        st.pending.get_mut(idx)?.2 = true;
        let before = st.committed;
        while let Some(&(_, end, true)) = st.pending.front() {
            st.committed = end;
            st.pending.pop_front();
        }
        (st.committed != before).then_some(st.committed)
    }

    /// Everything below this offset of `stream` has been delivered.
    pub fn committed(&self, stream: StreamId) -> Option<u64> {
        self.streams.get(&stream).map(|s| s.committed)
    }

    /// Whether every batch sent on `stream` has been acknowledged.
    pub fn is_idle(&self, stream: StreamId) -> bool {
        self.streams
            .get(&stream)
            .is_none_or(|s| s.pending.is_empty())
    }

    /// Forgets a stream (file released).
    pub fn close(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn commits_only_the_contiguous_acknowledged_prefix() {
        let mut t = AckTracker::default();
        t.open(1, 10);
        let a = t.sent(1, 20);
        let b = t.sent(1, 30);
        let c = t.sent(1, 40);
        assert_eq!(t.acked(b), None, "b is done but a is not");
        assert_eq!(t.committed(1), Some(10));
        assert_eq!(t.acked(a), Some(30));
        assert!(!t.is_idle(1));
        assert_eq!(t.acked(c), Some(40));
        assert!(t.is_idle(1));
        assert_eq!(t.acked(c), None, "a repeated ack changes nothing");
    }

    #[test]
    fn notifier_fires_once_after_the_last_holder_and_not_when_failed() {
        let (tx, rx) = mpsc::channel();
        let token = AckToken {
            stream: 7,
            seq: 0,
            end_offset: 99,
        };
        let n = Arc::new(AckNotifier::new(token, tx.clone()));
        let second = Arc::clone(&n);
        drop(n);
        assert!(rx.try_recv().is_err(), "one holder is left");
        drop(second);
        assert_eq!(rx.try_recv(), Ok(token));

        let failed = Arc::new(AckNotifier::new(token, tx));
        failed.fail();
        drop(failed);
        assert!(rx.try_recv().is_err());
    }
}
