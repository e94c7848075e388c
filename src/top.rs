//! `weir top`: a running weir's throughput in a terminal, from its local
//! API's `/metrics`, refreshed every second.
//!
//! Per source: lines/s and bytes/s read, lines read, decode errors. Per
//! sink: events/s and bytes/s delivered, events delivered, retries, dead
//! letters, and what its buffer holds (`weir_buffer_events` /
//! `weir_buffer_bytes`) when it has one. Rates are the change between two
//! scrapes. On a terminal each frame replaces the last; otherwise frames
//! are printed one after the other as plain text, and `--once` prints a
//! single frame (rates over one interval) and exits, for scripts.
//!
//! It reads weir's own self-metrics only (never the derived metrics), keeps
//! no history beyond the previous scrape, and changes nothing in the
//! running weir.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::commands::{EXIT_CONFIG, EXIT_RUNTIME};
use crate::tap::client::api_address;

/// Options of `weir top`.
#[derive(Debug, Clone, clap::Args)]
pub struct TopArgs {
    /// Print one frame (rates over one interval) and exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds between frames.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub interval: f64,
    /// The running weir's API (default: $WEIR_API_ADDR, else 127.0.0.1:9464).
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
}

/// One series of a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the Prometheus text format (the samples; comments are skipped,
/// and so are lines that do not parse).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// One scrape: sums by (metric, one label's value).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    by: BTreeMap<(String, String), f64>,
    version: Option<String>,
    firing: usize,
}

/// The metrics a frame shows, and the label that names the row.
const SOURCE_METRICS: &[&str] = &[
    "weir_lines_read_total",
    "weir_bytes_read_total",
    "weir_decode_errors_total",
];
const SINK_METRICS: &[&str] = &[
    "weir_events_out_total",
    "weir_bytes_out_total",
    "weir_sink_retries_total",
    "weir_dead_letter_events_total",
    "weir_buffer_events",
    "weir_buffer_bytes",
];

impl Scrape {
    pub fn new(samples: &[Sample]) -> Scrape {
        let mut s = Scrape::default();
        for x in samples {
            let key = if SOURCE_METRICS.contains(&x.name.as_str()) {
                x.label("source")
            } else if SINK_METRICS.contains(&x.name.as_str()) {
                x.label("sink")
            } else {
                if x.name == "weir_build_info" {
                    s.version = x.label("version").map(str::to_string);
                }
                if x.name == "ALERTS" && x.label("alertstate") == Some("firing") {
                    s.firing += 1;
                }
                None
            };
            if let Some(k) = key {
                *s.by.entry((x.name.clone(), k.to_string())).or_default() += x.value;
            }
        }
        s
    }

    fn get(&self, metric: &str, row: &str) -> Option<f64> {
        self.by.get(&(metric.to_string(), row.to_string())).copied()
    }

    fn rows(&self, metrics: &[&str]) -> BTreeSet<String> {
        self.by
            .keys()
            .filter(|(m, _)| metrics.contains(&m.as_str()))
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// SI bytes: `512 B`, `24.1 kB`, `3.2 MB`.
fn bytes(v: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = v;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn count(v: f64) -> String {
    format!("{v:.0}")
}

/// Renders rows with the first column left-aligned, the others right-aligned.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c == 0 {
                let _ = write!(line, "{cell:<w$}", w = width[0]);
            } else {
                let _ = write!(line, "  {cell:>w$}", w = width[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// One frame: rates between `prev` and `cur`, `secs` apart.
pub fn frame(address: &str, prev: &Scrape, cur: &Scrape, secs: f64) -> String {
    let rate = |m: &str, row: &str| -> Option<f64> {
        let now = cur.get(m, row)?;
        let before = prev.get(m, row).unwrap_or(0.0);
        // A counter that went down was reset (weir restarted).
        let delta = if now >= before { now - before } else { now };
        Some(delta / secs.max(1e-9))
    };
    let dash = || "-".to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "weir {} at {address} · {} · every {secs:.1}s{}",
        cur.version.as_deref().unwrap_or("?"),
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC"),
        if cur.firing > 0 {
            format!(" · {} alerts firing", cur.firing)
        } else {
            String::new()
        }
    );
    out.push('\n');

    let mut rows = vec![
        ["SOURCE", "LINES/S", "BYTES/S", "LINES", "DECODE ERRORS"]
            .map(String::from)
            .to_vec(),
    ];
    for s in cur.rows(SOURCE_METRICS) {
        rows.push(vec![
            s.clone(),
            rate("weir_lines_read_total", &s).map_or_else(dash, |v| format!("{v:.1}")),
            rate("weir_bytes_read_total", &s).map_or_else(dash, |v| format!("{}/s", bytes(v))),
            cur.get("weir_lines_read_total", &s)
                .map_or_else(dash, count),
            count(cur.get("weir_decode_errors_total", &s).unwrap_or(0.0)),
        ]);
    }
    if rows.len() == 1 {
        rows.push(vec!["(none yet)".into()]);
    }
    table(&mut out, &rows);
    out.push('\n');

    let sinks = cur.rows(SINK_METRICS);
    let buffered = sinks
        .iter()
        .any(|s| cur.get("weir_buffer_events", s).is_some());
    let mut head = [
        "SINK",
        "EVENTS/S",
        "BYTES/S",
        "EVENTS",
        "RETRIES",
        "DEAD LETTERS",
    ]
    .map(String::from)
    .to_vec();
    if buffered {
        head.extend(["BUFFER EVENTS", "BUFFER BYTES"].map(String::from));
    }
    let mut rows = vec![head];
    for s in &sinks {
        let mut row = vec![
            s.clone(),
            rate("weir_events_out_total", s).map_or_else(dash, |v| format!("{v:.1}")),
            rate("weir_bytes_out_total", s).map_or_else(dash, |v| format!("{}/s", bytes(v))),
            cur.get("weir_events_out_total", s).map_or_else(dash, count),
            count(cur.get("weir_sink_retries_total", s).unwrap_or(0.0)),
            count(cur.get("weir_dead_letter_events_total", s).unwrap_or(0.0)),
        ];
        if buffered {
            row.push(cur.get("weir_buffer_events", s).map_or_else(dash, count));
            row.push(cur.get("weir_buffer_bytes", s).map_or_else(dash, bytes));
        }
        rows.push(row);
    }
    if rows.len() == 1 {
        rows.push(vec!["(none yet)".into()]);
    }
    table(&mut out, &rows);
    out
}

async fn scrape(client: &reqwest::Client, url: &str) -> Result<Scrape, String> {
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{} answered {}", url, resp.status()));
    }
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok(Scrape::new(&parse_exposition(&text)))
}

/// Runs `weir top`: until interrupted, or one frame with `--once`; 1 when
/// weir cannot be reached (with `--once`, or at the start).
pub fn run(args: TopArgs) -> ExitCode {
    if !(args.interval.is_finite() && args.interval >= 0.1 && args.interval <= 3600.0) {
        eprintln!("error: --interval is seconds between frames: 0.1 to 3600");
        return ExitCode::from(EXIT_CONFIG);
    }
    let addr = match api_address(args.address.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(top(&addr, &args))
}

async fn top(addr: &str, args: &TopArgs) -> ExitCode {
    let url = format!("http://{addr}/metrics");
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot build an HTTP client: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let unreachable = |e: &str| {
        format!(
            "cannot reach weir's API at {url}: {e}; is weir running? (--address, or WEIR_API_ADDR)"
        )
    };
    let interval = Duration::from_secs_f64(args.interval);
    let mut prev = match scrape(&client, &url).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", unreachable(&e));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let mut at = Instant::now();
    let terminal = std::io::stdout().is_terminal() && !args.once;
    loop {
        tokio::time::sleep(interval).await;
        let text = match scrape(&client, &url).await {
            Ok(cur) => {
                let secs = at.elapsed().as_secs_f64();
                at = Instant::now();
                let f = frame(addr, &prev, &cur, secs);
                prev = cur;
                f
            }
            Err(e) if args.once => {
                eprintln!("error: {}", unreachable(&e));
                return ExitCode::from(EXIT_RUNTIME);
            }
            // Keep trying: weir may be restarting.
            Err(e) => format!("{}\n", unreachable(&e)),
        };
        let mut out = std::io::stdout().lock();
        let written = if terminal {
            write!(out, "\x1b[H\x1b[2J{text}")
        } else {
            writeln!(out, "{text}")
        };
        if written.and_then(|_| out.flush()).is_err() || args.once {
            return ExitCode::SUCCESS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP weir_lines_read_total Lines read, by source.
# TYPE weir_lines_read_total counter
weir_lines_read_total{source="app"} 150
weir_bytes_read_total{source="app"} 30000
weir_decode_errors_total{source="app",reason="invalid_json"} 2
weir_decode_errors_total{source="app",reason="not_an_object"} 1
weir_events_out_total{sink="out"} 140
weir_bytes_out_total{sink="out"} 28000
weir_sink_retries_total{sink="out"} 3
weir_dead_letter_events_total{sink="out",reason="rejected"} 4
weir_buffer_events{sink="out"} 10
weir_buffer_bytes{sink="out"} 2000
weir_events_out_total{sink="metrics"} 150
weir_build_info{version="0.1.0"} 1
ALERTS{alertname="X",alertstate="firing",q="a \"b\", c"} 1
"#;

    #[test]
    fn reads_the_exposition() {
        let s = parse_exposition(TEXT);
        assert_eq!(s.len(), 13);
        assert_eq!(s[0].name, "weir_lines_read_total");
        assert_eq!(s[0].labels, [("source".to_string(), "app".to_string())]);
        assert_eq!(s[12].labels[2].1, "a \"b\", c");
        assert!(parse_line("x{a=\"1\"").is_none());
    }

    #[test]
    fn a_frame_has_rates_totals_and_buffers() {
        let before = Scrape::new(&parse_exposition(
            "weir_lines_read_total{source=\"app\"} 50\nweir_events_out_total{sink=\"out\"} 40\n",
        ));
        let cur = Scrape::new(&parse_exposition(TEXT));
        let f = frame("127.0.0.1:9464", &before, &cur, 2.0);
        assert!(f.starts_with("weir 0.1.0 at 127.0.0.1:9464"), "{f}");
        assert!(f.contains("1 alerts firing"), "{f}");
        let line = |name: &str| {
            f.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no {name} row in\n{f}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        // 100 lines and 30 kB over 2 s; 3 decode errors in all.
        assert_eq!(line("app"), "app 50.0 15.0 kB/s 150 3");
        assert_eq!(line("out"), "out 50.0 14.0 kB/s 140 3 4 10 2.0 kB");
        assert_eq!(line("metrics"), "metrics 75.0 - 150 0 0 - -");
    }
}
