//! Delivery through faults, with the per-sink `buffer` (disk or memory):
//! long outages while the application rotates and deletes its logs, SIGKILL
//! with standard input buffered on disk, a memory bound while the sink is
//! down, twenty SIGKILLs at random moments, a full buffer directory, and
//! corrupted checkpoints and buffer segments.
//!
//! A writer appends numbered JSON lines (`seq`), so the receivers (the
//! fakes in crates/testkit) can count each line. Every test prints its line
//! accounting — written, delivered unique, duplicates, lost — and asserts
//! it.
//!
//! What is counted as a duplicate: for Loki, entries pushed in requests the
//! fake answered 204, minus the distinct entries it stored (the fake, like
//! Loki, does not store a re-sent entry twice); for Elasticsearch, documents
//! stored more than once for the same `seq`.

mod common;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use weir_testkit::es::FakeEs;
use weir_testkit::loki::{FakeConfig, FakeLoki};

const LONG: Duration = Duration::from_secs(120);
const LEVELS: [&str; 3] = ["INFO", "WARNING", "ERROR"];
const ES_INDEX: &str = "delivery";
const MIB: f64 = 1024.0 * 1024.0;

/// The twenty-kills test measures duplicates per kill, which grow with
/// whatever else competes for the two cores: it runs alone (write), the
/// other tests of this file together (read).
static ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    ALONE.read().unwrap_or_else(|e| e.into_inner())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// One numbered JSON line, 10 µs after `t0` per number (so that even two
/// million lines stay within Loki's 10-minute future grace and its 1-hour
/// out-of-order window), spread over three streams by level.
fn line(seq: u64, t0: i64) -> String {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(t0) + i128::from(seq) * 10_000).unwrap();
    format!(
        "{{\"timestamp\": \"{ts}\", \"level\": \"{}\", \"logger\": \"api\", \"seq\": {seq}, \"message\": \"用户会话开始 {seq} padding padding\"}}\n",
        LEVELS[(seq % 3) as usize]
    )
}

fn lines(from: u64, to: u64, t0: i64) -> String {
    (from..to).map(|i| line(i, t0)).collect()
}

// ---------------------------------------------------------------------------
// The writer: an application appending to logs/app.log and rotating it.

struct Writer {
    dir: PathBuf,
    file: File,
    t0: i64,
    /// The next sequence number (= lines written so far).
    next: u64,
    /// Bytes written over every generation.
    bytes: u64,
    rotations: u32,
    /// Generations deleted by the rotation.
    deleted: u32,
}

impl Writer {
    fn new(dir: &Path, t0: i64) -> Writer {
        Writer {
            dir: dir.to_path_buf(),
            file: Self::open(dir),
            t0,
            next: 0,
            bytes: 0,
            rotations: 0,
            deleted: 0,
        }
    }

    fn open(dir: &Path) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("app.log"))
            .unwrap()
    }

    fn burst(&mut self, n: u64) {
        let text = lines(self.next, self.next + n, self.t0);
        self.file.write_all(text.as_bytes()).unwrap();
        self.next += n;
        self.bytes += text.len() as u64;
    }

    /// app.log → app.log.1, keeping one old generation: the previous
    /// app.log.1 is deleted first.
    fn rotate_keep_one(&mut self) {
        let old = self.dir.join("app.log.1");
        if old.exists() {
            std::fs::remove_file(&old).unwrap();
            self.deleted += 1;
        }
        std::fs::rename(self.dir.join("app.log"), &old).unwrap();
        self.file = Self::open(&self.dir);
        self.rotations += 1;
    }

    /// Writes until `total` lines are written, `burst` lines at a time at
    /// `rate` lines/s, calling `every(self)` after each `period` lines.
    /// Returns the achieved rate.
    fn paced(
        &mut self,
        total: u64,
        rate: f64,
        burst: u64,
        period: u64,
        mut every: impl FnMut(&mut Writer),
    ) -> f64 {
        let start = Instant::now();
        let first = self.next;
        let mut tick = start;
        while self.next < total {
            let n = burst
                .min(total - self.next)
                .min(period - self.next % period);
            self.burst(n);
            if self.next.is_multiple_of(period) && self.next < total {
                every(self);
            }
            tick += Duration::from_secs_f64(n as f64 / rate);
            if let Some(d) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        (self.next - first) as f64 / start.elapsed().as_secs_f64()
    }
}

// ---------------------------------------------------------------------------
// Pipelines.

fn pipeline_for(s: &Scratch, source: &str, sink: &str) -> String {
    pipeline(
        s,
        "delivery.yaml",
        &format!(
            "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
grace_period: 2s
sources:
  in:
{source}
    decode: {{codec: json, timestamp: {{field: timestamp}}}}
sinks:
{sink}",
            data = s.path("data").display(),
        ),
    )
}

/// A file source on `logs/*.log`; `extra` is more keys, indented by four.
fn file_source(s: &Scratch, extra: &str) -> String {
    format!(
        "    type: file
    include: ['{logs}/*.log']
    glob_interval: 100ms
    poll_interval: 50ms
{extra}",
        logs = s.path("logs").display()
    )
}

const STDIN_SOURCE: &str = "    type: stdin\n";

fn loki_sink(fake: &FakeLoki, buffer: &str) -> String {
    format!(
        "  loki:
    type: loki
    inputs: [in]
    endpoint: {url}
    labels: {{app: weir-test, level: '{{{{ level }}}}'}}
    batch: {{timeout: 100ms}}
    retry: {{initial_backoff: 100ms, max_backoff: 1s}}
    buffer: {buffer}
",
        url = fake.url()
    )
}

fn es_sink(es: &FakeEs, buffer: &str) -> String {
    format!(
        "  es:
    type: elasticsearch
    inputs: [in]
    endpoint: {url}
    index: {ES_INDEX}
    batch: {{timeout: 100ms}}
    retry: {{initial_backoff: 100ms, max_backoff: 1s}}
    buffer: {buffer}
",
        url = es.url()
    )
}

/// A fake Loki without its ingestion rate limit (4 MiB/s): the backlog an
/// outage leaves is delivered as fast as weir sends it. The 429 path has
/// its own tests in tests/loki.rs.
fn fake_loki() -> FakeLoki {
    FakeLoki::with_config(FakeConfig {
        ingestion_rate_bytes: 0,
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------
// Running weir.

fn start(s: &Scratch, p: &str, stdin: Stdio) -> (Running, String) {
    let w = Running::start({
        let mut c = s.weir(&["run", p]);
        c.stdin(stdin);
        c
    });
    let addr = w.api_address();
    (w, addr)
}

fn stop(w: Running) -> (i32, String) {
    w.signal(libc::SIGTERM);
    w.wait(LONG)
}

fn sigkill(w: Running) {
    w.signal(libc::SIGKILL);
    let (code, _) = w.wait(LONG);
    assert_eq!(code, -1, "killed by a signal");
}

/// The value of `name{…sink="SINK"…}` on /metrics (any other labels and
/// their order allowed); `None` when the series is absent or weir does
/// not answer.
fn sink_metric(addr: &str, name: &str, sink: &str) -> Option<f64> {
    let (_, _, body) = try_http_get(addr, "/metrics")?;
    series(&body, name, sink)
}

fn series(exposition: &str, name: &str, sink: &str) -> Option<f64> {
    let want = format!("sink=\"{sink}\"");
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        labels
            .split(',')
            .any(|kv| kv == want)
            .then(|| value.trim().parse().ok())?
    })
}

/// RSS of a process in bytes, from /proc/PID/status.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Σ offsets in `data/checkpoints/<source>.json` (every generation of the
/// log has its own entry, kept after the file is deleted); 0 when absent.
fn checkpointed(s: &Scratch, source: &str) -> u64 {
    std::fs::read_to_string(s.path(&format!("data/checkpoints/{source}.json")))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["files"]
                .as_array()
                .map(|fs| fs.iter().filter_map(|f| f["offset"].as_u64()).sum())
        })
        .unwrap_or(0)
}

/// `weir buffer inspect --pipeline P --json`: its entry for `sink`.
fn inspect(s: &Scratch, p: &str, sink: &str) -> serde_json::Value {
    let out = s
        .weir(&["buffer", "inspect", "--pipeline", p, "--json"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "weir buffer inspect failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let all: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("inspect --json is not JSON ({e}):\n{stdout}"));
    let arr = all
        .as_array()
        .unwrap_or_else(|| panic!("inspect --json is not an array:\n{stdout}"));
    let entry = arr
        .iter()
        .find(|e| e["sink"] == sink)
        .unwrap_or_else(|| panic!("no entry for sink {sink}:\n{stdout}"))
        .clone();
    for key in ["records", "events", "bytes", "corrupt_records"] {
        assert!(entry[key].is_u64(), "{key} is not a count: {entry}");
    }
    assert!(
        entry["oldest_event_time"].is_null() || entry["oldest_event_time"].is_string(),
        "{entry}"
    );
    entry
}

fn segments(s: &Scratch, sink: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(s.path(&format!("data/buffers/{sink}")))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Line accounting.

#[derive(Debug)]
struct Tally {
    written: u64,
    /// Distinct `seq`s the receiver holds.
    unique: u64,
    duplicates: u64,
    /// Written and not delivered.
    lost: u64,
    /// Stored lines that are not whole JSON with a `seq`.
    garbled: u64,
    /// Delivered seqs that were never written.
    unknown: u64,
    first_missing: Vec<u64>,
    delivered: HashMap<u64, u64>,
}

impl Tally {
    fn new(written: u64, delivered: HashMap<u64, u64>, garbled: u64, duplicates: u64) -> Tally {
        let unique = delivered.keys().filter(|k| **k < written).count() as u64;
        let unknown = delivered.len() as u64 - unique;
        let first_missing: Vec<u64> = (0..written)
            .filter(|i| !delivered.contains_key(i))
            .take(10)
            .collect();
        Tally {
            written,
            unique,
            duplicates,
            lost: written - unique,
            garbled,
            unknown,
            first_missing,
            delivered,
        }
    }

    fn print(&self, test: &str) {
        eprintln!(
            "[{test}] written {}, delivered unique {}, duplicates {}, lost {}, garbled {}, unknown {}{}",
            self.written,
            self.unique,
            self.duplicates,
            self.lost,
            self.garbled,
            self.unknown,
            if self.first_missing.is_empty() {
                String::new()
            } else {
                format!(", first missing {:?}", self.first_missing)
            }
        );
    }

    fn assert_all_delivered(&self, test: &str) {
        assert_eq!(self.garbled, 0, "[{test}] garbled lines delivered");
        assert_eq!(self.unknown, 0, "[{test}] seqs never written delivered");
        assert!(
            self.lost == 0,
            "[{test}] {} of {} lines delivered; first missing {:?}",
            self.unique,
            self.written,
            self.first_missing
        );
    }
}

fn seq_of(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// What the fake Loki stored, per seq.
fn loki_stored(fake: &FakeLoki) -> (HashMap<u64, u64>, u64) {
    let mut seen = HashMap::new();
    let mut garbled = 0;
    for (_, entries) in fake.streams() {
        for e in &entries {
            match seq_of(&e.line) {
                Some(n) => *seen.entry(n).or_insert(0) += 1,
                None => garbled += 1,
            }
        }
    }
    (seen, garbled)
}

fn loki_unique(fake: &FakeLoki) -> u64 {
    // entry_count is what the fake stored, each distinct entry once.
    fake.entry_count() as u64
}

fn tally_loki(fake: &FakeLoki, written: u64) -> Tally {
    let (seen, garbled) = loki_stored(fake);
    let stored: u64 = seen.values().sum::<u64>() + garbled;
    let pushed: u64 = fake
        .requests()
        .iter()
        .filter(|r| r.status == 204)
        .map(|r| r.entries as u64)
        .sum();
    Tally::new(written, seen, garbled, pushed.saturating_sub(stored))
}

fn es_stored(es: &FakeEs) -> (HashMap<u64, u64>, u64) {
    let mut seen = HashMap::new();
    let mut garbled = 0;
    for (_, doc) in es.docs(ES_INDEX) {
        match doc["seq"].as_u64() {
            Some(n) => *seen.entry(n).or_insert(0) += 1,
            None => garbled += 1,
        }
    }
    (seen, garbled)
}

fn tally_es(es: &FakeEs, written: u64) -> Tally {
    let (seen, garbled) = es_stored(es);
    let dups = seen.values().map(|c| c - 1).sum();
    Tally::new(written, seen, garbled, dups)
}

/// Seqs that arrived after a higher one of the same stream (Loki: per
/// stream in arrival order; Elasticsearch: the index in insertion order):
/// how many, and the first few as (earlier, later) pairs.
fn out_of_order(runs: Vec<Vec<u64>>) -> (usize, Vec<(u64, u64)>) {
    let mut bad = Vec::new();
    let mut n = 0;
    for run in runs {
        for w in run.windows(2) {
            if w[1] <= w[0] {
                n += 1;
                if bad.len() < 5 {
                    bad.push((w[0], w[1]));
                }
            }
        }
    }
    (n, bad)
}

fn loki_runs(fake: &FakeLoki) -> Vec<Vec<u64>> {
    fake.streams()
        .values()
        .map(|es| es.iter().filter_map(|e| seq_of(&e.line)).collect())
        .collect()
}

fn es_runs(es: &FakeEs) -> Vec<Vec<u64>> {
    vec![
        es.docs(ES_INDEX)
            .iter()
            .filter_map(|(_, d)| d["seq"].as_u64())
            .collect(),
    ]
}

fn assert_in_order(test: &str, runs: Vec<Vec<u64>>) {
    let (n, first) = out_of_order(runs);
    assert_eq!(
        n, 0,
        "[{test}] {n} lines arrived after a later one of their stream, e.g. (earlier, later) {first:?}"
    );
}

/// Either fake, for the scenario both run.
enum Receiver {
    Loki(FakeLoki),
    Es(FakeEs),
}

impl Receiver {
    fn sink(&self, buffer: &str) -> String {
        match self {
            Receiver::Loki(f) => loki_sink(f, buffer),
            Receiver::Es(f) => es_sink(f, buffer),
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Receiver::Loki(_) => "loki",
            Receiver::Es(_) => "es",
        }
    }
    fn down_for(&self, d: Duration) {
        match self {
            Receiver::Loki(f) => f.down_for(d),
            Receiver::Es(f) => f.down_for(d),
        }
    }
    fn is_down(&self) -> bool {
        match self {
            Receiver::Loki(f) => f.is_down(),
            Receiver::Es(f) => f.is_down(),
        }
    }
    fn unique(&self) -> u64 {
        match self {
            Receiver::Loki(f) => loki_unique(f),
            Receiver::Es(f) => es_stored(f).0.len() as u64,
        }
    }
    fn tally(&self, written: u64) -> Tally {
        match self {
            Receiver::Loki(f) => tally_loki(f, written),
            Receiver::Es(f) => tally_es(f, written),
        }
    }
    fn runs(&self) -> Vec<Vec<u64>> {
        match self {
            Receiver::Loki(f) => loki_runs(f),
            Receiver::Es(f) => es_runs(f),
        }
    }
}

fn wait_for_unique(rx: &Receiver, want: u64, timeout: Duration) {
    if wait_until(timeout, || rx.unique() >= want).is_none() {
        let t = rx.tally(want);
        t.print(rx.name());
        panic!(
            "{} of {want} lines delivered within {timeout:?}; first missing {:?}",
            t.unique, t.first_missing
        );
    }
}

// ---------------------------------------------------------------------------
// 1. A long outage while the application rotates and deletes old
//    generations: with a disk buffer, the file source keeps reading (its
//    checkpoints advance as the buffer fsyncs), so the deleted generations
//    are in the buffer, and every line arrives after the outage.

fn outage_with_rotations(rx: Receiver, outage: Duration, during: u64, rotate_every: u64) {
    let test = format!("outage/{}", rx.name());
    let sink = rx.name();
    let s = Scratch::new();
    let p = pipeline_for(
        &s,
        &file_source(&s, "    rotate_wait: 2s\n"),
        &rx.sink("{type: disk}"),
    );
    let mut wr = Writer::new(&s.path("logs"), now_ns() - 300_000_000_000);
    const BEFORE: u64 = 2_000;
    wr.burst(BEFORE);
    let (w, addr) = start(&s, &p, Stdio::null());
    wait_for_unique(&rx, BEFORE, LONG);
    // …and weir knows: the answer to the last push is in (else the outage
    // would cut it, and that batch would wait in the buffer too).
    wait_until(Duration::from_secs(10), || {
        sink_metric(&addr, "weir_buffer_events", sink) == Some(0.0)
    })
    .expect("the buffer is empty once the first lines are delivered");

    rx.down_for(outage);
    let outage_start = Instant::now();
    // About 1,000 lines/s; rotating every `rotate_every` lines, and keeping
    // only one old generation.
    let rate = wr.paced(
        BEFORE + during,
        1_000.0,
        100,
        rotate_every,
        Writer::rotate_keep_one,
    );
    let written = wr.next;
    eprintln!(
        "[{test}] wrote {written} lines ({} bytes) at {rate:.0} lines/s, {} rotations, {} generations deleted, {:?} into the outage",
        wr.bytes,
        wr.rotations,
        wr.deleted,
        outage_start.elapsed()
    );
    assert!(wr.deleted >= 3, "the rotation deleted generations");

    // Still during the outage: the buffer holds every line written since it
    // began, and the checkpoints cover every byte written.
    let in_outage = outage.saturating_sub(outage_start.elapsed());
    let buffered = wait_until(in_outage, || {
        sink_metric(&addr, "weir_buffer_events", sink) == Some(during as f64)
            && checkpointed(&s, "in") == wr.bytes
    });
    let events = sink_metric(&addr, "weir_buffer_events", sink);
    let bytes = sink_metric(&addr, "weir_buffer_bytes", sink);
    let cp = checkpointed(&s, "in");
    eprintln!(
        "[{test}] during the outage: weir_buffer_events {events:?}, weir_buffer_bytes {bytes:?}, checkpointed {cp} of {} bytes, segments {:?}",
        wr.bytes,
        segments(&s, sink)
    );
    assert!(
        buffered.is_some(),
        "during the outage the buffer should hold the {during} lines written since it began ({events:?}) and the checkpoints cover all {} bytes written ({cp})",
        wr.bytes
    );
    assert!(
        rx.is_down(),
        "the outage ended before the checks; the test's timing is off"
    );
    assert!(
        bytes.is_some_and(|b| b > 0.0),
        "weir_buffer_bytes {bytes:?}"
    );
    assert!(
        !segments(&s, sink).is_empty(),
        "no *.seg under data/buffers/{sink}/"
    );

    wait_for_unique(&rx, written, LONG);
    let drained = wait_until(Duration::from_secs(10), || {
        sink_metric(&addr, "weir_buffer_events", sink) == Some(0.0)
    });
    let (code, stderr) = stop(w);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        drained.is_some(),
        "weir_buffer_events is back to 0 once delivered"
    );
    let t = rx.tally(written);
    t.print(&test);
    t.assert_all_delivered(&test);
    // What waited in the buffer went out in order.
    assert_in_order(&test, rx.runs());
}

#[test]
fn disk_buffer_loki_down_60s_while_the_app_rotates_and_deletes() {
    let _shared = shared();
    // 45,000 lines over 45 s, a rotation every 5,000: nine rotations, eight
    // generations deleted while Loki is down.
    outage_with_rotations(
        Receiver::Loki(fake_loki()),
        Duration::from_secs(60),
        45_000,
        5_000,
    );
}

#[test]
fn disk_buffer_elasticsearch_down_20s_while_the_app_rotates_and_deletes() {
    let _shared = shared();
    outage_with_rotations(
        Receiver::Es(FakeEs::start()),
        Duration::from_secs(20),
        14_000,
        2_500,
    );
}

// ---------------------------------------------------------------------------
// 2. Standard input into a disk buffer, SIGKILL, restart: what the buffer
//    holds arrives; what was lost is within the stated bound.

/// The stdin reader's read-ahead, as the README states it: the chunk its
/// reading thread fills, two in its channel, one the source decodes.
const STDIN_READ_AHEAD: u64 = 4 * 256 * 1024;
/// A stdin batch is one read chunk, at most 256 KiB; 4 wait in the sink's
/// channel and 1 is being written.
const STDIN_BATCHES: u64 = (4 + 1) * 256 * 1024;

#[test]
fn stdin_into_a_disk_buffer_sigkill_and_restart() {
    let _shared = shared();
    let test = "stdin-sigkill";
    let fake = fake_loki();
    fake.down_for(Duration::from_secs(20));
    let s = Scratch::new();
    let p = pipeline_for(
        &s,
        STDIN_SOURCE,
        &loki_sink(&fake, "{type: disk, fsync: batch}"),
    );
    let t0 = now_ns() - 300_000_000_000;
    let (mut w, addr) = start(&s, &p, Stdio::piped());
    let mut stdin = w.child.stdin.take().unwrap();
    let pipe_size = {
        use std::os::fd::AsRawFd;
        let n = unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_GETPIPE_SZ) };
        assert!(n > 0);
        n as u64
    };

    // Phase 1: N lines, then wait until the buffer has them all.
    const N: u64 = 20_000;
    stdin.write_all(lines(0, N, t0).as_bytes()).unwrap();
    let held = wait_until(Duration::from_secs(30), || {
        sink_metric(&addr, "weir_buffer_events", "loki") == Some(N as f64)
    });
    assert!(
        held.is_some(),
        "the disk buffer never held the {N} lines written: weir_buffer_events {:?}",
        sink_metric(&addr, "weir_buffer_events", "loki")
    );

    // Phase 2: lines streamed as fast as weir takes them, SIGKILL mid-stream.
    // The writer counts the lines that went whole into the pipe, and, once
    // the pipe breaks, how many bytes weir never read from it (FIONREAD).
    let writer = std::thread::spawn(move || {
        use std::io::ErrorKind;
        use std::os::fd::AsRawFd;
        let mut next = N;
        loop {
            let chunk = lines(next, next + 100, t0);
            let mut off = 0;
            while off < chunk.len() {
                match stdin.write(&chunk.as_bytes()[off..]) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        let whole = chunk.as_bytes()[..off]
                            .iter()
                            .filter(|b| **b == b'\n')
                            .count();
                        let mut unread: libc::c_int = 0;
                        let r =
                            unsafe { libc::ioctl(stdin.as_raw_fd(), libc::FIONREAD, &mut unread) };
                        return (next + whole as u64, (r == 0).then_some(unread as u64));
                    }
                }
            }
            next += 100;
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    let at_kill = sink_metric(&addr, "weir_buffer_events", "loki");
    sigkill(w);
    let (written, unread) = writer.join().unwrap();
    assert!(fake.is_down(), "Loki was down until the kill");

    let inspected = inspect(&s, &p, "loki");
    eprintln!(
        "[{test}] weir_buffer_events just before the kill {at_kill:?}; inspect after it: {inspected}"
    );
    let accepted = inspected["events"].as_u64().unwrap();
    assert!(
        accepted >= N,
        "the {N} lines the buffer held before the kill are still there: {inspected}"
    );
    assert!(inspected["records"].as_u64().unwrap() > 0, "{inspected}");
    assert!(inspected["bytes"].as_u64().unwrap() > 0, "{inspected}");
    assert!(inspected["oldest_event_time"].is_string(), "{inspected}");

    // Restart with a new, empty standard input held open, and wait for Loki.
    let (mut w2, addr2) = start(&s, &p, Stdio::piped());
    let _quiet_stdin = w2.child.stdin.take().unwrap();
    wait_until(LONG, || loki_unique(&fake) >= accepted).unwrap_or_else(|| {
        panic!(
            "{} of the {accepted} buffered lines delivered after the restart",
            loki_unique(&fake)
        )
    });
    std::thread::sleep(Duration::from_millis(500)); // nothing more comes
    let replayed = sink_metric(&addr2, "weir_buffer_replayed_events_total", "loki");
    let (code, stderr) = stop(w2);
    assert_eq!(code, 0, "{stderr}");

    let t = tally_loki(&fake, written);
    t.print(test);
    assert_eq!(t.garbled, 0);
    // Standard input is read in order: the buffer held a prefix of it.
    let missing: Vec<u64> = (0..accepted)
        .filter(|i| !t.delivered.contains_key(i))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "buffered lines (the first {accepted}) that did not arrive: {missing:?}"
    );
    assert_eq!(
        t.delivered.len() as u64,
        accepted,
        "exactly what the buffer held arrives"
    );
    assert_in_order(test, loki_runs(&fake));
    assert_eq!(
        replayed,
        Some(accepted as f64),
        "weir_buffer_replayed_events_total is what the buffer held at startup"
    );
    let lost_bytes: u64 = (accepted..written).map(|i| line(i, t0).len() as u64).sum();
    // Bytes still in the pipe were never read by weir: not its loss. When
    // FIONREAD could not tell, the whole pipe counts as unread.
    let in_pipe = unread.unwrap_or(pipe_size);
    let weirs = lost_bytes.saturating_sub(in_pipe);
    let bound = STDIN_READ_AHEAD + STDIN_BATCHES;
    eprintln!(
        "[{test}] accepted (buffered + delivered before the kill) {accepted}; lost {} lines = {lost_bytes} bytes of input, of which {in_pipe} bytes ({}) were still in the pipe (capacity {pipe_size}): weir lost {weirs} bytes ({:.2} MiB); bound {bound} bytes = read-ahead {STDIN_READ_AHEAD} + 4 queued batches and 1 being written of at most 256 KiB ({:.2} MiB); README: at most 9 x 256 KiB",
        written - accepted,
        if unread.is_some() {
            "FIONREAD"
        } else {
            "FIONREAD failed: assumed full"
        },
        weirs as f64 / MIB,
        bound as f64 / MIB,
    );
    assert!(
        weirs <= bound,
        "weir lost {weirs} bytes of input it had read, bound {bound}"
    );
}

// ---------------------------------------------------------------------------
// 3. A memory buffer with the sink down and a source far faster than
//    delivery: the memory weir holds stays bounded, and nothing is lost
//    (the file source is held back, and reads the rest after the outage).

/// Asserted bound on weir's RSS. Measured on this machine (2 cores, debug
/// build, 400,000 lines waiting): 52 MiB at the peak with the channel alone
/// (no `buffer` key, before buffers existed), 52–60 MiB with `type: memory,
/// max_events: 5000`; idle 29 MiB.
const RSS_BOUND: u64 = 150 * 1024 * 1024;

#[test]
fn memory_buffer_bounds_rss_while_the_sink_is_down() {
    let _shared = shared();
    let test = "memory-rss";
    let fake = fake_loki();
    let s = Scratch::new();
    let p = pipeline_for(
        &s,
        &file_source(&s, ""),
        &loki_sink(&fake, "{type: memory, max_events: 5000}"),
    );
    let (w, addr) = start(&s, &p, Stdio::null());
    let pid = w.child.id();
    let idle_rss = rss(pid).unwrap();
    fake.down_for(Duration::from_secs(20));
    // 400,000 lines (≈ 60 MB) as fast as the disk takes them.
    const TOTAL: u64 = 400_000;
    let logs = s.path("logs");
    let writer = std::thread::spawn(move || {
        let mut wr = Writer::new(&logs, now_ns() - 300_000_000_000);
        let start = Instant::now();
        while wr.next < TOTAL {
            wr.burst(5_000);
        }
        (wr.bytes, start.elapsed())
    });
    let (mut max_rss, mut max_events) = (0u64, None::<f64>);
    while fake.is_down() {
        max_rss = max_rss.max(rss(pid).unwrap());
        if let Some(e) = sink_metric(&addr, "weir_buffer_events", "loki") {
            max_events = Some(max_events.map_or(e, |m| m.max(e)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (bytes, took) = writer.join().unwrap();
    eprintln!(
        "[{test}] wrote {TOTAL} lines ({:.1} MiB) in {took:?}; RSS idle {:.1} MiB, peak while Loki was down {:.1} MiB (bound {:.0} MiB); weir_buffer_events peak {max_events:?}",
        bytes as f64 / MIB,
        idle_rss as f64 / MIB,
        max_rss as f64 / MIB,
        RSS_BOUND as f64 / MIB
    );
    wait_until(LONG, || loki_unique(&fake) >= TOTAL);
    let (code, stderr) = stop(w);
    let t = tally_loki(&fake, TOTAL);
    t.print(test);
    assert!(
        max_rss < RSS_BOUND,
        "RSS {max_rss} bytes, bound {RSS_BOUND}"
    );
    assert!(
        max_events.is_some_and(|e| e <= 5_000.0),
        "a memory buffer with max_events 5000 held {max_events:?} events (weir_buffer_events)"
    );
    assert_eq!(code, 0, "{stderr}");
    t.assert_all_delivered(test);
}

// ---------------------------------------------------------------------------
// 4. Twenty SIGKILLs at random moments while a writer appends at about
//    20,000 lines/s, the sink up and, for some kills, down: every line
//    arrives; duplicates are bounded per kill.

/// Stops a writer thread when the test ends, passing or not.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Asserted bound on duplicated lines per kill, on average.
const DUPS_PER_KILL: u64 = 2_000;

#[test]
fn twenty_sigkills_at_random_moments_lose_nothing() {
    let _alone = ALONE.write().unwrap_or_else(|e| e.into_inner());
    let test = "sigkill-x20";
    let fake = fake_loki();
    let s = Scratch::new();
    // Checkpoints at most 50 ms apart: at 20,000 lines/s that is 1,000
    // lines a kill may send again from the source's side.
    // What a kill sends again is what was in flight: the batch being
    // pushed (bounded here at 2,000 lines, 100 ms at this rate, also while
    // catching up after a restart) plus the lines since the last checkpoint.
    let sink = loki_sink(&fake, "{type: disk}").replace(
        "batch: {timeout: 100ms}",
        "batch: {timeout: 100ms, max_events: 2000}",
    );
    let p = pipeline_for(
        &s,
        &file_source(&s, "    checkpoint_interval: 50ms\n"),
        &sink,
    );
    let stop_writing = Arc::new(AtomicBool::new(false));
    let _stop_on_panic = StopOnDrop(Arc::clone(&stop_writing));
    let writer = {
        let logs = s.path("logs");
        let stop_writing = Arc::clone(&stop_writing);
        std::thread::spawn(move || {
            let mut wr = Writer::new(&logs, now_ns() - 300_000_000_000);
            let start = Instant::now();
            let mut tick = start;
            // 200 lines every 10 ms.
            while !stop_writing.load(Ordering::SeqCst) {
                wr.burst(200);
                tick += Duration::from_millis(10);
                if let Some(d) = tick.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            (wr.next, wr.next as f64 / start.elapsed().as_secs_f64())
        })
    };
    // A fixed-seed generator: the kill moments are random but repeatable.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const KILLS: u64 = 20;
    let mut down_kills = 0;
    let started = Instant::now();
    for k in 0..KILLS {
        let (w, _) = start(&s, &p, Stdio::null());
        // Loki goes down for 3 s at the start of runs 5 and 13 (so those
        // kills, and maybe the next, happen while it is down).
        if k == 5 || k == 13 {
            fake.down_for(Duration::from_secs(3));
        }
        std::thread::sleep(Duration::from_millis(200 + next() % 1800));
        if fake.is_down() {
            down_kills += 1;
        }
        sigkill(w);
    }
    stop_writing.store(true, Ordering::SeqCst);
    let (written, rate) = writer.join().unwrap();
    eprintln!(
        "[{test}] {KILLS} kills ({down_kills} while Loki was down) in {:?}; the writer wrote {written} lines at {rate:.0} lines/s",
        started.elapsed()
    );
    assert!(rate >= 15_000.0, "writer too slow: {rate:.0} lines/s");
    let (w, _) = start(&s, &p, Stdio::null());
    wait_until(Duration::from_secs(60), || loki_unique(&fake) >= written);
    let (code, stderr) = stop(w);
    assert_eq!(code, 0, "{stderr}");
    let t = tally_loki(&fake, written);
    t.print(test);
    eprintln!(
        "[{test}] {} duplicated lines per kill on average (bound {DUPS_PER_KILL})",
        t.duplicates / KILLS
    );
    t.assert_all_delivered(test);
    assert!(
        t.duplicates <= KILLS * DUPS_PER_KILL,
        "{} duplicates after {KILLS} kills: {} per kill, bound {DUPS_PER_KILL}",
        t.duplicates,
        t.duplicates / KILLS
    );
}

// ---------------------------------------------------------------------------
// 5. A full buffer directory: weir blocks (the file source is held back),
//    says so once, keeps running, and carries on by itself when space
//    returns.

/// A tmpfs mounted for the test; lazily unmounted when dropped, so that a
/// failing test leaves no mount behind.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output_within(RUN_LIMIT)
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Mount(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    fn free(&self) -> u64 {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(self.0.as_os_str().as_bytes()).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Error lines that mention `full` (as a word: not "successfully").
fn full_errors(stderr: &str) -> Vec<&str> {
    let full = regex::Regex::new(r"(?i)\bfull\b").unwrap();
    stderr
        .lines()
        .filter(|l| l.contains("ERROR") && full.is_match(l))
        .collect()
}

#[test]
fn a_full_buffer_directory_blocks_and_recovers() {
    let _shared = shared();
    let test = "disk-full";
    let fake = fake_loki();
    let s = Scratch::new();
    let buffers = s.path("data/buffers");
    let mnt = match Mount::tmpfs(&buffers, "64m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("[{test}] SKIPPED: cannot mount a tmpfs on {buffers:?}: {e}");
            return;
        }
    };
    let p = pipeline_for(&s, &file_source(&s, ""), &loki_sink(&fake, "{type: disk}"));
    fake.down_for(Duration::from_secs(30));
    let outage_start = Instant::now();
    let mut wr = Writer::new(&s.path("logs"), now_ns() - 300_000_000_000);
    wr.burst(2_000);
    let (mut w, addr) = start(&s, &p, Stdio::null());
    wait_until(Duration::from_secs(20), || {
        sink_metric(&addr, "weir_buffer_events", "loki") == Some(2_000.0)
    })
    .expect("the first 2,000 lines buffered");

    // Leave 256 KiB free, then write ≈ 15 MB more (more than a buffer could
    // have set aside ahead).
    let ballast = buffers.join("ballast");
    let free = mnt.free();
    {
        let mut f = File::create(&ballast).unwrap();
        let mb = vec![0x5au8; 1 << 20];
        let mut left = free.saturating_sub(256 * 1024);
        while left > 0 {
            let n = left.min(mb.len() as u64) as usize;
            if f.write_all(&mb[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = f.sync_all();
    }
    eprintln!(
        "[{test}] ballast {} bytes; {} bytes free",
        std::fs::metadata(&ballast).unwrap().len(),
        mnt.free()
    );
    const TOTAL: u64 = 100_000;
    wr.burst(TOTAL - 2_000);
    let said = wait_until(Duration::from_secs(15), || {
        !full_errors(&w.stderr()).is_empty()
    });
    assert!(
        said.is_some(),
        "no error mentioning `full`; stderr:\n{}",
        w.stderr()
    );
    // Blocked, not dead: weir keeps running and answering.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "weir exited: {}",
        w.stderr()
    );
    let (status, _, _) = http_get(&addr, "/health");
    assert_eq!(status, 200);
    let blocked_at = sink_metric(&addr, "weir_buffer_events", "loki");
    let errors = full_errors(&w.stderr()).len();
    eprintln!(
        "[{test}] full: weir_buffer_events {blocked_at:?}; {errors} error line(s) mentioning `full`"
    );
    assert!(
        blocked_at.is_some_and(|e| e < TOTAL as f64),
        "the buffer cannot hold everything while full: {blocked_at:?}"
    );
    assert!(
        checkpointed(&s, "in") < wr.bytes,
        "the checkpoint does not cover what the buffer could not take"
    );
    // …but it does cover what the buffer took (fsynced, so acknowledged),
    // even though the source is held back: checkpoints are written as
    // acknowledgements arrive. One file, read in order: the buffer holds
    // the first `held` lines.
    let held = blocked_at.unwrap() as u64;
    let held_bytes: u64 = (0..held).map(|i| line(i, wr.t0).len() as u64).sum();
    let covered = wait_until(Duration::from_secs(3), || {
        checkpointed(&s, "in") == held_bytes
    });
    eprintln!(
        "[{test}] full: checkpointed {} bytes; the {held} lines the buffer holds are {held_bytes} bytes",
        checkpointed(&s, "in")
    );
    assert!(
        covered.is_some(),
        "while the buffer is full the checkpoint covers what it holds: {} bytes checkpointed, {held_bytes} held",
        checkpointed(&s, "in")
    );

    // Space returns while Loki is still down: the buffer takes the rest by
    // itself.
    std::fs::remove_file(&ballast).unwrap();
    let recovered = wait_until(Duration::from_secs(15), || {
        sink_metric(&addr, "weir_buffer_events", "loki") == Some(TOTAL as f64)
    });
    assert!(
        fake.is_down(),
        "Loki came back before the buffer recovered ({:?} into the outage); the test's timing is off",
        outage_start.elapsed()
    );
    assert!(
        recovered.is_some(),
        "the buffer did not recover once space returned: weir_buffer_events {:?}",
        sink_metric(&addr, "weir_buffer_events", "loki")
    );
    assert_eq!(
        full_errors(&w.stderr()).len(),
        1,
        "the full buffer is reported once:\n{}",
        full_errors(&w.stderr()).join("\n")
    );

    wait_until(LONG, || loki_unique(&fake) >= TOTAL);
    let (code, stderr) = stop(w);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let t = tally_loki(&fake, TOTAL);
    t.print(test);
    t.assert_all_delivered(test);
    drop(mnt);
}

// ---------------------------------------------------------------------------
// 6a. A corrupted checkpoint file: weir starts, says so, does not panic.

#[test]
fn a_corrupted_checkpoint_file_is_reported_and_weir_starts() {
    let _shared = shared();
    let test = "corrupt-checkpoint";
    let fake = fake_loki();
    let s = Scratch::new();
    let p = pipeline_for(&s, &file_source(&s, ""), &loki_sink(&fake, "{type: disk}"));
    let mut wr = Writer::new(&s.path("logs"), now_ns() - 300_000_000_000);
    wr.burst(1_000);
    let (w, _) = start(&s, &p, Stdio::null());
    wait_until(LONG, || loki_unique(&fake) >= 1_000).expect("first run delivers");
    let (code, stderr) = stop(w);
    assert_eq!(code, 0, "{stderr}");
    assert!(s.path("data/checkpoints/in.json").exists());

    s.write(
        "data/checkpoints/in.json",
        b"\x00\xff garbage {\"version\": [[[ \xde\xad\xbe\xef",
    );
    wr.burst(500);
    let (w, _) = start(&s, &p, Stdio::null());
    // No checkpoint to go by: read from the start again; Loki dedups.
    wait_until(LONG, || loki_unique(&fake) >= 1_500).expect("delivers after a corrupt checkpoint");
    let (code, stderr) = stop(w);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("checkpoint") && l.contains("corrupt"))
        .collect();
    assert!(
        !said.is_empty(),
        "no message about the corrupt checkpoint:\n{stderr}"
    );
    eprintln!("[{test}] {}", said[0]);
    let t = tally_loki(&fake, wr.next);
    t.print(test);
    t.assert_all_delivered(test);
}

// ---------------------------------------------------------------------------
// 6b. Corrupted buffer segments: bytes flipped in the middle of a segment
//     and the last segment cut mid-record, with weir stopped by SIGKILL
//     while the sink was down. weir starts, counts and reports the corrupt
//     records, and delivers everything else.
//
//     The lines are written in bursts of BURST, 300 ms apart, and the sink
//     batches for 100 ms: a source batch (one read) and a sink batch hold
//     at most one burst, so a record — whichever of the two it is — holds
//     at most BURST lines. Three places are damaged: 4 bytes flipped inside
//     a line's text (when the segment holds the lines as text; else in the
//     middle of the file) — one record; 4 bytes flipped at a quarter of the
//     file, wherever they fall (a record's framing or its payload) — at most
//     two records, if they straddle a boundary; the last 40 bytes cut, less
//     than one line — one record. So at least one and at most 4 × BURST
//     lines may be missing, and none may arrive altered.

const BURST: u64 = 20;

#[test]
fn corrupted_buffer_segments_are_skipped_counted_and_reported() {
    let _shared = shared();
    let test = "corrupt-segments";
    let fake = fake_loki();
    fake.down_for(Duration::from_secs(20));
    let s = Scratch::new();
    let p = pipeline_for(
        &s,
        &file_source(&s, ""),
        &loki_sink(&fake, "{type: disk, fsync: batch}"),
    );
    let mut wr = Writer::new(&s.path("logs"), now_ns() - 300_000_000_000);
    let (w, addr) = start(&s, &p, Stdio::null());
    const TOTAL: u64 = 20 * BURST;
    while wr.next < TOTAL {
        wr.burst(BURST);
        std::thread::sleep(Duration::from_millis(300));
    }
    let held = wait_until(Duration::from_secs(10), || {
        sink_metric(&addr, "weir_buffer_events", "loki") == Some(TOTAL as f64)
            && checkpointed(&s, "in") == wr.bytes
    });
    assert!(
        held.is_some(),
        "the buffer holds all {TOTAL} lines ({:?}) and the checkpoint covers them ({} of {})",
        sink_metric(&addr, "weir_buffer_events", "loki"),
        checkpointed(&s, "in"),
        wr.bytes
    );
    sigkill(w);
    assert!(fake.is_down());
    let before = inspect(&s, &p, "loki");
    eprintln!("[{test}] inspect before the damage: {before}");
    assert_eq!(before["events"].as_u64(), Some(TOTAL), "{before}");
    assert_eq!(before["corrupt_records"].as_u64(), Some(0), "{before}");

    let segs = segments(&s, "loki");
    assert!(!segs.is_empty(), "no *.seg under data/buffers/loki/");
    // Flip 4 bytes in the middle of the middle segment: inside the text of a
    // line if the lines are there as text.
    let mid = &segs[segs.len() / 2];
    let mut data = std::fs::read(mid).unwrap();
    // `seq`, then what JSON (or JSON inside a JSON string) puts before the
    // number, then the digits.
    let digits_after = |i: usize| -> Option<usize> {
        let mut j = i + 3;
        while j < data.len() && j < i + 8 && matches!(data[j], b'"' | b'\\' | b':' | b' ') {
            j += 1;
        }
        (j < data.len() && data[j].is_ascii_digit()).then_some(j)
    };
    let hits: Vec<usize> = data
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == b"seq")
        .filter_map(|(i, _)| digits_after(i))
        .collect();
    let (at, flipped_seq) = if hits.is_empty() {
        (data.len() / 2, None)
    } else {
        let i = hits[hits.len() / 2];
        let digits: String = data[i..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|b| *b as char)
            .collect();
        (i, digits.parse::<u64>().ok())
    };
    for b in &mut data[at..at + 4] {
        *b ^= 0xff;
    }
    let blind = data.len() / 4;
    for b in &mut data[blind..blind + 4] {
        *b ^= 0xff;
    }
    std::fs::write(mid, &data).unwrap();
    // Cut the last segment 40 bytes short: its last record is torn.
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 40)
        .unwrap();
    eprintln!(
        "[{test}] {} segment(s); flipped 4 bytes at {at} of {:?} ({}) and 4 at {blind}, cut {:?} from {len} to {} bytes",
        segs.len(),
        mid,
        match flipped_seq {
            Some(n) => format!("inside the text of seq {n}"),
            None => "the lines are not there as text: the middle of the file".to_string(),
        },
        last,
        len - 40
    );
    let after = inspect(&s, &p, "loki");
    eprintln!("[{test}] inspect after the damage: {after}");

    let (w, addr) = start(&s, &p, Stdio::null());
    wait_until(LONG, || !fake.is_down());
    // Delivered: everything but the damaged records; then nothing more.
    wait_until(Duration::from_secs(20), || {
        loki_unique(&fake) >= TOTAL - 4 * BURST
            && sink_metric(&addr, "weir_buffer_events", "loki") == Some(0.0)
    });
    std::thread::sleep(Duration::from_millis(500));
    let corrupt = sink_metric(&addr, "weir_buffer_corrupt_records_total", "loki");
    let (code, stderr) = stop(w);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("corrupt"))
        .collect();
    let t = tally_loki(&fake, TOTAL);
    t.print(test);
    eprintln!(
        "[{test}] weir_buffer_corrupt_records_total {corrupt:?}; {} warning(s) mentioning `corrupt`, e.g. {:?}",
        warnings.len(),
        warnings.first()
    );
    assert!(
        corrupt.is_some_and(|c| c >= 1.0),
        "weir_buffer_corrupt_records_total {corrupt:?}"
    );
    assert!(
        !warnings.is_empty(),
        "no warning mentioning `corrupt`:\n{stderr}"
    );
    assert!(
        after["corrupt_records"].as_u64().is_some_and(|c| c >= 1),
        "inspect sees the corrupt records: {after}"
    );
    assert_eq!(t.garbled, 0, "no damaged line is delivered");
    assert_eq!(t.unknown, 0, "no damaged line is delivered");
    if let Some(n) = flipped_seq {
        assert!(
            !t.delivered.contains_key(&n),
            "seq {n}, whose bytes were flipped, was delivered"
        );
    }
    assert!(
        t.lost >= 1 && t.lost <= 4 * BURST,
        "{} lines lost; the damaged records hold between 1 and {} (four records of at most {BURST} lines)",
        t.lost,
        4 * BURST
    );
}

// ---------------------------------------------------------------------------
// 7. SIGTERM while the sink is down: weir exits 0 within the grace period,
//    leaving the rest in the disk buffer and its checkpoints written; the
//    next run replays it.

#[test]
fn sigterm_with_the_sink_down_exits_0_and_the_next_run_replays_the_buffer() {
    let _shared = shared();
    let test = "sigterm-sink-down";
    let fake = fake_loki();
    fake.down_for(Duration::from_secs(15));
    let s = Scratch::new();
    let p = pipeline_for(&s, &file_source(&s, ""), &loki_sink(&fake, "{type: disk}"));
    let mut wr = Writer::new(&s.path("logs"), now_ns() - 300_000_000_000);
    const TOTAL: u64 = 10_000;
    wr.burst(TOTAL);
    let (w, addr) = start(&s, &p, Stdio::null());
    wait_until(Duration::from_secs(20), || {
        sink_metric(&addr, "weir_buffer_events", "loki") == Some(TOTAL as f64)
    })
    .expect("the buffer holds every line");
    let asked = Instant::now();
    let (code, stderr) = stop(w);
    let took = asked.elapsed();
    eprintln!("[{test}] exit {code} {took:?} after SIGTERM (grace_period 2s)");
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    assert!(fake.is_down());
    assert_eq!(
        checkpointed(&s, "in"),
        wr.bytes,
        "the checkpoints cover the buffered lines"
    );
    let inspected = inspect(&s, &p, "loki");
    eprintln!("[{test}] inspect: {inspected}");
    assert_eq!(inspected["events"].as_u64(), Some(TOTAL), "{inspected}");

    let (w, addr) = start(&s, &p, Stdio::null());
    wait_until(LONG, || loki_unique(&fake) >= TOTAL);
    let replayed = sink_metric(&addr, "weir_buffer_replayed_events_total", "loki");
    let (code, stderr) = stop(w);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        replayed,
        Some(TOTAL as f64),
        "weir_buffer_replayed_events_total"
    );
    let t = tally_loki(&fake, TOTAL);
    t.print(test);
    t.assert_all_delivered(test);
    assert_in_order(test, loki_runs(&fake));
}
