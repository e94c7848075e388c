//! Credentials in endpoint URLs (`http://user:password@host`) never show up
//! in weir's log, its `/metrics` or its dead-letter files.

mod common;

use std::time::Duration;

use common::*;

const PASSWORD: &str = "hunter2-secret";

fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn passwords_in_urls_are_redacted_everywhere() {
    let s = Scratch::new();
    // Longer than fingerprint_bytes, so the file is read at once.
    let lines: String = (0..20)
        .map(|i| {
            format!(
                "{{\"timestamp\": \"2026-11-25T06:00:00Z\", \"level\": \"INFO\", \"seq\": {i}}}\n"
            )
        })
        .collect();
    s.write("logs/app.log", lines);
    let url = format!("http://weir:{PASSWORD}@127.0.0.1:{}", refused_port());
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
grace_period: 1s
sources:
  app:
    type: file
    include: ['{logs}/*.log']
    decode: {{codec: json, timestamp: {{field: timestamp}}}}
sinks:
  loki:
    type: loki
    inputs: [app]
    endpoint: {url}
    labels: {{app: feynman}}
    retry: {{initial_backoff: 50ms, max_backoff: 100ms, max_duration: 500ms}}
  es:
    type: elasticsearch
    inputs: [app]
    endpoint: {url}
    index: logs
    retry: {{initial_backoff: 50ms, max_backoff: 100ms, max_duration: 500ms}}
  m:
    type: metrics
    inputs: [app]
    rules: [{{name: app_lines_total, type: counter}}]
    remote_write: {{url: '{url}/api/v1/write', interval: 200ms}}
",
            data = s.path("data").display(),
            logs = s.path("logs").display(),
        ),
    );
    let w = Running::start(s.weir(&["run", &p]));
    let api = w.api_address();
    w.wait_for_log("remote write", Duration::from_secs(30));
    wait_until(Duration::from_secs(30), || {
        s.path("data/dead-letter/loki.ndjson").exists()
            && s.path("data/dead-letter/es.ndjson").exists()
    })
    .unwrap_or_else(|| panic!("no dead letters; stderr:\n{}", w.stderr()));
    let (_, _, metrics) = http_get(&api, "/metrics");
    w.signal(libc::SIGTERM);
    let (_, stderr) = w.wait(Duration::from_secs(30));

    assert!(
        stderr.contains("127.0.0.1"),
        "the log names the server:\n{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "password in the log:\n{stderr}");
    assert!(
        !metrics.contains(PASSWORD),
        "password in /metrics:\n{metrics}"
    );
    for sink in ["loki", "es"] {
        let dl = read(&s.path(&format!("data/dead-letter/{sink}.ndjson")));
        assert!(dl.contains("weir:***@127.0.0.1"), "{dl}");
        assert!(
            !dl.contains(PASSWORD),
            "password in the {sink} dead letters:\n{dl}"
        );
    }
}
