//! Progress of long work — a `--once` replay, a back-test, `weir generate`:
//! a bar on a terminal (bytes or lines of the total, the rate, the time
//! left, errors), one plain line every 10 s when standard error is not a
//! terminal (a log file, CI).
//!
//! It only reads counters that the work keeps anyway; it never slows the
//! work down and does not decide what is counted.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::telemetry::Registry;

/// How often a plain progress line is written.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// What a unit of work is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Lines,
}

/// A progress display for work of `total` units (unknown: `None`).
pub struct Progress {
    bar: Option<ProgressBar>,
    unit: Unit,
    total: Option<u64>,
    what: &'static str,
    started: Instant,
    last_plain: Instant,
    /// The last amount seen, and when it last moved: work that stands
    /// still (a sink failing, a full disk) says so instead of an ETA.
    last_done: u64,
    moved_at: Instant,
}

impl Progress {
    /// A bar when standard error is a terminal, plain lines otherwise.
    pub fn new(what: &'static str, unit: Unit, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(5));
            let pos = match unit {
                Unit::Bytes => "{bytes}/{total_bytes} ({bytes_per_sec})",
                Unit::Lines => "{human_pos}/{human_len} lines ({per_sec})",
            };
            let template = if total.is_some() {
                format!("{{prefix}} [{{bar:30}}] {pos}, {{eta}} left {{msg}}")
            } else {
                format!("{{prefix}} {{spinner}} {pos} {{msg}}")
            };
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(what);
            bar
        });
        Progress {
            bar,
            unit,
            total,
            what,
            started: Instant::now(),
            last_plain: Instant::now(),
            last_done: 0,
            moved_at: Instant::now(),
        }
    }

    /// Where the work stands: `done` units, and a few words on the rest
    /// (lines, errors, deliveries).
    pub fn update(&mut self, done: u64, note: &str) {
        if done != self.last_done {
            self.last_done = done;
            self.moved_at = Instant::now();
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            let stalled = self.stalled_for().map(|s| format!(", {s}"));
            bar.set_message(format!("{note}{}", stalled.unwrap_or_default()));
            return;
        }
        if self.last_plain.elapsed() < PLAIN_EVERY {
            return;
        }
        self.last_plain = Instant::now();
        tracing::info!("{}", self.line(done, note));
    }

    /// The plain progress line: done of total, rate, time left, the note.
    pub fn line(&self, done: u64, note: &str) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let amount = |n: u64| match self.unit {
            Unit::Bytes => format!("{:.1} MB", n as f64 / 1e6),
            Unit::Lines => format!("{n} lines"),
        };
        let mut s = format!("{}: {}", self.what, amount(done));
        if let Some(t) = self.total.filter(|t| *t > 0) {
            s.push_str(&format!(
                " of {} ({:.0}%)",
                amount(t),
                100.0 * done.min(t) as f64 / t as f64
            ));
        }
        match self.unit {
            Unit::Bytes => s.push_str(&format!(", {:.1} MB/s", rate / 1e6)),
            Unit::Lines => s.push_str(&format!(", {rate:.0} lines/s")),
        }
        if let Some(stalled) = self.stalled_for() {
            s.push_str(", ");
            s.push_str(&stalled);
        } else if let Some(t) = self.total
            && rate > 0.0
            && done < t
        {
            s.push_str(&format!(", about {:.0} s left", (t - done) as f64 / rate));
        }
        if !note.is_empty() {
            s.push_str(", ");
            s.push_str(note);
        }
        s
    }

    /// "no progress for N s …" once nothing moved for [`PLAIN_EVERY`].
    fn stalled_for(&self) -> Option<String> {
        let still = self.moved_at.elapsed();
        (still >= PLAIN_EVERY).then(|| {
            format!(
                "no progress for {} s (a sink retrying or a full disk: see the warnings)",
                still.as_secs()
            )
        })
    }

    /// The work is over.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Reports a `--once` replay from weir's own counters until aborted:
/// bytes read of `total` (the files' sizes when it began), lines read,
/// decode errors, events delivered.
pub async fn replay(registry: Registry, total: Option<u64>) {
    let mut p = Progress::new("replay", Unit::Bytes, total.filter(|t| *t > 0));
    let every = if p.bar.is_some() {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    let mut tick = tokio::time::interval(every);
    let _finish = Finish(p.bar.clone());
    loop {
        tick.tick().await;
        let bytes = registry.sum("weir_bytes_read_total").max(0) as u64;
        let note = format!(
            "{} lines read, {} decode errors, {} events delivered",
            registry.sum("weir_lines_read_total"),
            registry.sum("weir_decode_errors_total"),
            registry.sum("weir_events_out_total")
        );
        p.update(bytes, &note);
    }
}

/// Clears the bar when the reporting task is aborted.
struct Finish(Option<ProgressBar>);

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A writer that counts the lines going through it, for `weir generate`.
pub struct CountingWriter<W> {
    inner: W,
    lines: u64,
    progress: Progress,
}

impl<W: std::io::Write> CountingWriter<W> {
    pub fn new(inner: W, total_lines: u64) -> Self {
        CountingWriter {
            inner,
            lines: 0,
            progress: Progress::new("generate", Unit::Lines, Some(total_lines)),
        }
    }

    /// Ends the display; returns the writer.
    pub fn finish(self) -> W {
        self.progress.finish();
        self.inner
    }
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        self.progress.update(self.lines, "");
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_line_says_how_far_how_fast_and_what_is_left() {
        let p = Progress {
            bar: None,
            unit: Unit::Bytes,
            total: Some(4_000_000),
            what: "replay",
            started: Instant::now() - Duration::from_secs(2),
            last_plain: Instant::now(),
            last_done: 1_000_000,
            moved_at: Instant::now(),
        };
        let line = p.line(1_000_000, "10 decode errors");
        assert!(
            line.starts_with("replay: 1.0 MB of 4.0 MB (25%), 0.5 MB/s"),
            "{line}"
        );
        assert!(
            line.contains("about 6 s left") && line.ends_with("10 decode errors"),
            "{line}"
        );
        let p = Progress {
            unit: Unit::Lines,
            total: None,
            ..p
        };
        assert!(p.line(10, "").starts_with("replay: 10 lines, 5 lines/s"));
    }

    #[test]
    fn work_that_stands_still_says_so_instead_of_a_time_left() {
        let mut p = Progress::new("replay", Unit::Bytes, Some(4_000_000));
        p.bar = None;
        p.update(1_000_000, "");
        p.moved_at = Instant::now() - Duration::from_secs(12);
        let line = p.line(1_000_000, "");
        assert!(
            line.contains("no progress for 12 s") && !line.contains("left"),
            "{line}"
        );
        p.update(1_500_000, "");
        assert!(!p.line(1_500_000, "").contains("no progress"));
    }
}
