//! `weir top --once` against a running weir: one plain frame with each
//! source's and sink's figures, as a script would read it.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(30);

fn top(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(weir_bin())
        .arg("top")
        .args(args)
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The cells of the row that starts with `name`.
fn row<'a>(frame: &'a str, name: &str) -> Vec<&'a str> {
    frame
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no {name} row in\n{frame}"))
}

#[test]
fn top_once_prints_one_frame_of_sources_and_sinks() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "p.yaml",
        "api: {address: '127.0.0.1:0'}\nsources:\n  app:\n    type: stdin\n    decode: {codec: json, on_error: keep}\nsinks:\n  out:\n    type: file\n    inputs: [app]\n    path: data/out/x.ndjson\n    batch: {timeout: 50ms}\n    buffer: {type: memory, max_events: 10000}\n  counted: {type: file, inputs: [app], path: data/other/y.ndjson, batch: {timeout: 50ms}}\n",
    );
    let mut w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::piped());
        c
    });
    let addr = w.api_address();
    let mut stdin = w.child.stdin.take().unwrap();
    for i in 0..300 {
        writeln!(stdin, "{{\"n\": {i}}}").unwrap();
    }
    writeln!(stdin, "not json").unwrap();
    stdin.flush().unwrap();
    wait_until(SECS, || {
        metric(
            &http_get(&addr, "/metrics").2,
            r#"weir_events_out_total{sink="out"}"#,
        ) == Some(301.0)
            && metric(
                &http_get(&addr, "/metrics").2,
                r#"weir_events_out_total{sink="counted"}"#,
            ) == Some(301.0)
    })
    .expect("all delivered");

    let (code, frame, stderr) = top(&["--once", "--interval", "0.2", "--address", &addr]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!frame.contains('\x1b'), "plain text, no terminal codes");
    assert!(
        frame.starts_with(&format!("weir {} at {addr}", env!("CARGO_PKG_VERSION"))),
        "{frame}"
    );
    assert_eq!(
        row(&frame, "SOURCE"),
        ["SOURCE", "LINES/S", "BYTES/S", "LINES", "DECODE", "ERRORS"]
    );
    // Nothing new during the interval: rates 0; 301 lines, 1 not JSON.
    assert_eq!(row(&frame, "app"), ["app", "0.0", "0", "B/s", "301", "1"]);
    assert_eq!(
        row(&frame, "SINK"),
        [
            "SINK", "EVENTS/S", "BYTES/S", "EVENTS", "RETRIES", "DEAD", "LETTERS", "BUFFER",
            "EVENTS", "BUFFER", "BYTES"
        ]
    );
    assert_eq!(
        row(&frame, "out"),
        ["out", "0.0", "0", "B/s", "301", "0", "0", "0", "0", "B"]
    );
    assert_eq!(
        row(&frame, "counted"),
        ["counted", "0.0", "0", "B/s", "301", "0", "0", "-", "-"]
    );
    // Exactly one frame.
    assert_eq!(frame.matches("weir ").count(), 1, "{frame}");

    // Rates: lines arriving during the interval show.
    let writer = std::thread::spawn(move || {
        for i in 0..40 {
            writeln!(stdin, "{{\"n\": {i}}}").unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(25));
        }
        stdin
    });
    let (code, frame, _) = top(&["--once", "--interval", "0.5", "--address", &addr]);
    assert_eq!(code, 0);
    let lines_per_s: f64 = row(&frame, "app")[1].parse().unwrap();
    assert!(lines_per_s > 5.0, "{frame}");
    drop(writer.join().unwrap());
    let (code, stderr) = w.wait(SECS);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn top_without_weir_exits_1() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let (code, out, stderr) = top(&["--once", "--address", &addr]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        stderr.contains(&format!("cannot reach weir's API at http://{addr}/metrics")),
        "{stderr}"
    );
    let (code, _, stderr) = top(&["--once", "--interval", "0", "--address", &addr]);
    assert_eq!(code, 2, "{stderr}");
}
