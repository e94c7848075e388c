//! Buffers: what holds a sink's input between the fan-out and the sink,
//! chosen per sink with `buffer:`.
//!
//! - `type: memory` (the default) keeps batches in memory. Without bounds
//!   it is the sink's input channel itself (a few batches); with
//!   `max_events` or `max_bytes` a queue of that size sits in front of the
//!   sink ([`memory`]).
//! - `type: disk` writes them to segment files under `data_dir` and
//!   acknowledges them to their sources once they are on disk ([`disk`]),
//!   so a long outage, a restart or a `kill -9` loses nothing it took.
//!
//! `when_full` says what happens when a bound is reached: `block` (the
//! default) makes the sources wait; `drop_newest` drops the incoming batch,
//! counts it in `weir_buffer_discarded_events_total`, and settles it as a
//! deliberate drop.
//!
//! This module knows no sink kind; the topology puts a buffer in front of
//! a sink with [`attach`].

pub mod disk;
pub mod inspect;
pub mod memory;
pub mod record;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::units::{ByteSize, parse_duration};
use crate::event::SharedBatch;
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Gauge, Registry};

/// A sink's `buffer:` settings as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    #[serde(rename = "type", default)]
    pub kind: BufferType,
    /// Memory: at most this many events held.
    pub max_events: Option<usize>,
    /// Memory: at most this many bytes of lines held. Disk: at most this
    /// many bytes of files (`max_size`, as Vector calls it, is the same).
    #[serde(alias = "max_size")]
    pub max_bytes: Option<ByteSize>,
    /// Disk: when records are fsynced.
    pub fsync: Option<Fsync>,
    #[serde(default)]
    pub when_full: WhenFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    #[default]
    Memory,
    Disk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    #[default]
    Block,
    DropNewest,
}

/// When the disk buffer fsyncs what it wrote (and so acknowledges it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// After every batch (`fsync: batch`).
    #[default]
    Batch,
    /// At most this long after a batch was written (`fsync: 100ms`).
    Every(Duration),
}

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "batch" | "every_batch" | "always" => Ok(Fsync::Batch),
            other => match parse_duration(other) {
                Ok(d) if !d.is_zero() => Ok(Fsync::Every(d)),
                _ => Err(serde::de::Error::custom(format!(
                    "`{other}` is not an fsync policy; write `batch` (after every batch) or a duration such as `100ms` (at most that long between fsyncs)"
                ))),
            },
        }
    }
}

/// The default bound of a disk buffer.
pub const DEFAULT_DISK_MAX_BYTES: u64 = 256 << 20;

/// What a buffer's settings turn into once checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Buffer {
    /// The sink's input channel alone (no `buffer:`, or memory without bounds).
    Channel,
    Memory(memory::MemoryConfig),
    Disk(disk::DiskConfig),
}

impl BufferConfig {
    /// Checks the combination of settings; an error names the key to fix.
    pub fn check(&self) -> Result<Buffer, (&'static str, String)> {
        match self.kind {
            BufferType::Memory => {
                if self.fsync.is_some() {
                    return Err((
                        "fsync",
                        "`fsync` applies to disk buffers; a memory buffer is never written to disk"
                            .into(),
                    ));
                }
                if self.max_events == Some(0) || self.max_bytes.is_some_and(|b| b.0 == 0) {
                    return Err((
                        "max_events",
                        "a memory buffer's bounds must be above 0".into(),
                    ));
                }
                if self.max_events.is_none() && self.max_bytes.is_none() {
                    return Ok(if self.when_full == WhenFull::Block {
                        Buffer::Channel
                    } else {
                        Buffer::Memory(memory::MemoryConfig {
                            max_events: memory::DEFAULT_MAX_EVENTS,
                            max_bytes: u64::MAX,
                            when_full: self.when_full,
                        })
                    });
                }
                Ok(Buffer::Memory(memory::MemoryConfig {
                    max_events: self.max_events.unwrap_or(usize::MAX),
                    max_bytes: self.max_bytes.map_or(u64::MAX, |b| b.0),
                    when_full: self.when_full,
                }))
            }
            BufferType::Disk => {
                if self.max_events.is_some() {
                    return Err((
                        "max_events",
                        "a disk buffer is bounded by `max_bytes` (its files), not by events".into(),
                    ));
                }
                let max_bytes = self.max_bytes.map_or(DEFAULT_DISK_MAX_BYTES, |b| b.0);
                if max_bytes < 1 << 20 {
                    return Err((
                        "max_bytes",
                        "a disk buffer needs at least 1MiB (`max_bytes: 1MiB`)".into(),
                    ));
                }
                Ok(Buffer::Disk(disk::DiskConfig {
                    max_bytes,
                    fsync: self.fsync.unwrap_or_default(),
                    when_full: self.when_full,
                }))
            }
        }
    }
}

/// The counters and gauges of one sink's buffer.
#[derive(Clone)]
pub struct BufferMetrics {
    pub events: Gauge,
    pub bytes: Gauge,
    pub replayed: Counter,
    pub corrupt: Counter,
    pub discarded: Counter,
    pub write_errors: Counter,
    /// The sink's `weir_sink_undelivered_events_total`.
    pub undelivered: Counter,
}

impl BufferMetrics {
    pub fn new(r: &Registry, sink: &str) -> Self {
        let l = [("sink", sink)];
        BufferMetrics {
            events: r.gauge("weir_buffer_events", "Events a sink's buffer holds, not yet delivered.", &l),
            bytes: r.gauge("weir_buffer_bytes", "Bytes a sink's buffer holds, not yet delivered (records on disk, or lines in memory).", &l),
            replayed: r.counter("weir_buffer_replayed_events_total", "Events found in a disk buffer when it opened (after a restart or reload), replayed to the sink.", &l),
            corrupt: r.counter("weir_buffer_corrupt_records_total", "Damaged places in a disk buffer (torn or changed records) that were skipped.", &l),
            discarded: r.counter("weir_buffer_discarded_events_total", "Events dropped because the buffer was full (when_full: drop_newest).", &l),
            write_errors: r.counter("weir_buffer_write_errors_total", "Failed writes and fsyncs of a disk buffer (a full file system, an I/O error); each is retried.", &l),
            undelivered: crate::sink::SinkMetrics::undelivered(r, sink),
        }
    }
}

/// Puts `buffer` in front of sink `name`: takes what the fan-out sends on
/// `input`, returns what the sink reads instead, and a task that ends once
/// the buffer has let go of everything (the topology waits for it with the
/// sink). `Channel` returns `input` itself.
pub fn attach(
    buffer: Buffer,
    name: &str,
    data_dir: &Path,
    input: mpsc::Receiver<SharedBatch>,
    shutdown: Shutdown,
    registry: &Registry,
) -> Result<(mpsc::Receiver<SharedBatch>, Option<JoinHandle<()>>), String> {
    match buffer {
        Buffer::Channel => Ok((input, None)),
        Buffer::Memory(cfg) => {
            let metrics = BufferMetrics::new(registry, name);
            let (rx, task) = memory::start(name, cfg, input, metrics);
            Ok((rx, Some(task)))
        }
        Buffer::Disk(cfg) => {
            let metrics = BufferMetrics::new(registry, name);
            let dir = disk::dir_for(data_dir, name);
            let (rx, task) = disk::start(name, dir, cfg, input, shutdown, metrics)?;
            Ok((rx, Some(task)))
        }
    }
}

#[cfg(test)]
mod disk_tests;
