//! weir as a long-running process: the API, following files, and stopping
//! on SIGTERM without losing what was read.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(30);

#[test]
fn api_serves_metrics_health_and_ready() {
    let s = Scratch::new();
    // Longer than fingerprint_bytes (256), so the file is read at once.
    let line = format!("{{\"n\": 1, \"pad\": \"{}\"}}\n", "x".repeat(300));
    s.write("logs/app.log", format!("{line}{line}"));
    let feynman = repo().join("pipelines/feynman.yaml");
    let w = Running::start({
        let mut c = s.weir(&["run", feynman.to_str().unwrap()]);
        c.stdin(Stdio::null());
        c
    });
    let addr = w.api_address();
    assert_eq!(http_get(&addr, "/health").0, 200);
    wait_until(SECS, || http_get(&addr, "/ready").0 == 200).expect("ready");
    wait_until(SECS, || {
        metric(
            &http_get(&addr, "/metrics").2,
            r#"weir_lines_read_total{source="app_logs"}"#,
        ) == Some(2.0)
    })
    .expect("lines counted");
    let (status, ctype, body) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("# TYPE weir_lines_read_total counter"));
    assert_eq!(http_get(&addr, "/nope").0, 404);
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(SECS);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn sigterm_delivers_what_was_read_and_exits_0() {
    let s = Scratch::new();
    // A batch timeout far beyond the test: only the drain at stop can flush.
    let p = pipeline(
        &s,
        "p.yaml",
        "api: {address: '127.0.0.1:0'}\ngrace_period: 20s\nsources:\n  in: {type: stdin}\nsinks:\n  out:\n    type: file\n    inputs: [in]\n    path: data/out/x.ndjson\n    batch: {timeout: 1h, max_events: 1000000, max_bytes: 1GiB}\n",
    );
    let mut w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::piped());
        c
    });
    let addr = w.api_address();
    let mut stdin = w.child.stdin.take().unwrap();
    for i in 0..1000 {
        writeln!(stdin, "{{\"n\": {i}}}").unwrap();
    }
    stdin.flush().unwrap();
    wait_until(SECS, || {
        metric(
            &http_get(&addr, "/metrics").2,
            r#"weir_lines_read_total{source="in"}"#,
        ) == Some(1000.0)
    })
    .expect("all lines read");
    assert!(
        s.output_lines().is_empty(),
        "nothing flushed before the stop"
    );
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(SECS);
    drop(stdin);
    assert_eq!(code, 0, "{stderr}");
    let out = s.output_lines();
    assert_eq!(out.len(), 1000);
    assert_eq!(out[999], "{\"n\": 999}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

#[test]
fn follows_appends_new_files_and_truncation() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  logs:\n    type: file\n    include: ['{}/*.log']\n    glob_interval: 100ms\n    poll_interval: 20ms\n    fingerprint_bytes: 8\nsinks:\n  out:\n    type: file\n    inputs: [logs]\n    path: data/out/x.ndjson\n    batch: {{timeout: 50ms}}\n",
            s.path("logs").display()
        ),
    );
    let append = |name: &str, text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.path(name))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append("logs/a.log", "{\"a\": 1}\n");
    let w = Running::start(s.weir(&["run", &p]));
    let addr = w.api_address();
    let has = |n: usize| wait_until(SECS, || s.output_lines().len() == n);
    has(1).expect("first line");
    append("logs/a.log", "{\"a\": 2}\n{\"a\": 3}\n");
    has(3).expect("appended lines");
    append("logs/b.log", "{\"b\": 1}\n");
    has(4).expect("new file");
    // A line written in two parts is one event.
    append("logs/b.log", "{\"b\": ");
    std::thread::sleep(Duration::from_millis(100));
    append("logs/b.log", "2}\n");
    has(5).expect("joined line");
    // Truncate a.log and write less than was there: read again from 0.
    std::fs::write(s.path("logs/a.log"), "{\"c\":1}\n").unwrap();
    has(6).expect("line after truncation");
    let metrics = http_get(&addr, "/metrics").2;
    assert_eq!(
        metric(&metrics, r#"weir_file_truncations_total{source="logs"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, r#"weir_files_open{source="logs"}"#),
        Some(2.0)
    );
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(SECS);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("file was truncated"), "{stderr}");
    let mut out = s.output_lines();
    out.sort();
    assert_eq!(
        out,
        [
            "{\"a\": 1}",
            "{\"a\": 2}",
            "{\"a\": 3}",
            "{\"b\": 1}",
            "{\"b\": 2}",
            "{\"c\":1}"
        ]
    );
}

#[test]
fn a_last_line_without_newline_is_emitted_after_line_timeout() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  logs:\n    type: file\n    include: ['{}/*.log']\n    poll_interval: 20ms\n    line_timeout: 300ms\n    fingerprint_bytes: 8\nsinks:\n  out: {{type: file, inputs: [logs], path: data/out/x.ndjson, batch: {{timeout: 50ms}}}}\n",
            s.path("logs").display()
        ),
    );
    s.write("logs/a.log", "{\"done\": 1}\n{\"partial\": 2}");
    let w = Running::start(s.weir(&["run", &p]));
    w.api_address();
    wait_until(SECS, || s.output_lines().len() == 2)
        .expect("partial line emitted after the timeout");
    assert_eq!(s.output_lines()[1], "{\"partial\": 2}");
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(SECS).0, 0);
}

#[test]
fn hundreds_of_files_in_one_directory() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  logs:\n    type: file\n    include: ['{}/*.log']\n    glob_interval: 200ms\nsinks:\n  out: {{type: file, inputs: [logs], path: data/out/x.ndjson, batch: {{timeout: 100ms}}}}\n",
            s.path("logs").display()
        ),
    );
    let line = |f: usize, n: usize| {
        format!(
            "{{\"file\": {f}, \"n\": {n}, \"pad\": \"{}\"}}\n",
            "z".repeat(250)
        )
    };
    for f in 0..300 {
        s.write(&format!("logs/f{f:03}.log"), line(f, 0));
    }
    let w = Running::start(s.weir(&["run", &p]));
    let addr = w.api_address();
    wait_until(SECS, || s.output_lines().len() == 300).expect("first lines of 300 files");
    for f in 0..300 {
        let mut h = std::fs::OpenOptions::new()
            .append(true)
            .open(s.path(&format!("logs/f{f:03}.log")))
            .unwrap();
        h.write_all(line(f, 1).as_bytes()).unwrap();
    }
    wait_until(SECS, || s.output_lines().len() == 600).expect("appended lines of 300 files");
    let m = http_get(&addr, "/metrics").2;
    assert_eq!(metric(&m, r#"weir_files_open{source="logs"}"#), Some(300.0));
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(SECS).0, 0);
    let mut out = s.output_lines();
    out.sort();
    out.dedup();
    assert_eq!(out.len(), 600, "no duplicates");
}

/// SIGHUP (a service manager's "reload") is logged and does not stop weir:
/// lines keep flowing, and a later SIGTERM still drains and exits 0.
#[test]
fn sighup_is_logged_and_does_not_stop_the_pipeline() {
    let s = Scratch::new();
    let line = |n: usize| format!("{{\"n\": {n}, \"pad\": \"{}\"}}\n", "x".repeat(300));
    s.write("logs/app.log", line(0));
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  app: {{type: file, include: ['{}/*.log']}}\nsinks:\n  out: {{type: file, inputs: [app], path: data/out/x.ndjson, batch: {{timeout: 100ms}}}}\n",
            s.path("logs").display()
        ),
    );
    let mut w = Running::start(s.weir(&["run", &p]));
    let addr = w.api_address();
    wait_until(SECS, || s.output_lines().len() == 1).expect("first line");
    w.signal(libc::SIGHUP);
    w.wait_for_log("SIGHUP received", SECS);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped weir:\n{}",
        w.stderr()
    );
    assert_eq!(http_get(&addr, "/ready").0, 200);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path("logs/app.log"))
        .unwrap();
    f.write_all(line(1).as_bytes()).unwrap();
    wait_until(SECS, || s.output_lines().len() == 2).expect("lines after SIGHUP are read");
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(SECS);
    assert_eq!(code, 0, "{stderr}");
}
