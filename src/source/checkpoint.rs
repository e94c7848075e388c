//! Checkpoints: how far each file has been delivered, kept across restarts.
//!
//! One JSON file per source under `<data_dir>/checkpoints/`, keyed by file
//! fingerprint (not path, not inode: both are reused). It holds offsets that
//! every sink has acknowledged, so a restart resumes there and at worst sends
//! again what was in flight (at-least-once). Writes are atomic: a temporary
//! file is written and fsynced, then renamed over the old one and the
//! directory fsynced, so a `kill -9` or a crash leaves either the old or the
//! new checkpoint, never half of one.
//!
//! A checkpoint file that cannot be read is reported, moved aside as
//! `*.corrupt`, and the source starts from `read_from` — it never panics.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use crate::telemetry::Counter;

const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Hex of the fingerprint.
    pub fingerprint: String,
    /// Bytes (decompressed, for gzip files) delivered from the start of the file.
    pub offset: u64,
    /// A compressed file read to its end: never read again.
    #[serde(default)]
    pub done: bool,
    /// Where the file was last seen; for people reading this file.
    pub path: String,
    /// Unix seconds when the file was last seen.
    pub seen: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    fingerprint_bytes: usize,
    /// Counts snapshots, so the newer of the two files can be told.
    #[serde(default)]
    generation: u64,
    files: Vec<Entry>,
}

/// The checkpoints of one source.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    fingerprint_bytes: usize,
    entries: HashMap<Fingerprint, Entry>,
    dirty: bool,
    generation: u64,
}

/// How long an entry for a file that is no longer seen is kept.
const RETENTION_SECS: i64 = 7 * 86_400;

impl Checkpoints {
    /// The checkpoint file of source `name` under `data_dir`.
    pub fn file_for(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("checkpoints").join(format!("{name}.json"))
    }

    /// The fsynced copy beside the checkpoint file at `path`: `path` is
    /// replaced as acknowledgements arrive (a rename, no fsync: what a
    /// `kill -9` leaves is always current), the copy is fsynced at most
    /// every second and at the end (what a power cut cannot take away).
    pub fn synced_path(path: &Path) -> PathBuf {
        path.with_extension("synced.json")
    }

    /// Loads the checkpoints from the newer (by generation) of the file and
    /// its fsynced copy that reads well; a problem is returned as a warning
    /// to log. A damaged file is moved aside; a damaged copy is ignored.
    pub fn load(path: PathBuf, fingerprint_bytes: usize) -> (Checkpoints, Option<String>) {
        let mut cp = Checkpoints {
            path,
            fingerprint_bytes,
            entries: HashMap::new(),
            dirty: false,
            generation: 0,
        };
        let main = read_file(&cp.path, fingerprint_bytes);
        let copy = read_file(&Self::synced_path(&cp.path), fingerprint_bytes);
        let mut warning = None;
        let mut best: Option<OnDisk> = None;
        match main {
            Read::Missing => {}
            Read::Good(d) => best = Some(d),
            Read::Unreadable(w) => warning = Some(w),
            Read::Bad(w) => {
                let aside = cp.path.with_extension("json.corrupt");
                let moved = std::fs::rename(&cp.path, &aside).is_ok();
                warning = Some(if moved {
                    format!("{w}; moved it to {}", aside.display())
                } else {
                    w
                });
            }
        }
        if let Read::Good(c) = copy
            && best.as_ref().is_none_or(|b| c.generation > b.generation)
        {
            best = Some(c);
        }
        match (&mut warning, &best) {
            (Some(w), Some(_)) => w.push_str("; resuming from its fsynced copy beside it"),
            (Some(w), None) => w.push_str("; starting from read_from"),
            _ => {}
        }
        if let Some(d) = best {
            cp.generation = d.generation;
            for e in d.files {
                if let Ok(fp) = u64::from_str_radix(&e.fingerprint, 16) {
                    cp.entries.insert(fp, e);
                }
            }
        }
        (cp, warning)
    }

    pub fn get(&self, fp: Fingerprint) -> Option<&Entry> {
        self.entries.get(&fp)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a delivered offset.
    pub fn set(&mut self, fp: Fingerprint, offset: u64, path: &Path, done: bool, now: i64) {
        let entry = Entry {
            fingerprint: format!("{fp:016x}"),
            offset,
            done,
            path: path.display().to_string(),
            seen: now,
        };
        if self.entries.get(&fp) != Some(&entry) {
            self.entries.insert(fp, entry);
            self.dirty = true;
        }
    }

    /// Notes that a file is still there (keeps its entry from expiring).
    pub fn touch(&mut self, fp: Fingerprint, now: i64) {
        if let Some(e) = self.entries.get_mut(&fp)
            && now - e.seen > 3600
        {
            e.seen = now;
            self.dirty = true;
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the checkpoints if they changed (temp file, fsync, rename, fsync dir).
    pub fn save(&mut self, now: i64) -> std::io::Result<()> {
        match self.snapshot(now) {
            Some(bytes) => write_atomic(&self.path, &bytes),
            None => Ok(()),
        }
    }

    /// The checkpoint file's new contents if they changed since the last
    /// call (which counts them as saved: hand them to a [`Saver`]).
    pub fn snapshot(&mut self, now: i64) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        self.entries.retain(|_, e| now - e.seen <= RETENTION_SECS);
        let mut files: Vec<Entry> = self.entries.values().cloned().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path).then(a.fingerprint.cmp(&b.fingerprint)));
        self.generation += 1;
        let disk = OnDisk {
            version: VERSION,
            fingerprint_bytes: self.fingerprint_bytes,
            generation: self.generation,
            files,
        };
        self.dirty = false;
        Some(serde_json::to_vec_pretty(&disk).expect("checkpoints serialize"))
    }

    /// A save failed: the next [`Checkpoints::snapshot`] tries again.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What reading one checkpoint file gave.
enum Read {
    Missing,
    Good(OnDisk),
    /// It could not be read at all (permissions, I/O).
    Unreadable(String),
    /// It reads, but is damaged or of another kind.
    Bad(String),
}

fn read_file(path: &Path, fingerprint_bytes: usize) -> Read {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Missing,
        Err(e) => {
            return Read::Unreadable(format!(
                "cannot read checkpoint file {}: {e}",
                path.display()
            ));
        }
    };
    match serde_json::from_slice::<OnDisk>(&text) {
        Ok(d) if d.version != VERSION => Read::Bad(format!(
            "checkpoint file {} has version {}, this weir reads {VERSION}",
            path.display(),
            d.version
        )),
        Ok(d) if d.fingerprint_bytes != fingerprint_bytes => Read::Bad(format!(
            "checkpoint file {} was written with fingerprint_bytes {}, the source now uses {fingerprint_bytes}: files cannot be matched",
            path.display(),
            d.fingerprint_bytes
        )),
        Ok(d) => Read::Good(d),
        Err(e) => Read::Bad(format!(
            "checkpoint file {} is corrupt ({e})",
            path.display()
        )),
    }
}

/// Writes one source's checkpoint file on a thread of its own, so that a
/// slow fsync never holds up reading. What is handed over replaces what
/// is still waiting (only the newest checkpoints matter), so writes
/// coalesce by themselves when the disk is slower than the
/// acknowledgements. A write that fails is tried again, every second,
/// until it works or newer checkpoints come.
pub struct Saver {
    shared: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Slot {
    next: Option<Vec<u8>>,
    closed: bool,
}

impl Saver {
    /// Starts the writer of `path`; failures are counted in `errors` and
    /// logged (once until a write works again) for `source`.
    /// `durable`: each write is fsynced (and the directory); otherwise the
    /// file is only replaced by a rename, which a `kill -9` cannot tear.
    pub fn start(
        path: PathBuf,
        durable: bool,
        source: String,
        errors: Counter,
    ) -> std::io::Result<Saver> {
        let shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("{source}-checkpoints"))
            .spawn(move || save_loop(&path, durable, &source, &errors, &theirs))?;
        Ok(Saver {
            shared,
            thread: Some(thread),
        })
    }

    /// Writes `bytes` as soon as the thread can, instead of anything
    /// handed over before and not yet written.
    pub fn submit(&self, bytes: Vec<u8>) {
        let (slot, cv) = &*self.shared;
        slot.lock().unwrap_or_else(|e| e.into_inner()).next = Some(bytes);
        cv.notify_one();
    }

    /// Writes what is still waiting and stops the thread.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        let (slot, cv) = &*self.shared;
        slot.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Saver {
    /// Writes what is waiting before letting go: a dropped saver must not
    /// silently lose the last checkpoints.
    fn drop(&mut self) {
        self.close();
    }
}

fn save_loop(
    path: &Path,
    durable: bool,
    source: &str,
    errors: &Counter,
    shared: &(Mutex<Slot>, Condvar),
) {
    let (slot, cv) = shared;
    let mut failing = false;
    loop {
        let (bytes, closed) = {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            while s.next.is_none() && !s.closed {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            (s.next.take(), s.closed)
        };
        let Some(bytes) = bytes else { return };
        let written = if durable {
            write_atomic(path, &bytes)
        } else {
            replace(path, &bytes)
        };
        match written {
            Ok(()) => {
                if failing {
                    tracing::info!(source, "checkpoints are written again");
                }
                failing = false;
            }
            Err(e) => {
                errors.inc();
                if !failing {
                    tracing::error!(source, error = %e, "cannot write checkpoints; will retry (a restart would read again from the last saved ones)");
                }
                failing = true;
                if closed {
                    return;
                }
                // Keep them unless newer ones came meanwhile; retry soon.
                let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
                if s.next.is_none() {
                    s.next = Some(bytes);
                }
                let _ = cv.wait_timeout(s, std::time::Duration::from_secs(1));
            }
        }
    }
}

/// Replaces `path` with `bytes` through a temporary file and a rename: a
/// crash of the process leaves the old file or the new one. No fsync, so
/// cheap; a power cut may leave either, or a damaged file.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, bytes) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e);
        }
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(&tmp, bytes)?;
    }
    std::fs::rename(&tmp, path)
}

/// Writes `bytes` and a newline to `path` so that a crash leaves the old
/// file or the new one, never a mix: a temporary file beside it, fsync,
/// rename, fsync of the directory. Also used for the alert state.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = Checkpoints::file_for(dir.path(), "app");
        let (mut cp, w) = Checkpoints::load(path.clone(), 256);
        assert!(w.is_none());
        cp.set(0xabc, 42, Path::new("logs/a.log"), false, 1000);
        cp.set(0xdef, 7, Path::new("logs/b.log.gz"), true, 1000);
        cp.save(1000).unwrap();
        let (cp2, w) = Checkpoints::load(path, 256);
        assert!(w.is_none(), "{w:?}");
        assert_eq!(cp2.get(0xabc).unwrap().offset, 42);
        assert!(cp2.get(0xdef).unwrap().done);
    }

    #[test]
    fn corrupt_file_is_reported_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = Checkpoints::file_for(dir.path(), "app");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"version\": 1, \"files\": [tru").unwrap();
        let (cp, w) = Checkpoints::load(path.clone(), 256);
        assert!(cp.is_empty());
        let w = w.unwrap();
        assert!(w.contains("is corrupt"), "{w}");
        assert!(w.contains("starting from read_from"), "{w}");
        assert!(path.with_extension("json.corrupt").exists());
        assert!(!path.exists());
    }

    #[test]
    fn the_newer_of_the_file_and_its_fsynced_copy_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = Checkpoints::file_for(dir.path(), "app");
        let copy = Checkpoints::synced_path(&path);
        let (mut cp, _) = Checkpoints::load(path.clone(), 256);
        cp.set(0xabc, 10, Path::new("a.log"), false, 1000);
        write_atomic(&copy, &cp.snapshot(1000).unwrap()).unwrap();
        cp.set(0xabc, 20, Path::new("a.log"), false, 1000);
        replace(&path, &cp.snapshot(1000).unwrap()).unwrap();
        let (back, w) = Checkpoints::load(path.clone(), 256);
        assert!(w.is_none());
        assert_eq!(back.get(0xabc).unwrap().offset, 20, "the file is newer");

        // A copy newer than the file (a failed replace).
        let (mut cp, _) = Checkpoints::load(path.clone(), 256);
        cp.set(0xabc, 30, Path::new("a.log"), false, 1000);
        write_atomic(&copy, &cp.snapshot(1000).unwrap()).unwrap();
        assert_eq!(
            Checkpoints::load(path.clone(), 256)
                .0
                .get(0xabc)
                .unwrap()
                .offset,
            30
        );

        // A damaged file (a power cut): reported, moved aside, the copy used.
        std::fs::write(&path, "{garbage").unwrap();
        let (back, w) = Checkpoints::load(path.clone(), 256);
        let w = w.unwrap();
        assert!(
            w.contains("is corrupt") && w.contains("resuming from its fsynced copy"),
            "{w}"
        );
        assert_eq!(back.get(0xabc).unwrap().offset, 30);
        // A damaged copy is only ignored.
        std::fs::write(&copy, "\0\0").unwrap();
        write_atomic(
            &path,
            b"{\"version\": 1, \"fingerprint_bytes\": 256, \"files\": []}",
        )
        .unwrap();
        let (back, w) = Checkpoints::load(path, 256);
        assert!(w.is_none() && back.is_empty(), "{w:?}");
    }

    #[test]
    fn a_different_fingerprint_length_is_not_silently_mixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = Checkpoints::file_for(dir.path(), "app");
        let (mut cp, _) = Checkpoints::load(path.clone(), 256);
        cp.set(1, 1, Path::new("a"), false, 0);
        cp.save(0).unwrap();
        let (cp, w) = Checkpoints::load(path, 64);
        assert!(cp.is_empty());
        assert!(w.unwrap().contains("fingerprint_bytes 256"));
    }

    #[test]
    fn old_entries_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = Checkpoints::file_for(dir.path(), "app");
        let (mut cp, _) = Checkpoints::load(path, 256);
        cp.set(1, 1, Path::new("old"), false, 0);
        cp.set(2, 1, Path::new("new"), false, RETENTION_SECS + 10);
        cp.save(RETENTION_SECS + 10).unwrap();
        assert!(cp.get(1).is_none());
        assert!(cp.get(2).is_some());
    }
}
