//! The disk buffer's reader: hands the records to the sink in order,
//! skipping damage; applies the sink's acknowledgements to the ledger and
//! deletes segments delivered to their end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Instant;

use tokio::sync::mpsc;

use super::{
    LEDGER, LEDGER_EVERY, Ledger, READ_CHUNK, START, Shared, State, WAKE_EVERY, segment_path,
};
use crate::ack::{Ack, AckTracker, Settlement};
use crate::buffer::BufferMetrics;
use crate::buffer::record::{self, Next, SEGMENT_MAGIC};
use crate::event::{Event, SharedBatch};
use crate::source::checkpoint::{replace, write_atomic};

/// The reader's place in one segment.
pub(super) struct Cursor {
    id: u64,
    file: File,
    /// Bytes read from the file; `buf[pos..]` is not taken yet and starts
    /// at file offset `offset`.
    buf: Vec<u8>,
    pos: usize,
    offset: u64,
    /// The end of the last record handed to the sink (where a restart
    /// would resume once it is delivered).
    last_end: u64,
}

pub(super) struct Reader {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) shared: Arc<Shared>,
    /// The sink's input; dropped at the end, which closes it.
    pub(super) tx: Option<mpsc::Sender<SharedBatch>>,
    /// Wakes this reader when the sink settles a batch, so the ledger follows.
    pub(super) waker: crate::ack::Waker,
    /// Cloned into every acknowledgement; dropped at the end.
    pub(super) settle_tx: Option<std_mpsc::Sender<Settlement>>,
    pub(super) settle_rx: std_mpsc::Receiver<Settlement>,
    pub(super) tracker: AckTracker,
    /// Where reading goes on: the next segment and offset.
    pub(super) at: Ledger,
    pub(super) cursor: Option<Cursor>,
    /// Events and bytes of each record handed over, by (segment, end).
    pub(super) sent: HashMap<(u64, u64), (u64, u64)>,
    /// Segments read to their end: where their last record ended.
    pub(super) finished: BTreeMap<u64, u64>,
    pub(super) ledger: Ledger,
    pub(super) saved: Ledger,
    pub(super) last_save: Instant,
    pub(super) metrics: BufferMetrics,
    pub(super) warned: HashSet<String>,
}

impl Reader {
    pub(super) fn run(mut self) {
        loop {
            self.settle(false);
            let Some(tx) = self.tx.clone() else { break };
            if tx.is_closed() {
                break;
            }
            match self.next_batch() {
                Some(b) => {
                    if tx.blocking_send(b).is_err() {
                        break;
                    }
                }
                None => {
                    let st = self.shared.lock();
                    if st.writer_done && self.caught_up(&st) {
                        break;
                    }
                    let _ = self.shared.more.wait_timeout(st, WAKE_EVERY);
                }
            }
        }
        // The sink has what it will get: its input closes; wait for its
        // reports on what it holds, then save where delivery stands.
        self.tx = None;
        self.settle_tx = None;
        while let Ok(s) = self.settle_rx.recv() {
            self.apply(s);
        }
        self.settle(true);
    }

    /// Whether every segment written so far has been read to its end.
    fn caught_up(&self, st: &State) -> bool {
        self.cursor.is_none() && st.segments.range(self.at.segment..).next().is_none()
    }

    /// Applies the sink's reports; frees delivered segments; saves the
    /// ledger when it moved (at most every `LEDGER_EVERY`, or now).
    fn settle(&mut self, now: bool) {
        while let Ok(s) = self.settle_rx.try_recv() {
            self.apply(s);
        }
        let done: Vec<u64> = self
            .finished
            .iter()
            .filter(|(id, end)| {
                self.tracker.committed(**id) == Some(**end) && self.tracker.is_idle(**id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.finished.remove(&id);
            self.tracker.close(id);
            let _ = std::fs::remove_file(segment_path(&self.dir, id));
            let mut st = self.shared.lock();
            if let Some(s) = st.segments.remove(&id) {
                st.used -= s.len;
            }
            drop(st);
            self.shared.space.notify_one();
        }
        let first = self.shared.lock().segments.keys().next().copied();
        self.ledger = match first {
            Some(id) => Ledger {
                segment: id,
                offset: self
                    .tracker
                    .committed(id)
                    .unwrap_or(if id == self.ledger.segment {
                        self.ledger.offset
                    } else {
                        START
                    }),
            },
            None => Ledger {
                segment: self.at.segment,
                offset: START,
            },
        };
        if self.ledger != self.saved && (now || self.last_save.elapsed() >= LEDGER_EVERY) {
            self.last_save = Instant::now();
            let bytes = serde_json::to_vec(&self.ledger).expect("a ledger serializes");
            let path = self.dir.join(LEDGER);
            let written = if now {
                write_atomic(&path, &bytes)
            } else {
                replace(&path, &bytes)
            };
            match written {
                Ok(()) => {
                    self.saved = self.ledger;
                    self.warned.remove("ledger");
                }
                Err(e) => {
                    if self.warned.insert("ledger".into()) {
                        tracing::error!(sink = %self.name, error = %e, "cannot write the disk buffer's ledger; will retry (a restart would send again what was delivered since)");
                    }
                }
            }
        }
    }

    fn apply(&mut self, s: Settlement) {
        let key = (s.token.stream, s.token.end_offset);
        self.tracker.settled(s);
        if s.delivered
            && let Some((events, bytes)) = self.sent.remove(&key)
        {
            self.metrics.events.add(-(events as i64));
            self.metrics.bytes.add(-(bytes as i64));
        }
    }

    /// The next record as a batch for the sink, or `None` when there is
    /// nothing to read yet.
    fn next_batch(&mut self) -> Option<SharedBatch> {
        loop {
            if self.cursor.is_none() && !self.open_next() {
                return None;
            }
            let c = self.cursor.as_mut().expect("opened above");
            let (seg, recent) = {
                let mut st = self.shared.lock();
                let here = (c.id, c.offset);
                while st
                    .recent
                    .front()
                    .is_some_and(|r| (r.segment, r.offset) < here)
                {
                    st.recent.pop_front();
                }
                let recent = st
                    .recent
                    .front()
                    .filter(|r| (r.segment, r.offset) == here)
                    .map(|r| (r.len, Arc::clone(&r.events)));
                (st.segments.get(&c.id).copied(), recent)
            };
            let Some(seg) = seg else {
                // Deleted underneath (should not happen): go on.
                self.cursor = None;
                continue;
            };
            if let Some((len, events)) = recent {
                // Just written: the events themselves, not their bytes again.
                let unread = (c.buf.len() - c.pos) as u64;
                c.pos += unread.min(len) as usize;
                c.offset += len;
                c.last_end = c.offset;
                let (id, end) = (c.id, c.offset);
                return Some(self.hand_over(id, end, len, events));
            }
            let read_to = c.offset + (c.buf.len() - c.pos) as u64;
            let complete = seg.complete && read_to >= seg.len;
            match record::next(&c.buf[c.pos..], complete) {
                Next::Record { payload, len } => {
                    let start = c.offset;
                    let end = start + len as u64;
                    let decoded = record::decode(&c.buf[c.pos + payload.0..c.pos + payload.1]);
                    c.pos += len;
                    c.offset = end;
                    let events = match decoded {
                        Ok(ev) => ev,
                        Err(e) => {
                            self.damaged(start, len as u64, &e);
                            continue;
                        }
                    };
                    c.last_end = end;
                    let id = c.id;
                    let token = self.tracker.sent(id, end);
                    let tx = self.settle_tx.clone()?;
                    self.sent
                        .insert((id, end), (events.len() as u64, len as u64));
                    return Some(SharedBatch {
                        events: Arc::new(events),
                        ack: Some(Ack::new(token, tx)),
                    });
                }
                Next::Damaged(n) => {
                    let start = c.offset;
                    c.pos += n;
                    c.offset += n as u64;
                    self.damaged(start, n as u64, "checksum or framing does not hold");
                }
                Next::Partial | Next::Empty if read_to < seg.len => {
                    // Keep what is not taken, then read after it.
                    c.buf.drain(..c.pos);
                    c.pos = 0;
                    let have = c.buf.len();
                    let want = (seg.len - read_to).min(READ_CHUNK.max(have) as u64) as usize;
                    c.buf.resize(have + want, 0);
                    if let Err(e) = c.file.read_exact_at(&mut c.buf[have..], read_to) {
                        c.buf.truncate(have);
                        if self.warned.insert(format!("read:{}", c.id)) {
                            tracing::error!(sink = %self.name, segment = c.id, error = %e, "cannot read the disk buffer; trying again");
                        }
                        return None;
                    }
                }
                Next::Partial | Next::Empty if seg.complete => {
                    self.finished.insert(c.id, c.last_end);
                    self.at = Ledger {
                        segment: c.id + 1,
                        offset: START,
                    };
                    self.cursor = None;
                }
                Next::Partial | Next::Empty => return None,
            }
        }
    }

    /// The record of segment `id` that ends at `end`, as a batch whose
    /// acknowledgement comes back to this reader.
    fn hand_over(&mut self, id: u64, end: u64, len: u64, events: Arc<Vec<Event>>) -> SharedBatch {
        let token = self.tracker.sent(id, end);
        self.sent.insert((id, end), (events.len() as u64, len));
        SharedBatch {
            events,
            ack: self
                .settle_tx
                .clone()
                .map(|tx| Ack::waking(token, tx, Some(Arc::clone(&self.waker)))),
        }
    }

    /// Opens the first segment at or after where reading goes on.
    fn open_next(&mut self) -> bool {
        let next = self
            .shared
            .lock()
            .segments
            .range(self.at.segment..)
            .next()
            .map(|(id, _)| *id);
        let Some(id) = next else { return false };
        let from = if id == self.at.segment {
            self.at.offset.max(START)
        } else {
            START
        };
        let path = segment_path(&self.dir, id);
        let opened = File::open(&path).and_then(|mut f| {
            let mut magic = [0; SEGMENT_MAGIC.len()];
            let ok = f.read_exact(&mut magic).is_ok() && &magic == SEGMENT_MAGIC;
            f.seek(SeekFrom::Start(from))?;
            Ok((f, ok))
        });
        self.at = Ledger {
            segment: id,
            offset: from,
        };
        match opened {
            Ok((file, true)) => {
                self.tracker.open(id, from);
                self.cursor = Some(Cursor {
                    id,
                    file,
                    buf: Vec::new(),
                    pos: 0,
                    offset: from,
                    last_end: from,
                });
                true
            }
            Ok((_, false)) | Err(_) => {
                // Not a segment weir wrote (or unreadable): step over it.
                self.damaged(0, 0, "the segment file does not start as one");
                self.tracker.open(id, from);
                self.finished.insert(id, from);
                self.at = Ledger {
                    segment: id + 1,
                    offset: START,
                };
                true
            }
        }
    }

    fn damaged(&mut self, offset: u64, bytes: u64, why: &str) {
        self.metrics.corrupt.inc();
        let segment = self.at.segment;
        tracing::warn!(sink = %self.name, segment, offset, bytes, "skipped a corrupt record in the disk buffer ({why}); the records after it are delivered");
    }
}
