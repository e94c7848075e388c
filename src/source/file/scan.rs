//! What the paths the globs list mean for the files being read: which file
//! is new (and where to start in it), which was renamed (rotation), which is
//! a copy of one whose content was truncated away (copytruncate), which was
//! rewritten from the start, which is too short to fingerprint yet, and
//! which is a gzip file already read to its end.
//!
//! It deliberately does not walk directories or match globs (that is
//! `discovery.rs`), hold the open files (`tailed.rs`) or keep offsets and
//! checkpoints (`progress.rs`): it looks at paths and file contents, then
//! tells those parts what to do.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::read::MultiGzDecoder;

use super::progress::unix_now;
use super::tailed::{FileId, FinishedGzip, Reader, Tailed};
use super::{ReadFrom, Tailer, discovery};
use crate::source::fingerprint::{self, Probe};
use crate::source::lines::Framer;
use crate::source::multiline::Joiner;
use crate::source::partial::Reassembler;

/// What the scans remember of files they found but that are not open.
#[derive(Default)]
pub(super) struct Untailed {
    /// Files too short to fingerprint yet, and where they were found.
    pub(super) waiting: HashMap<FileId, PathBuf>,
    /// gzip files read to the end.
    pub(super) finished: HashSet<FinishedGzip>,
}

impl Tailer {
    /// Looks for new files, and for paths that now lead elsewhere.
    pub(super) fn scan(&mut self) {
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
        let mut seen: HashSet<FileId> = HashSet::new();
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
            let id = FileId::of(&meta);
            seen.insert(id);
            if let Some(f) = self.files.by_id_mut(id) {
                // The same file, maybe under a new name (rotated by rename).
                if f.path != *path {
                    tracing::info!(source = %name, from = %f.path.display(), to = %path.display(), "file renamed; still reading it");
                    f.path = path.clone();
                    self.progress.moved(f.stream, path);
                }
                f.released_at = None;
                self.progress.seen(f.fingerprint, now);
                continue;
            }
            let finished = FinishedGzip {
                id,
                len: meta.len(),
            };
            if self.untailed.finished.contains(&finished) {
                continue;
            }
            self.open(path, id);
        }
        self.untailed.waiting.retain(|id, _| seen.contains(id));
        self.metrics.waiting.set(self.untailed.waiting.len() as i64);
        self.files.mark_unseen(&seen);
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
        self.first_scan = false;
    }

    /// Looks again at files that were too short to fingerprint.
    pub(super) fn probe_waiting(&mut self) {
        if self.untailed.waiting.is_empty() {
            return;
        }
        let waiting: Vec<(FileId, PathBuf)> = self
            .untailed
            .waiting
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (id, path) in waiting {
            match std::fs::metadata(&path) {
                Ok(m) if FileId::of(&m) == id => {
                    if m.len() >= self.cfg.fingerprint_bytes as u64 {
                        self.open(&path, id);
                    }
                }
                // Gone or replaced: the next scan sorts it out.
                _ => {
                    self.untailed.waiting.remove(&id);
                }
            }
        }
        self.metrics.waiting.set(self.untailed.waiting.len() as i64);
    }

    /// Starts reading a file not open yet (or notes it as too short), found
    /// at `path` as `listed`.
    fn open(&mut self, path: &Path, listed: FileId) {
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
        let id = FileId::of(&meta);
        let len = meta.len();
        if id != listed
            && (self.files.contains(id)
                || self.untailed.finished.contains(&FinishedGzip { id, len }))
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
                if self
                    .untailed
                    .waiting
                    .insert(id, path.to_path_buf())
                    .is_none()
                {
                    tracing::debug!(source = %name, path = %path.display(), bytes = len, "waiting for the file to reach fingerprint_bytes ({}) before reading it", self.cfg.fingerprint_bytes);
                }
                return;
            }
        };
        self.untailed.waiting.remove(&id);
        if let Some(i) = self.files.position_of(fp) {
            // The same content under another inode: a copy. Follow it if the
            // file we were reading lost its content (copytruncate).
            if self.files[i].shrunk() && !compressed && len >= self.files[i].framer.read_offset() {
                self.follow_copy(i, path, id, file);
            }
            return;
        }
        let entry = self.progress.resume_point(fp);
        if entry.as_ref().is_some_and(|e| e.done) {
            self.untailed.finished.insert(FinishedGzip { id, len });
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
        let stream = self.progress.open_stream(fp, path, provisional, start);
        let why = if entry.is_some() {
            "checkpoint"
        } else {
            "start"
        };
        tracing::info!(source = %name, path = %path.display(), offset = start, from = why, "following file");
        let joiner = self.joiner();
        self.files.add(Tailed {
            path: path.to_path_buf(),
            reader,
            id,
            fingerprint: fp,
            provisional,
            stream,
            framer: Framer::new(self.cfg.max_line_bytes.0 as usize, self.cfg.oversize, start),
            joiner,
            reassembler: self.cfg.decode.container.map(|format| {
                Reassembler::new(
                    format,
                    self.cfg.max_line_bytes.0 as usize,
                    self.cfg.oversize,
                )
            }),
            last_sent: start,
            last_data: Instant::now(),
            at_eof: false,
            released_at: None,
            done_sent: false,
        });
    }

    fn joiner(&self) -> Option<Joiner> {
        let m = self.cfg.multiline.as_ref()?;
        Joiner::new(m, self.cfg.max_line_bytes.0 as usize).ok()
    }

    /// Continues reading file `i` in its copy at `path`, from the same offset.
    fn follow_copy(&mut self, i: usize, path: &Path, id: FileId, mut file: File) {
        let f = &mut self.files[i];
        if file.seek(SeekFrom::Start(f.framer.read_offset())).is_err() {
            return;
        }
        tracing::info!(source = %self.ctx.name, from = %f.path.display(), to = %path.display(), offset = f.framer.read_offset(), "file was truncated after being copied; reading on in the copy");
        self.metrics.copies_followed.inc();
        f.reader = Reader::Plain(file);
        f.id = id;
        f.path = path.to_path_buf();
        f.at_eof = false;
        f.released_at = None;
        self.progress.moved(f.stream, path);
    }

    /// File `i` lost the content we were reading (truncated, or rewritten
    /// from the start). Look for a copy first (copytruncate); otherwise close
    /// it so that the next scan reads it again as a new file.
    pub(super) fn rewritten(&mut self, i: usize) {
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
            let id = FileId::of(&meta);
            if id == self.files[i].id || meta.len() < offset {
                continue;
            }
            if let Ok(Probe::Ready {
                fingerprint,
                compressed: false,
            }) = fingerprint::probe_file(&file, self.cfg.fingerprint_bytes)
                && fingerprint == fp
            {
                self.follow_copy(i, &path, id, file);
                return;
            }
        }
        let f = self.files.remove(i);
        self.metrics.truncations.inc();
        tracing::warn!(source = %self.ctx.name, path = %f.path.display(), offset, "file was truncated; reading it again from the start");
        // Its bytes before the truncation that were not read are gone for
        // every reader; the new content is a new file with a new identity.
        let (path, id) = (f.path.clone(), f.id);
        drop(f);
        if std::fs::metadata(&path).is_ok() {
            self.open(&path, id);
        }
    }
}
