//! The `file` source: tails the files that match `include` globs (minus
//! `exclude`), picking up new files and following appended data.
//!
//! Each open file is one acknowledgement stream: batches carry the byte offset
//! they reach, and the source learns from [`AckTracker`] how far each file has
//! been delivered. Files are told apart by device and inode while open; a path
//! that starts pointing at another file (rotation) makes the old file be read
//! to its end and released. A file that shrinks below the read offset was
//! truncated and is read again from the start.
//!
//! Not here yet: content fingerprints, checkpoints that survive restarts,
//! compressed files and multiline joining.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use super::lines::{Framer, Oversize};
use super::{DEFAULT_MAX_LINE_BYTES, LineDecoder, SourceContext, flush};
use crate::ack::{AckNotifier, AckTracker, StreamId};
use crate::config::units::{ByteSize, Dur};
use crate::decode::DecodeConfig;
use crate::decode::timestamp::now_nanos;
use crate::telemetry::{Counter, Gauge};
use crate::topology::fanout::Closed;

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
    /// Where to start in files found at startup; files that appear later are
    /// always read from their beginning.
    #[serde(default)]
    pub read_from: ReadFrom,
    #[serde(default = "default_glob_interval")]
    pub glob_interval: Dur,
    /// How long to sleep when no file had new data.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// How long a last line without its newline waits before it is emitted.
    #[serde(default = "default_line_timeout")]
    pub line_timeout: Dur,
    #[serde(default)]
    pub decode: DecodeConfig,
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    #[serde(default)]
    pub oversize: Oversize,
}

fn default_glob_interval() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_poll_interval() -> Dur {
    Dur(Duration::from_millis(100))
}
fn default_line_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_max_line() -> ByteSize {
    ByteSize(DEFAULT_MAX_LINE_BYTES)
}

/// A problem with one of the globs: which list, which entry, what.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobError {
    pub key: &'static str,
    pub index: usize,
    pub message: String,
}

/// The include / exclude globs of one source.
#[derive(Debug, Clone)]
pub struct Globs {
    include: Vec<(PathBuf, Option<usize>, globset::GlobMatcher)>,
    exclude: GlobSet,
}

fn glob(pattern: &str) -> Result<globset::Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

impl Globs {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Globs, GlobError> {
        if include.is_empty() {
            return Err(GlobError {
                key: "include",
                index: 0,
                message: "`include` is empty: list at least one glob, e.g. `./logs/*.log`".into(),
            });
        }
        let mut inc = Vec::new();
        for (index, pattern) in include.iter().enumerate() {
            let err = |message| GlobError {
                key: "include",
                index,
                message,
            };
            let matcher = glob(pattern).map_err(err)?.compile_matcher();
            let (base, depth) = split_base(pattern);
            inc.push((base, depth, matcher));
        }
        let mut ex = GlobSetBuilder::new();
        for (index, pattern) in exclude.iter().enumerate() {
            ex.add(glob(pattern).map_err(|message| GlobError {
                key: "exclude",
                index,
                message,
            })?);
        }
        let exclude = ex.build().map_err(|e| GlobError {
            key: "exclude",
            index: 0,
            message: e.to_string(),
        })?;
        Ok(Globs {
            include: inc,
            exclude,
        })
    }

    /// Paths of regular files (or links to them) that match now, sorted, and
    /// the directories that could not be listed.
    pub fn discover(&self) -> (Vec<PathBuf>, Vec<(PathBuf, std::io::Error)>) {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for (base, depth, matcher) in &self.include {
            walk(
                base,
                depth.unwrap_or(16),
                &mut |p| {
                    if matcher.is_match(p) && !self.exclude.is_match(p) {
                        found.push(p.to_path_buf());
                    }
                },
                &mut errors,
            );
        }
        found.sort();
        found.dedup();
        (found, errors)
    }
}

/// The directory a glob starts from, and how deep below it a match can be
/// (`None` with `**`).
fn split_base(pattern: &str) -> (PathBuf, Option<usize>) {
    let mut base = PathBuf::new();
    let mut comps = Path::new(pattern).components().peekable();
    while let Some(c) = comps.peek() {
        let s = c.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            break;
        }
        base.push(c);
        comps.next();
    }
    let rest: Vec<Component> = comps.collect();
    if rest.is_empty() {
        // A literal path: the file itself is the only match.
        let parent = base.parent().map(Path::to_path_buf).unwrap_or_default();
        return (parent, Some(1));
    }
    let deep = rest.iter().any(|c| c.as_os_str() == "**");
    (base, (!deep).then_some(rest.len()))
}

fn walk(
    dir: &Path,
    depth: usize,
    found: &mut dyn FnMut(&Path),
    errors: &mut Vec<(PathBuf, std::io::Error)>,
) {
    if depth == 0 {
        return;
    }
    let shown = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match std::fs::read_dir(shown) {
        Ok(e) => e,
        Err(e) => {
            errors.push((shown.to_path_buf(), e));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = dir.join(entry.file_name());
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&path, depth - 1, found, errors);
        } else {
            found(&path);
        }
    }
}

struct Tailed {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
    stream: StreamId,
    framer: Framer,
    /// Offset carried by the last batch sent for this file.
    last_sent: u64,
    last_data: Instant,
    at_eof: bool,
    /// The path no longer leads to this file: drain it, then release it.
    released_path: bool,
}

struct FileMetrics {
    open: Gauge,
    truncations: Counter,
    errors: Counter,
}

/// The state of one running file source.
struct Tailer {
    cfg: FileConfig,
    ctx: SourceContext,
    globs: Globs,
    lines: LineDecoder,
    metrics: FileMetrics,
    ack_tx: mpsc::Sender<crate::ack::AckToken>,
    tracker: AckTracker,
    files: Vec<Tailed>,
    next_stream: StreamId,
    /// Problems already reported, so each is logged once.
    warned: HashSet<String>,
    first_scan: bool,
    events: Vec<crate::event::Event>,
}

/// Reads per file per round, so that one busy file cannot starve the others.
const READS_PER_ROUND: usize = 8;

/// Runs the source on the calling thread until shutdown (or, with `--once`,
/// until every file found at startup has been read to its end).
pub fn run(cfg: FileConfig, ctx: SourceContext) -> Result<(), String> {
    let globs = Globs::new(&cfg.include, &cfg.exclude).map_err(|e| e.message)?;
    let lines = LineDecoder::new(&cfg.decode, &ctx)?;
    let src = [("source", ctx.name.as_str())];
    let metrics = FileMetrics {
        open: ctx
            .registry
            .gauge("weir_files_open", "Files currently open, by source.", &src),
        truncations: ctx.registry.counter(
            "weir_file_truncations_total",
            "Files that shrank below the read offset and were read again from the start.",
            &src,
        ),
        errors: ctx.registry.counter(
            "weir_file_errors_total",
            "Files or directories that could not be opened, listed or read.",
            &src,
        ),
    };
    let (ack_tx, ack_rx) = mpsc::channel();
    let mut t = Tailer {
        cfg,
        ctx,
        globs,
        lines,
        metrics,
        ack_tx,
        tracker: AckTracker::default(),
        files: Vec::new(),
        next_stream: 0,
        warned: HashSet::new(),
        first_scan: true,
        events: Vec::new(),
    };
    let mut next_scan = Instant::now();
    while !t.ctx.shutdown.is_triggered() {
        while let Ok(token) = ack_rx.try_recv() {
            t.tracker.acked(token);
        }
        if (t.first_scan || !t.ctx.once) && Instant::now() >= next_scan {
            t.scan();
            next_scan = Instant::now() + t.cfg.glob_interval.0;
        }
        let mut progressed = false;
        for i in 0..t.files.len() {
            match t.read_file(i) {
                Ok(p) => progressed |= p,
                Err(Closed) => return Ok(()),
            }
        }
        t.release_finished();
        if t.ctx.once && t.files.iter().all(|f| f.at_eof) {
            break;
        }
        if !progressed {
            std::thread::sleep(t.cfg.poll_interval.0.min(Duration::from_millis(250)));
        }
    }
    t.metrics.open.set(0);
    Ok(())
}

impl Tailer {
    fn warn_once(&mut self, key: String) -> bool {
        self.warned.insert(key)
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
        if paths.is_empty() && self.warn_once("no-match".into()) {
            tracing::warn!(source = %name, include = ?self.cfg.include, "no files match the include globs yet; will keep looking every {:?}", self.cfg.glob_interval.0);
        }
        let seen: HashSet<&PathBuf> = paths.iter().collect();
        for f in self.files.iter_mut() {
            if !seen.contains(&f.path) {
                f.released_path = true;
            }
        }
        for path in &paths {
            let meta = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) => {
                    if self.warn_once(format!("open:{}", path.display())) {
                        self.metrics.errors.inc();
                        tracing::warn!(source = %name, path = %path.display(), error = %e, "cannot read file; skipping it");
                    }
                    continue;
                }
            };
            if !meta.is_file() {
                continue;
            }
            let identity = (meta.dev(), meta.ino());
            if let Some(f) = self.files.iter_mut().find(|f| f.identity == identity) {
                // The same file, maybe under a new name (renamed by rotation).
                if f.path != *path && !f.released_path {
                    continue;
                }
                f.path = path.clone();
                f.released_path = false;
                continue;
            }
            for f in self.files.iter_mut().filter(|f| f.path == *path) {
                // The path now leads to a new file: the old one was rotated away.
                f.released_path = true;
            }
            let mut file = match File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    if self.warn_once(format!("open:{}", path.display())) {
                        self.metrics.errors.inc();
                        tracing::warn!(source = %name, path = %path.display(), error = %e, "cannot open file; skipping it");
                    }
                    continue;
                }
            };
            let mut start = if self.first_scan && self.cfg.read_from == ReadFrom::End {
                meta.len()
            } else {
                0
            };
            if start > 0
                && let Err(e) = file.seek(SeekFrom::Start(start))
            {
                tracing::warn!(source = %name, path = %path.display(), error = %e, "cannot seek; reading from the start");
                start = 0;
            }
            let stream = self.next_stream;
            self.next_stream += 1;
            self.tracker.open(stream, start);
            tracing::info!(source = %name, path = %path.display(), offset = start, "following file");
            self.files.push(Tailed {
                path: path.clone(),
                file,
                identity,
                stream,
                framer: Framer::new(self.cfg.max_line_bytes.0 as usize, self.cfg.oversize, start),
                last_sent: start,
                last_data: Instant::now(),
                at_eof: false,
                released_path: false,
            });
        }
        self.metrics.open.set(self.files.len() as i64);
        self.first_scan = false;
    }

    /// Reads what file `i` has, a batch per read; returns whether it had data.
    fn read_file(&mut self, i: usize) -> Result<bool, Closed> {
        let mut progressed = false;
        for _ in 0..READS_PER_ROUND {
            let f = &mut self.files[i];
            match f.framer.fill(&mut f.file) {
                Ok(0) => f.at_eof = true,
                Ok(_) => {
                    f.at_eof = false;
                    f.last_data = Instant::now();
                    progressed = true;
                }
                Err(e) => {
                    let (path, name) = (f.path.display().to_string(), self.ctx.name.clone());
                    f.at_eof = true;
                    f.released_path = true;
                    if self.warn_once(format!("read:{path}")) {
                        self.metrics.errors.inc();
                        tracing::warn!(source = %name, path, error = %e, "read failed; releasing the file");
                    }
                }
            }
            let f = &mut self.files[i];
            if f.at_eof && self.truncated(i) {
                progressed = true;
                continue;
            }
            let f = &mut self.files[i];
            let now = now_nanos();
            while let Some(line) = f.framer.next_line() {
                self.lines.push(line, now, &mut self.events);
            }
            let timed_out = f.last_data.elapsed() >= self.cfg.line_timeout.0;
            if f.at_eof
                && (self.ctx.once || f.released_path || timed_out)
                && let Some(line) = f.framer.take_partial()
            {
                self.lines.push(line, now, &mut self.events);
            }
            self.send(i)?;
            if self.files[i].at_eof {
                break;
            }
        }
        Ok(progressed)
    }

    /// Checks whether file `i` shrank below what was read; if so, starts over.
    fn truncated(&mut self, i: usize) -> bool {
        let f = &mut self.files[i];
        let Ok(meta) = f.file.metadata() else {
            return false;
        };
        if meta.len() >= f.framer.read_offset() {
            return false;
        }
        self.metrics.truncations.inc();
        tracing::warn!(source = %self.ctx.name, path = %f.path.display(), size = meta.len(), offset = f.framer.read_offset(), "file was truncated; reading it again from the start");
        let _ = f.file.seek(SeekFrom::Start(0));
        f.framer.reset(0);
        f.last_sent = 0;
        f.at_eof = false;
        // The bytes now at these offsets are new ones: a new stream.
        self.tracker.close(f.stream);
        f.stream = self.next_stream;
        self.next_stream += 1;
        self.tracker.open(f.stream, 0);
        true
    }

    /// Sends the decoded events of file `i` with an acknowledgement up to
    /// its current offset. Lines that produced no event (blank, dropped)
    /// still move the offset, so they are acknowledged like the others.
    fn send(&mut self, i: usize) -> Result<(), Closed> {
        let f = &mut self.files[i];
        let end = f.framer.offset();
        self.lines.publish(&mut f.framer.counts);
        if self.events.is_empty() && end <= f.last_sent {
            return Ok(());
        }
        f.last_sent = end;
        let token = self.tracker.sent(f.stream, end);
        let ack = Arc::new(AckNotifier::new(token, self.ack_tx.clone()));
        flush(&self.ctx.output, &mut self.events, Some(ack))
    }

    /// Closes files that were rotated away or deleted and are read to the end.
    fn release_finished(&mut self) {
        let before = self.files.len();
        let name = &self.ctx.name;
        self.files.retain(|f| {
            let done = f.released_path && f.at_eof && f.framer.pending() == 0;
            if done {
                tracing::info!(source = %name, path = %f.path.display(), "released file");
            }
            !done
        });
        if self.files.len() != before {
            self.metrics.open.set(self.files.len() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_start_from_their_literal_directory() {
        assert_eq!(
            split_base("./logs/*.log"),
            (PathBuf::from("./logs"), Some(1))
        );
        assert_eq!(
            split_base("/var/log/**/*.log"),
            (PathBuf::from("/var/log"), None)
        );
        assert_eq!(split_base("logs/app.log"), (PathBuf::from("logs"), Some(1)));
        assert_eq!(split_base("*.log"), (PathBuf::from(""), Some(1)));
    }

    #[test]
    fn discovers_matching_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        for f in ["a.log", "b.log", "c.txt", "skip.log", "sub/d.log"] {
            std::fs::write(d.join(f), "x\n").unwrap();
        }
        let include = vec![format!("{}/*.log", d.display())];
        let exclude = vec![format!("{}/skip*", d.display())];
        let (found, errors) = Globs::new(&include, &exclude).unwrap().discover();
        assert!(errors.is_empty());
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.log", "b.log"]);

        let deep = vec![format!("{}/**/*.log", d.display())];
        let (found, _) = Globs::new(&deep, &[]).unwrap().discover();
        assert_eq!(found.len(), 4);
    }

    #[test]
    fn bad_globs_name_their_entry() {
        let err = Globs::new(&["ok/*.log".into(), "bad/[.log".into()], &[]).unwrap_err();
        assert_eq!((err.key, err.index), ("include", 1));
        assert!(Globs::new(&[], &[]).is_err());
    }
}
