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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use super::record::{self, Next, SEGMENT_MAGIC};
use super::{BufferMetrics, Fsync, WhenFull};
use crate::ack::{Ack, AckTracker, Settlement};
use crate::event::SharedBatch;
use crate::shutdown::Shutdown;
use crate::source::checkpoint::write_atomic;

/// A disk buffer's settings, as checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskConfig {
    pub max_bytes: u64,
    pub fsync: Fsync,
    pub when_full: WhenFull,
}

const LEDGER: &str = "ledger.json";
const START: u64 = SEGMENT_MAGIC.len() as u64;
/// How often the reader writes the ledger at most, and wakes to look.
const LEDGER_EVERY: Duration = Duration::from_millis(100);
/// How much of a segment the reader holds in memory at once (more for one
/// record that is larger).
const READ_CHUNK: usize = 4 << 20;

/// The buffer directory of sink `sink`.
pub fn dir_for(data_dir: &Path, sink: &str) -> PathBuf {
    data_dir.join("buffers").join(sink)
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Where delivery stands: everything before `offset` of segment `segment`,
/// and every earlier segment, is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Ledger {
    segment: u64,
    offset: u64,
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
    Ok(c)
}

/// What the writer and reader share.
struct Shared {
    state: Mutex<State>,
    /// The reader waits here for records (or the writer's end).
    more: Condvar,
    /// The writer waits here for space.
    space: Notify,
}

#[derive(Default)]
struct State {
    /// Segments on disk: id → bytes written, and whether the writer is done with it.
    segments: BTreeMap<u64, Segment>,
    /// Bytes of every segment on disk.
    used: u64,
    writer_done: bool,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    len: u64,
    complete: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
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
    let found = inspect(&dir, false)
        .map_err(|e| format!("cannot read the buffer directory {}: {e}", dir.display()))?;
    if let Some(p) = &found.ledger_problem {
        tracing::warn!(sink = name, "{p}");
    }
    let (ledger, _) = read_ledger(&dir);
    let mut state = State::default();
    for id in segments(&dir).map_err(|e| e.to_string())? {
        let path = segment_path(&dir, id);
        if found.ledger_problem.is_none() && id < ledger.segment {
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
    let ledger = if found.ledger_problem.is_some() {
        Ledger::default()
    } else {
        ledger
    };
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
    let reader = Reader {
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

struct Writer {
    name: String,
    dir: PathBuf,
    cfg: DiskConfig,
    shared: Arc<Shared>,
    segment_max: u64,
    next_id: u64,
    /// The segment being written: its id, file and length.
    file: Option<(u64, File, u64)>,
    /// Written, waiting for the next fsync before they are acknowledged.
    pending: Vec<SharedBatch>,
    sync_due: Option<tokio::time::Instant>,
    record: Vec<u8>,
    metrics: BufferMetrics,
    shutdown: Shutdown,
    warned: HashSet<&'static str>,
}

/// How an attempt to take a batch ended.
enum Taken {
    Written,
    /// Not taken (the grace period ended while waiting): left unacknowledged.
    Refused,
}

impl Writer {
    async fn run(mut self, mut input: mpsc::Receiver<SharedBatch>) {
        loop {
            let next = tokio::select! {
                b = input.recv() => b,
                _ = tokio::time::sleep_until(self.sync_due.unwrap_or_else(tokio::time::Instant::now)), if self.sync_due.is_some() => {
                    self.sync().await;
                    continue;
                }
            };
            let Some(b) = next else { break };
            if b.events.is_empty() {
                b.delivered();
                continue;
            }
            self.record.clear();
            record::encode(&b.events, &mut self.record);
            let events = b.events.len();
            match self.take(b).await {
                Taken::Written => {}
                Taken::Refused => {
                    self.metrics.undelivered.add(events as u64);
                    if self.warned.insert("refused") {
                        tracing::error!(sink = %self.name, "the grace period ended while the disk buffer had no room; batches not written stay unacknowledged (file sources read them again after a restart, standard input cannot)");
                    }
                }
            }
        }
        self.sync().await;
        self.close_segment();
        self.sync().await;
        self.shared.lock().writer_done = true;
        self.shared.more.notify_all();
    }

    /// Writes the encoded record of `b`, waiting for room while the buffer
    /// is full and retrying while the file system refuses.
    async fn take(&mut self, b: SharedBatch) -> Taken {
        let len = self.record.len() as u64;
        loop {
            let used = self.shared.lock().used;
            if used > START && used + len > self.cfg.max_bytes {
                if self.cfg.when_full == WhenFull::DropNewest {
                    self.metrics.discarded.add(b.events.len() as u64);
                    if self.warned.insert("drop") {
                        tracing::warn!(sink = %self.name, max_bytes = self.cfg.max_bytes, "the disk buffer is full; dropping the newest batches (when_full: drop_newest), counted in weir_buffer_discarded_events_total");
                    }
                    // Dropped on purpose, as configured: settled, not lost.
                    b.delivered();
                    return Taken::Written;
                }
                if self.warned.insert("full") {
                    tracing::warn!(sink = %self.name, max_bytes = self.cfg.max_bytes, "the disk buffer is full (max_bytes); sources wait until the sink delivers");
                }
                // What is written is acknowledged before waiting, and the
                // segment closed so that what gets delivered can be freed.
                self.sync().await;
                if self.file.as_ref().is_some_and(|(_, _, flen)| *flen > START) {
                    self.close_segment();
                }
                if !self.wait(self.shared.space.notified()).await {
                    return Taken::Refused;
                }
                continue;
            }
            match self.append(b.events.len()) {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.write_errors.inc();
                    if self.warned.insert("write") {
                        let full = e.raw_os_error() == Some(libc::ENOSPC);
                        tracing::error!(sink = %self.name, dir = %self.dir.display(), error = %e, "{}", if full {
                            "the disk buffer's file system is full; sources wait, and writing is tried again every second until space returns"
                        } else {
                            "cannot write to the disk buffer; sources wait, and writing is tried again every second"
                        });
                    }
                    // Free what is delivered: close the segment.
                    self.close_segment();
                    if !self.wait(tokio::time::sleep(Duration::from_secs(1))).await {
                        return Taken::Refused;
                    }
                }
            }
        }
        if self.warned.remove("write") {
            tracing::info!(sink = %self.name, "the disk buffer is writable again");
        }
        self.warned.remove("full");
        match self.cfg.fsync {
            Fsync::Batch => {
                self.pending.push(b);
                self.sync().await;
            }
            Fsync::Every(d) => {
                self.pending.push(b);
                self.sync_due
                    .get_or_insert_with(|| tokio::time::Instant::now() + d);
            }
        }
        Taken::Written
    }

    /// Waits for `f`; false if the grace period ended first.
    async fn wait(&self, f: impl std::future::Future<Output = ()>) -> bool {
        tokio::select! {
            _ = f => true,
            _ = tokio::time::sleep(Duration::from_secs(1)) => true,
            _ = self.shutdown.expired() => false,
        }
    }

    /// Appends the encoded record to the current segment (a new one when
    /// there is none or it is full). A failed write is cut back off.
    fn append(&mut self, events: usize) -> std::io::Result<()> {
        let len = self.record.len() as u64;
        if self
            .file
            .as_ref()
            .is_some_and(|(_, _, flen)| *flen > START && flen + len > self.segment_max)
        {
            self.close_segment();
        }
        if self.file.is_none() {
            self.open_segment()?;
        }
        let (id, file, flen) = self.file.as_mut().expect("opened above");
        if let Err(e) = file.write_all(&self.record) {
            let _ = file.set_len(*flen);
            let _ = file.seek(SeekFrom::Start(*flen));
            return Err(e);
        }
        *flen += len;
        let (id, flen) = (*id, *flen);
        {
            let mut st = self.shared.lock();
            st.used += len;
            if let Some(s) = st.segments.get_mut(&id) {
                s.len = flen;
            }
        }
        // Counted before the reader can see it (and count it delivered).
        self.metrics.events.add(events as i64);
        self.metrics.bytes.add(len as i64);
        self.shared.more.notify_all();
        Ok(())
    }

    fn open_segment(&mut self) -> std::io::Result<()> {
        let id = self.next_id;
        let path = segment_path(&self.dir, id);
        let made = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(SEGMENT_MAGIC)?;
                File::open(&self.dir)?.sync_all()?;
                Ok(f)
            });
        let file = match made {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        self.next_id += 1;
        let mut st = self.shared.lock();
        st.used += START;
        st.segments.insert(
            id,
            Segment {
                len: START,
                complete: false,
            },
        );
        drop(st);
        self.file = Some((id, file, START));
        Ok(())
    }

    /// Ends the current segment (synced first: what waits for the next
    /// sync may be in it), so that the reader can finish it and, once it is
    /// delivered, delete it.
    fn close_segment(&mut self) {
        let Some((id, file, _)) = self.file.take() else {
            return;
        };
        if !self.pending.is_empty()
            && let Err(e) = file.sync_data()
        {
            self.fail_pending(&e);
        }
        if let Some(s) = self.shared.lock().segments.get_mut(&id) {
            s.complete = true;
        }
        self.shared.more.notify_all();
    }

    /// An fsync failed: what waited for it is not known to be on disk, so
    /// its sources keep it unacknowledged.
    fn fail_pending(&mut self, e: &std::io::Error) {
        let n: usize = self.pending.iter().map(|b| b.events.len()).sum();
        self.pending.clear();
        self.metrics.write_errors.inc();
        tracing::error!(sink = %self.name, error = %e, events = n, "fsync of the disk buffer failed; these batches stay unacknowledged (file sources read them again after a restart)");
    }

    /// Makes what was written durable, then acknowledges it.
    async fn sync(&mut self) {
        self.sync_due = None;
        if self.pending.is_empty() {
            return;
        }
        let synced = match self.file.as_ref().map(|(_, f, _)| f.try_clone()) {
            // Written to segments since closed, which were synced then.
            None => Ok(()),
            Some(Err(e)) => Err(e),
            Some(Ok(f)) => tokio::task::spawn_blocking(move || f.sync_data())
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
        };
        match synced {
            Ok(()) => {
                for b in self.pending.drain(..) {
                    b.delivered();
                }
            }
            Err(e) => self.fail_pending(&e),
        }
    }
}

/// The reader's place in one segment.
struct Cursor {
    id: u64,
    file: File,
    /// Bytes read from the file and not yet taken, starting at `offset`.
    buf: Vec<u8>,
    offset: u64,
    /// The end of the last record handed to the sink (where a restart
    /// would resume once it is delivered).
    last_end: u64,
}

struct Reader {
    name: String,
    dir: PathBuf,
    shared: Arc<Shared>,
    /// The sink's input; dropped at the end, which closes it.
    tx: Option<mpsc::Sender<SharedBatch>>,
    /// Cloned into every acknowledgement; dropped at the end.
    settle_tx: Option<std_mpsc::Sender<Settlement>>,
    settle_rx: std_mpsc::Receiver<Settlement>,
    tracker: AckTracker,
    /// Where reading goes on: the next segment and offset.
    at: Ledger,
    cursor: Option<Cursor>,
    /// Events and bytes of each record handed over, by (segment, end).
    sent: HashMap<(u64, u64), (u64, u64)>,
    /// Segments read to their end: where their last record ended.
    finished: BTreeMap<u64, u64>,
    ledger: Ledger,
    saved: Ledger,
    last_save: Instant,
    metrics: BufferMetrics,
    warned: HashSet<String>,
}

impl Reader {
    fn run(mut self) {
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
                    let _ = self.shared.more.wait_timeout(st, LEDGER_EVERY);
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
            match write_atomic(&self.dir.join(LEDGER), &bytes) {
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
            let seg = self.shared.lock().segments.get(&c.id).copied();
            let Some(seg) = seg else {
                // Deleted underneath (should not happen): go on.
                self.cursor = None;
                continue;
            };
            let read_to = c.offset + c.buf.len() as u64;
            let complete = seg.complete && read_to >= seg.len;
            match record::next(&c.buf, complete) {
                Next::Record { payload, len } => {
                    let start = c.offset;
                    let end = start + len as u64;
                    let decoded = record::decode(&c.buf[payload.0..payload.1]);
                    c.buf.drain(..len);
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
                    c.buf.drain(..n);
                    c.offset += n as u64;
                    self.damaged(start, n as u64, "checksum or framing does not hold");
                }
                Next::Partial | Next::Empty if read_to < seg.len => {
                    let want = (seg.len - read_to).min(READ_CHUNK.max(c.buf.len()) as u64);
                    let mut more = vec![0; want as usize];
                    if let Err(e) = c.file.read_exact(&mut more) {
                        if self.warned.insert(format!("read:{}", c.id)) {
                            tracing::error!(sink = %self.name, segment = c.id, error = %e, "cannot read the disk buffer; trying again");
                        }
                        let _ = c.file.seek(SeekFrom::Start(read_to));
                        return None;
                    }
                    c.buf.extend_from_slice(&more);
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
