//! `weir buffer inspect`: what the disk buffers of a pipeline hold, read
//! from their files without changing them (weir may be running or not).

use std::path::Path;

use super::Buffer;
use super::disk::{self, Contents};
use crate::config::Pipeline;

/// One sink's buffer, as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub sink: String,
    pub contents: Contents,
}

/// Reads the disk buffer of every sink that has one, or only of `sink`.
/// An error names what to fix (an unknown sink, one without a disk buffer).
pub fn read(pipeline: &Pipeline, sink: Option<&str>) -> Result<Vec<Report>, String> {
    let disk_sinks: Vec<&str> = pipeline
        .sinks
        .iter()
        .filter(|c| matches!(c.buffer, Buffer::Disk(_)))
        .map(|c| c.name.as_str())
        .collect();
    let wanted: Vec<&str> = match sink {
        None => disk_sinks.clone(),
        Some(s) if disk_sinks.contains(&s) => vec![s],
        Some(s) if pipeline.sinks.iter().any(|c| c.name == s) => {
            return Err(format!(
                "sink `{s}` has no disk buffer (add `buffer: {{type: disk}}` to it); sinks with one: {}",
                list(&disk_sinks)
            ));
        }
        Some(s) => {
            return Err(format!(
                "the pipeline has no sink `{s}`; sinks with a disk buffer: {}",
                list(&disk_sinks)
            ));
        }
    };
    wanted
        .into_iter()
        .map(|s| {
            let dir = disk::dir_for(&pipeline.data_dir, s);
            let contents = disk::inspect(&dir, true)
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            Ok(Report {
                sink: s.to_string(),
                contents,
            })
        })
        .collect()
}

/// Reads every buffer directory under `<data_dir>/buffers/` (or only
/// `sink`'s), for when the pipeline file is not at hand.
pub fn read_dir(data_dir: &Path, sink: Option<&str>) -> Result<Vec<Report>, String> {
    let root = data_dir.join("buffers");
    let mut names: Vec<String> = match std::fs::read_dir(&root) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", root.display())),
    };
    names.sort();
    if let Some(s) = sink {
        if !names.iter().any(|n| n == s) {
            return Err(format!(
                "{} has no buffer of sink `{s}`; buffers there: {}",
                root.display(),
                list(&names.iter().map(String::as_str).collect::<Vec<_>>())
            ));
        }
        names.retain(|n| n == s);
    }
    names
        .into_iter()
        .map(|sink| {
            let dir = root.join(&sink);
            let contents = disk::inspect(&dir, true)
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            Ok(Report { sink, contents })
        })
        .collect()
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn time(ns: Option<i64>) -> Option<String> {
    let t = jiff::Timestamp::from_nanosecond(i128::from(ns?)).ok()?;
    Some(t.to_string())
}

/// The reports as a table for people.
pub fn table(reports: &[Report], data_dir: &Path) -> String {
    if reports.is_empty() {
        return "no sink of this pipeline has a disk buffer\n".into();
    }
    let mut out = format!(
        "{:<20} {:>8} {:>10} {:>12}  {:<30} {:>7}\n",
        "SINK", "RECORDS", "EVENTS", "BYTES", "OLDEST EVENT", "DAMAGED"
    );
    for r in reports {
        let c = &r.contents;
        out.push_str(&format!(
            "{:<20} {:>8} {:>10} {:>12}  {:<30} {:>7}\n",
            r.sink,
            c.records,
            c.events,
            c.bytes,
            time(c.oldest).unwrap_or_else(|| "-".into()),
            c.damaged
        ));
        if let Some(p) = &c.ledger_problem {
            out.push_str(&format!("  warning: {p}\n"));
        }
    }
    out.push_str(&format!(
        "(under {}; undelivered records only)\n",
        data_dir.join("buffers").display()
    ));
    out
}

/// The reports as a JSON array, for scripts.
pub fn json(reports: &[Report]) -> String {
    let v: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let c = &r.contents;
            serde_json::json!({
                "sink": r.sink,
                "segments": c.segments,
                "records": c.records,
                "events": c.events,
                "bytes": c.bytes,
                "oldest_event_time": time(c.oldest),
                "corrupt_records": c.damaged,
                "ledger_problem": c.ledger_problem,
            })
        })
        .collect();
    serde_json::to_string_pretty(&v).expect("JSON") + "\n"
}
