//! End-to-end throughput of `weir run --once` against an in-process parsing floor.
//!
//! What it measures, all in one process run so that the ratios are comparable even
//! on a noisy shared machine:
//!
//! - **(a) floor**: this process reads the input with a 256 KiB `BufReader`, line by
//!   line, and parses every line with `serde_json::from_slice::<serde_json::Value>`.
//!   That is roughly the least work any JSON log shipper has to do per line.
//! - **(b) stdin → file**: `weir run PIPELINE --once` as a child process with the input
//!   on its standard input, a `stdin` source (`decode: {codec: json}`) and a `file`
//!   sink; afterwards the output files must hold exactly as many lines as the input.
//! - **(c) stdin → blackhole**: the same with a `blackhole` sink.
//! - **(d) file → blackhole**: a `file` source (`read_from: beginning`) instead of stdin.
//! - **(f) stdin → blackhole + metrics**: (c) plus the `metrics` sink of
//!   `pipelines/feynman.yaml` (every rule and the cost counters).
//! - **(g) stdin → loki**: a `loki` sink (protobuf + snappy) pushing to a receiver in
//!   this process on loopback that decodes every request and answers 204.
//! - **(h) stdin → elasticsearch**: gzip `_bulk` requests to a receiver in this process
//!   that decompresses them, counts the documents and answers `errors: false`.
//! - **(w) W1, the main job**: `weir run pipelines/feynman.yaml --once` as shipped,
//!   with the input as `logs/app.log`: file source → file sink, every derived
//!   metric and cost counter, and the plan's alert rules back-tested over the
//!   logs' own time. Compare its wall time and CPU with the floor's.
//! - **(i), (j) stdin → disk buffer → loki**: (g) with `buffer: {type: disk}` in front
//!   of the Loki sink, fsync after every batch (i) or at most every 100 ms (j);
//!   reported as ratios to (g), whose buffer is the default in-memory channel.
//!
//! Every weir run gets a fresh temporary `data_dir` (so no checkpoints carry over),
//! `api.enabled: false`, and `--metrics-file`; the run must exit 0 and its
//! `weir_events_out_total` must equal the number of input lines, or the benchmark
//! stops with an error. CPU time and peak RSS of a child come from `wait4(2)`, so
//! they are the child's own; the floor's CPU comes from `getrusage(RUSAGE_SELF)` deltas
//! and its RSS from this process's `VmHWM`, reset just before the floor starts.
//!
//! Run it with `cargo bench --bench pipeline`. Environment variables:
//!
//! - `WEIR_BENCH_LINES` — lines to generate (default 2_500_000, about 1 GB).
//! - `WEIR_BENCH_CASES` — only these cases, e.g. `c,h` (the floor always
//!   runs; no targets are checked then).
//! - `WEIR_BENCH_FILE` — input file to reuse if it exists; if it does not exist, it
//!   is generated there (and kept). Without it, the input lives in a temporary
//!   directory that is removed at the end.
//! - `WEIR_BENCH_REPEAT` — runs per case (default 1); the best wall time is reported,
//!   with the CPU time and RSS of that same run.
//! - `WEIR_BENCH_STRICT=1` — exit non-zero when a target is missed (otherwise the exit
//!   code is 0 whatever the verdicts; errors such as a failed run always exit 1).
//!
//! Reading the table: `thr/floor` is the case's wall-clock lines/s divided by the
//! floor's lines/s — above 1.0 means weir moves lines end to end faster than a single
//! thread can merely parse them (weir may use more than one core to do it).
//! `CPU/floor` is the case's user+sys CPU seconds divided by the floor's — the total
//! work per line relative to the floor, whatever the parallelism; 1.0 means weir
//! spends exactly a parse's worth of CPU per line. MB/s counts input bytes, 10^6 per MB.
//!
//! Targets (issue #16's, as multiples of the floor's lines/s): (b) and (c) ≥ 2.5x,
//! peak RSS of both < 32 MiB; (f) ≥ 2.5x, with the metrics costing at most 10% more
//! CPU than (c); (g) ≥ 2.0x; (h) ≥ 1.5x in ≤ 32 MiB; (w) at most 0.4x the floor's
//! wall time and 1.0x its CPU, in ≤ 32 MiB.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");
const DEFAULT_LINES: u64 = 2_500_000;
const RSS_TARGET_MIB: f64 = 32.0;

mod common;

use common::{Res, cpu_of, env_u64, yaml_str};

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Measure {
    wall: Duration,
    cpu: Duration,
    maxrss_kib: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Stdin,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkKind {
    File,
    Blackhole,
    /// A blackhole plus the `metrics` sink of pipelines/feynman.yaml.
    BlackholeAndMetrics,
    /// A `loki` sink pushing to a receiver in this process.
    Loki,
    /// An `elasticsearch` sink posting to a bulk receiver in this process.
    Elasticsearch,
    /// pipelines/feynman.yaml itself (its file sink is `local`).
    MainJob,
}

struct Case {
    label: &'static str,
    source: Source,
    sink: SinkKind,
    /// The sink's `buffer:` settings (flow-style YAML), if any.
    buffer: Option<&'static str>,
}

const CASES: [Case; 9] = [
    Case {
        label: "(b) weir stdin -> file",
        source: Source::Stdin,
        sink: SinkKind::File,
        buffer: None,
    },
    Case {
        label: "(c) weir stdin -> blackhole",
        source: Source::Stdin,
        sink: SinkKind::Blackhole,
        buffer: None,
    },
    Case {
        label: "(d) weir file -> blackhole",
        source: Source::File,
        sink: SinkKind::Blackhole,
        buffer: None,
    },
    Case {
        label: "(f) weir stdin -> blackhole + metrics",
        source: Source::Stdin,
        sink: SinkKind::BlackholeAndMetrics,
        buffer: None,
    },
    Case {
        label: "(g) weir stdin -> loki (loopback)",
        source: Source::Stdin,
        sink: SinkKind::Loki,
        buffer: None,
    },
    Case {
        label: "(h) weir stdin -> es bulk (loopback)",
        source: Source::Stdin,
        sink: SinkKind::Elasticsearch,
        buffer: None,
    },
    Case {
        label: "(w) W1: weir run pipelines/feynman.yaml --once",
        source: Source::File,
        sink: SinkKind::MainJob,
        buffer: None,
    },
    Case {
        label: "(i) weir stdin -> disk buffer (fsync every batch) -> loki",
        source: Source::Stdin,
        sink: SinkKind::Loki,
        buffer: Some("{type: disk, max_bytes: 1GiB, fsync: batch}"),
    },
    Case {
        label: "(j) weir stdin -> disk buffer (fsync at most every 100ms) -> loki",
        source: Source::Stdin,
        sink: SinkKind::Loki,
        buffer: Some("{type: disk, max_bytes: 1GiB, fsync: 100ms}"),
    },
];

/// A receiver on loopback for the forwarding cases: `count` tells how many
/// events a request body holds (its `Content-Encoding` is passed along),
/// `reply` is the whole HTTP answer. Its CPU is this process's, not weir's.
struct Receiver {
    url: String,
    entries: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    fn start(count: fn(&[u8], &str) -> u64, reply: &'static [u8]) -> Receiver {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let entries = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let total = entries.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let total = total.clone();
                std::thread::spawn(move || {
                    let mut w = conn.try_clone().expect("clone socket");
                    let mut r = std::io::BufReader::new(conn);
                    loop {
                        let (mut len, mut encoding) = (0usize, String::new());
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((k, v)) = line.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                                if k.eq_ignore_ascii_case("content-encoding") {
                                    encoding = v.trim().to_string();
                                }
                            }
                        }
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        total.fetch_add(
                            count(&body, &encoding),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        // One write: head and body in two segments would meet
                        // Nagle and delayed ACKs (40 ms a request).
                        if w.write_all(reply).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { url, entries }
    }
}

/// A `_bulk` receiver: un-gzips each body, counts the documents (two NDJSON
/// lines each) and answers `{"errors":false}`.
fn es_receiver() -> &'static Receiver {
    static R: std::sync::OnceLock<Receiver> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        fn count(body: &[u8], encoding: &str) -> u64 {
            use std::io::Read;
            let mut raw = Vec::new();
            if encoding == "gzip" {
                flate2::read::MultiGzDecoder::new(body).read_to_end(&mut raw).expect("gzip body");
            } else {
                raw = body.to_vec();
            }
            (raw.iter().filter(|b| **b == b'\n').count() / 2) as u64
        }
        Receiver::start(
            count,
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 36\r\n\r\n{\"took\":1,\"errors\":false,\"items\":[]}",
        )
    })
}

/// A Loki push receiver: decodes (snappy + protobuf), counts entries and
/// answers 204 like Loki.
fn loki_receiver() -> &'static Receiver {
    static R: std::sync::OnceLock<Receiver> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        fn count(body: &[u8], _: &str) -> u64 {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .expect("snappy body");
            let req =
                <weir::sink::loki::proto::PushRequest as prost::Message>::decode(raw.as_slice())
                    .expect("protobuf body");
            req.streams.iter().map(|s| s.entries.len() as u64).sum()
        }
        Receiver::start(count, b"HTTP/1.1 204 No Content\r\n\r\n")
    })
}

/// The `metrics` sink of pipelines/feynman.yaml, reading from `in`.
fn feynman_metrics_sink() -> String {
    let text = include_str!("../pipelines/feynman.yaml");
    let start = text
        .find("\n  metrics:\n")
        .expect("feynman.yaml has a metrics sink")
        + 1;
    // Up to the alerting section: case (f) measures the metrics alone.
    let end = text.find("\n# Alert rules").unwrap_or(text.len());
    text[start..end]
        .replace("inputs: [app_logs, app_stdout, demo]", "inputs: [in]")
        .replace("${DAILY_COST_LIMIT_USD:-100}", "100")
}

fn main() -> ExitCode {
    match bench() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("pipeline bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; `Ok(false)` when a target is missed and strict mode is on.
fn bench() -> Res<bool> {
    // `cargo bench` passes `--bench` (and maybe a filter); nothing to parse here.
    let lines_wanted = env_u64("WEIR_BENCH_LINES", DEFAULT_LINES)?;
    let repeat = env_u64("WEIR_BENCH_REPEAT", 1)?.max(1);
    let strict = std::env::var("WEIR_BENCH_STRICT").is_ok_and(|v| v.trim() == "1");
    // `WEIR_BENCH_CASES=c,h`: only those cases (and the floor), no targets.
    let only: Option<Vec<String>> = std::env::var("WEIR_BENCH_CASES")
        .ok()
        .map(|v| v.split(',').map(|c| format!("({})", c.trim())).collect());

    let scratch = tempfile::Builder::new()
        .prefix("weir-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;

    // 1. The input.
    let (input, lines, bytes) = match std::env::var_os("WEIR_BENCH_FILE") {
        Some(p) if Path::new(&p).is_file() => {
            let path = PathBuf::from(p);
            eprintln!("reusing {} (counting lines)…", path.display());
            let (lines, bytes) = count_lines(&path)?;
            (path, lines, bytes)
        }
        Some(p) => {
            let path = PathBuf::from(p);
            let bytes = generate(&path, lines_wanted)?;
            (path, lines_wanted, bytes)
        }
        None => {
            let path = scratch.path().join("input.ndjson");
            let bytes = generate(&path, lines_wanted)?;
            (path, lines_wanted, bytes)
        }
    };
    if lines == 0 {
        return Err(format!("{} holds no lines", input.display()));
    }
    println!(
        "input: {} — {lines} lines, {:.1} MB, {:.0} bytes/line; weir: {WEIR}; best of {repeat}",
        input.display(),
        bytes as f64 / 1e6,
        bytes as f64 / lines as f64,
    );

    // 2. (a) The floor.
    let mut floor_best: Option<Measure> = None;
    for i in 0..repeat {
        eprintln!("running (a) floor [{}/{repeat}]…", i + 1);
        let (read, ok, m) = floor(&input)?;
        if read != lines {
            return Err(format!("floor read {read} lines, expected {lines}"));
        }
        if ok != lines {
            eprintln!("note: {} of {lines} lines are not valid JSON", lines - ok);
        }
        floor_best = best(floor_best, m);
    }
    let floor_m = floor_best.expect("repeat >= 1");

    // 3–5. (b), (c), (d): weir as a child process.
    let mut results: Vec<(&str, Measure)> = vec![("(a) floor: BufReader+serde_json", floor_m)];
    for (n, case) in CASES.iter().enumerate() {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|c| case.label.starts_with(c.as_str())))
        {
            continue;
        }
        let mut case_best: Option<Measure> = None;
        for i in 0..repeat {
            eprintln!("running {} [{}/{repeat}]…", case.label, i + 1);
            let dir = scratch.path().join(format!("case{n}-run{i}"));
            let m = run_weir(case, &input, lines, &dir)?;
            // Keep the disk tidy: 1 GB of output per run adds up.
            let _ = std::fs::remove_dir_all(&dir);
            case_best = best(case_best, m);
        }
        results.push((case.label, case_best.expect("repeat >= 1")));
    }

    // Output.
    print_table(&results, &floor_m, lines, bytes);
    if only.is_some() {
        println!("(WEIR_BENCH_CASES is set: some cases did not run, so no targets are checked)");
        return Ok(true);
    }
    let verdicts = verdicts(&results, &floor_m, lines);
    let mut all_pass = true;
    println!();
    println!("targets:");
    for (what, pass) in &verdicts {
        all_pass &= *pass;
        println!("  [{}] {what}", if *pass { "PASS" } else { "FAIL" });
    }
    if !all_pass && !strict {
        println!("(some targets missed; set WEIR_BENCH_STRICT=1 to make that an error)");
    }
    Ok(all_pass || !strict)
}

/// Keeps the run with the shorter wall time.
fn best(prev: Option<Measure>, m: Measure) -> Option<Measure> {
    match prev {
        Some(p) if p.wall <= m.wall => Some(p),
        _ => Some(m),
    }
}

/// Writes the workload to `path`; returns its size in bytes.
fn generate(path: &Path, lines: u64) -> Res<u64> {
    let start = Instant::now();
    let bytes = common::generate(path, lines)?;
    let t = start.elapsed().as_secs_f64();
    println!(
        "generated {lines} lines ({:.1} MB) in {t:.2} s ({:.0} MB/s)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / t
    );
    Ok(bytes)
}

/// Lines (newline-terminated, plus an unterminated tail) and bytes of a file.
fn count_lines(path: &Path) -> Res<(u64, u64)> {
    let err = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut f = File::open(path).map_err(err)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut bytes, mut last) = (0u64, 0u64, b'\n');
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        bytes += n as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1;
    }
    Ok((lines, bytes))
}

/// (a): read and parse every line in this process. Returns (lines, parsed ok, measure).
fn floor(input: &Path) -> Res<(u64, u64, Measure)> {
    let f = common::floor(input)?;
    let measure = Measure {
        wall: f.wall,
        cpu: f.cpu,
        maxrss_kib: f.rss_kib.unwrap_or(common::self_usage().ru_maxrss),
    };
    Ok((f.lines, f.ok, measure))
}

fn pipeline_yaml(case: &Case, input: &Path, dir: &Path) -> String {
    if case.sink == SinkKind::MainJob {
        return include_str!("../pipelines/feynman.yaml").to_string();
    }
    let path_str = |p: &Path| yaml_str(&p.to_string_lossy());
    let mut y = String::new();
    let _ = writeln!(y, "data_dir: {}", path_str(&dir.join("data")));
    let _ = writeln!(y, "api: {{enabled: false}}");
    let _ = writeln!(y, "sources:");
    let _ = writeln!(y, "  in:");
    match case.source {
        Source::Stdin => {
            let _ = writeln!(y, "    type: stdin");
        }
        Source::File => {
            let _ = writeln!(y, "    type: file");
            let _ = writeln!(y, "    include: [{}]", path_str(input));
            let _ = writeln!(y, "    read_from: beginning");
        }
    }
    let _ = writeln!(y, "    decode: {{codec: json}}");
    let _ = writeln!(y, "sinks:");
    let _ = writeln!(y, "  out:");
    match case.sink {
        SinkKind::File => {
            let _ = writeln!(y, "    type: file");
            let _ = writeln!(y, "    inputs: [in]");
            let out = dir.join("out").join("%Y-%m-%d.ndjson");
            let _ = writeln!(y, "    path: {}", path_str(&out));
        }
        SinkKind::Blackhole => {
            let _ = writeln!(y, "    type: blackhole");
            let _ = writeln!(y, "    inputs: [in]");
        }
        SinkKind::BlackholeAndMetrics => {
            let _ = writeln!(y, "    type: blackhole");
            let _ = writeln!(y, "    inputs: [in]");
            y.push_str(&feynman_metrics_sink());
        }
        SinkKind::Elasticsearch => {
            let _ = writeln!(y, "    type: elasticsearch");
            let _ = writeln!(y, "    inputs: [in]");
            let _ = writeln!(y, "    endpoint: {}", es_receiver().url);
            let _ = writeln!(y, "    index: 'feynman-%Y.%m.%d'");
            let _ = writeln!(y, "    batch: {{max_bytes: 5MiB}}");
        }
        SinkKind::MainJob => unreachable!("feynman.yaml is used as it is"),
        SinkKind::Loki => {
            let _ = writeln!(y, "    type: loki");
            let _ = writeln!(y, "    inputs: [in]");
            let _ = writeln!(y, "    endpoint: {}", loki_receiver().url);
            let _ = writeln!(y, "    labels: {{app: feynman, level: '{{{{ level }}}}'}}");
        }
    }
    if let Some(b) = case.buffer {
        let _ = writeln!(y, "    buffer: {b}");
    }
    y
}

/// Runs one case as a child process and checks what it delivered.
fn run_weir(case: &Case, input: &Path, lines: u64, dir: &Path) -> Res<Measure> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let yaml_path = dir.join("pipeline.yaml");
    let yaml = pipeline_yaml(case, input, dir);
    std::fs::write(&yaml_path, &yaml)
        .map_err(|e| format!("cannot write {}: {e}", yaml_path.display()))?;
    let metrics_path = dir.join("metrics.prom");
    let stderr_path = dir.join("stderr.log");
    let stderr = File::create(&stderr_path)
        .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
    let stdin = match case.source {
        Source::Stdin => Stdio::from(
            File::open(input).map_err(|e| format!("cannot open {}: {e}", input.display()))?,
        ),
        Source::File => Stdio::null(),
    };

    let mut command = Command::new(WEIR);
    let (out_sink, out_dir) = if case.sink == SinkKind::MainJob {
        // The shipped pipeline reads ./logs and writes under ./data.
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
        std::os::unix::fs::symlink(input, logs.join("app.log"))
            .map_err(|e| format!("cannot link the input into {}: {e}", logs.display()))?;
        command
            .env("WEIR_LOGS_DIR", &logs)
            .env("WEIR_DATA_DIR", dir.join("data"))
            .env("WEIR_API_ADDR", "127.0.0.1:0");
        ("local", dir.join("data").join("out"))
    } else {
        ("out", dir.join("out"))
    };

    let start = Instant::now();
    let child = command
        .arg("run")
        .arg(&yaml_path)
        .arg("--once")
        .arg("--metrics-file")
        .arg(&metrics_path)
        .env("WEIR_LOG", "info")
        .current_dir(dir)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {WEIR}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let (status, ru) = common::reap(pid, true)?.expect("a blocking wait reaps the child");
    let wall = start.elapsed();
    // Reaped by wait4 above; dropping a Child neither waits nor kills.
    drop(child);

    let fail = |what: String| -> String {
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}: {what}\n--- pipeline ---\n{yaml}--- weir stderr (last 40 lines) ---\n{}",
            case.label,
            tail.join("\n")
        )
    };
    if !libc::WIFEXITED(status) {
        return Err(fail(format!(
            "weir died from signal {}",
            libc::WTERMSIG(status)
        )));
    }
    if libc::WEXITSTATUS(status) != 0 {
        return Err(fail(format!(
            "weir exited with status {}",
            libc::WEXITSTATUS(status)
        )));
    }

    // Everything arrived, according to weir…
    let metrics = std::fs::read_to_string(&metrics_path)
        .map_err(|e| fail(format!("cannot read {}: {e}", metrics_path.display())))?;
    let label = format!("sink=\"{out_sink}\"");
    let out = metric_sum(&metrics, "weir_events_out_total", &label);
    if out != Some(lines) {
        return Err(fail(format!(
            "weir_events_out_total{{{label}}} is {out:?}, expected {lines}"
        )));
    }
    // …and, for the file sink, according to the files themselves.
    if matches!(case.sink, SinkKind::File | SinkKind::MainJob) {
        let mut files = Vec::new();
        collect_files(&out_dir, &mut files)
            .map_err(|e| fail(format!("cannot list the output: {e}")))?;
        let mut written = 0;
        for f in &files {
            written += count_lines(f).map_err(&fail)?.0;
        }
        if written != lines {
            return Err(fail(format!(
                "the output ({} files) holds {written} lines, expected {lines}",
                files.len()
            )));
        }
    }

    Ok(Measure {
        wall,
        cpu: cpu_of(&ru),
        maxrss_kib: ru.ru_maxrss,
    })
}

/// Sum of the samples of `name` whose labels contain `label`, if any.
fn metric_sum(text: &str, name: &str, label: &str) -> Option<u64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') && rest.contains(label)) {
            continue;
        }
        if let Some(v) = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            *sum.get_or_insert(0) += v;
        }
    }
    sum
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn lines_per_s(m: &Measure, lines: u64) -> f64 {
    lines as f64 / m.wall.as_secs_f64()
}

fn mib(m: &Measure) -> f64 {
    m.maxrss_kib as f64 / 1024.0
}

fn print_table(results: &[(&str, Measure)], floor: &Measure, lines: u64, bytes: u64) {
    let floor_lps = lines_per_s(floor, lines);
    let floor_cpu = floor.cpu.as_secs_f64();
    println!();
    println!(
        "{:<33} {:>11} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "case", "lines/s", "MB/s", "wall s", "CPU s", "RSS MiB", "thr/floor", "CPU/floor"
    );
    for (label, m) in results {
        let wall = m.wall.as_secs_f64();
        let cpu = m.cpu.as_secs_f64();
        println!(
            "{:<33} {:>11.0} {:>8.1} {:>8.3} {:>8.3} {:>8.1} {:>10.3} {:>10.3}",
            label,
            lines_per_s(m, lines),
            bytes as f64 / 1e6 / wall,
            wall,
            cpu,
            mib(m),
            lines_per_s(m, lines) / floor_lps,
            if floor_cpu > 0.0 {
                cpu / floor_cpu
            } else {
                f64::NAN
            },
        );
    }
    println!("(floor RSS: peak of the whole benchmark process while it ran the floor)");
}

fn verdicts(results: &[(&str, Measure)], floor: &Measure, lines: u64) -> Vec<(String, bool)> {
    let get = |prefix: &str| {
        results
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .map(|(_, m)| *m)
            .expect("every case ran")
    };
    let floor_lps = lines_per_s(floor, lines);
    let (b, c, f, g, h) = (get("(b)"), get("(c)"), get("(f)"), get("(g)"), get("(h)"));
    let (i, j, w) = (get("(i)"), get("(j)"), get("(w)"));
    let indexed = es_receiver()
        .entries
        .load(std::sync::atomic::Ordering::Relaxed);
    let c_lps = lines_per_s(&c, lines);
    let received = loki_receiver()
        .entries
        .load(std::sync::atomic::Ordering::Relaxed);
    let cpu = |m: &Measure| m.cpu.as_secs_f64();
    let times = |m: &Measure| lines_per_s(m, lines) / floor_lps;
    let added = cpu(&f) / cpu(&c) - 1.0;
    let disk = |m: &Measure, which: &str| {
        (
            format!(
                "({which}) disk buffer -> loki: {:.0} lines/s = {:.2}x the memory buffer's (g), CPU {:.2}x (g)'s, peak RSS {:.1} MiB",
                lines_per_s(m, lines),
                lines_per_s(m, lines) / lines_per_s(&g, lines),
                cpu(m) / cpu(&g),
                mib(m)
            ),
            // Reported, not a target: the disk's speed is the machine's.
            true,
        )
    };
    let w_wall = w.wall.as_secs_f64() / floor.wall.as_secs_f64();
    let w_cpu = cpu(&w) / cpu(floor);
    vec![
        (
            format!(
                "(w) W1 main job: wall {w_wall:.2}x the floor's (target <= 0.4x), CPU {w_cpu:.2}x (target <= 1.0x), peak RSS {:.1} MiB (target <= {RSS_TARGET_MIB})",
                mib(&w)
            ),
            w_wall <= 0.4 && w_cpu <= 1.0 && mib(&w) <= RSS_TARGET_MIB,
        ),
        disk(&i, "i"),
        disk(&j, "j"),
        (
            format!(
                "(h) stdin -> es bulk: every line received ({indexed} documents), {:.0} lines/s = {:.2}x the floor (target >= 1.5x), peak RSS {:.1} MiB (target <= {RSS_TARGET_MIB})",
                lines_per_s(&h, lines),
                times(&h),
                mib(&h)
            ),
            indexed > 0
                && indexed.is_multiple_of(lines)
                && times(&h) >= 1.5
                && mib(&h) <= RSS_TARGET_MIB,
        ),
        (
            format!(
                "(g) stdin -> loki: every line received by the Loki receiver ({received} entries), {:.0} lines/s = {:.2}x the floor (target >= 2.0x)",
                lines_per_s(&g, lines),
                times(&g)
            ),
            received > 0 && received.is_multiple_of(lines) && times(&g) >= 2.0,
        ),
        (
            format!(
                "(f) stdin -> blackhole + feynman.yaml's metrics: {:.2}x the floor (target >= 2.5x); the metrics add {:+.1}% CPU to (c) (target <= +10%; {:.2} s vs {:.2} s, wall {:+.1}%)",
                times(&f),
                added * 100.0,
                cpu(&f),
                cpu(&c),
                (f.wall.as_secs_f64() / c.wall.as_secs_f64() - 1.0) * 100.0
            ),
            times(&f) >= 2.5 && added <= 0.10,
        ),
        (
            format!(
                "(c) stdin -> blackhole: {c_lps:.0} lines/s vs the floor's {floor_lps:.0} = {:.2}x (target >= 2.5x)",
                c_lps / floor_lps
            ),
            c_lps / floor_lps >= 2.5,
        ),
        (
            format!(
                "(b) stdin -> file: {:.2}x the floor (target >= 2.5x)",
                times(&b)
            ),
            times(&b) >= 2.5,
        ),
        (
            format!(
                "(b) stdin -> file peak RSS < {RSS_TARGET_MIB} MiB: {:.1} MiB",
                mib(&b)
            ),
            mib(&b) < RSS_TARGET_MIB,
        ),
        (
            format!(
                "(c) stdin -> blackhole peak RSS < {RSS_TARGET_MIB} MiB: {:.1} MiB",
                mib(&c)
            ),
            mib(&c) < RSS_TARGET_MIB,
        ),
    ]
}
