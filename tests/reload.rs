//! Reloading a running pipeline (`POST /-/reload`, SIGHUP): what changed is
//! rebuilt, the rest keeps running, and no line is lost or duplicated.

mod common;
use weir_testkit::loki as fake_loki;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use fake_loki::FakeLoki;

const LONG: Duration = Duration::from_secs(90);

fn http_post(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn pipeline_text(s: &Scratch, loki: &FakeLoki, labels: &str, second_source: bool) -> String {
    let mut text = format!(
        "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
grace_period: 30s
sources:
  a:
    type: file
    include: ['{logs}/a/*.log']
    fingerprint_bytes: 32
    decode: {{codec: json}}
",
        data = s.path("data").display(),
        logs = s.path("logs").display(),
    );
    if second_source {
        text.push_str(&format!(
            "  b:
    type: file
    include: ['{logs}/b/*.log']
    fingerprint_bytes: 32
    decode: {{codec: json}}
",
            logs = s.path("logs").display()
        ));
    }
    let inputs = if second_source { "[a, b]" } else { "[a]" };
    text.push_str(&format!(
        "sinks:
  loki:
    type: loki
    inputs: {inputs}
    endpoint: {url}
    labels: {labels}
    batch: {{max_bytes: 64KiB, timeout: 100ms}}
    retry: {{initial_backoff: 100ms, max_backoff: 1s}}
",
        url = loki.url()
    ));
    text
}

/// (source, seq) → how often Loki stored it; and the label sets seen.
fn stored(loki: &FakeLoki) -> (BTreeMap<(String, u64), usize>, Vec<String>) {
    let mut seen = BTreeMap::new();
    let streams = loki.streams();
    for entries in streams.values() {
        for e in entries {
            let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
            let key = (
                v["src"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            );
            *seen.entry(key).or_insert(0) += 1;
        }
    }
    (seen, streams.keys().cloned().collect())
}

#[test]
fn a_reload_under_load_rebuilds_what_changed_and_loses_nothing() {
    let s = Scratch::new();
    let loki = FakeLoki::start();
    std::fs::create_dir_all(s.path("logs/a")).unwrap();
    std::fs::create_dir_all(s.path("logs/b")).unwrap();
    let p = pipeline(
        &s,
        "p.yaml",
        &pipeline_text(&s, &loki, "{app: feynman}", false),
    );
    let w = Running::start(s.weir(&["run", &p]));
    let api = w.api_address();

    // A writer appending to a/app.log all along.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        let path = s.path("logs/a/app.log");
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(path).unwrap();
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let mut chunk = String::new();
                for _ in 0..50 {
                    chunk.push_str(&format!("{{\"src\": \"a\", \"seq\": {seq}, \"pad\": \"xxxxxxxxxxxxxxxxxxxxxxxx\"}}\n"));
                    seq += 1;
                }
                f.write_all(chunk.as_bytes()).unwrap();
                written.store(seq, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    wait_until(LONG, || loki.entry_count() > 2000).expect("lines flow before the reload");

    // Change the sink's labels and add a source, mid-stream.
    let b_lines: String = (0..3000)
        .map(|i| {
            format!("{{\"src\": \"b\", \"seq\": {i}, \"pad\": \"yyyyyyyyyyyyyyyyyyyyyyyy\"}}\n")
        })
        .collect();
    s.write("logs/b/other.log", b_lines);
    s.write(
        "p.yaml",
        pipeline_text(&s, &loki, "{app: feynman, env: reloaded}", true),
    );
    let (status, body) = http_post(&api, "/-/reload");
    assert_eq!(status, 200, "{body}\n{}", w.stderr());
    assert!(body.contains("rebuilt sink loki"), "{body}");
    assert!(body.contains("added source b"), "{body}");

    // A file with an error is refused and changes nothing.
    std::fs::write(s.path("p.yaml"), "sources: {a: {type: nope}}\n").unwrap();
    let (status, body) = http_post(&api, "/-/reload");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("unknown source type `nope`"), "{body}");

    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let total_a = written.load(Ordering::SeqCst);
    wait_until(LONG, || loki.entry_count() as u64 >= total_a + 3000).unwrap_or_else(|| {
        panic!(
            "{} of {} entries arrived; stderr:\n{}",
            loki.entry_count(),
            total_a + 3000,
            w.stderr()
        )
    });
    let metrics = http_get(&api, "/metrics").2;
    assert_eq!(
        metric(&metrics, r#"weir_config_reloads_total{outcome="success"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, r#"weir_config_reloads_total{outcome="failure"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "weir_config_last_reload_successful"),
        Some(0.0)
    );
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(LONG);
    assert_eq!(code, 0, "{stderr}");

    let (seen, streams) = stored(&loki);
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated across the reload: {dups:?}");
    for seq in 0..total_a {
        assert!(seen.contains_key(&("a".into(), seq)), "a/{seq} lost");
    }
    for seq in 0..3000 {
        assert!(seen.contains_key(&("b".into(), seq)), "b/{seq} lost");
    }
    assert!(
        streams.iter().any(|l| l.contains("env=\"reloaded\"")),
        "the new labels are used: {streams:?}"
    );
    assert!(
        streams.iter().any(|l| !l.contains("env=")),
        "the old labels were used before: {streams:?}"
    );
}

/// SIGHUP reloads too: a new sink starts writing, the old one goes on.
#[test]
fn sighup_reloads_the_pipeline_file() {
    let s = Scratch::new();
    let line = |n: usize| format!("{{\"n\": {n}, \"pad\": \"{}\"}}\n", "x".repeat(300));
    s.write("logs/app.log", line(0));
    let text = |extra: &str| {
        format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  app: {{type: file, include: ['{}/*.log']}}\nsinks:\n  out: {{type: file, inputs: [app], path: data/out/x.ndjson, batch: {{timeout: 100ms}}}}\n{extra}",
            s.path("logs").display()
        )
    };
    let p = pipeline(&s, "p.yaml", &text(""));
    let mut w = Running::start(s.weir(&["run", &p]));
    wait_until(LONG, || s.output_lines().len() == 1).expect("first line");
    s.write(
        "p.yaml",
        text("  copy: {type: file, inputs: [app], path: data/copy/y.ndjson, batch: {timeout: 100ms}}\n"),
    );
    w.signal(libc::SIGHUP);
    w.wait_for_log("pipeline reloaded", LONG);
    assert!(w.child.try_wait().unwrap().is_none());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path("logs/app.log"))
        .unwrap();
    f.write_all(line(1).as_bytes()).unwrap();
    wait_until(LONG, || {
        s.output_lines().len() == 2
            && std::fs::read_to_string(s.path("data/copy/y.ndjson"))
                .is_ok_and(|t| t.lines().count() == 1)
    })
    .unwrap_or_else(|| panic!("after the reload; stderr:\n{}", w.stderr()));
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(LONG);
    assert_eq!(code, 0, "{stderr}");
}

/// A sink stuck retrying (its endpoint was wrong) gives way to its
/// replacement within the grace period: fixing the endpoint by a reload
/// works without a restart.
#[test]
fn a_reload_replaces_a_sink_stuck_retrying() {
    let s = Scratch::new();
    let loki = FakeLoki::start();
    std::fs::create_dir_all(s.path("logs/a")).unwrap();
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = |url: &str| {
        format!(
            "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
grace_period: 2s
sources:
  a: {{type: file, include: ['{logs}/a/*.log'], fingerprint_bytes: 32, decode: {{codec: json}}}}
sinks:
  loki:
    type: loki
    inputs: [a]
    endpoint: {url}
    labels: {{app: feynman}}
    batch: {{timeout: 100ms}}
    retry: {{initial_backoff: 100ms, max_backoff: 500ms}}
",
            data = s.path("data").display(),
            logs = s.path("logs").display(),
        )
    };
    let p = pipeline(&s, "p.yaml", &text(&format!("http://127.0.0.1:{refused}")));
    let w = Running::start(s.weir(&["run", &p]));
    let api = w.api_address();
    let line = |i: usize| {
        format!("{{\"src\": \"a\", \"seq\": {i}, \"pad\": \"zzzzzzzzzzzzzzzzzzzzzzzzzzzz\"}}\n")
    };
    s.write("logs/a/app.log", (0..100).map(line).collect::<String>());
    w.wait_for_log("delivery failed; retrying", LONG);
    s.write("p.yaml", text(&loki.url()));
    let (status, body) = http_post(&api, "/-/reload");
    assert_eq!(status, 200, "{body}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path("logs/a/app.log"))
        .unwrap();
    f.write_all((100..200).map(line).collect::<String>().as_bytes())
        .unwrap();
    // The lines read after the reload reach the new endpoint.
    wait_until(Duration::from_secs(20), || {
        stored(&loki)
            .0
            .keys()
            .filter(|(_, seq)| *seq >= 100)
            .count()
            == 100
    })
    .unwrap_or_else(|| panic!("after the reload; stderr:\n{}", w.stderr()));
    w.signal(libc::SIGTERM);
    let _ = w.wait(LONG);
}
