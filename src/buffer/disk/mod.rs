//! The disk buffer: a sink's input written to append-only segment files
//! under `<data_dir>/buffers/<sink>/`, so that an outage longer than the
//! app keeps its files, a restart, or a `kill -9` loses nothing the buffer
//! took.
//!
//! Two parts share the directory. The **writer** (an async task) takes the
//! batches the fan-out sends, appends each as one checksummed record (see
//! `record`), fsyncs — after every batch, or at most every `fsync` interval
//! — and only then acknowledges the batch to its sources: from there on the
//! buffer answers for it. The **reader** (a blocking thread) reads the
//! records back in order and hands them to the sink with acknowledgements
//! of its own; what the sink delivers moves the buffer's `ledger.json`
//! (the first record not yet delivered, written atomically and coalesced),
//! and a segment that is read and delivered to its end is deleted.
//!
//! On start the directory is read as it is: records before the ledger are
//! done, the rest are replayed, and damage (a torn tail after a crash, bytes
//! changed on disk) is skipped at the next valid record, counted and
//! reported — it never stops the start. New records always go to a new
//! segment. When the directory is full (`max_bytes`, or the file system)
//! the writer waits, or with `when_full: drop_newest` drops the batch and
//! counts it; a write that fails is undone (the segment is cut back to its
//! last whole record) and tried again each second until space returns.
//!
//! This module does not decide where buffers go in a pipeline (the
//! topology does) nor how records are encoded (`record`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use super::record::{self, Next, SEGMENT_MAGIC};

mod reader;
mod writer;

use super::{BufferMetrics, Fsync, WhenFull};
use crate::ack::AckTracker;
use crate::event::{Event, SharedBatch};
use crate::shutdown::Shutdown;
use reader::Reader;
use writer::Writer;

/// A disk buffer's settings, as checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskConfig {
    pub max_bytes: u64,
    pub fsync: Fsync,
    pub when_full: WhenFull,
}

pub(super) const LEDGER: &str = "ledger.json";
pub(super) const START: u64 = SEGMENT_MAGIC.len() as u64;
/// How long the reader waits for records before it looks again.
pub(super) const WAKE_EVERY: Duration = Duration::from_millis(100);
/// How often the reader writes the ledger at most. Cheap: while running
/// it is replaced without an fsync (a `kill -9` keeps what the kernel
/// has; only a power cut could leave an older or a damaged ledger, which
/// means records sent again, never lost), and fsynced at the end.
pub(super) const LEDGER_EVERY: Duration = Duration::from_millis(10);
/// How much of a segment the reader holds in memory at once (more for one
/// record that is larger).
pub(super) const READ_CHUNK: usize = 4 << 20;

/// The buffer directory of sink `sink`.
pub fn dir_for(data_dir: &Path, sink: &str) -> PathBuf {
    data_dir.join("buffers").join(sink)
}

pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Where delivery stands: everything before `offset` of segment `segment`,
/// and every earlier segment, is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(super) struct Ledger {
    pub(super) segment: u64,
    pub(super) offset: u64,
}

/// What a buffer directory holds, read without changing it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contents {
    pub segments: usize,
    pub records: u64,
    pub events: u64,
    /// Bytes of the records not yet delivered.
    pub bytes: u64,
    /// The earliest event time among them (ns since the epoch).
    pub oldest: Option<i64>,
    /// Damaged places found (each a run of bytes that is no record).
    pub damaged: u64,
    /// A problem with the ledger, which was then ignored.
    pub ledger_problem: Option<String>,
}

fn read_ledger(dir: &Path) -> (Ledger, Option<String>) {
    let path = dir.join(LEDGER);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(l) => (l, None),
            Err(e) => (
                Ledger::default(),
                Some(format!(
                    "the buffer ledger {} is corrupt ({e}); replaying every segment from its start (what was delivered already is sent again)",
                    path.display()
                )),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Ledger::default(), None),
        Err(e) => (
            Ledger::default(),
            Some(format!(
                "cannot read the buffer ledger {}: {e}; replaying every segment from its start",
                path.display()
            )),
        ),
    }
}

/// The segment files of `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads what `dir` holds: every record not yet delivered. `oldest` also
/// decodes them to find the earliest event time.
pub fn inspect(dir: &Path, oldest: bool) -> std::io::Result<Contents> {
    scan(dir, oldest).map(|(_, c)| c)
}

/// [`inspect`], and the ledger it went by (the default when it was bad).
fn scan(dir: &Path, oldest: bool) -> std::io::Result<(Ledger, Contents)> {
    let (ledger, problem) = read_ledger(dir);
    let mut c = Contents {
        ledger_problem: problem,
        ..Default::default()
    };
    for id in segments(dir)? {
        if id < ledger.segment {
            continue;
        }
        c.segments += 1;
        let bytes = std::fs::read(segment_path(dir, id))?;
        let from = if id == ledger.segment {
            ledger.offset.max(START)
        } else {
            START
        };
        if !bytes.starts_with(SEGMENT_MAGIC) {
            c.damaged += 1;
            continue;
        }
        let mut at = (from as usize).min(bytes.len());
        loop {
            match record::next(&bytes[at..], true) {
                Next::Record { payload, len } => {
                    let p = &bytes[at + payload.0..at + payload.1];
                    c.records += 1;
                    c.events += record::count(p) as u64;
                    c.bytes += len as u64;
                    if oldest && let Some(t) = record::oldest_time(p) {
                        c.oldest = Some(c.oldest.map_or(t, |o| o.min(t)));
                    }
                    at += len;
                }
                Next::Damaged(n) => {
                    c.damaged += 1;
                    at += n;
                }
                Next::Partial | Next::Empty => break,
            }
        }
    }
    Ok((ledger, c))
}

/// What the writer and reader share.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// The reader waits here for records (or the writer's end).
    pub(super) more: Condvar,
    /// The writer waits here for space.
    pub(super) space: Notify,
}

#[derive(Default)]
pub(super) struct State {
    /// Segments on disk: id → bytes written, and whether the writer is done with it.
    pub(super) segments: BTreeMap<u64, Segment>,
    /// Bytes of every segment on disk.
    pub(super) used: u64,
    pub(super) writer_done: bool,
    /// The last records written, as the events they hold: a reader that
    /// keeps up takes them from here instead of reading and decoding the
    /// same bytes back (they are on disk all the same).
    pub(super) recent: VecDeque<Recent>,
}

/// A record just written: where it is, how long, and its events.
pub(super) struct Recent {
    pub(super) segment: u64,
    pub(super) offset: u64,
    pub(super) len: u64,
    pub(super) events: Arc<Vec<Event>>,
}

/// How many written records stay at hand for the reader.
pub(super) const RECENT: usize = 8;

#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub(super) len: u64,
    pub(super) complete: bool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens sink `name`'s buffer in `dir`, starts its writer on `input` and
/// its reader; returns what the sink reads, and a task that ends once both
/// are done (the writer when `input` closes, the reader when everything is
/// handed over or the sink is gone).
pub fn start(
    name: &str,
    dir: PathBuf,
    cfg: DiskConfig,
    input: mpsc::Receiver<SharedBatch>,
    shutdown: Shutdown,
    metrics: BufferMetrics,
) -> Result<(mpsc::Receiver<SharedBatch>, tokio::task::JoinHandle<()>), String> {
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the buffer directory {}: {e}", dir.display()))?;
    let (ledger, found) = scan(&dir, false)
        .map_err(|e| format!("cannot read the buffer directory {}: {e}", dir.display()))?;
    if let Some(p) = &found.ledger_problem {
        tracing::warn!(sink = name, "{p}");
    }
    let mut state = State::default();
    for id in segments(&dir).map_err(|e| e.to_string())? {
        let path = segment_path(&dir, id);
        if id < ledger.segment {
            // Delivered before the last stop; its deletion did not happen.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        state.segments.insert(
            id,
            Segment {
                len,
                complete: true,
            },
        );
        state.used += len;
    }
    if found.events > 0 {
        tracing::info!(
            sink = name,
            events = found.events,
            bytes = found.bytes,
            "replaying what the disk buffer holds"
        );
        metrics.replayed.add(found.events);
    }
    metrics.events.set(found.events as i64);
    metrics.bytes.set(found.bytes as i64);
    // Never below the ledger's segment: ids before it count as delivered.
    let next_id = state
        .segments
        .keys()
        .next_back()
        .map_or(0, |id| id + 1)
        .max(ledger.segment);
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        more: Condvar::new(),
        space: Notify::new(),
    });
    let (tx, rx) = mpsc::channel(crate::fanout::CHANNEL_BATCHES);
    let writer = Writer {
        name: name.to_string(),
        dir: dir.clone(),
        cfg,
        shared: Arc::clone(&shared),
        segment_max: (cfg.max_bytes / 8).clamp(256 << 10, 32 << 20),
        next_id,
        file: None,
        pending: Vec::new(),
        sync_due: None,
        record: Vec::new(),
        metrics: metrics.clone(),
        shutdown,
        warned: HashSet::new(),
    };
    let (settle_tx, settle_rx) = std_mpsc::channel();
    let woken = Arc::clone(&shared);
    let reader = Reader {
        waker: Arc::new(move || woken.more.notify_all()),
        name: name.to_string(),
        dir,
        shared,
        tx: Some(tx),
        settle_tx: Some(settle_tx),
        settle_rx,
        tracker: AckTracker::default(),
        at: ledger,
        cursor: None,
        sent: HashMap::new(),
        finished: BTreeMap::new(),
        ledger,
        saved: ledger,
        last_save: Instant::now(),
        metrics,
        warned: HashSet::new(),
    };
    let writer = tokio::spawn(writer.run(input));
    let reader = tokio::task::spawn_blocking(move || reader.run());
    let done = tokio::spawn(async move {
        let w = writer.await;
        let r = reader.await;
        for e in [w.err(), r.err()].into_iter().flatten() {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    });
    Ok((rx, done))
}
