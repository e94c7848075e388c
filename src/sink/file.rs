//! The `file` sink: events as NDJSON, in files named after the event time.
//!
//! `path` is a strftime template rendered with each event's own time in UTC,
//! so a replay of last week's logs lands in last week's files:
//! `./data/out/%Y-%m-%d.ndjson`. Files are appended to, created with their
//! directories as needed, and a few stay open between batches; a file that
//! was moved or removed since the last batch (rotated, cleaned up) is
//! created again at its path.
//!
//! A batch is written whole or not at all: before writing, the sink notes
//! the length of each regular file the batch touches, and if any write fails
//! (a full disk) it cuts every one of them back to that length. The retry of
//! the batch then writes each line once, with no torn line left behind.
//! If cutting back fails too, it is tried again before anything else is
//! written.
//!
//! Delivery means "written to the operating system": that survives `kill -9`
//! of weir, not a power cut (there is no fsync per batch). Not done: a
//! non-regular output (`/dev/stdout`, a FIFO) cannot be cut back, so a batch
//! retried there may repeat what a failed write let through; and a `kill -9`
//! in the middle of a write can still leave a torn last line, which the next
//! write ends with a newline before appending.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{BatchConfig, Call, RetryConfig, Sink, done};
use crate::component::{CheckCx, Kind, SinkContext, SinkKind, SinkSpec};
use crate::event::Event;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: String,
    #[serde(default)]
    pub batch: Option<BatchConfig>,
}

/// How many output files stay open between batches.
const OPEN_FILES: usize = 8;

/// A path template and the cache that spares rendering it per event.
#[derive(Debug)]
pub struct PathTemplate {
    template: String,
    /// Events in the same period render the same path.
    period_nanos: i64,
    cache: Option<(i64, usize)>,
}

impl PathTemplate {
    pub fn new(template: &str) -> Result<PathTemplate, String> {
        // Render once to reject bad specifiers at validate time.
        jiff::fmt::strtime::format(template, jiff::Timestamp::UNIX_EPOCH)
            .map_err(|e| format!("invalid path template `{template}`: {e}"))?;
        let has = |specs: &[&str]| specs.iter().any(|s| template.contains(s));
        let period_nanos = if has(&["%S", "%s", "%T", "%f", "%N", "%.f"]) {
            1_000_000_000
        } else if has(&["%M", "%R"]) {
            60_000_000_000
        } else if has(&["%H", "%I", "%k", "%l", "%p", "%P"]) {
            3_600_000_000_000
        } else {
            86_400_000_000_000
        };
        Ok(PathTemplate {
            template: template.to_string(),
            period_nanos,
            cache: None,
        })
    }

    pub fn render(&self, time_nanos: i64) -> PathBuf {
        let ts = jiff::Timestamp::from_nanosecond(i128::from(time_nanos))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let text =
            jiff::fmt::strtime::format(&self.template, &ts.to_zoned(jiff::tz::TimeZone::UTC))
                .unwrap_or_else(|_| self.template.clone());
        PathBuf::from(text)
    }
}

/// How the sink puts bytes into an open file and cuts it back. Production
/// uses the file system as it is; tests stand in a disk that fills up.
trait Disk: Send {
    fn write_all(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()>;
    fn set_len(&mut self, file: &File, len: u64) -> io::Result<()>;
}

/// The file system as it is.
struct RealDisk;

impl Disk for RealDisk {
    fn write_all(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }
    fn set_len(&mut self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }
}

/// An open output file and what it was when opened.
struct OpenFile {
    file: File,
    /// Device and inode, to notice the path now names another file.
    id: (u64, u64),
    /// Only a regular file can be cut back after a failed write.
    regular: bool,
}

struct Output {
    path: PathBuf,
    pending: Vec<u8>,
    file: Option<OpenFile>,
    last_used: u64,
    /// The file's length before the batch being written: what to cut it
    /// back to if the batch fails. Kept until cutting back succeeds.
    restore: Option<u64>,
}

pub struct FileSink {
    template: PathTemplate,
    outputs: Vec<Output>,
    by_period: HashMap<i64, usize>,
    round: u64,
    disk: Box<dyn Disk>,
}

impl FileSink {
    pub fn new(cfg: &FileSinkConfig) -> Result<FileSink, String> {
        FileSink::with_disk(cfg, Box::new(RealDisk))
    }

    fn with_disk(cfg: &FileSinkConfig, disk: Box<dyn Disk>) -> Result<FileSink, String> {
        Ok(FileSink {
            template: PathTemplate::new(&cfg.path)?,
            outputs: Vec::new(),
            by_period: HashMap::new(),
            round: 0,
            disk,
        })
    }

    fn output_for(&mut self, time: i64) -> usize {
        let period = time.div_euclid(self.template.period_nanos);
        if let Some((p, idx)) = self.template.cache
            && p == period
        {
            return idx;
        }
        let idx = match self.by_period.get(&period) {
            Some(&i) => i,
            None => {
                let path = self.template.render(time);
                let i = match self.outputs.iter().position(|o| o.path == path) {
                    Some(i) => i,
                    None => {
                        self.outputs.push(Output {
                            path,
                            pending: Vec::new(),
                            file: None,
                            last_used: 0,
                            restore: None,
                        });
                        self.outputs.len() - 1
                    }
                };
                self.by_period.insert(period, i);
                i
            }
        };
        self.template.cache = Some((period, idx));
        idx
    }

    /// Cuts every file a failed batch touched back to its length before the
    /// batch; the error names those that could not be cut back.
    fn restore_all(&mut self) -> Result<(), String> {
        let mut failed = Vec::new();
        for out in self.outputs.iter_mut().filter(|o| o.restore.is_some()) {
            if let Err(e) = out.restore(self.disk.as_mut()) {
                failed.push(format!(
                    "cannot cut {} back to its length before the batch: {e}",
                    out.path.display()
                ));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

impl Output {
    /// Opens the file, or opens it again if its path no longer names the
    /// file that is open (moved or removed since the last batch).
    fn open(&mut self) -> Result<&mut OpenFile, String> {
        if let Some(open) = &self.file {
            let same = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == open.id);
            if !same {
                tracing::info!(path = %self.path.display(), "output file was moved or removed; creating it again");
                self.file = None;
            }
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)
                .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
            let m = file
                .metadata()
                .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
            self.file = Some(OpenFile {
                file,
                id: (m.dev(), m.ino()),
                regular: m.is_file(),
            });
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Appends this file's part of the batch, noting first what to cut the
    /// file back to should this or a later part of the batch fail.
    fn write(&mut self, disk: &mut dyn Disk, bytes: &[u8]) -> Result<(), String> {
        let path = self.path.clone();
        let open = self.open()?;
        let cannot = |e: io::Error| format!("cannot write {}: {e}", path.display());
        let mut torn = false;
        let before = if open.regular {
            let len = open.file.metadata().map_err(cannot)?.len();
            torn = ends_torn(&open.file, len).map_err(cannot)?;
            Some(len)
        } else {
            None
        };
        self.restore = before;
        let open = self.file.as_mut().expect("opened above");
        if torn {
            disk.write_all(&mut open.file, b"\n").map_err(cannot)?;
        }
        disk.write_all(&mut open.file, bytes).map_err(cannot)
    }

    /// Cuts the file back to its length before the failed batch.
    fn restore(&mut self, disk: &mut dyn Disk) -> io::Result<()> {
        if let (Some(len), Some(open)) = (self.restore, &self.file) {
            disk.set_len(&open.file, len)?;
        }
        self.restore = None;
        Ok(())
    }
}

impl FileSink {
    /// Closes the least recently used files beyond the limit, and forgets
    /// idle outputs so a long replay does not accumulate them. Only between
    /// deliveries: a sealed batch names its outputs by their place.
    fn tidy(&mut self) {
        let mut open: Vec<usize> = (0..self.outputs.len())
            .filter(|&i| self.outputs[i].file.is_some())
            .collect();
        if open.len() > OPEN_FILES {
            open.sort_by_key(|&i| std::cmp::Reverse(self.outputs[i].last_used));
            for &i in &open[OPEN_FILES..] {
                self.outputs[i].file = None;
            }
        }
        if self.outputs.len() > 4 * OPEN_FILES {
            self.outputs
                .retain(|o| o.file.is_some() || !o.pending.is_empty() || o.restore.is_some());
            self.by_period.clear();
            self.template.cache = None;
        }
    }

    /// Writes the batch, each file's part in turn; on failure every file it
    /// touched is cut back to its length before the batch.
    fn write_batch(&mut self, batch: &[(usize, Vec<u8>)]) -> Result<(), String> {
        self.round += 1;
        // A batch that failed before and could not be cut back then is cut
        // back now, before it is written again.
        self.restore_all()?;
        let mut failed = None;
        for (i, bytes) in batch {
            if let Err(e) = self.outputs[*i].write(self.disk.as_mut(), bytes) {
                failed = Some(e);
                break;
            }
        }
        if let Some(mut e) = failed {
            // Every file as it was before the batch: the retry writes it once.
            if let Err(r) = self.restore_all() {
                e = format!("{e}; {r} (tried again before the next write)");
            }
            return Err(e);
        }
        for (i, _) in batch {
            let out = &mut self.outputs[*i];
            out.restore = None;
            out.last_used = self.round;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    /// Each output's bytes, by its place in `outputs`.
    type Batch = Vec<(usize, Vec<u8>)>;
    type Reply = Result<(), super::DeliveryError>;

    fn encode(&mut self, event: &Event) -> usize {
        let idx = self.output_for(event.time);
        let buf = &mut self.outputs[idx].pending;
        let before = buf.len();
        event.write_json(buf);
        buf.push(b'\n');
        buf.len() - before
    }

    fn seal(&mut self) -> Self::Batch {
        let mut batch = Vec::new();
        for (i, out) in self.outputs.iter_mut().enumerate() {
            if !out.pending.is_empty() {
                batch.push((i, std::mem::take(&mut out.pending)));
            }
        }
        batch
    }

    fn send(&mut self, batch: &mut Self::Batch) -> Call<Self::Reply> {
        done(self.write_batch(batch).map_err(Into::into))
    }

    fn answer(
        &mut self,
        _batch: &mut Self::Batch,
        reply: Self::Reply,
    ) -> Result<(), super::DeliveryError> {
        reply
    }

    fn recycle(&mut self, batch: Self::Batch) {
        // The buffers go back to their outputs for the next batch, unless a
        // burst (one big batch) made them big.
        for (i, mut bytes) in batch {
            if let Some(out) = self.outputs.get_mut(i)
                && out.pending.capacity() == 0
                && bytes.capacity() <= 4 << 20
            {
                bytes.clear();
                out.pending = bytes;
            }
        }
        self.tidy();
    }
}

/// Whether a file of `len` bytes ends in the middle of a line. A process
/// killed in the middle of a write can leave a last line without its
/// newline; the sink ends it, so the next line starts on a line of its own
/// instead of being glued to the fragment.
fn ends_torn(f: &File, len: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    Ok(len > 0 && f.read_at(&mut last, len - 1)? == 1 && last[0] != b'\n')
}

/// The `file` sink kind.
pub const KIND: SinkKind = Kind {
    name: "file",
    check,
};

#[derive(Debug)]
struct FileSpec {
    cfg: FileSinkConfig,
}

impl SinkSpec for FileSpec {
    fn start(&self, cx: SinkContext) -> Result<tokio::task::JoinHandle<()>, String> {
        let sink = FileSink::new(&self.cfg)?;
        let batch = self.cfg.batch.unwrap_or_default();
        Ok(super::spawn(cx, sink, batch, RetryConfig::default()))
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<std::sync::Arc<dyn SinkSpec>> {
    let cfg: FileSinkConfig = cx.typed()?;
    if let Err(m) = PathTemplate::new(&cfg.path) {
        cx.error(&["path"], m);
        return None;
    }
    Some(std::sync::Arc::new(FileSpec { cfg }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// Delivers as the driver does: seals what was encoded, unless a batch
    /// that failed waits to be sent again.
    #[derive(Default)]
    struct Driver(Option<<FileSink as Sink>::Batch>);

    impl Driver {
        async fn deliver(&mut self, sink: &mut FileSink) -> Result<(), crate::sink::DeliveryError> {
            let mut batch = self.0.take().unwrap_or_else(|| sink.seal());
            match crate::sink::driver::attempt(sink, &mut batch).await {
                Ok(()) => {
                    sink.recycle(batch);
                    Ok(())
                }
                Err(e) => {
                    self.0 = Some(batch);
                    Err(e)
                }
            }
        }
    }

    #[test]
    fn template_renders_event_dates_in_utc() {
        let t = PathTemplate::new("out/%Y-%m-%d.ndjson").unwrap();
        // 2026-11-25T23:59:59Z and one second later.
        let t0 = 1_795_651_199_000_000_000;
        assert_eq!(t.render(t0), PathBuf::from("out/2026-11-25.ndjson"));
        assert_eq!(
            t.render(t0 + 1_000_000_000),
            PathBuf::from("out/2026-11-26.ndjson")
        );
        assert_eq!(t.period_nanos, 86_400_000_000_000);
        assert_eq!(
            PathTemplate::new("%H.log").unwrap().period_nanos,
            3_600_000_000_000
        );
        assert!(PathTemplate::new("out/%").is_err());
    }

    #[tokio::test]
    async fn writes_each_event_to_its_day() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig {
            path: format!("{}/sub/%Y-%m-%d.ndjson", dir.path().display()),
            batch: None,
        };
        let mut sink = FileSink::new(&cfg).unwrap();
        let mut d = Driver::default();
        let day = 86_400_000_000_000;
        for (i, t) in [0, day, 1, day + 1].iter().enumerate() {
            let e = crate::decode::json::decode_object(format!("{{\"n\":{i}}}"), *t).unwrap();
            sink.encode(&e);
        }
        d.deliver(&mut sink).await.unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join("sub").join(name)).unwrap();
        assert_eq!(read("1970-01-01.ndjson"), "{\"n\":0}\n{\"n\":2}\n");
        assert_eq!(read("1970-01-02.ndjson"), "{\"n\":1}\n{\"n\":3}\n");
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ended_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, "{\"ok\":1}\n{\"torn\":").unwrap();
        let cfg = FileSinkConfig {
            path: path.display().to_string(),
            batch: None,
        };
        let mut sink = FileSink::new(&cfg).unwrap();
        let mut d = Driver::default();
        sink.encode(&crate::decode::json::decode_object("{\"n\":2}".into(), 0).unwrap());
        d.deliver(&mut sink).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"ok\":1}\n{\"torn\":\n{\"n\":2}\n"
        );
    }

    /// A disk with `free` bytes of room: a write past it stops part-way with
    /// ENOSPC, as a full file system does; cutting a file back frees room.
    #[derive(Clone)]
    struct FillingDisk {
        free: Arc<AtomicU64>,
        refuse_set_len: Arc<AtomicBool>,
    }

    impl FillingDisk {
        fn new(free: u64) -> FillingDisk {
            FillingDisk {
                free: Arc::new(AtomicU64::new(free)),
                refuse_set_len: Arc::new(AtomicBool::new(false)),
            }
        }
        fn set_free(&self, n: u64) {
            self.free.store(n, Ordering::SeqCst);
        }
    }

    impl Disk for FillingDisk {
        fn write_all(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
            let mut rest = bytes;
            while !rest.is_empty() {
                let room = self.free.load(Ordering::SeqCst) as usize;
                if room == 0 {
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
                let n = file.write(&rest[..room.min(rest.len())])?;
                self.free.fetch_sub(n as u64, Ordering::SeqCst);
                rest = &rest[n..];
            }
            Ok(())
        }
        fn set_len(&mut self, file: &File, len: u64) -> io::Result<()> {
            if self.refuse_set_len.load(Ordering::SeqCst) {
                return Err(io::Error::other("refused by the test"));
            }
            let old = file.metadata()?.len();
            file.set_len(len)?;
            self.free
                .fetch_add(old.saturating_sub(len), Ordering::SeqCst);
            Ok(())
        }
    }

    const DAY: i64 = 86_400_000_000_000;

    fn filling_sink(dir: &std::path::Path, disk: &FillingDisk) -> FileSink {
        let cfg = FileSinkConfig {
            path: format!("{}/%Y-%m-%d.ndjson", dir.display()),
            batch: None,
        };
        FileSink::with_disk(&cfg, Box::new(disk.clone())).unwrap()
    }

    /// Encodes events `range` alternately into two days; returns their bytes.
    fn encode(sink: &mut FileSink, range: std::ops::Range<u64>) -> u64 {
        let mut bytes = 0;
        for n in range {
            let line = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "p".repeat(40));
            let e = crate::decode::json::decode_object(line, (n as i64 % 2) * DAY).unwrap();
            bytes += sink.encode(&e) as u64;
        }
        bytes
    }

    /// Every file's content, by name.
    fn contents(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p.file_name().unwrap().to_string_lossy().into_owned(), text)
            })
            .collect()
    }

    /// The `n` of every line in `dir`, sorted; panics on a torn line.
    fn numbers(dir: &std::path::Path) -> Vec<u64> {
        let mut all = Vec::new();
        for (name, text) in contents(dir) {
            assert!(text.is_empty() || text.ends_with('\n'), "{name} ends torn");
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{name}: torn line {line:?}: {e}"));
                all.push(v["n"].as_u64().unwrap());
            }
        }
        all.sort_unstable();
        all
    }

    #[tokio::test]
    async fn a_full_disk_mid_batch_leaves_every_file_as_it_was_and_the_retry_writes_once() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FillingDisk::new(u64::MAX / 2);
        let mut sink = filling_sink(dir.path(), &disk);
        let mut d = Driver::default();
        encode(&mut sink, 0..100);
        d.deliver(&mut sink).await.unwrap();
        let before = contents(dir.path());
        assert_eq!(before.len(), 2);

        // Room for the first day's part of the batch and half the second's.
        let bytes = encode(&mut sink, 100..300);
        disk.set_free(bytes * 3 / 4);
        let e = d.deliver(&mut sink).await.unwrap_err();
        assert!(e.message.contains("No space left on device"), "{e:?}");
        assert_eq!(contents(dir.path()), before, "both files cut back");
        // Retried while the disk is still too full: still as they were.
        assert!(d.deliver(&mut sink).await.is_err());
        assert_eq!(contents(dir.path()), before);

        // Room again: every line exactly once, none torn.
        disk.set_free(u64::MAX / 2);
        d.deliver(&mut sink).await.unwrap();
        assert_eq!(numbers(dir.path()), (0..300).collect::<Vec<_>>());
        // The next batch follows on.
        encode(&mut sink, 300..310);
        d.deliver(&mut sink).await.unwrap();
        assert_eq!(numbers(dir.path()), (0..310).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_file_that_could_not_be_cut_back_is_cut_back_before_the_retry() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FillingDisk::new(u64::MAX / 2);
        let mut sink = filling_sink(dir.path(), &disk);
        let mut d = Driver::default();
        encode(&mut sink, 0..10);
        d.deliver(&mut sink).await.unwrap();

        let bytes = encode(&mut sink, 10..50);
        disk.set_free(bytes / 3);
        disk.refuse_set_len.store(true, Ordering::SeqCst);
        let e = d.deliver(&mut sink).await.unwrap_err();
        assert!(e.message.contains("No space left on device"), "{e:?}");
        assert!(e.message.contains("cannot cut"), "{e:?}");
        let torn = contents(dir.path());
        // Still refused: nothing more is written over the torn part.
        disk.set_free(u64::MAX / 2);
        let e = d.deliver(&mut sink).await.unwrap_err();
        assert!(e.message.contains("cannot cut"), "{e:?}");
        assert_eq!(contents(dir.path()), torn);

        disk.refuse_set_len.store(false, Ordering::SeqCst);
        d.deliver(&mut sink).await.unwrap();
        assert_eq!(numbers(dir.path()), (0..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_file_moved_or_removed_between_batches_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let cfg = FileSinkConfig {
            path: path.display().to_string(),
            batch: None,
        };
        let mut sink = FileSink::new(&cfg).unwrap();
        let mut d = Driver::default();
        let event =
            |n: u32| crate::decode::json::decode_object(format!("{{\"n\":{n}}}"), 0).unwrap();
        sink.encode(&event(1));
        d.deliver(&mut sink).await.unwrap();
        // Rotated away.
        let rotated = dir.path().join("out.ndjson.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.encode(&event(2));
        d.deliver(&mut sink).await.unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "{\"n\":1}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":2}\n");
        // Removed.
        std::fs::remove_file(&path).unwrap();
        sink.encode(&event(3));
        d.deliver(&mut sink).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":3}\n");
    }
}
