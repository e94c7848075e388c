//! The files a `file` source has open, keyed by [`FileId`]: for each, its
//! reader (plain or gzip), its framer and multiline joiner, and where it
//! stands (at its end, renamed away, a gzip file whose end was announced).
//! The set closes what is finished and keeps the `weir_files_open` gauge.
//!
//! It deliberately does not decide anything about paths: which file is new,
//! rotated, copied or rewritten is the scan's call (`scan.rs`), and this
//! module only carries out what the scan decided. Nor does it decode lines,
//! send batches, or know about acknowledgements and checkpoints beyond the
//! stream id each file carries (`progress.rs`).

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::ops::{Index, IndexMut};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;

use crate::ack::StreamId;
use crate::source::fingerprint::Fingerprint;
use crate::source::lines::{Framer, Line};
use crate::source::multiline::Joiner;
use crate::source::partial::{self, Reassembler};
use crate::telemetry::Gauge;

/// Which file a path leads to right now: its device and inode. Paths
/// change on rotation; this does not, as long as the file exists (after a
/// deletion the inode may be reused, which is why content fingerprints,
/// not `FileId`s, go into checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(super) fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A gzip file read to its end, by identity and (compressed) size: the
/// same file at the same size is not opened again during this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FinishedGzip {
    pub(super) id: FileId,
    pub(super) len: u64,
}

pub(super) enum Reader {
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

/// One open file.
pub(super) struct Tailed {
    pub(super) path: PathBuf,
    pub(super) reader: Reader,
    pub(super) id: FileId,
    pub(super) fingerprint: Fingerprint,
    /// Read in --once mode before it had a fingerprint: not checkpointed.
    pub(super) provisional: bool,
    pub(super) stream: StreamId,
    pub(super) framer: Framer,
    pub(super) joiner: Option<Joiner>,
    /// With `decode.container`: joins the partial records of the file.
    pub(super) reassembler: Option<Reassembler>,
    /// Offset carried by the last batch sent for this file.
    pub(super) last_sent: u64,
    pub(super) last_data: Instant,
    pub(super) at_eof: bool,
    /// Since when the path no longer leads to this file.
    pub(super) released_at: Option<Instant>,
    /// A compressed file's final acknowledgement was sent.
    pub(super) done_sent: bool,
}

impl Tailed {
    pub(super) fn compressed(&self) -> bool {
        matches!(self.reader, Reader::Gzip(_))
    }

    /// A plain file that is now shorter than what was read of it.
    pub(super) fn shrunk(&self) -> bool {
        match &self.reader {
            Reader::Plain(file) => file
                .metadata()
                .is_ok_and(|m| m.len() < self.framer.read_offset()),
            Reader::Gzip(_) => false,
        }
    }

    /// Whether the file at its end has new bytes but no longer starts with
    /// the bytes it is known by: truncated and written again past the old
    /// offset between two reads. Reading on would start mid-line; the
    /// caller treats it as rewritten instead. Checked before reading, with
    /// positional reads only.
    pub(super) fn replaced_since_eof(&self, fingerprint_bytes: usize) -> bool {
        if !self.at_eof || self.provisional {
            return false;
        }
        let Reader::Plain(file) = &self.reader else {
            return false;
        };
        if !file
            .metadata()
            .is_ok_and(|m| m.len() > self.framer.read_offset())
        {
            return false;
        }
        match crate::source::fingerprint::probe_plain(file, fingerprint_bytes) {
            Ok(crate::source::fingerprint::Probe::Ready { fingerprint, .. }) => {
                fingerprint != self.fingerprint
            }
            Ok(crate::source::fingerprint::Probe::TooShort { .. }) => true,
            Err(_) => false,
        }
    }

    /// At its end, with nothing buffered and no multiline event held back.
    pub(super) fn idle(&self) -> bool {
        self.at_eof
            && self.framer.pending() == 0
            && self
                .joiner
                .as_ref()
                .is_none_or(|j| j.pending_start().is_none())
            && self
                .reassembler
                .as_ref()
                .is_none_or(|r| r.pending_start().is_none())
    }

    /// Reads once into the framer; `Ok(true)` when data came. At the end of
    /// the file `at_eof` is set; after an error too, and the file is marked
    /// released (a scan that finds it at a path again unmarks it).
    pub(super) fn fill(&mut self) -> io::Result<bool> {
        match self.framer.fill(&mut self.reader) {
            Ok(0) => {
                self.at_eof = true;
                Ok(false)
            }
            Ok(_) => {
                self.at_eof = false;
                self.last_data = Instant::now();
                Ok(true)
            }
            Err(e) => {
                self.at_eof = true;
                self.released_at.get_or_insert(Instant::now());
                Err(e)
            }
        }
    }

    /// Moves the complete lines framed so far into `out`, through the
    /// reassembler of container records and the joiner if there are.
    /// At the end of the file, a last line without its newline and a
    /// multiline event being joined go too once they have waited long
    /// enough (at once in `--once` mode or when the file is released); a
    /// partial container line goes once its stream was quiet for
    /// `line_timeout` (at once, at the end, in those cases).
    pub(super) fn take_lines(&mut self, once: bool, line_timeout: Duration, out: &mut Vec<Line>) {
        let mut start = self.framer.offset();
        while let Some(line) = self.framer.next_line() {
            let end = line.end_offset;
            partial::feed(
                self.reassembler.as_mut(),
                self.joiner.as_mut(),
                line,
                start,
                &mut self.framer.counts,
                out,
            );
            start = end;
        }
        let gone = self.released_at.is_some();
        if self.at_eof {
            let quiet = self.last_data.elapsed();
            if (once || gone || quiet >= line_timeout)
                && let Some(partial) = self.framer.take_partial()
            {
                partial::feed(
                    self.reassembler.as_mut(),
                    self.joiner.as_mut(),
                    partial,
                    start,
                    &mut self.framer.counts,
                    out,
                );
            }
        }
        if self.reassembler.is_some() {
            let wait = if self.at_eof && (once || gone) {
                Duration::ZERO
            } else {
                line_timeout
            };
            partial::release(self.reassembler.as_mut(), self.joiner.as_mut(), wait, out);
        }
        if self.at_eof {
            let quiet = self.last_data.elapsed();
            if let Some(j) = self.joiner.as_mut()
                && (once || gone || quiet >= j.timeout)
            {
                out.extend(j.flush());
            }
        }
    }

    /// The offset a batch sent now covers: everything framed, except a
    /// multiline event or a partial container line still being joined.
    pub(super) fn batch_end(&self) -> u64 {
        let joining = self.joiner.as_ref().and_then(|j| j.pending_start());
        let partial = self.reassembler.as_ref().and_then(|r| r.pending_start());
        match (joining, partial) {
            (Some(a), Some(b)) => a.min(b),
            (Some(held), None) | (None, Some(held)) => held,
            (None, None) => self.framer.offset(),
        }
    }
}

/// The open files, in the order they were opened (which is the order they
/// are read in each round).
pub(super) struct TailedFiles {
    files: Vec<Tailed>,
    /// `weir_files_open`, kept equal to the number of files.
    open: Gauge,
}

impl Index<usize> for TailedFiles {
    type Output = Tailed;
    fn index(&self, i: usize) -> &Tailed {
        &self.files[i]
    }
}

impl IndexMut<usize> for TailedFiles {
    fn index_mut(&mut self, i: usize) -> &mut Tailed {
        &mut self.files[i]
    }
}

impl TailedFiles {
    pub(super) fn new(open: Gauge) -> TailedFiles {
        TailedFiles {
            files: Vec::new(),
            open,
        }
    }

    /// The file not read to its end yet that was modified longest ago
    /// (by path when the times are equal or unknown).
    pub(super) fn oldest_unread(&self) -> Option<usize> {
        self.iter()
            .enumerate()
            .filter(|(_, f)| !f.at_eof)
            .min_by_key(|(_, f)| {
                let modified = std::fs::metadata(&f.path).and_then(|m| m.modified()).ok();
                (modified, f.path.clone())
            })
            .map(|(i, _)| i)
    }

    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub(super) fn get(&self, i: usize) -> Option<&Tailed> {
        self.files.get(i)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Tailed> {
        self.files.iter()
    }

    /// The acknowledgement streams of the open files.
    pub(super) fn streams(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.files.iter().map(|f| f.stream)
    }

    pub(super) fn contains(&self, id: FileId) -> bool {
        self.files.iter().any(|f| f.id == id)
    }

    pub(super) fn by_id_mut(&mut self, id: FileId) -> Option<&mut Tailed> {
        self.files.iter_mut().find(|f| f.id == id)
    }

    /// Which open file has this content.
    pub(super) fn position_of(&self, fingerprint: Fingerprint) -> Option<usize> {
        self.files.iter().position(|f| f.fingerprint == fingerprint)
    }

    pub(super) fn add(&mut self, file: Tailed) {
        self.files.push(file);
        self.open.set(self.files.len() as i64);
    }

    pub(super) fn remove(&mut self, i: usize) -> Tailed {
        let f = self.files.remove(i);
        self.open.set(self.files.len() as i64);
        f
    }

    /// Closes every file (at shutdown).
    pub(super) fn clear(&mut self) {
        self.files.clear();
        self.open.set(0);
    }

    /// Notes the files that no path leads to any more (from the time of the
    /// first scan that missed them).
    pub(super) fn mark_unseen(&mut self, seen: &HashSet<FileId>) {
        for f in self.files.iter_mut() {
            if !seen.contains(&f.id) && f.released_at.is_none() {
                f.released_at = Some(Instant::now());
            }
        }
    }

    /// Closes files whose name went away and that are read to the end
    /// (after `rotate_wait`), and compressed files read to the end; returns
    /// the latter, so that they are not opened again.
    pub(super) fn release_finished(
        &mut self,
        rotate_wait: Duration,
        source: &str,
    ) -> Vec<FinishedGzip> {
        let before = self.files.len();
        let mut finished = Vec::new();
        self.files.retain(|f| {
            let idle = f.idle();
            let gone = f.released_at.is_some_and(|t| {
                t.elapsed() >= rotate_wait && f.last_data.elapsed() >= rotate_wait
            });
            let gz_done = f.compressed() && idle;
            if idle && (gone || gz_done) {
                if gz_done
                    && let Reader::Gzip(d) = &f.reader
                    && let Ok(m) = d.get_ref().metadata()
                {
                    finished.push(FinishedGzip {
                        id: FileId::of(&m),
                        len: m.len(),
                    });
                }
                tracing::info!(source = %source, path = %f.path.display(), "released file");
                return false;
            }
            true
        });
        if self.files.len() != before {
            self.open.set(self.files.len() as i64);
        }
        finished
    }
}
