//! How far the files of one `file` source are delivered, and the checkpoints
//! that keep it across restarts.
//!
//! Each open file is one acknowledgement stream. Every batch sent takes an
//! [`Ack`] from here; the settlements the sinks report come back on a
//! channel this module owns, go through an [`AckTracker`], and the offset
//! below which everything is delivered goes into the checkpoint store (at
//! most every `checkpoint_interval`, and at the end). Acknowledgement is
//! positive (see `crate::ack`): an `Ack` dropped without `delivered()` is a
//! batch not delivered, which holds its stream's checkpoint before it for
//! the rest of the run. At shutdown, [`Progress::finish`] waits for what was
//! sent to be settled.
//!
//! It deliberately does not read files or decide which to read: it knows a
//! stream by the fingerprint, path and offsets it is told about, and the
//! stream ids of the files still open are passed in when it needs them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::FileConfig;
use crate::ack::{Ack, AckTracker, Settlement, StreamId};
use crate::decode::timestamp::now_nanos;
use crate::fanout::Closed;
use crate::shutdown::Shutdown;
use crate::source::SourceContext;
use crate::source::checkpoint::{Checkpoints, Entry, Saver, write_atomic};
use crate::source::fingerprint::Fingerprint;
use crate::telemetry::{Counter, Gauge};

/// Now, in Unix seconds, as checkpoints record it.
pub(super) fn unix_now() -> i64 {
    now_nanos() / 1_000_000_000
}

/// What an acknowledgement stream belongs to, for checkpoints.
struct StreamInfo {
    fingerprint: Fingerprint,
    path: PathBuf,
    provisional: bool,
    /// For gzip files read to the end: their full length.
    complete_at: Option<u64>,
}

/// The acknowledgements and checkpoints of one file source.
pub(super) struct Progress {
    /// The source's name, for logs.
    source: String,
    /// Cloned into every `Ack`; `None` once nothing more is sent.
    ack_tx: Option<mpsc::Sender<Settlement>>,
    ack_rx: mpsc::Receiver<Settlement>,
    tracker: AckTracker,
    streams: HashMap<StreamId, StreamInfo>,
    next_stream: StreamId,
    /// `None` with `ignore_checkpoints`.
    checkpoints: Option<Checkpoints>,
    /// Writes them, off this thread.
    saver: Option<Savers>,
    interval: Duration,
    last_checkpoint: Instant,
    /// `weir_checkpoint_errors_total`.
    errors: Counter,
    /// `weir_checkpoint_lag_bytes`, refreshed with every checkpoint round.
    lag: Gauge,
    /// Wakes the source's idle wait when a batch is settled.
    waker: Option<crate::ack::Waker>,
    /// Problems already reported, so each is logged once.
    warned: HashSet<String>,
}

impl Progress {
    /// Loads the source's checkpoints (unless `ignore_checkpoints`); a
    /// checkpoint file that cannot be read is reported and counted in
    /// `errors`.
    pub(super) fn start(
        cfg: &FileConfig,
        ctx: &SourceContext,
        errors: Counter,
        lag: Gauge,
    ) -> Progress {
        let checkpoints = if cfg.ignore_checkpoints {
            None
        } else {
            let path = Checkpoints::file_for(&ctx.data_dir, &ctx.name);
            let (cp, warning) = Checkpoints::load(path, cfg.fingerprint_bytes);
            if let Some(w) = warning {
                errors.inc();
                tracing::warn!(source = %ctx.name, "{w}");
            } else if !cp.is_empty() {
                tracing::info!(source = %ctx.name, files = cp.len(), "resuming from checkpoints");
            }
            Some(cp)
        };
        let saver = checkpoints.as_ref().and_then(|cp| {
            let start = |path: PathBuf, durable| {
                Saver::start(path, durable, ctx.name.clone(), errors.clone())
            };
            let copy = Checkpoints::synced_path(cp.path());
            match (start(cp.path().to_path_buf(), false), start(copy, true)) {
                (Ok(recent), Ok(durable)) => Some(Savers {
                    recent,
                    durable,
                    unsynced: None,
                    last_durable: Instant::now(),
                }),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(source = %ctx.name, error = %e, "cannot start the checkpoint writers; checkpoints are written while reading");
                    None
                }
            }
        });
        let (ack_tx, ack_rx) = mpsc::channel();
        Progress {
            saver,
            source: ctx.name.clone(),
            ack_tx: Some(ack_tx),
            ack_rx,
            tracker: AckTracker::default(),
            streams: HashMap::new(),
            next_stream: 0,
            checkpoints,
            interval: cfg.checkpoint_interval.0,
            last_checkpoint: Instant::now(),
            errors,
            lag,
            waker: None,
            warned: HashSet::new(),
        }
    }

    /// Settlements wake the source through `waker` from now on.
    pub(super) fn wake_with(&mut self, waker: crate::ack::Waker) {
        self.waker = Some(waker);
    }

    /// The checkpoint of the file with this content, if there is one.
    pub(super) fn resume_point(&self, fingerprint: Fingerprint) -> Option<Entry> {
        self.checkpoints
            .as_ref()
            .and_then(|c| c.get(fingerprint))
            .cloned()
    }

    /// The file with this content is still there (its checkpoint must not
    /// expire).
    pub(super) fn seen(&mut self, fingerprint: Fingerprint, now: i64) {
        if let Some(cp) = self.checkpoints.as_mut() {
            cp.touch(fingerprint, now);
        }
    }

    /// A new stream for a file opened at `offset` (everything before it is
    /// already delivered).
    pub(super) fn open_stream(
        &mut self,
        fingerprint: Fingerprint,
        path: &Path,
        provisional: bool,
        offset: u64,
    ) -> StreamId {
        let id = self.next_stream;
        self.next_stream += 1;
        self.tracker.open(id, offset);
        self.streams.insert(
            id,
            StreamInfo {
                fingerprint,
                path: path.to_path_buf(),
                provisional,
                complete_at: None,
            },
        );
        id
    }

    /// The stream's file is now read at `path` (renamed, or its copy).
    pub(super) fn moved(&mut self, stream: StreamId, path: &Path) {
        if let Some(info) = self.streams.get_mut(&stream) {
            info.path = path.to_path_buf();
        }
    }

    /// The stream is a gzip file read to its end, `len` bytes decompressed:
    /// once delivered up to there, its checkpoint says "done".
    pub(super) fn complete_at(&mut self, stream: StreamId, len: u64) {
        if let Some(info) = self.streams.get_mut(&stream) {
            info.complete_at = Some(len);
        }
    }

    /// The acknowledgement for a batch of `stream` that reaches `end`;
    /// `Err` once nothing more may be sent.
    pub(super) fn ack(&mut self, stream: StreamId, end: u64) -> Result<Ack, Closed> {
        // Only this stream's part of the lag moves: no walk over every file
        // per batch.
        let before = self.tracker.unsettled_bytes(stream);
        let token = self.tracker.sent(stream, end);
        self.lag
            .add(self.tracker.unsettled_bytes(stream) as i64 - before as i64);
        let Some(tx) = self.ack_tx.clone() else {
            return Err(Closed);
        };
        Ok(Ack::waking(token, tx, self.waker.clone()))
    }

    /// `weir_checkpoint_lag_bytes`: what was sent and is not delivered yet.
    /// Recounted with every checkpoint round; [`Progress::ack`] adds what
    /// each batch sent, so a source blocked on a full channel shows what it
    /// handed over.
    fn refresh_lag(&self) {
        let lag: u64 = self
            .streams
            .keys()
            .map(|s| self.tracker.unsettled_bytes(*s))
            .sum();
        self.lag.set(lag as i64);
    }

    /// Whether batches are still in flight or settled ones not yet saved.
    pub(super) fn awaiting(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|c| c.is_dirty())
            || self.streams.keys().any(|s| !self.tracker.is_idle(*s))
    }

    /// Applies the settlements reported since the last call.
    pub(super) fn settle_reported(&mut self) {
        while let Ok(s) = self.ack_rx.try_recv() {
            self.settled(s);
        }
    }

    /// Applies what the sinks reported on a batch to the checkpoints.
    fn settled(&mut self, s: Settlement) {
        let token = s.token;
        let moved = self.tracker.settled(s);
        if !s.delivered {
            let path = self.streams.get(&token.stream).map(|i| i.path.clone());
            if let Some(path) = path
                && self.warned.insert(format!("lost:{}", token.stream))
            {
                tracing::warn!(source = %self.source, path = %path.display(), offset = token.end_offset, "a batch of this file was not delivered; its checkpoint stays before it for the rest of this run, so a restart reads it again");
            }
        }
        let Some(offset) = moved else {
            return;
        };
        let (Some(cp), Some(info)) = (self.checkpoints.as_mut(), self.streams.get(&token.stream))
        else {
            return;
        };
        if info.provisional {
            return;
        }
        let done = info.complete_at == Some(offset);
        cp.set(info.fingerprint, offset, &info.path, done, unix_now());
    }

    /// Waits `d`, applying acknowledgements as they arrive and saving the
    /// checkpoints they move (no more often than `checkpoint_interval`).
    pub(super) fn pause(&mut self, d: Duration, open: impl IntoIterator<Item = StreamId>) {
        let open: Vec<StreamId> = open.into_iter().collect();
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                return;
            }
            let due = self
                .checkpoints
                .as_ref()
                .is_some_and(|c| c.is_dirty())
                .then(|| self.last_checkpoint + self.interval);
            let until = due.map_or(end, |t| t.min(end)).max(now);
            match self.ack_rx.recv_timeout(until - now) {
                Ok(s) => self.settled(s),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(end - now);
                    return;
                }
            }
            self.maybe_checkpoint(false, open.iter().copied());
        }
    }

    /// Every `checkpoint_interval` (or now, with `force`): forgets the
    /// streams of files no longer `open` whose batches are all settled, and
    /// writes the checkpoints if they changed.
    pub(super) fn maybe_checkpoint(
        &mut self,
        force: bool,
        open: impl IntoIterator<Item = StreamId>,
    ) {
        if !force && self.last_checkpoint.elapsed() < self.interval {
            return;
        }
        self.last_checkpoint = Instant::now();
        // Forget streams of released files once everything they sent is settled.
        let open: HashSet<StreamId> = open.into_iter().collect();
        let settled: Vec<StreamId> = self
            .streams
            .keys()
            .filter(|s| !open.contains(s) && self.tracker.is_idle(**s))
            .copied()
            .collect();
        for s in settled {
            self.streams.remove(&s);
            self.tracker.close(s);
        }
        self.refresh_lag();
        let Some(cp) = self.checkpoints.as_mut() else {
            return;
        };
        let Some(bytes) = cp.snapshot(unix_now()) else {
            return;
        };
        match &mut self.saver {
            Some(saver) => saver.submit(bytes, force),
            None => {
                if let Err(e) = write_atomic(cp.path(), &bytes) {
                    cp.mark_dirty();
                    self.errors.inc();
                    if self.warned.insert("checkpoint-save".into()) {
                        tracing::error!(source = %self.source, error = %e, "cannot write checkpoints; will retry (a restart would read again from the last saved ones)");
                    }
                }
            }
        }
    }

    /// Stops handing out acknowledgements, waits for the sinks to settle
    /// what was sent, writes the final checkpoints. Call it once the files
    /// are closed and the output is. The wait has no end of its own at the
    /// end of a `--once` replay; once a stop is asked for, it ends with the
    /// grace period (sinks let go of what they hold then, which ends it
    /// anyway).
    pub(super) fn finish(mut self, shutdown: &Shutdown) {
        self.ack_tx = None;
        loop {
            let wait = match shutdown.deadline() {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_millis(100),
            };
            match self.ack_rx.recv_timeout(wait) {
                Ok(s) => self.settled(s),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if shutdown.deadline().is_none() => {
                    // Periodic checkpoints go on while a replay is delivered.
                    self.maybe_checkpoint(false, []);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!(source = %self.source, "sinks did not settle within the grace period; checkpointing only what they delivered");
                    break;
                }
            }
        }
        let lost: u64 = self.streams.keys().map(|s| self.tracker.lost(*s)).sum();
        if lost > 0 {
            tracing::warn!(source = %self.source, batches = lost, "some batches were not delivered; the checkpoints stay before them, so a restart reads them again");
        }
        self.maybe_checkpoint(true, []);
        if let Some(saver) = self.saver.take() {
            saver.finish();
        }
    }
}

/// How often the fsynced checkpoint file is written at most; the recent
/// one follows every acknowledgement.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The two checkpoint writers: the checkpoint file after every change (a
/// rename, no fsync: what `kill -9` leaves behind), and its fsynced copy
/// at most every [`DURABLE_EVERY`] and at the end (what a power cut
/// leaves behind). Loading takes the newer one that reads well.
struct Savers {
    recent: Saver,
    durable: Saver,
    /// The newest checkpoints not yet handed to `durable`.
    unsynced: Option<Vec<u8>>,
    last_durable: Instant,
}

impl Savers {
    fn submit(&mut self, bytes: Vec<u8>, now: bool) {
        self.recent.submit(bytes.clone());
        self.unsynced = Some(bytes);
        if now || self.last_durable.elapsed() >= DURABLE_EVERY {
            self.sync();
        }
    }

    fn sync(&mut self) {
        if let Some(b) = self.unsynced.take() {
            self.durable.submit(b);
            self.last_durable = Instant::now();
        }
    }

    fn finish(mut self) {
        self.sync();
        self.recent.finish();
        self.durable.finish();
    }
}
