//! The `file` sink: events as NDJSON, in files named after the event time.
//!
//! `path` is a strftime template rendered with each event's own time in UTC,
//! so a replay of last week's logs lands in last week's files:
//! `./data/out/%Y-%m-%d.ndjson`. Files are appended to, created with their
//! directories as needed, and a few stay open between batches.
//!
//! Delivery means "written to the operating system": that survives `kill -9`
//! of weir, not a power cut (there is no fsync per batch).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;

use super::{BatchConfig, Sink};
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

struct Output {
    path: PathBuf,
    pending: Vec<u8>,
    file: Option<File>,
    last_used: u64,
}

pub struct FileSink {
    template: PathTemplate,
    outputs: Vec<Output>,
    by_period: HashMap<i64, usize>,
    round: u64,
}

impl FileSink {
    pub fn new(cfg: &FileSinkConfig) -> Result<FileSink, String> {
        Ok(FileSink {
            template: PathTemplate::new(&cfg.path)?,
            outputs: Vec::new(),
            by_period: HashMap::new(),
            round: 0,
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
}

impl Sink for FileSink {
    fn encode(&mut self, event: &Event) -> usize {
        let idx = self.output_for(event.time);
        let buf = &mut self.outputs[idx].pending;
        let before = buf.len();
        event.write_json(buf);
        buf.push(b'\n');
        buf.len() - before
    }

    async fn deliver(&mut self) -> Result<(), super::DeliveryError> {
        self.round += 1;
        for out in self.outputs.iter_mut().filter(|o| !o.pending.is_empty()) {
            if out.file.is_none() {
                if let Some(dir) = out.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .read(true)
                    .open(&out.path)
                    .map_err(|e| format!("cannot open {}: {e}", out.path.display()))?;
                end_torn_line(&f)
                    .map_err(|e| format!("cannot write {}: {e}", out.path.display()))?;
                out.file = Some(f);
            }
            let file = out.file.as_mut().expect("opened above");
            if let Err(e) = file.write_all(&out.pending) {
                // Reopen next time: the file may have been moved or the disk freed.
                out.file = None;
                return Err(format!("cannot write {}: {e}", out.path.display()).into());
            }
            out.pending.clear();
            // A burst (one big batch) must not pin its buffer for the whole run.
            if out.pending.capacity() > 4 << 20 {
                out.pending.shrink_to(1 << 20);
            }
            out.last_used = self.round;
        }
        // Close the least recently used files beyond the limit.
        let mut open: Vec<usize> = (0..self.outputs.len())
            .filter(|&i| self.outputs[i].file.is_some())
            .collect();
        if open.len() > OPEN_FILES {
            open.sort_by_key(|&i| std::cmp::Reverse(self.outputs[i].last_used));
            for &i in &open[OPEN_FILES..] {
                self.outputs[i].file = None;
            }
        }
        // Forget idle outputs so a long replay does not accumulate them.
        if self.outputs.len() > 4 * OPEN_FILES {
            self.outputs
                .retain(|o| o.file.is_some() || !o.pending.is_empty());
            self.by_period.clear();
            self.template.cache = None;
        }
        Ok(())
    }
}

/// A process killed in the middle of a write can leave a last line without
/// its newline; end it, so the next line starts on a line of its own instead
/// of being glued to the fragment.
fn end_torn_line(mut f: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata()?.len();
    let mut last = [0u8; 1];
    if len > 0 && f.read_at(&mut last, len - 1)? == 1 && last[0] != b'\n' {
        f.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let day = 86_400_000_000_000;
        for (i, t) in [0, day, 1, day + 1].iter().enumerate() {
            let e = crate::decode::json::decode_object(format!("{{\"n\":{i}}}"), *t).unwrap();
            sink.encode(&e);
        }
        sink.deliver().await.unwrap();
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
        sink.encode(&crate::decode::json::decode_object("{\"n\":2}".into(), 0).unwrap());
        sink.deliver().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"ok\":1}\n{\"torn\":\n{\"n\":2}\n"
        );
    }
}
