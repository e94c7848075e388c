//! The `demo` source: the Feynman app's events, generated live, so that a
//! first run shows something before any real log exists (like Vector's
//! `demo_logs`).
//!
//! The lines come from the generator `weir generate` uses
//! (`weir-workload`): API requests, tool and LLM calls, LangGraph nodes,
//! SSE streams, external APIs, and now and then a uvicorn plain-text line
//! or a truncated one. Each is dated when it is emitted, paced at `rate`
//! lines a second, and goes through the usual decoding, so everything the
//! pipeline derives from real logs moves, and the alert rules see it.
//!
//! ```yaml
//! demo:
//!   type: demo
//!   rate: 50                                   # lines per second (default 50)
//!   lines: 10000                               # stop after this many (default: no end)
//!   when_missing: "${WEIR_LOGS_DIR:-./logs}"   # on only while this path does not exist
//!   when_interactive: true                     # and only when standard input is a terminal
//! ```
//!
//! With `when_missing`, the source stops as soon as the path appears (real
//! logs are on their way); with `when_interactive`, it stays off whenever
//! something is piped into weir, or weir runs as a service. The shipped
//! `pipelines/feynman.yaml` sets both, so only a first run by hand on a
//! fresh clone sees demo data, and says so. In `--once` runs a demo source
//! without `lines` has nothing to replay and ends at once.
//!
//! It does not write files, does not read the wall clock to decide what
//! to emit (only when), and never emits lines it fell behind on: when the
//! pipeline cannot keep up, the schedule starts again from now.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::lines::{FrameCounts, Line};
use super::{LineDecoder, SourceContext, flush};
use crate::component::{CheckCx, Kind, SourceKind, SourceSpec};
use crate::decode::timestamp::now_nanos;
use crate::decode::{DecodeConfig, TimestampConfig};

/// Lines a second when `rate` is not given.
pub const DEFAULT_RATE: f64 = 50.0;

/// The most lines a second a demo source emits.
pub const MAX_RATE: f64 = 1_000_000.0;

/// How often the source wakes to emit what is due (and to look for
/// `when_missing` and a stop).
const TICK: Duration = Duration::from_millis(100);

/// How often `when_missing` is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Lines a second.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Stop after this many lines (default: run until stopped).
    pub lines: Option<u64>,
    /// The generator's seed (default: a new one each run).
    pub seed: Option<u64>,
    /// Also emit uvicorn plain-text lines and truncated JSON lines, now
    /// and then, as the real app does (default true).
    #[serde(default = "yes")]
    pub malformed: bool,
    /// Run only while this path does not exist; stop once it does.
    pub when_missing: Option<String>,
    /// Run only when standard input is a terminal (nothing piped in, not
    /// a service).
    #[serde(default)]
    pub when_interactive: bool,
    /// How the lines are decoded (default: JSON with the app's
    /// `timestamp` field, undecodable lines kept and marked).
    #[serde(default = "feynman_decode")]
    pub decode: DecodeConfig,
}

fn default_rate() -> f64 {
    DEFAULT_RATE
}

fn yes() -> bool {
    true
}

fn feynman_decode() -> DecodeConfig {
    DecodeConfig {
        timestamp: Some(TimestampConfig {
            field: "timestamp".into(),
            format: "auto".into(),
            timezone: None,
        }),
        ..DecodeConfig::default()
    }
}

/// The `demo` source kind.
pub const KIND: SourceKind = Kind {
    name: "demo",
    check,
};

#[derive(Debug)]
struct DemoSpec {
    cfg: DemoConfig,
}

impl SourceSpec for DemoSpec {
    fn run(&self, ctx: SourceContext) -> Result<(), String> {
        run(&self.cfg, ctx)
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<Arc<dyn SourceSpec>> {
    let cfg: DemoConfig = cx.typed()?;
    if !(cfg.rate > 0.0 && cfg.rate <= MAX_RATE) {
        cx.error(
            &["rate"],
            format!(
                "rate is lines per second: more than 0, at most {MAX_RATE}, not {}",
                cfg.rate
            ),
        );
    }
    if cfg.lines == Some(0) {
        cx.error(
            &["lines"],
            "lines: 0 emits nothing; leave `lines` out to run until stopped",
        );
    }
    if cfg
        .when_missing
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        cx.error(
            &["when_missing"],
            "when_missing is empty: give the path whose absence turns the demo on (e.g. the logs directory)",
        );
    }
    super::check_reading(cx, &cfg.decode, None);
    (!cx.has_errors()).then(|| Arc::new(DemoSpec { cfg }) as Arc<dyn SourceSpec>)
}

/// Why the source stays off, if it does.
fn off_because(cfg: &DemoConfig, stdin_is_terminal: bool) -> Option<String> {
    if let Some(p) = &cfg.when_missing
        && std::path::Path::new(p).exists()
    {
        return Some(format!("{p} exists"));
    }
    if cfg.when_interactive && !stdin_is_terminal {
        return Some("standard input is not a terminal".into());
    }
    None
}

/// Runs the source on the calling thread until `lines` are emitted, the
/// `when_missing` path appears, or the pipeline stops.
pub fn run(cfg: &DemoConfig, ctx: SourceContext) -> Result<(), String> {
    if let Some(why) = off_because(cfg, std::io::stdin().is_terminal()) {
        tracing::debug!(source = %ctx.name, "the demo source is off: {why}");
        return Ok(());
    }
    if ctx.once && cfg.lines.is_none() {
        tracing::info!(source = %ctx.name, "a demo source without `lines` has nothing to replay in --once mode");
        return Ok(());
    }
    let why = match &cfg.when_missing {
        Some(p) => format!("{p} does not exist, so "),
        None => String::new(),
    };
    tracing::info!(
        source = %ctx.name,
        rate = cfg.rate,
        "running on demo data: {why}source `{}` emits the Feynman app's events, generated live; watch them with `weir tap {}` and `weir top`. For real logs, point the pipeline at their directory (WEIR_LOGS_DIR=/path/to/logs for the shipped pipelines; the demo stops once it exists) or pipe the app into weir (app 2>&1 | weir run …)",
        ctx.name,
        ctx.name
    );
    let mut decoder = LineDecoder::new(&cfg.decode, &ctx)?;
    let start_micros = now_nanos() / 1000;
    let mut workload = weir_workload::Workload::new(weir_workload::WorkloadOptions {
        seed: cfg.seed.unwrap_or(now_nanos() as u64),
        start_unix_micros: start_micros,
        malformed: cfg.malformed,
    });
    let limit = cfg.lines.unwrap_or(u64::MAX);
    let mut pace = Pace::new(cfg.rate, Instant::now(), start_micros);
    let (mut emitted, mut last_look) = (0u64, Instant::now());
    let mut progress_at = Instant::now() + Duration::from_secs(5);
    let mut buf = Vec::with_capacity(4096);
    let mut events = Vec::new();
    let mut counts = FrameCounts::default();
    while emitted < limit && !ctx.shutdown.is_triggered() {
        if let Some(p) = &cfg.when_missing
            && last_look.elapsed() >= LOOK_EVERY
        {
            last_look = Instant::now();
            if std::path::Path::new(p).exists() {
                tracing::info!(source = %ctx.name, "{p} exists now: the demo source stops, real logs from here on");
                break;
            }
        }
        let now = Instant::now();
        let due = pace.due(now).min(limit);
        let now_ns = now_nanos();
        while emitted < due {
            buf.clear();
            workload.next_line_at(pace.stamp_micros(emitted), &mut buf);
            let text = match std::str::from_utf8(&buf) {
                Ok(t) => t.trim_end_matches('\n').to_string(),
                Err(_) => String::from_utf8_lossy(&buf).trim_end().to_string(),
            };
            counts.lines += 1;
            counts.bytes += buf.len() as u64;
            emitted += 1;
            let line = Line {
                text,
                end_offset: emitted,
                truncated: false,
                envelope: None,
            };
            decoder.push(line, now_ns, &mut events);
        }
        decoder.publish(&mut counts);
        if flush(&ctx.output, &mut events, None).is_err() {
            break;
        }
        // A pipeline that cannot keep up is not owed the lines it missed.
        pace.catch_up(Instant::now(), emitted);
        if Instant::now() >= progress_at {
            tracing::info!(source = %ctx.name, "demo: {emitted} lines emitted so far ({} lines/s)", cfg.rate);
            progress_at = Instant::now() + Duration::from_secs(60);
        }
        if emitted < limit {
            std::thread::sleep(TICK);
        }
    }
    decoder.publish(&mut counts);
    Ok(())
}

/// The schedule: line `n` is due `n / rate` seconds after the start, and
/// dated then.
struct Pace {
    rate: f64,
    /// When line `base` was due, on the monotonic and the wall clock.
    at: Instant,
    at_micros: i64,
    base: u64,
}

impl Pace {
    fn new(rate: f64, at: Instant, at_micros: i64) -> Pace {
        Pace {
            rate,
            at,
            at_micros,
            base: 0,
        }
    }

    /// How many lines should have been emitted by `now`.
    fn due(&self, now: Instant) -> u64 {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.base + (secs * self.rate) as u64 + 1
    }

    /// The time line `n` is dated.
    fn stamp_micros(&self, n: u64) -> i64 {
        self.at_micros + ((n.saturating_sub(self.base)) as f64 / self.rate * 1e6) as i64
    }

    /// When more than a second behind, starts the schedule again at `now`
    /// with line `emitted`.
    fn catch_up(&mut self, now: Instant, emitted: u64) {
        let behind = self.due(now).saturating_sub(emitted) as f64;
        if behind > self.rate.max(1.0) {
            let moved = now.saturating_duration_since(self.at);
            self.at = now;
            self.at_micros += moved.as_micros() as i64;
            self.base = emitted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::Node;

    fn cfg(yaml: &str) -> DemoConfig {
        Node::parse(yaml).unwrap().deserialize().unwrap()
    }

    #[test]
    fn defaults() {
        let c = cfg("{}");
        assert_eq!(c.rate, DEFAULT_RATE);
        assert!(c.malformed && !c.when_interactive);
        assert_eq!(c.lines, None);
        assert_eq!(c.decode.timestamp.unwrap().field, "timestamp");
    }

    #[test]
    fn off_while_the_path_exists_or_without_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let there = dir.path().display().to_string();
        let gone = dir.path().join("logs").display().to_string();
        let c = cfg(&format!("{{when_missing: '{there}'}}"));
        assert_eq!(off_because(&c, true), Some(format!("{there} exists")));
        let c = cfg(&format!("{{when_missing: '{gone}'}}"));
        assert_eq!(off_because(&c, false), None);
        let c = cfg(&format!(
            "{{when_missing: '{gone}', when_interactive: true}}"
        ));
        assert_eq!(off_because(&c, true), None);
        assert!(off_because(&c, false).unwrap().contains("not a terminal"));
    }

    #[test]
    fn the_schedule_paces_dates_and_forgives() {
        let t0 = Instant::now();
        let mut p = Pace::new(50.0, t0, 1_000_000);
        assert_eq!(p.due(t0), 1, "the first line at once");
        assert_eq!(p.due(t0 + Duration::from_millis(100)), 6);
        assert_eq!(p.stamp_micros(0), 1_000_000);
        assert_eq!(p.stamp_micros(5), 1_100_000);
        // Three seconds behind: the schedule starts again from now.
        let late = t0 + Duration::from_secs(3);
        p.catch_up(late, 10);
        assert_eq!(p.due(late), 11);
        assert_eq!(p.stamp_micros(10), 4_000_000);
        // Slightly behind is caught up on.
        let mut q = Pace::new(50.0, t0, 0);
        q.catch_up(t0 + Duration::from_millis(500), 0);
        assert_eq!(q.base, 0);
    }
}
