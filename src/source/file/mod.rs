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
//!
//! The parts, in the order a line meets them:
//!
//! - `discovery`: the globs, and the paths they match now;
//! - `watch`: inotify, a hint to look again sooner;
//! - `scan`: what those paths mean — a new file, a rotation, a copy, a
//!   rewrite, a file too short yet — and where to start reading;
//! - `tailed`: the open files, keyed by `FileId`, with
//!   their readers, framers and joiners, and when to close them;
//! - `progress`: acknowledgements, and the checkpoints they move;
//! - this module: the configuration, its check, and the loop that reads
//!   each open file in turn, decodes its lines and sends them in batches.

pub mod discovery;
mod progress;
mod scan;
mod tailed;
pub mod watch;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::lines::{Line, Oversize};
use super::multiline::MultilineConfig;
use super::{DEFAULT_MAX_LINE_BYTES, LineDecoder, SourceContext, flush};
use crate::component::{CheckCx, Kind, SourceKind, SourceSpec};
use crate::config::units::{ByteSize, Dur};
use crate::decode::DecodeConfig;
use crate::decode::timestamp::now_nanos;
use crate::event::Event;
use crate::fanout::Closed;
use crate::telemetry::{Counter, Gauge};
pub use discovery::Globs;
use progress::Progress;
use scan::Untailed;
use tailed::TailedFiles;

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
    /// How long to sleep when no file had new data and no event came; also
    /// the longest pause between rounds while files grow (at most 100 ms).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// How long a last line without its newline waits before it is emitted.
    #[serde(default = "default_line_timeout")]
    pub line_timeout: Dur,
    /// How many leading bytes identify a file.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// At most how often checkpoints are written as acknowledgements
    /// arrive (and always at shutdown).
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
    // Coalesced: acknowledgements arriving within it make one small atomic
    // write, on a thread of its own (a slow disk coalesces more). Short, so
    // that a `kill -9` sends again little more than what was really in
    // flight.
    Dur(Duration::from_millis(20))
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
/// line or two. Every round costs a look at every file (its length and
/// fingerprint) and a batch per file that grew: 100 files appended to at
/// 50,000 lines/s in all took 0.35 of a core with 20 ms rounds, 0.21 with
/// 100 ms (`cargo bench --bench tail`). What a `kill -9` sends again grows
/// with it: 1,400 lines per kill at 20,000 lines/s against 900
/// (`tests/delivery.rs`). A shorter `poll_interval` shortens it too: who
/// asks for quick polls wants quick rounds.
const MIN_ROUND: Duration = Duration::from_millis(100);

/// The file source's own metrics. `open` and `checkpoint_errors` are
/// handed to the parts that keep them (`tailed`, `progress`); they are
/// registered here with the others so that the exposition lists them in
/// the same order as ever.
struct FileMetrics {
    open: Gauge,
    waiting: Gauge,
    truncations: Counter,
    copies_followed: Counter,
    errors: Counter,
    checkpoint_errors: Counter,
    checkpoint_lag: Gauge,
    not_a_file: Counter,
}

impl FileMetrics {
    fn new(ctx: &SourceContext) -> FileMetrics {
        let src = [("source", ctx.name.as_str())];
        let r = &ctx.registry;
        FileMetrics {
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
            checkpoint_lag: r.gauge(
                "weir_checkpoint_lag_bytes",
                "Bytes read and sent that not every sink has delivered (or written to its disk buffer) yet: how far the checkpoints are behind reading.",
                &src,
            ),
            not_a_file: r.counter(
                "weir_files_skipped_total",
                "Paths matching the include globs that are not read, by reason (not_a_file: a directory, FIFO, socket or device), each counted once.",
                &[("source", ctx.name.as_str()), ("reason", "not_a_file")],
            ),
        }
    }
}

/// Lines on their way from a file to a batch: the decoder, and the buffers
/// it reuses from one read to the next.
struct Batcher {
    lines: LineDecoder,
    joined: Vec<Line>,
    events: Vec<Event>,
}

/// The state of one running file source.
struct Tailer {
    cfg: FileConfig,
    ctx: SourceContext,
    globs: Globs,
    metrics: FileMetrics,
    /// The files being read.
    files: TailedFiles,
    /// Files found but not read: too short yet, or gzip files read already.
    untailed: Untailed,
    /// Acknowledgements and checkpoints.
    progress: Progress,
    batcher: Batcher,
    /// Problems already reported, so each is logged once.
    warned: HashSet<String>,
    first_scan: bool,
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

    /// The sizes of the files that match now (compressed sizes for gzip
    /// files, which read as more).
    fn replay_bytes(&self) -> Option<u64> {
        let (paths, _) = self.globs.discover();
        Some(
            paths
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum(),
        )
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<Arc<dyn SourceSpec>> {
    if super::misplaced_container(cx) {
        return None;
    }
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
            cx.report(e);
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
    let metrics = FileMetrics::new(&ctx);
    let mut progress = Progress::start(
        &cfg,
        &ctx,
        metrics.checkpoint_errors.clone(),
        metrics.checkpoint_lag.clone(),
    );
    let mut wake = watch::Wakeup::new();
    progress.wake_with(wake.waker());
    let mut t = Tailer {
        files: TailedFiles::new(metrics.open.clone()),
        untailed: Untailed::default(),
        progress,
        batcher: Batcher {
            lines,
            joined: Vec::new(),
            events: Vec::new(),
        },
        cfg,
        ctx,
        globs,
        metrics,
        warned: HashSet::new(),
        first_scan: true,
    };
    let mut next_scan = Instant::now();
    let mut round_start = Instant::now();
    while !t.ctx.shutdown.is_triggered() {
        t.progress.settle_reported();
        t.progress.maybe_checkpoint(false, t.files.streams());
        if (t.first_scan || !t.ctx.once) && Instant::now() >= next_scan {
            for (dir, recursive) in t.globs.watch_dirs() {
                wake.watch(&dir, recursive);
            }
            t.scan();
            next_scan = Instant::now() + t.cfg.glob_interval.0;
        }
        t.probe_waiting();
        let (mut progressed, mut backlog) = (false, false);
        // A replay reads one file at a time, the oldest first, so that
        // rotated generations come in time order (the back-test counts
        // lines on their own time); live, every file gets its share.
        let only = t.ctx.once.then(|| t.files.oldest_unread()).flatten();
        let mut i = 0;
        while i < t.files.len() {
            if only.is_some_and(|o| o != i) {
                i += 1;
                continue;
            }
            match t.read_file(i) {
                Ok(p) => {
                    progressed |= p;
                    backlog |= p && !t.files.get(i).is_none_or(|f| f.at_eof);
                }
                Err(Closed) => return t.finish(),
            }
            i += 1;
        }
        let finished = t.files.release_finished(t.cfg.rotate_wait.0, &t.ctx.name);
        t.untailed.finished.extend(finished);
        if t.ctx.once {
            if t.files.iter().all(|f| f.at_eof) {
                break;
            }
            continue;
        }
        if progressed {
            // Busy: the next round comes soon whatever happens, so events
            // would only cost (see `watch`).
            wake.pause();
        } else if wake.resume() {
            // Back to waiting: first look for what happened unheard.
            next_scan = Instant::now();
            round_start = Instant::now();
            continue;
        }
        if progressed && !backlog {
            // Writers append a little at a time: let it gather for a moment
            // rather than making a tiny batch per file per append (while
            // checkpointing what the sinks acknowledge meanwhile).
            let pause = t.min_round().saturating_sub(round_start.elapsed());
            t.progress.pause(pause, t.files.streams());
        } else if !progressed && let Some(hint) = wake.wait(t.idle_wait()) {
            if hint.rescan {
                next_scan = Instant::now();
            }
            let pause = t.min_round().saturating_sub(round_start.elapsed());
            t.progress.pause(pause, t.files.streams());
        }
        round_start = Instant::now();
    }
    t.finish()
}

impl Tailer {
    /// How far apart rounds are at least, unless a file has a backlog.
    fn min_round(&self) -> Duration {
        MIN_ROUND.min(self.cfg.poll_interval.0)
    }

    /// How long an idle round waits for news: `poll_interval`, or less
    /// while acknowledgements are due, so that checkpoints follow them.
    fn idle_wait(&self) -> Duration {
        let poll = self.cfg.poll_interval.0;
        if self.progress.awaiting() {
            poll.min(self.cfg.checkpoint_interval.0)
        } else {
            poll
        }
    }

    fn warn_once(&mut self, key: String) -> bool {
        self.warned.insert(key)
    }

    /// Reads what file `i` has, a batch per read; returns whether it had data.
    fn read_file(&mut self, i: usize) -> Result<bool, Closed> {
        let mut progressed = false;
        if self.files[i].replaced_since_eof(self.cfg.fingerprint_bytes) {
            self.rewritten(i);
            return Ok(true);
        }
        for _ in 0..READS_PER_ROUND {
            match self.files[i].fill() {
                Ok(data) => progressed |= data,
                Err(e) => {
                    let path = self.files[i].path.display().to_string();
                    if self.warn_once(format!("read:{path}")) {
                        self.metrics.errors.inc();
                        tracing::warn!(source = %self.ctx.name, path, error = %e, "read failed; the file is read again while its path still leads to it (this is logged once)");
                    }
                }
            }
            let f = &self.files[i];
            if f.at_eof && f.shrunk() {
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
        let b = &mut self.batcher;
        let f = &mut self.files[i];
        f.take_lines(self.ctx.once, self.cfg.line_timeout.0, &mut b.joined);
        let file = (!f.provisional).then_some(f.fingerprint);
        for line in b.joined.drain(..) {
            b.lines.push_from(line, now, file, &mut b.events);
        }
    }

    /// Sends the decoded events of file `i` with an acknowledgement up to
    /// what they cover. Lines that produced no event (blank, dropped) still
    /// move the offset, so they are acknowledged like the others.
    fn send(&mut self, i: usize) -> Result<(), Closed> {
        let b = &mut self.batcher;
        let f = &mut self.files[i];
        let end = f.batch_end();
        b.lines.publish(&mut f.framer.counts);
        // A compressed file read to its end is acknowledged once more at its
        // full length, even with nothing new, so its checkpoint says "done".
        let gz_complete = f.compressed() && f.idle();
        if gz_complete {
            self.progress.complete_at(f.stream, end);
        }
        let announce_done = gz_complete && !f.done_sent;
        if b.events.is_empty() && end <= f.last_sent && !announce_done {
            return Ok(());
        }
        f.done_sent |= announce_done;
        f.last_sent = end;
        let ack = self.progress.ack(f.stream, end)?;
        flush(&self.ctx.output, &mut b.events, Some(ack))
    }

    /// Stops sending, closes the files, and lets `progress` wait for the
    /// sinks to settle what was sent and write the final checkpoints.
    fn finish(mut self) -> Result<(), String> {
        // Nothing more is sent: sinks deliver what they hold, and report.
        self.ctx.output.close();
        self.files.clear();
        self.progress.finish(&self.ctx.shutdown);
        Ok(())
    }
}
