//! `weir run --once`, `weir validate` and the CLI contract (exit codes,
//! messages) as a user meets them.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn fixture() -> String {
    std::fs::read_to_string(repo().join("fixtures/feynman-sample.log")).unwrap()
}

fn feynman() -> String {
    repo().join("pipelines/feynman.yaml").display().to_string()
}

/// Lines of the sample that are JSON objects, and those that are not.
fn split_fixture() -> (Vec<String>, Vec<String>) {
    fixture()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .partition(|l| {
            matches!(
                serde_json::from_str::<serde_json::Value>(l),
                Ok(serde_json::Value::Object(_))
            )
        })
}

#[test]
fn once_replays_the_logs_dir_to_the_file_sink() {
    let s = Scratch::new();
    s.write("logs/app.log", fixture());
    let out = s
        .weir(&["run", &feynman(), "--once", "--metrics-file", "final.prom"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let (good, bad) = split_fixture();
    let lines = s.output_lines();
    assert_eq!(
        lines.len(),
        good.len() + bad.len(),
        "every line is kept (on_error: keep)"
    );
    // Valid JSON lines come out byte for byte as the app wrote them.
    let out_set: std::collections::HashSet<&String> = lines.iter().collect();
    for g in &good {
        assert!(out_set.contains(g), "missing or altered: {g}");
    }
    // The others are wrapped as {"message": line, "weir_decode_error": …}.
    let marked: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("weir_decode_error").is_some())
        .collect();
    assert_eq!(marked.len(), bad.len());
    for b in &bad {
        assert!(
            marked.iter().any(|m| m["message"] == b.as_str()),
            "lost: {b}"
        );
    }

    let prom = read(&s.path("final.prom"));
    assert_eq!(
        metric(&prom, r#"weir_lines_read_total{source="app_logs"}"#),
        Some((good.len() + bad.len()) as f64)
    );
    assert_eq!(
        metric(
            &prom,
            r#"weir_decode_errors_total{source="app_logs",reason="invalid_json"}"#
        ),
        Some(bad.len() as f64)
    );
    assert_eq!(
        metric(&prom, r#"weir_events_out_total{sink="local"}"#),
        Some(lines.len() as f64)
    );
    assert_eq!(
        metric(&prom, r#"weir_bytes_read_total{source="app_logs"}"#),
        Some(fixture().len() as f64)
    );
}

#[test]
fn events_land_in_the_file_of_their_own_day() {
    let s = Scratch::new();
    s.write(
        "logs/a.log",
        "{\"timestamp\": \"2025-01-31T23:59:59.999999+00:00\", \"n\": 1}\n{\"timestamp\": \"2025-02-01T08:00:00+08:00\", \"n\": 2}\n{\"timestamp\": \"2025-02-01T00:00:00Z\", \"n\": 3}\n",
    );
    let out = s
        .weir(&["run", &feynman(), "--once"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let day = |d: &str| read(&s.path(&format!("data/out/{d}.ndjson")));
    // 08:00+08:00 is midnight UTC: it belongs to February 1st.
    assert_eq!(day("2025-01-31").lines().count(), 1);
    assert_eq!(day("2025-02-01").lines().count(), 2);
}

#[test]
fn stdin_is_read_like_a_file() {
    let s = Scratch::new();
    let out = run_with_input(
        s.weir(&["run", &feynman(), "--once", "--metrics-file", "m.prom"]),
        fixture().as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (good, bad) = split_fixture();
    assert_eq!(s.output_lines().len(), good.len() + bad.len());
    let prom = read(&s.path("m.prom"));
    assert_eq!(
        metric(&prom, r#"weir_lines_read_total{source="app_stdout"}"#),
        Some((good.len() + bad.len()) as f64)
    );
}

#[test]
fn console_sink_writes_json_lines_to_stdout() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "c.yaml",
        "api: {enabled: false}\nsources:\n  in: {type: stdin}\nsinks:\n  out: {type: console, inputs: [in]}\n",
    );
    let out = run_with_input(
        s.weir(&["run", &p, "--once"]),
        "{\"a\": \"中文\"}\nnot json\n".as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "{\"a\": \"中文\"}");
    let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(v["message"], "not json");
    assert!(
        v["weir_decode_error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
}

#[test]
fn validate_accepts_the_shipped_pipelines() {
    let s = Scratch::new();
    let mut args = vec!["validate".to_string()];
    // Files only: `pipelines/rules/` holds rule files (tests/rules.rs).
    for e in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() {
            args.push(path.display().to_string());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.weir(&args).output_within(RUN_LIMIT).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("feynman.yaml: ok"));
}

#[test]
fn validate_reports_a_typo_with_file_line_column_and_component() {
    let s = Scratch::new();
    let text = std::fs::read_to_string(repo().join("pipelines/feynman.yaml"))
        .unwrap()
        .replace("read_from:", "raed_from:");
    let line = text.lines().position(|l| l.contains("raed_from")).unwrap() + 1;
    let p = pipeline(&s, "typo.yaml", &text);
    let out = s.weir(&["validate", &p]).output_within(RUN_LIMIT).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{p}:{line}:5: sources.app_logs: unknown key `raed_from`: did you mean `read_from`?"
    );
    assert!(stderr.contains(&want), "want {want}\ngot {stderr}");
    // `run` refuses the same file the same way.
    let out = s
        .weir(&["run", &p, "--once"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&want));
}

#[test]
fn missing_variable_without_default_is_a_config_error() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "env.yaml",
        "sources:\n  in: {type: stdin}\nsinks:\n  out:\n    type: file\n    inputs: [in]\n    path: ${WEIR_TEST_UNSET_DIR}/x.ndjson\n",
    );
    let out = s
        .weir(&["validate", &p])
        .env_remove("WEIR_TEST_UNSET_DIR")
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{p}:7:11: environment variable `WEIR_TEST_UNSET_DIR` is not set"
        )),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2_and_version_exits_0() {
    let s = Scratch::new();
    assert_eq!(
        s.weir(&["frobnicate"])
            .output_within(RUN_LIMIT)
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        s.weir(&["run", "--bogus"])
            .output_within(RUN_LIMIT)
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    let v = s.weir(&["--version"]).output_within(RUN_LIMIT).unwrap();
    assert_eq!(v.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("weir "));
    let out = s
        .weir(&["validate", "no-such.yaml"])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no-such.yaml: cannot read the pipeline file")
    );
}

#[test]
fn a_busy_api_port_is_a_clear_runtime_error() {
    let s = Scratch::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = s
        .weir(&["run", &feynman(), "--once"])
        .env("WEIR_API_ADDR", &addr)
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    let _ = Duration::ZERO;
}

#[test]
fn validate_never_echoes_a_secret_from_the_environment() {
    let s = Scratch::new();
    let secret = "hunter2-W3irSecret-0xC0FFEE";
    let p = pipeline(
        &s,
        "secret.yaml",
        "sources:\n  in: {type: stdin}\nsinks:\n  loki:\n    type: loki\n    inputs: [in]\n    endpoint: ${LOKI_URL}\n    labels: {app: x}\n    auth: \"${LOKI_PW}\"\n",
    );
    let out = s
        .weir(&["validate", &p])
        .env("LOKI_PW", secret)
        .env("LOKI_URL", format!("loki-host-{secret}"))
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("W3irSecret"), "{stderr}");
    assert!(
        stderr.contains(&format!("{p}:9:11: sinks.loki: ")) && stderr.contains("\"${LOKI_PW}\""),
        "{stderr}"
    );
    // With the password where it belongs, the URL check speaks of `${LOKI_URL}`.
    let p = pipeline(
        &s,
        "secret.yaml",
        "sources:\n  in: {type: stdin}\nsinks:\n  loki:\n    type: loki\n    inputs: [in]\n    endpoint: ${LOKI_URL}\n    labels: {app: x}\n    auth: {user: weir, password: \"${LOKI_PW}\"}\n",
    );
    let out = s
        .weir(&["validate", &p])
        .env("LOKI_PW", secret)
        .env("LOKI_URL", format!("loki-host-{secret}"))
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("W3irSecret"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{p}:7:15: sinks.loki: `${{LOKI_URL}}` is not an http(s) URL"
        )),
        "{stderr}"
    );
}

#[test]
fn validate_reports_a_duplicate_key_in_weirs_words() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "dup.yaml",
        "sources:\n  in: {type: stdin}\nsinks:\n  out:\n    type: file\n    inputs: [in]\n    path: a.ndjson\n    path: b.ndjson\n",
    );
    let out = s.weir(&["validate", &p]).output_within(RUN_LIMIT).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{p}:8:5: sinks.out: duplicate key `path`: it is already defined at line 7; remove one of the two"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("DuplicateKeyPolicy"), "{stderr}");
}

#[test]
fn validate_reports_every_problem_of_a_component() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "many.yaml",
        "sources:\n  in:\n    type: file\n    include: ['logs/*.log']\n    poll_interval: often\n    bogus: 1\n    fingerprint_bytes: lots\nsinks:\n  out: {type: file, inputs: [in], path: x.ndjson}\n",
    );
    let out = s.weir(&["validate", &p]).output_within(RUN_LIMIT).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        format!("{p}:5:20: sources.in: `often` is not a duration"),
        format!("{p}:6:5: sources.in: unknown key `bogus`"),
        format!("{p}:7:24: sources.in: expected a whole number, 0 or more, found string \"lots\""),
    ] {
        assert!(stderr.contains(&want), "want {want}\ngot {stderr}");
    }
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn an_empty_or_comment_only_pipeline_is_a_config_error() {
    let s = Scratch::new();
    for (name, text) in [
        ("empty.yaml", ""),
        ("comments.yaml", "# sources: to come\n\n# sinks: later\n"),
    ] {
        let p = pipeline(&s, name, text);
        let out = s.weir(&["validate", &p]).output_within(RUN_LIMIT).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "{p}:1:1: the pipeline is empty: define at least one source and one sink"
            )),
            "{name}: {stderr}"
        );
        let out = s
            .weir(&["run", &p, "--once"])
            .stdin(Stdio::null())
            .output_within(RUN_LIMIT)
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
    }
}

#[test]
fn buffer_inspect_reports_a_replay_buffer_and_names_what_to_fix() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "data_dir: '{}'\napi: {{enabled: false}}\nsources:\n  in: {{type: stdin}}\nsinks:\n  out:\n    type: file\n    inputs: [in]\n    path: '{}'\n    buffer: {{type: disk}}\n  plain: {{type: blackhole, inputs: [in]}}\n",
            s.path("data").display(),
            s.path("out.ndjson").display()
        ),
    );
    let input: String = (0..500).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let out = run_with_input(s.weir(&["run", &p, "--once"]), input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&s.path("out.ndjson")).lines().count(), 500);

    // Delivered: the buffer is empty, and says so.
    let out = s
        .weir(&["buffer", "inspect", "--pipeline", &p, "--json"])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["sink"], "out");
    assert_eq!(v[0]["events"], 0);
    let table = s
        .weir(&["buffer", "inspect", "out", "--pipeline", &p])
        .output_within(RUN_LIMIT)
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("SINK") && table.contains("\nout "),
        "{table}"
    );

    let out = s
        .weir(&["buffer", "inspect", "plain", "--pipeline", &p])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sink `plain` has no disk buffer"), "{err}");
    let out = s
        .weir(&["buffer", "inspect", "nope", "--pipeline", &p])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no sink `nope`; sinks with a disk buffer: out")
    );
    let out = s
        .weir(&[
            "buffer",
            "inspect",
            "--data-dir",
            &s.path("data").display().to_string(),
        ])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nout "));
}
