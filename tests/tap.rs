//! `weir tap` against a running weir: what it prints (the filter, the
//! sample, the limit, sinks tapped through their inputs), what it refuses,
//! and that a tap client that stops reading costs the pipeline nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SECS: Duration = Duration::from_secs(30);

/// weir reading standard input into a blackhole, with the API on a free port.
fn start(s: &Scratch, sink: &str, args: &[&str]) -> Running {
    let p = pipeline(
        s,
        "p.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\ngrace_period: 5s\nsources:\n  app: {{type: stdin}}\nsinks:\n  out:\n    inputs: [app]\n{sink}"
        ),
    );
    Running::start({
        let mut c = s.weir(&["run", &p]);
        c.args(args).stdin(Stdio::piped());
        c
    })
}

/// Writes numbered lines, every fifth an ERROR, until `stop` is set.
fn feed(w: &mut Running, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut stdin = w.child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..20 {
                let level = if n.is_multiple_of(5) { "ERROR" } else { "INFO" };
                if writeln!(stdin, "{{\"n\": {n}, \"level\": \"{level}\"}}").is_err() {
                    return;
                }
                n += 1;
            }
            let _ = stdin.flush();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// Runs `weir tap ARGS` to the end (it must end by itself).
fn tap(addr: &str, args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let mut c = Command::new(weir_bin());
    c.arg("tap")
        .args(args)
        .args(["--address", addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let done = Arc::new(Mutex::new(None));
    let d = Arc::clone(&done);
    std::thread::spawn(move || *d.lock().unwrap() = Some(child.wait_with_output()));
    wait_until(SECS, || done.lock().unwrap().is_some()).expect("weir tap ends by itself");
    let out = done.lock().unwrap().take().unwrap().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn tap_prints_the_matching_events_up_to_the_limit() {
    let s = Scratch::new();
    let mut w = start(&s, "    type: blackhole\n", &[]);
    let addr = w.api_address();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed(&mut w, Arc::clone(&stop));

    let (code, events, stderr) = tap(
        &addr,
        &[
            "app",
            "--limit",
            "3",
            "--filter",
            "{field: level, equals: ERROR}",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(events.len(), 3, "{events:?}");
    for e in &events {
        assert_eq!(e["component"], "app");
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
        assert_eq!(e["event"]["level"], "ERROR");
        assert_eq!(e["event"]["n"].as_u64().unwrap() % 5, 0);
    }

    // The same condition as JSON; half of the matching events, one after
    // the other; a sink is tapped through its input, under its own name.
    let (code, events, stderr) = tap(
        &addr,
        &[
            "out",
            "--rate",
            "1/2",
            "--limit",
            "4",
            "--filter",
            r#"{"field": "level", "equals": "ERROR"}"#,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let n: Vec<u64> = events
        .iter()
        .map(|e| {
            assert_eq!(e["component"], "out");
            e["event"]["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(n.len(), 4);
    for pair in n.windows(2) {
        assert_eq!(pair[1] - pair[0], 10, "every other ERROR line: {n:?}");
    }

    // Without a component: every source (and transform).
    let (code, events, _) = tap(&addr, &["--limit", "2"]);
    assert_eq!(code, 0);
    assert!(events.iter().all(|e| e["component"] == "app"));

    // Mistakes are refused before anything is printed.
    let (code, events, stderr) = tap(&addr, &["nope"]);
    assert_eq!((code, events.len()), (2, 0));
    assert!(
        stderr.contains("no component `nope`") && stderr.contains("app (source), out (sink)"),
        "{stderr}"
    );
    let (code, _, stderr) = tap(&addr, &["--filter", "level == \"ERROR\""]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--filter: "), "{stderr}");
    let (code, _, stderr) = tap(&addr, &["--rate", "3"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--rate: `3` is not in (0, 1]"), "{stderr}");

    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    let (code, stderr) = w.wait(SECS);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn tap_without_weir_says_where_it_looked() {
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let (code, _, stderr) = tap(&addr, &["--limit", "1"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot reach weir's API at http://{addr}/tap")),
        "{stderr}"
    );
}

#[test]
fn a_tap_that_stops_reading_never_slows_the_pipeline() {
    const LINES: usize = 100_000;
    let s = Scratch::new();
    let mut w = start(
        &s,
        "    type: file\n    path: data/out/x.ndjson\n    batch: {timeout: 100ms}\n",
        &["--metrics-file", "final.prom"],
    );
    let addr = w.api_address();
    // A tap client that reads the response headers and then nothing.
    let mut stuck = TcpStream::connect(&addr).unwrap();
    write!(
        stuck,
        "GET /tap?component=app HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stuck.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    let start = Instant::now();
    let mut stdin = w.child.stdin.take().unwrap();
    let pad = "p".repeat(200);
    let writer = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for i in 0..LINES {
            writeln!(buf, "{{\"n\": {i}, \"pad\": \"{pad}\"}}").unwrap();
        }
        stdin.write_all(&buf).unwrap();
        // Closing standard input ends the source, and then weir.
    });
    writer.join().unwrap();
    let (code, stderr) = w.wait(Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(s.output_lines().len(), LINES, "every line delivered");
    let prom = read(&s.path("final.prom"));
    let dropped = metric(&prom, "weir_tap_events_dropped_total").unwrap();
    assert!(
        dropped > 0.0,
        "the stuck tap lost events, the pipeline none"
    );
    eprintln!(
        "{LINES} lines through weir with a stuck tap in {:?}; the tap dropped {dropped}",
        start.elapsed()
    );
    drop(stuck);
}
