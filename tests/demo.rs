//! The `demo` source: the Feynman app's events generated live, through the
//! shipped pipeline's decoding and metrics; off whenever real logs (or a
//! pipe) are there; on for a first run by hand in a terminal.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(30);

/// pipelines/feynman.yaml with its demo source always on, `lines` long.
fn feynman_with_demo(lines: u64) -> String {
    let text = read(&repo().join("pipelines/feynman.yaml"));
    let (rate, interactive) = (
        "    rate: 50                    # lines per second\n",
        "    when_interactive: true\n",
    );
    assert!(
        text.contains(rate) && text.contains(interactive),
        "the shipped demo source"
    );
    text.replace(rate, "    rate: 2000\n")
        .replace(interactive, &format!("    lines: {lines}\n    seed: 7\n"))
}

#[test]
fn the_demo_feeds_every_derived_metric_with_events_of_now() {
    let s = Scratch::new();
    std::fs::remove_dir(s.path("logs")).unwrap();
    let p = pipeline(&s, "demo.yaml", &feynman_with_demo(1500));
    let before = jiff::Timestamp::now();
    let out = s
        .weir(&["run", &p, "--once", "--metrics-file", "final.prom"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("running on demo data: "), "{stderr}");
    assert!(stderr.contains("weir tap demo"), "{stderr}");

    let lines = s.output_lines();
    assert_eq!(lines.len(), 1500);
    let after = jiff::Timestamp::now();
    let mut dated = 0;
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if let Some(t) = v.get("timestamp").and_then(|t| t.as_str()) {
            let t: jiff::Timestamp = t.parse().unwrap();
            assert!(
                t >= before - jiff::SignedDuration::from_secs(1) && t <= after,
                "{t}"
            );
            dated += 1;
        }
    }
    assert!(dated > 1400, "{dated}");

    let prom = read(&s.path("final.prom"));
    assert_eq!(
        metric(&prom, r#"weir_lines_read_total{source="demo"}"#),
        Some(1500.0)
    );
    // uvicorn's plain lines and the truncated ones, as from the real app.
    assert!(prom.contains(r#"weir_decode_errors_total{source="demo",reason="invalid_json"}"#));
    for family in [
        "fastapi_requests_total{",
        "fastapi_request_duration_seconds_bucket{",
        "agent_tool_calls_total{",
        "agent_tool_call_duration_seconds_bucket{",
        "langgraph_workflow_executions_total{",
        "sse_messages_total{",
        "sse_connection_duration_seconds_bucket{",
        "external_api_requests_total{",
        "llm_tokens_used_total{",
        "llm_costs_total_usd{",
    ] {
        assert!(prom.contains(family), "no {family} in\n{prom}");
    }
    let today = after.strftime("%Y-%m-%d").to_string();
    let cost = metric(&prom, &format!("llm_daily_costs_usd{{date=\"{today}\"}}")).unwrap();
    assert!(cost > 0.0, "today's cost counts the demo's LLM calls");
}

#[test]
fn the_shipped_demo_stays_off_with_logs_or_without_a_terminal() {
    let s = Scratch::new();
    s.write("logs/app.log", "{\"event\": \"api_request\"}\n");
    let feynman = repo().join("pipelines/feynman.yaml").display().to_string();
    let run = |s: &Scratch, logs: &str| {
        s.weir(&["run", &feynman, "--once", "--metrics-file", "final.prom"])
            .env("WEIR_LOGS_DIR", s.path(logs))
            .stdin(Stdio::null())
            .output_within(RUN_LIMIT)
            .unwrap()
    };
    for logs in ["logs", "no/such/dir"] {
        let out = run(&s, logs);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("demo data"), "{stderr}");
        let prom = read(&s.path("final.prom"));
        assert!(!prom.contains(r#"source="demo""#), "{prom}");
    }

    // With the demo on, real logs appearing stop it.
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  demo: {{type: demo, rate: 200, when_missing: '{}'}}\nsinks:\n  out: {{type: blackhole, inputs: [demo]}}\n",
            s.path("later").display()
        ),
    );
    let w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::null());
        c
    });
    let addr = w.api_address();
    let read_lines = || {
        metric(
            &http_get(&addr, "/metrics").2,
            r#"weir_lines_read_total{source="demo"}"#,
        )
        .unwrap_or(0.0)
    };
    wait_until(SECS, || read_lines() > 50.0).expect("the demo runs");
    std::fs::create_dir(s.path("later")).unwrap();
    w.wait_for_log("exists now: the demo source stops", SECS);
    let (code, stderr) = w.wait(SECS);
    assert_eq!(code, 0, "the only source ended, so did weir: {stderr}");
}

/// The README's first command on a fresh checkout: nothing in ./logs,
/// nothing piped in, a terminal. `script` gives it one.
#[test]
fn the_first_run_in_a_terminal_shows_demo_data_within_seconds() {
    if Command::new("script")
        .arg("--version")
        .output_within(RUN_LIMIT)
        .is_err()
    {
        eprintln!("skipped: no `script` (util-linux) to give weir a terminal");
        return;
    }
    let s = Scratch::new();
    std::fs::remove_dir(s.path("logs")).unwrap();
    let cmd = format!(
        "{} run {}",
        weir_bin(),
        repo().join("pipelines/feynman.yaml").display()
    );
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .current_dir(s.dir.path())
        .env("WEIR_LOGS_DIR", s.path("logs"))
        .env("WEIR_DATA_DIR", s.path("data"))
        .env("WEIR_API_ADDR", "127.0.0.1:0")
        .env("WEIR_LOG", "info")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start script");
    let log = Arc::new(Mutex::new(String::new()));
    let pipe = child.stdout.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
        }
    });
    let logged = |needle: &str| wait_until(SECS, || log.lock().unwrap().contains(needle));
    logged("serving http://").unwrap_or_else(|| panic!("{}", log.lock().unwrap()));
    let addr = {
        let text = strip_ansi(&log.lock().unwrap());
        let start = text.find("serving http://").unwrap() + "serving http://".len();
        text[start..start + text[start..].find('/').unwrap()].to_string()
    };
    logged("running on demo data").unwrap_or_else(|| panic!("{}", log.lock().unwrap()));
    let shows = wait_until(Duration::from_secs(10), || {
        let m = http_get(&addr, "/metrics").2;
        metric(&m, r#"weir_lines_read_total{source="demo"}"#).unwrap_or(0.0) > 0.0
            && m.contains("fastapi_requests_total{")
            && m.contains("llm_costs_total_usd{")
    });
    assert!(shows.is_some(), "{}", log.lock().unwrap());
    // The alert rules read it.
    let (status, _, rules) = http_get(&addr, "/api/v1/rules");
    assert_eq!(status, 200, "{rules}");

    // Ctrl-C, as a user would.
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let ended = wait_until(SECS, || child.try_wait().unwrap().is_some());
    if ended.is_none() {
        let _ = child.kill();
    }
    assert!(ended.is_some(), "{}", log.lock().unwrap());
    assert!(
        !s.output_lines().is_empty(),
        "the file sink wrote the demo's events"
    );
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
