//! The dead-letter file: events a destination refused for good (an invalid
//! entry, a batch given up after `retry.max_duration`), kept with the reason
//! instead of being lost, so they can be inspected and replayed.
//!
//! One NDJSON file per sink, `<data_dir>/dead-letter/<sink>.ndjson`, one
//! record per event: `{"sink", "time", "reason", "status", "destination",
//! "line", …}`. Records are appended and flushed before the events are
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::telemetry::{Counter, CounterFamily, Registry};

pub struct DeadLetter {
    sink: String,
    path: PathBuf,
    file: Option<File>,
    counters: CounterFamily,
}

impl DeadLetter {
    pub fn new(data_dir: &Path, sink: &str, registry: &Registry) -> DeadLetter {
        DeadLetter {
            sink: sink.to_string(),
            path: data_dir.join("dead-letter").join(format!("{sink}.ndjson")),
            file: None,
            counters: CounterFamily::new(
                registry,
                "weir_dead_letter_events_total",
                "Events written to the dead-letter file, by sink and reason.",
                &[("sink", sink)],
                "reason",
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn counter(&mut self, reason: &str) -> &Counter {
        self.counters.get(reason)
    }

    /// Appends records (each a JSON object without the common fields, which
    /// are added here) and counts them under `reason_class`.
    pub fn write(
        &mut self,
        reason_class: &str,
        records: &[serde_json::Map<String, serde_json::Value>],
    ) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let mut buf = Vec::new();
        for r in records {
            let mut obj = serde_json::Map::new();
            obj.insert("sink".into(), self.sink.clone().into());
            obj.insert("reason_class".into(), reason_class.into());
            obj.extend(r.clone());
            serde_json::to_writer(&mut buf, &obj).expect("JSON to a Vec");
            buf.push(b'\n');
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(&buf)?;
        f.flush()?;
        self.counter(reason_class).add(records.len() as u64);
        Ok(())
    }
}
