//! The file source under the conditions that lose or duplicate lines in
//! other tailers. A writer appends numbered lines at more than 20,000 lines/s
//! while the test rotates, truncates, deletes or kills; afterwards every
//! number written must be in weir's output exactly once — or, after SIGKILL,
//! at least once, with no more duplicates than checkpointing allows.

mod common;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// Lines per burst and burst spacing: 250 every 10 ms ≈ 25,000 lines/s.
const BURST: u64 = 250;
const TICK: Duration = Duration::from_millis(10);
const LONG: Duration = Duration::from_secs(90);

struct Writer {
    dir: PathBuf,
    file: File,
    next: u64,
}

impl Writer {
    fn new(dir: &Path) -> Writer {
        Writer {
            dir: dir.to_path_buf(),
            file: Self::open(dir),
            next: 0,
        }
    }

    fn open(dir: &Path) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("app.log"))
            .unwrap()
    }

    fn path(&self, generation: u32) -> PathBuf {
        match generation {
            0 => self.dir.join("app.log"),
            n => self.dir.join(format!("app.log.{n}")),
        }
    }

    fn burst(&mut self, n: u64) {
        let mut buf = String::with_capacity(n as usize * 100);
        for _ in 0..n {
            buf.push_str(&format!(
                "{{\"seq\": {}, \"level\": \"INFO\", \"message\": \"工具调用完成 padding padding padding\"}}\n",
                self.next
            ));
            self.next += 1;
        }
        self.file.write_all(buf.as_bytes()).unwrap();
    }

    /// Shifts app.log.1.. up by one, dropping the oldest (keeps `keep` generations).
    fn shift_generations(&self, keep: u32) {
        let _ = std::fs::remove_file(self.path(keep));
        for g in (1..keep).rev() {
            let _ = std::fs::rename(self.path(g), self.path(g + 1));
        }
    }

    fn rotate_rename(&mut self) {
        self.rotate_rename_keeping(5);
    }

    fn rotate_rename_keeping(&mut self, keep: u32) {
        self.shift_generations(keep);
        std::fs::rename(self.path(0), self.path(1)).unwrap();
        self.file = Self::open(&self.dir);
    }

    fn copytruncate(&mut self) {
        self.shift_generations(5);
        std::fs::copy(self.path(0), self.path(1)).unwrap();
        self.file.set_len(0).unwrap();
    }

    fn recreate(&mut self) {
        std::fs::remove_file(self.path(0)).unwrap();
        self.file = Self::open(&self.dir);
    }

    /// Writes `total` lines at the paced rate, calling `every(self)` after
    /// each `period` lines. Returns the achieved rate in lines/s.
    fn run(&mut self, total: u64, period: u64, mut every: impl FnMut(&mut Writer)) -> f64 {
        let start = Instant::now();
        let mut tick = start;
        while self.next < total {
            let n = BURST
                .min(total - self.next)
                .min(period - self.next % period);
            self.burst(n);
            if self.next.is_multiple_of(period) && self.next < total {
                every(self);
            }
            tick += TICK.mul_f64(n as f64 / BURST as f64);
            if let Some(d) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        total as f64 / start.elapsed().as_secs_f64()
    }
}

fn pipeline_for(s: &Scratch) -> String {
    pipeline(
        s,
        "tail.yaml",
        &format!(
            "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
grace_period: 30s
sources:
  app:
    type: file
    include: ['{logs}/app.log*']
    glob_interval: 200ms
    poll_interval: 50ms
    checkpoint_interval: 200ms
    rotate_wait: 1s
sinks:
  out:
    type: file
    inputs: [app]
    path: '{data}/out/%Y-%m-%d.ndjson'
    batch: {{timeout: 100ms}}
",
            data = s.path("data").display(),
            logs = s.path("logs").display()
        ),
    )
}

/// How often each sequence number appears in the output, and the count of
/// lines that are not whole JSON (torn by a kill).
fn tally(s: &Scratch) -> (HashMap<u64, u32>, usize) {
    let mut seen = HashMap::new();
    let mut torn = 0;
    for line in s.output_lines() {
        match serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["seq"].as_u64())
        {
            Some(seq) => *seen.entry(seq).or_insert(0) += 1,
            None => torn += 1,
        }
    }
    (seen, torn)
}

fn wait_for_all(s: &Scratch, total: u64) {
    let done = wait_until(LONG, || tally(s).0.len() as u64 == total);
    if done.is_none() {
        let (seen, _) = tally(s);
        let missing: Vec<u64> = (0..total)
            .filter(|n| !seen.contains_key(n))
            .take(20)
            .collect();
        panic!(
            "{} of {total} lines delivered; first missing: {missing:?}",
            seen.len()
        );
    }
}

fn start_weir(s: &Scratch, p: &str) -> Running {
    let mut cmd = s.weir(&["run", p]);
    cmd.stdin(std::process::Stdio::null());
    Running::start(cmd)
}

/// Every line exactly once.
fn assert_exactly_once(s: &Scratch, total: u64) {
    let (seen, torn) = tally(s);
    assert_eq!(torn, 0);
    let dups: Vec<(&u64, &u32)> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    assert_eq!(seen.len() as u64, total);
}

fn stop(w: Running) {
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(LONG);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn rotation_by_rename_keeping_five_generations() {
    let s = Scratch::new();
    let p = pipeline_for(&s);
    let w = start_weir(&s, &p);
    w.api_address();
    let mut writer = Writer::new(&s.path("logs"));
    let rate = writer.run(100_000, 10_000, Writer::rotate_rename);
    assert!(rate >= 20_000.0, "writer too slow: {rate:.0} lines/s");
    wait_for_all(&s, 100_000);
    stop(w);
    assert_exactly_once(&s, 100_000);
}

#[test]
fn rotation_by_copytruncate() {
    let s = Scratch::new();
    let p = pipeline_for(&s);
    let w = start_weir(&s, &p);
    w.api_address();
    let mut writer = Writer::new(&s.path("logs"));
    let rate = writer.run(100_000, 10_000, Writer::copytruncate);
    assert!(rate >= 20_000.0, "writer too slow: {rate:.0} lines/s");
    wait_for_all(&s, 100_000);
    stop(w);
    assert_exactly_once(&s, 100_000);
}

#[test]
fn truncation_after_weir_caught_up() {
    let s = Scratch::new();
    let p = pipeline_for(&s);
    let w = start_weir(&s, &p);
    let addr = w.api_address();
    let mut writer = Writer::new(&s.path("logs"));
    let rate = writer.run(80_000, 20_000, |wr| {
        // Bytes truncated before anyone read them are gone for every tailer:
        // truncate only once weir has everything.
        let upto = wr.next;
        wait_until(LONG, || tally(&s).0.len() as u64 == upto).expect("caught up");
        wr.file.set_len(0).unwrap();
    });
    assert!(rate >= 1_000.0);
    wait_for_all(&s, 80_000);
    let metrics = http_get(&addr, "/metrics").2;
    assert_eq!(
        metric(&metrics, r#"weir_file_truncations_total{source="app"}"#),
        Some(3.0),
        "{metrics}"
    );
    stop(w);
    assert_exactly_once(&s, 80_000);
}

#[test]
fn delete_and_recreate_with_the_same_name() {
    let s = Scratch::new();
    let p = pipeline_for(&s);
    let w = start_weir(&s, &p);
    w.api_address();
    let mut writer = Writer::new(&s.path("logs"));
    let rate = writer.run(100_000, 10_000, Writer::recreate);
    assert!(rate >= 20_000.0, "writer too slow: {rate:.0} lines/s");
    wait_for_all(&s, 100_000);
    stop(w);
    assert_exactly_once(&s, 100_000);
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let s = Scratch::new();
    let p = pipeline_for(&s);
    let logs = s.path("logs");
    const TOTAL: u64 = 200_000;
    let writer = std::thread::spawn(move || {
        let mut w = Writer::new(&logs);
        w.run(TOTAL, 25_000, Writer::rotate_rename)
    });
    // A fixed-seed generator: the kill moments are random but repeatable.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut kills = 0;
    while kills < 12 {
        let w = start_weir(&s, &p);
        w.api_address();
        std::thread::sleep(Duration::from_millis(150 + next() % 450));
        w.signal(libc::SIGKILL);
        let (code, _) = w.wait(LONG);
        assert_eq!(code, -1, "killed by a signal");
        kills += 1;
    }
    let rate = writer.join().unwrap();
    assert!(rate >= 20_000.0, "writer too slow: {rate:.0} lines/s");
    let w = start_weir(&s, &p);
    w.api_address();
    wait_for_all(&s, TOTAL);
    stop(w);
    let (seen, torn) = tally(&s);
    assert_eq!(seen.len() as u64, TOTAL);
    let dups: u64 = seen.values().map(|c| u64::from(c - 1)).sum();
    // What one checkpoint interval (200 ms) plus the sink's batch timeout
    // (100 ms) and the ack round trip cover at the writer's rate, per kill.
    let per_kill = (rate * 0.5) as u64;
    eprintln!(
        "{kills} kills: {dups} duplicate lines ({} per kill), {torn} torn lines",
        dups / kills
    );
    assert!(
        dups <= kills * per_kill,
        "{dups} duplicates after {kills} kills; bound {}",
        kills * per_kill
    );
    assert!(torn <= kills as usize, "{torn} torn lines");
}

#[test]
fn a_thousand_rotations_leak_no_file_descriptors() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "fd.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}
sources:
  app:
    type: file
    include: ['{logs}/app.log*']
    glob_interval: 50ms
    poll_interval: 20ms
    rotate_wait: 100ms
    fingerprint_bytes: 32
sinks:
  out: {{type: file, inputs: [app], path: '{data}/out/x.ndjson', batch: {{timeout: 50ms}}}}
",
            logs = s.path("logs").display(),
            data = s.path("data").display()
        ),
    );
    let w = start_weir(&s, &p);
    w.api_address();
    // Descriptors of log files only: sockets, pipes and the runtime's own
    // come and go with load and are not what this test is about.
    let logs = s.path("logs");
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", w.child.id()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(&logs))
            .count()
    };
    let baseline = fds();
    let mut writer = Writer::new(&s.path("logs"));
    // Forty generations are kept, so each lives for forty rotations (at
    // least 200 ms): long enough to be found even on a loaded machine. (A
    // file deleted before anyone opened it is lost to every tailer.)
    for _ in 0..1000 {
        writer.burst(5);
        writer.rotate_rename_keeping(40);
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.burst(5);
    if wait_until(Duration::from_secs(20), || {
        tally(&s).0.len() as u64 == writer.next
    })
    .is_none()
    {
        let log = w.stderr();
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("released file") && !l.contains("following file"))
            .take(60)
            .collect();
        eprintln!("{}", tail.join("\n"));
    }
    wait_for_all(&s, writer.next);
    // Rotated-away files are released rotate_wait after their last data.
    let settled = wait_until(Duration::from_secs(20), || fds() <= baseline + 41);
    assert!(
        settled.is_some(),
        "{} log files open, {baseline} at start",
        fds()
    );
    stop(w);
    assert_exactly_once(&s, 5005);
}

/// A file truncated and written again past the offset weir had read, all
/// between two of weir's reads: weir must notice that the file no longer
/// starts as it did and read it from the start, not from the old offset
/// (which would begin mid-line).
#[test]
fn truncated_and_rewritten_past_the_old_offset_between_two_reads() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "tail.yaml",
        &format!(
            "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
sources:
  app:
    type: file
    include: ['{logs}/app.log']
    glob_interval: 1h
    poll_interval: 1s
sinks:
  out: {{type: file, inputs: [app], path: '{data}/out/x.ndjson', batch: {{timeout: 50ms}}}}
",
            data = s.path("data").display(),
            logs = s.path("logs").display()
        ),
    );
    let line = |seq: u64, tag: &str| format!("{{\"seq\": {seq}, \"tag\": \"{tag}\"}}\n");
    let first: String = (0..1000).map(|i| line(i, "before")).collect();
    s.write("logs/app.log", &first);
    let w = start_weir(&s, &p);
    w.api_address();
    wait_until(LONG, || tally(&s).0.len() == 1000).expect("first generation read");
    std::thread::sleep(Duration::from_millis(300));
    // Truncate and write more than was there, in one go, while weir waits.
    let second: String = (1000..3000)
        .map(|i| line(i, "after-the-truncation"))
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(s.path("logs/app.log"))
        .unwrap();
    use std::io::Seek;
    f.set_len(0).unwrap();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    std::io::Write::write_all(&mut f, second.as_bytes()).unwrap();
    drop(f);
    wait_for_all(&s, 3000);
    stop(w);
    assert_exactly_once(&s, 3000);
}
