//! The `file` source: tails the files that match `include` globs (minus
//! `exclude`), across rotation, truncation and restarts.
//!
//! A file is known by the fingerprint of its first `fingerprint_bytes` bytes
//! (see `fingerprint`), so it keeps its identity when renamed, copied or
//! compressed. Each open file is one acknowledgement stream: batches carry
//! the offset they reach, sinks acknowledge them, and the highest offset
//! below which everything is delivered goes into the checkpoint store, which
//! a restart resumes from.
//!
//! - **New files** are found by polling the globs every `glob_interval`, and
//!   sooner when inotify reports a change (a hint only; polling always runs).
//! - **Rotation by rename**: the open file keeps being read under its new
//!   name (or, if the name no longer matches, to its end and then for
//!   `rotate_wait` more); the new file at the old path is read from its start.
//! - **copytruncate**: when the open file shrinks, a file elsewhere with the
//!   same fingerprint is the copy, and reading goes on in the copy from the
//!   same offset, so lines written before the copy are not lost. Without a
//!   copy, the file is read again from the start (and a metric counts it).
//! - **gzip** files (by their magic bytes) are read once, decompressed;
//!   offsets count decompressed bytes, so a generation read while plain is
//!   not read again once compressed, and one read to its end is remembered.
//!
//! In `--once` mode, files shorter than `fingerprint_bytes` are read too but
//! not checkpointed (they have no stable identity yet).

pub mod discovery;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use super::checkpoint::Checkpoints;
use super::fingerprint::{self, Fingerprint, Probe};
use super::lines::{Framer, Line, Oversize};
use super::multiline::{Joiner, MultilineConfig};
use super::{DEFAULT_MAX_LINE_BYTES, LineDecoder, SourceContext, flush};
use crate::ack::{Ack, AckTracker, Settlement, StreamId};
use crate::component::{CheckCx, Kind, SourceKind, SourceSpec};
use crate::config::units::{ByteSize, Dur};
use crate::decode::DecodeConfig;
use crate::decode::timestamp::now_nanos;
use crate::fanout::Closed;
use crate::telemetry::{Counter, Gauge};
pub use discovery::{GlobError, Globs};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in files without a checkpoint that are found at
    /// startup; files that appear later are always read from their start.
    #[serde(default)]
    pub read_from: ReadFrom,
    #[serde(default = "default_glob_interval")]
    pub glob_interval: Dur,
    /// How long to sleep when no file had new data and no event came.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// How long a last line without its newline waits before it is emitted.
    #[serde(default = "default_line_timeout")]
    pub line_timeout: Dur,
    /// How many leading bytes identify a file.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// At most how often checkpoints are written (and always at shutdown).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Dur,
    /// Start every file from `read_from`, ignoring and not writing checkpoints.
    #[serde(default)]
    pub ignore_checkpoints: bool,
    /// How long a file whose name went away stays open after its last data.
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait: Dur,
    #[serde(default)]
    pub decode: DecodeConfig,
    pub multiline: Option<MultilineConfig>,
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    #[serde(default)]
    pub oversize: Oversize,
}

fn default_glob_interval() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_poll_interval() -> Dur {
    Dur(Duration::from_millis(250))
}
fn default_line_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_fingerprint_bytes() -> usize {
    256
}
fn default_checkpoint_interval() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_rotate_wait() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_max_line() -> ByteSize {
    ByteSize(DEFAULT_MAX_LINE_BYTES)
}

/// Reads per file per round, so that one busy file cannot starve the others.
const READS_PER_ROUND: usize = 8;
/// Rounds are at least this far apart unless a file has a backlog: the
/// latency weir adds to a live line, and what lets batches be more than a
/// line or two.
const MIN_ROUND: Duration = Duration::from_millis(20);

enum Reader {
    Plain(File),
    Gzip(Box<MultiGzDecoder<File>>),
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Plain(f) => f.read(buf),
            Reader::Gzip(d) => d.read(buf),
        }
    }
}

struct Tailed {
    path: PathBuf,
    reader: Reader,
    identity: (u64, u64),
    fingerprint: Fingerprint,
    /// Read in --once mode before it had a fingerprint: not checkpointed.
    provisional: bool,
    stream: StreamId,
    framer: Framer,
    joiner: Option<Joiner>,
    /// Offset carried by the last batch sent for this file.
    last_sent: u64,
    last_data: Instant,
    at_eof: bool,
    /// Since when the path no longer leads to this file.
    released_at: Option<Instant>,
    /// A compressed file's final acknowledgement was sent.
    done_sent: bool,
}

impl Tailed {
    fn compressed(&self) -> bool {
        matches!(self.reader, Reader::Gzip(_))
    }
}

/// What an acknowledgement stream belongs to, for checkpoints.
struct StreamInfo {
    fingerprint: Fingerprint,
    path: PathBuf,
    provisional: bool,
    /// For gzip files read to the end: their full length.
    complete_at: Option<u64>,
}

struct FileMetrics {
    open: Gauge,
    waiting: Gauge,
    truncations: Counter,
    copies_followed: Counter,
    errors: Counter,
    checkpoint_errors: Counter,
    not_a_file: Counter,
}

/// The state of one running file source.
struct Tailer {
    cfg: FileConfig,
    ctx: SourceContext,
    globs: Globs,
    lines: LineDecoder,
    metrics: FileMetrics,
    ack_tx: Option<mpsc::Sender<Settlement>>,
    tracker: AckTracker,
    streams: HashMap<StreamId, StreamInfo>,
    checkpoints: Option<Checkpoints>,
    last_checkpoint: Instant,
    files: Vec<Tailed>,
    /// Files too short to fingerprint yet, by identity.
    waiting: HashMap<(u64, u64), PathBuf>,
    /// gzip files read to the end, by identity and size.
    finished: HashSet<(u64, u64, u64)>,
    next_stream: StreamId,
    /// Problems already reported, so each is logged once.
    warned: HashSet<String>,
    first_scan: bool,
    events: Vec<crate::event::Event>,
    joined: Vec<Line>,
}

fn unix_now() -> i64 {
    now_nanos() / 1_000_000_000
}

/// The `file` source kind.
pub const KIND: SourceKind = Kind {
    name: "file",
    check,
};

/// A checked `file` source: its settings and compiled globs.
#[derive(Debug)]
struct FileSpec {
    cfg: FileConfig,
    globs: Globs,
}

impl SourceSpec for FileSpec {
    fn run(&self, ctx: SourceContext) -> Result<(), String> {
        run(self.cfg.clone(), self.globs.clone(), ctx)
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<Arc<dyn SourceSpec>> {
    let cfg: FileConfig = cx.typed()?;
    super::check_reading(cx, &cfg.decode, cfg.multiline.as_ref());
    if cfg.fingerprint_bytes == 0 {
        cx.error(
            &["fingerprint_bytes"],
            "`fingerprint_bytes` must be at least 1 (default 256)",
        );
    }
    let globs = match Globs::new(&cfg.include, &cfg.exclude) {
        Ok(g) => Some(g),
        Err(e) => {
            cx.error(&[e.key.to_string(), e.index.to_string()], e.message);
            None
        }
    };
    if cx.has_errors() {
        return None;
    }
    Some(Arc::new(FileSpec { cfg, globs: globs? }))
}

/// Runs the source on the calling thread until shutdown (or, with `--once`,
/// until every file found at startup has been read to its end), then waits
/// for the sinks to acknowledge what was sent and writes the checkpoints.
pub fn run(cfg: FileConfig, globs: Globs, ctx: SourceContext) -> Result<(), String> {
    let lines = LineDecoder::new(&cfg.decode, &ctx)?;
    let src = [("source", ctx.name.as_str())];
    let r = &ctx.registry;
    let metrics = FileMetrics {
        open: r.gauge("weir_files_open", "Files currently open, by source.", &src),
        waiting: r.gauge(
            "weir_files_waiting",
            "Files shorter than fingerprint_bytes, not read yet.",
            &src,
        ),
        truncations: r.counter(
            "weir_file_truncations_total",
            "Files that shrank below the read offset and were read again from the start.",
            &src,
        ),
        copies_followed: r.counter(
            "weir_file_copies_followed_total",
            "Truncated files whose copy (copytruncate) was read on from the same offset.",
            &src,
        ),
        errors: r.counter(
            "weir_file_errors_total",
            "Files or directories that could not be opened, listed or read.",
            &src,
        ),
        checkpoint_errors: r.counter(
            "weir_checkpoint_errors_total",
            "Checkpoint files that could not be read or written.",
            &src,
        ),
        not_a_file: r.counter(
            "weir_files_skipped_total",
            "Paths matching the include globs that are not read, by reason (not_a_file: a directory, FIFO, socket or device), each counted once.",
            &[("source", ctx.name.as_str()), ("reason", "not_a_file")],
        ),
    };
    let checkpoints = if cfg.ignore_checkpoints {
        None
    } else {
        let path = Checkpoints::file_for(&ctx.data_dir, &ctx.name);
        let (cp, warning) = Checkpoints::load(path, cfg.fingerprint_bytes);
        if let Some(w) = warning {
            metrics.checkpoint_errors.inc();
            tracing::warn!(source = %ctx.name, "{w}");
        } else if !cp.is_empty() {
            tracing::info!(source = %ctx.name, files = cp.len(), "resuming from checkpoints");
        }
        Some(cp)
    };
    let (ack_tx, ack_rx) = mpsc::channel();
    let mut wake = watch::Wakeup::new();
    let mut t = Tailer {
        cfg,
        ctx,
        globs,
        lines,
        metrics,
        ack_tx: Some(ack_tx),
        tracker: AckTracker::default(),
        streams: HashMap::new(),
        checkpoints,
        last_checkpoint: Instant::now(),
        files: Vec::new(),
        waiting: HashMap::new(),
        finished: HashSet::new(),
        next_stream: 0,
        warned: HashSet::new(),
        first_scan: true,
        events: Vec::new(),
        joined: Vec::new(),
    };
    let mut next_scan = Instant::now();
    let mut round_start = Instant::now();
    while !t.ctx.shutdown.is_triggered() {
        while let Ok(s) = ack_rx.try_recv() {
            t.settled(s);
        }
        t.maybe_checkpoint(false);
        if (t.first_scan || !t.ctx.once) && Instant::now() >= next_scan {
            for (dir, recursive) in t.globs.watch_dirs() {
                wake.watch(&dir, recursive);
            }
            t.scan();
            next_scan = Instant::now() + t.cfg.glob_interval.0;
        }
        t.probe_waiting();
        let (mut progressed, mut backlog) = (false, false);
        let mut i = 0;
        while i < t.files.len() {
            match t.read_file(i) {
                Ok(p) => {
                    progressed |= p;
                    backlog |= p && !t.files.get(i).is_none_or(|f| f.at_eof);
                }
                Err(Closed) => return t.finish(ack_rx),
            }
            i += 1;
        }
        t.release_finished();
        if t.ctx.once {
            if t.files.iter().all(|f| f.at_eof) {
                break;
            }
            continue;
        }
        if progressed && !backlog {
            // Writers append a little at a time: let it gather for a moment
            // rather than making a tiny batch per file per append.
            std::thread::sleep(MIN_ROUND.saturating_sub(round_start.elapsed()));
        } else if !progressed && let Some(hint) = wake.wait(t.cfg.poll_interval.0) {
            if hint.rescan {
                next_scan = Instant::now();
            }
            std::thread::sleep(MIN_ROUND.saturating_sub(round_start.elapsed()));
        }
        round_start = Instant::now();
    }
    t.finish(ack_rx)
}

impl Tailer {
    fn warn_once(&mut self, key: String) -> bool {
        self.warned.insert(key)
    }

    fn new_stream(
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

    /// Applies what the sinks reported on a batch to the checkpoints.
    fn settled(&mut self, s: Settlement) {
        let token = s.token;
        let moved = self.tracker.settled(s);
        if !s.delivered {
            let path = self.streams.get(&token.stream).map(|i| i.path.clone());
            if let Some(path) = path
                && self.warn_once(format!("lost:{}", token.stream))
            {
                tracing::warn!(source = %self.ctx.name, path = %path.display(), offset = token.end_offset, "a batch of this file was not delivered; its checkpoint stays before it for the rest of this run, so a restart reads it again");
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

    fn maybe_checkpoint(&mut self, force: bool) {
        if !force && self.last_checkpoint.elapsed() < self.cfg.checkpoint_interval.0 {
            return;
        }
        self.last_checkpoint = Instant::now();
        // Forget streams of released files once everything they sent is settled.
        let open: HashSet<StreamId> = self.files.iter().map(|f| f.stream).collect();
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
        let Some(cp) = self.checkpoints.as_mut() else {
            return;
        };
        if cp.is_dirty()
            && let Err(e) = cp.save(unix_now())
        {
            self.metrics.checkpoint_errors.inc();
            if self.warned.insert("checkpoint-save".into()) {
                tracing::error!(source = %self.ctx.name, error = %e, "cannot write checkpoints; will retry (a restart would read again from the last saved ones)");
            }
        }
    }

    /// Stops sending, waits for the sinks to settle what was sent, writes
    /// the final checkpoints. The wait has no end of its own at the end of a
    /// `--once` replay; once a stop is asked for, it ends with the grace
    /// period (sinks let go of what they hold then, which ends it anyway).
    fn finish(mut self, ack_rx: mpsc::Receiver<Settlement>) -> Result<(), String> {
        // Nothing more is sent: sinks deliver what they hold, and report.
        self.ctx.output.close();
        self.ack_tx = None;
        self.files.clear();
        self.metrics.open.set(0);
        loop {
            let wait = match self.ctx.shutdown.deadline() {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_millis(100),
            };
            match ack_rx.recv_timeout(wait) {
                Ok(s) => self.settled(s),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if self.ctx.shutdown.deadline().is_none() => {
                    // Periodic checkpoints go on while a replay is delivered.
                    self.maybe_checkpoint(false);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!(source = %self.ctx.name, "sinks did not settle within the grace period; checkpointing only what they delivered");
                    break;
                }
            }
        }
        let lost: u64 = self.streams.keys().map(|s| self.tracker.lost(*s)).sum();
        if lost > 0 {
            tracing::warn!(source = %self.ctx.name, batches = lost, "some batches were not delivered; the checkpoints stay before them, so a restart reads them again");
        }
        self.maybe_checkpoint(true);
        Ok(())
    }

    /// Looks for new files, and for paths that now lead elsewhere.
    fn scan(&mut self) {
        let name = self.ctx.name.clone();
        let (paths, errors) = self.globs.discover();
        for (dir, e) in errors {
            if self.warn_once(format!("dir:{}", dir.display())) {
                tracing::warn!(source = %name, dir = %dir.display(), error = %e, "cannot list directory; will keep looking");
            }
        }
        if paths.is_empty() && self.files.is_empty() && self.warn_once("no-match".into()) {
            tracing::warn!(source = %name, include = ?self.cfg.include, "no files match the include globs yet; will keep looking every {:?}", self.cfg.glob_interval.0);
        }
        let now = unix_now();
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        for path in &paths {
            let meta = match std::fs::metadata(path) {
                Ok(m) if m.is_file() => m,
                Ok(m) => {
                    if let Some(why) = discovery::not_a_file(path, &m)
                        && self.warn_once(format!("not-a-file:{}", path.display()))
                    {
                        self.metrics.not_a_file.inc();
                        tracing::warn!(source = %name, path = %path.display(), "{why}");
                    }
                    continue;
                }
                Err(e) => {
                    if self.warn_once(format!("open:{}", path.display())) {
                        self.metrics.errors.inc();
                        tracing::warn!(source = %name, path = %path.display(), error = %e, "cannot read file; skipping it");
                    }
                    continue;
                }
            };
            let identity = (meta.dev(), meta.ino());
            seen.insert(identity);
            if let Some(f) = self.files.iter_mut().find(|f| f.identity == identity) {
                // The same file, maybe under a new name (rotated by rename).
                if f.path != *path {
                    tracing::info!(source = %name, from = %f.path.display(), to = %path.display(), "file renamed; still reading it");
                    f.path = path.clone();
                    if let Some(info) = self.streams.get_mut(&f.stream) {
                        info.path = path.clone();
                    }
                }
                f.released_at = None;
                if let Some(cp) = self.checkpoints.as_mut() {
                    cp.touch(f.fingerprint, now);
                }
                continue;
            }
            if self
                .finished
                .contains(&(identity.0, identity.1, meta.len()))
            {
                continue;
            }
            self.open(path, identity, meta.len());
        }
        self.waiting.retain(|id, _| seen.contains(id));
        self.metrics.waiting.set(self.waiting.len() as i64);
        for f in self.files.iter_mut() {
            if !seen.contains(&f.identity) && f.released_at.is_none() {
                f.released_at = Some(Instant::now());
            }
        }
        // An open file whose first bytes changed was truncated and rewritten.
        for i in (0..self.files.len()).rev() {
            let f = &self.files[i];
            let Reader::Plain(file) = &f.reader else {
                continue;
            };
            if f.provisional {
                continue;
            }
            let changed = match fingerprint::probe_file(file, self.cfg.fingerprint_bytes) {
                Ok(Probe::Ready { fingerprint, .. }) => fingerprint != f.fingerprint,
                // It had enough bytes to be fingerprinted; now it has fewer.
                Ok(Probe::TooShort { .. }) => true,
                Err(_) => false,
            };
            if changed {
                self.rewritten(i);
            }
        }
        self.metrics.open.set(self.files.len() as i64);
        self.first_scan = false;
    }

    /// Looks again at files that were too short to fingerprint.
    fn probe_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let waiting: Vec<((u64, u64), PathBuf)> =
            self.waiting.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (identity, path) in waiting {
            match std::fs::metadata(&path) {
                Ok(m) if (m.dev(), m.ino()) == identity => {
                    if m.len() >= self.cfg.fingerprint_bytes as u64 {
                        self.open(&path, identity, m.len());
                    }
                }
                // Gone or replaced: the next scan sorts it out.
                _ => {
                    self.waiting.remove(&identity);
                }
            }
        }
        self.metrics.waiting.set(self.waiting.len() as i64);
    }

    /// Starts reading a file not open yet (or notes it as too short).
    fn open(&mut self, path: &Path, listed: (u64, u64), _listed_len: u64) {
        let name = self.ctx.name.clone();
        let opened = File::open(path).and_then(|file| file.metadata().map(|m| (file, m)));
        let (file, meta) = match opened {
            Ok(p) => p,
            Err(e) => {
                if self.warn_once(format!("open:{}", path.display())) {
                    self.metrics.errors.inc();
                    tracing::warn!(source = %name, path = %path.display(), error = %e, "cannot open file; skipping it");
                }
                return;
            }
        };
        // The path may have been rotated between the listing and this open:
        // what counts is the file actually opened, not the one listed.
        let identity = (meta.dev(), meta.ino());
        let len = meta.len();
        if identity != listed
            && (self.files.iter().any(|f| f.identity == identity)
                || self.finished.contains(&(identity.0, identity.1, len)))
        {
            return;
        }
        let probe = match fingerprint::probe_file(&file, self.cfg.fingerprint_bytes) {
            Ok(p) => (file, p),
            Err(e) => {
                if self.warn_once(format!("open:{}", path.display())) {
                    self.metrics.errors.inc();
                    tracing::warn!(source = %name, path = %path.display(), error = %e, "cannot read file; skipping it");
                }
                return;
            }
        };
        let (file, fp, compressed, provisional) = match probe {
            (
                file,
                Probe::Ready {
                    fingerprint,
                    compressed,
                },
            ) => (file, fingerprint, compressed, false),
            (file, Probe::TooShort { compressed, .. }) if self.ctx.once => {
                let mut head = Vec::new();
                let _ = file.try_clone().and_then(|mut f| {
                    f.rewind()?;
                    f.read_to_end(&mut head)?;
                    f.rewind()
                });
                (
                    file,
                    fingerprint::hash(&head) ^ 0x5157_u64,
                    compressed,
                    true,
                )
            }
            (_, Probe::TooShort { len, .. }) => {
                if self.waiting.insert(identity, path.to_path_buf()).is_none() {
                    tracing::debug!(source = %name, path = %path.display(), bytes = len, "waiting for the file to reach fingerprint_bytes ({}) before reading it", self.cfg.fingerprint_bytes);
                }
                return;
            }
        };
        self.waiting.remove(&identity);
        if let Some(i) = self.files.iter().position(|f| f.fingerprint == fp) {
            // The same content under another inode: a copy. Follow it if the
            // file we were reading lost its content (copytruncate).
            let f = &self.files[i];
            let shrunk = match &f.reader {
                Reader::Plain(file) => file
                    .metadata()
                    .is_ok_and(|m| m.len() < f.framer.read_offset()),
                Reader::Gzip(_) => false,
            };
            if shrunk && !compressed && len >= self.files[i].framer.read_offset() {
                self.follow_copy(i, path, identity, file);
            }
            return;
        }
        let entry = self.checkpoints.as_ref().and_then(|c| c.get(fp)).cloned();
        if entry.as_ref().is_some_and(|e| e.done) {
            self.finished.insert((identity.0, identity.1, len));
            return;
        }
        let start = match (&entry, compressed) {
            (Some(e), _) => e.offset,
            (None, false) if self.first_scan && self.cfg.read_from == ReadFrom::End => len,
            (None, _) => 0,
        };
        let reader = if compressed {
            let mut dec = MultiGzDecoder::new(file);
            if start > 0
                && let Err(e) = io::copy(&mut (&mut dec).take(start), &mut io::sink())
            {
                tracing::warn!(source = %name, path = %path.display(), error = %e, "cannot skip to the checkpoint in a compressed file; skipping the file");
                return;
            }
            Reader::Gzip(Box::new(dec))
        } else {
            let mut file = file;
            if start > len {
                tracing::warn!(source = %name, path = %path.display(), checkpoint = start, size = len, "file is shorter than its checkpoint; reading it from the start");
            }
            let start = if start > len { 0 } else { start };
            if let Err(e) = file.seek(SeekFrom::Start(start)) {
                tracing::warn!(source = %name, path = %path.display(), error = %e, "cannot seek; skipping the file");
                return;
            }
            Reader::Plain(file)
        };
        let start = if !compressed && start > len { 0 } else { start };
        let stream = self.new_stream(fp, path, provisional, start);
        let why = if entry.is_some() {
            "checkpoint"
        } else {
            "start"
        };
        tracing::info!(source = %name, path = %path.display(), offset = start, from = why, "following file");
        let joiner = self.joiner();
        self.files.push(Tailed {
            path: path.to_path_buf(),
            reader,
            identity,
            fingerprint: fp,
            provisional,
            stream,
            framer: Framer::new(self.cfg.max_line_bytes.0 as usize, self.cfg.oversize, start),
            joiner,
            last_sent: start,
            last_data: Instant::now(),
            at_eof: false,
            released_at: None,
            done_sent: false,
        });
        self.metrics.open.set(self.files.len() as i64);
    }

    fn joiner(&self) -> Option<Joiner> {
        let m = self.cfg.multiline.as_ref()?;
        Joiner::new(m, self.cfg.max_line_bytes.0 as usize).ok()
    }

    /// Continues reading file `i` in its copy at `path`, from the same offset.
    fn follow_copy(&mut self, i: usize, path: &Path, identity: (u64, u64), mut file: File) {
        let f = &mut self.files[i];
        if file.seek(SeekFrom::Start(f.framer.read_offset())).is_err() {
            return;
        }
        tracing::info!(source = %self.ctx.name, from = %f.path.display(), to = %path.display(), offset = f.framer.read_offset(), "file was truncated after being copied; reading on in the copy");
        self.metrics.copies_followed.inc();
        f.reader = Reader::Plain(file);
        f.identity = identity;
        f.path = path.to_path_buf();
        f.at_eof = false;
        f.released_at = None;
        if let Some(info) = self.streams.get_mut(&f.stream) {
            info.path = path.to_path_buf();
        }
    }

    /// File `i` lost the content we were reading (truncated, or rewritten
    /// from the start). Look for a copy first (copytruncate); otherwise close
    /// it so that the next scan reads it again as a new file.
    fn rewritten(&mut self, i: usize) {
        let fp = self.files[i].fingerprint;
        let offset = self.files[i].framer.read_offset();
        let (paths, _) = self.globs.discover();
        for path in paths {
            // Opening a FIFO would block: regular files only.
            if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            let identity = (meta.dev(), meta.ino());
            if identity == self.files[i].identity || meta.len() < offset {
                continue;
            }
            if let Ok(Probe::Ready {
                fingerprint,
                compressed: false,
            }) = fingerprint::probe_file(&file, self.cfg.fingerprint_bytes)
                && fingerprint == fp
            {
                self.follow_copy(i, &path, identity, file);
                return;
            }
        }
        let f = self.files.remove(i);
        self.metrics.truncations.inc();
        tracing::warn!(source = %self.ctx.name, path = %f.path.display(), offset, "file was truncated; reading it again from the start");
        // Its bytes before the truncation that were not read are gone for
        // every reader; the new content is a new file with a new identity.
        self.metrics.open.set(self.files.len() as i64);
        let (path, identity) = (f.path.clone(), f.identity);
        drop(f);
        if let Ok(meta) = std::fs::metadata(&path) {
            self.open(&path, identity, meta.len());
        }
    }

    /// Reads what file `i` has, a batch per read; returns whether it had data.
    fn read_file(&mut self, i: usize) -> Result<bool, Closed> {
        let mut progressed = false;
        for _ in 0..READS_PER_ROUND {
            let f = &mut self.files[i];
            match f.framer.fill(&mut f.reader) {
                Ok(0) => f.at_eof = true,
                Ok(_) => {
                    f.at_eof = false;
                    f.last_data = Instant::now();
                    progressed = true;
                }
                Err(e) => {
                    let (path, name) = (f.path.display().to_string(), self.ctx.name.clone());
                    f.at_eof = true;
                    f.released_at.get_or_insert(Instant::now());
                    if self.warn_once(format!("read:{path}")) {
                        self.metrics.errors.inc();
                        tracing::warn!(source = %name, path, error = %e, "read failed; releasing the file");
                    }
                }
            }
            let f = &self.files[i];
            if f.at_eof
                && let Reader::Plain(file) = &f.reader
                && file
                    .metadata()
                    .is_ok_and(|m| m.len() < f.framer.read_offset())
            {
                self.rewritten(i);
                return Ok(true);
            }
            self.decode_lines(i);
            self.send(i)?;
            if self.files[i].at_eof {
                self.files[i].framer.shrink_if_idle();
                break;
            }
        }
        Ok(progressed)
    }

    /// Frames, joins and decodes what file `i` has buffered.
    fn decode_lines(&mut self, i: usize) {
        let now = now_nanos();
        let once = self.ctx.once;
        let f = &mut self.files[i];
        let mut start = f.framer.offset();
        while let Some(line) = f.framer.next_line() {
            let end = line.end_offset;
            match f.joiner.as_mut() {
                Some(j) => j.push(line, start, &mut self.joined),
                None => self.joined.push(line),
            }
            start = end;
        }
        if f.at_eof {
            let quiet = f.last_data.elapsed();
            let gone = f.released_at.is_some();
            if (once || gone || quiet >= self.cfg.line_timeout.0)
                && let Some(partial) = f.framer.take_partial()
            {
                match f.joiner.as_mut() {
                    Some(j) => j.push(partial, start, &mut self.joined),
                    None => self.joined.push(partial),
                }
            }
            if let Some(j) = f.joiner.as_mut()
                && (once || gone || quiet >= j.timeout)
            {
                self.joined.extend(j.flush());
            }
        }
        let file = (!self.files[i].provisional).then_some(self.files[i].fingerprint);
        for line in self.joined.drain(..) {
            self.lines.push_from(line, now, file, &mut self.events);
        }
    }

    /// Sends the decoded events of file `i` with an acknowledgement up to
    /// what they cover. Lines that produced no event (blank, dropped) still
    /// move the offset, so they are acknowledged like the others.
    fn send(&mut self, i: usize) -> Result<(), Closed> {
        let f = &mut self.files[i];
        let end = match f.joiner.as_ref().and_then(|j| j.pending_start()) {
            Some(held) => held,
            None => f.framer.offset(),
        };
        self.lines.publish(&mut f.framer.counts);
        // A compressed file read to its end is acknowledged once more at its
        // full length, even with nothing new, so its checkpoint says "done".
        let gz_complete = f.compressed()
            && f.at_eof
            && f.framer.pending() == 0
            && f.joiner
                .as_ref()
                .is_none_or(|j| j.pending_start().is_none());
        if gz_complete && let Some(info) = self.streams.get_mut(&f.stream) {
            info.complete_at = Some(end);
        }
        let announce_done = gz_complete && !f.done_sent;
        if self.events.is_empty() && end <= f.last_sent && !announce_done {
            return Ok(());
        }
        f.done_sent |= announce_done;
        f.last_sent = end;
        let token = self.tracker.sent(f.stream, end);
        let Some(tx) = self.ack_tx.clone() else {
            return Err(Closed);
        };
        flush(
            &self.ctx.output,
            &mut self.events,
            Some(Ack::new(token, tx)),
        )
    }

    /// Closes files whose name went away and that are read to the end
    /// (after `rotate_wait`), and compressed files read to the end.
    fn release_finished(&mut self) {
        let before = self.files.len();
        let name = &self.ctx.name;
        let wait = self.cfg.rotate_wait.0;
        let finished = &mut self.finished;
        self.files.retain(|f| {
            let idle = f.at_eof
                && f.framer.pending() == 0
                && f.joiner
                    .as_ref()
                    .is_none_or(|j| j.pending_start().is_none());
            let gone = f
                .released_at
                .is_some_and(|t| t.elapsed() >= wait && f.last_data.elapsed() >= wait);
            let gz_done = f.compressed() && idle;
            if idle && (gone || gz_done) {
                if gz_done
                    && let Reader::Gzip(d) = &f.reader
                    && let Ok(m) = d.get_ref().metadata()
                {
                    finished.insert((m.dev(), m.ino(), m.len()));
                }
                tracing::info!(source = %name, path = %f.path.display(), "released file");
                return false;
            }
            true
        });
        if self.files.len() != before {
            self.metrics.open.set(self.files.len() as i64);
        }
    }
}
