//! The disk buffer's writer: takes the fan-out's batches, appends each as
//! a record, fsyncs, and only then acknowledges it to its sources; waits
//! while the buffer is full and retries while the file system refuses.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{DiskConfig, RECENT, Recent, START, Segment, Shared, segment_path};
use crate::ack::Ack;
use crate::buffer::record::{self, SEGMENT_MAGIC};
use crate::buffer::{BufferMetrics, Fsync, WhenFull};
use crate::event::{Event, SharedBatch};
use crate::shutdown::Shutdown;

pub(super) struct Writer {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) cfg: DiskConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) segment_max: u64,
    pub(super) next_id: u64,
    /// The segment being written: its id, file and length.
    pub(super) file: Option<(u64, File, u64)>,
    /// Written, waiting for the next fsync before they are acknowledged:
    /// each batch's acknowledgement and its number of events. The events
    /// themselves are let go once written (a reader that keeps up takes
    /// them from the recent records).
    pub(super) pending: Vec<(Option<Ack>, usize)>,
    pub(super) sync_due: Option<tokio::time::Instant>,
    pub(super) record: Vec<u8>,
    pub(super) metrics: BufferMetrics,
    pub(super) shutdown: Shutdown,
    pub(super) warned: HashSet<&'static str>,
}

/// How an attempt to take a batch ended.
enum Taken {
    Written,
    /// Not taken (the grace period ended while waiting): left unacknowledged.
    Refused,
}

impl Writer {
    pub(super) async fn run(mut self, mut input: mpsc::Receiver<SharedBatch>) {
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
            match self.append(&b.events) {
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
        self.pending.push((b.ack, b.events.len()));
        match self.cfg.fsync {
            Fsync::Batch => {
                self.sync().await;
            }
            Fsync::Every(d) => {
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
    fn append(&mut self, events: &Arc<Vec<Event>>) -> std::io::Result<()> {
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
        let (id, offset) = (*id, *flen);
        *flen += len;
        let flen = *flen;
        // Counted before the reader can see it (and count it delivered).
        self.metrics.events.add(events.len() as i64);
        self.metrics.bytes.add(len as i64);
        {
            let mut st = self.shared.lock();
            st.used += len;
            if let Some(s) = st.segments.get_mut(&id) {
                s.len = flen;
            }
            if st.recent.len() == RECENT {
                st.recent.pop_front();
            }
            st.recent.push_back(Recent {
                segment: id,
                offset,
                len,
                events: Arc::clone(events),
            });
        }
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
        let n: usize = self.pending.iter().map(|(_, events)| events).sum();
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
                for (ack, _) in self.pending.drain(..) {
                    if let Some(a) = ack {
                        a.delivered();
                    }
                }
            }
            Err(e) => self.fail_pending(&e),
        }
    }
}
