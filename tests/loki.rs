//! The Loki sink against a protocol-faithful fake Loki (crates/testkit/src/loki.rs):
//! every line arrives exactly once and in order per stream, through
//! outages, 429 storms, partial 400s and a SIGKILL.

mod common;
use weir_testkit::loki as fake_loki;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use fake_loki::FakeLoki;

const LONG: Duration = Duration::from_secs(120);
const LEVELS: [&str; 3] = ["INFO", "WARNING", "ERROR"];

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// JSON lines numbered from `from`, one millisecond apart from `t0`, spread
/// over three streams by level.
fn lines(from: usize, to: usize, t0: i64) -> String {
    (from..to)
        .map(|i| {
            let ts = jiff::Timestamp::from_nanosecond(i128::from(t0 + i as i64 * 1_000_000)).unwrap();
            format!(
                "{{\"timestamp\": \"{ts}\", \"level\": \"{}\", \"logger\": \"api\", \"seq\": {i}, \"message\": \"用户会话开始 {i}\"}}\n",
                LEVELS[i % 3]
            )
        })
        .collect()
}

fn pipeline_for(s: &Scratch, fake: &FakeLoki, source: &str) -> String {
    pipeline(
        s,
        "loki.yaml",
        &format!(
            "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
grace_period: 60s
sources:
  in:
{source}
    decode: {{codec: json, timestamp: {{field: timestamp}}}}
sinks:
  loki:
    type: loki
    inputs: [in]
    endpoint: {url}
    labels: {{app: feynman, level: '{{{{ level }}}}'}}
    batch: {{max_bytes: 256KiB, timeout: 200ms}}
    retry: {{initial_backoff: 100ms, max_backoff: 2s}}
",
            data = s.path("data").display(),
            url = fake.url(),
        ),
    )
}

const STDIN: &str = "    type: stdin";

/// seq → how often it is stored, and per stream whether timestamps rise.
fn stored(fake: &FakeLoki) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for (stream, entries) in fake.streams() {
        let mut last = i64::MIN;
        for e in &entries {
            assert!(e.ts_ns >= last, "stream {stream} out of order");
            last = e.ts_ns;
            let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
            *seen.entry(v["seq"].as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    seen
}

fn assert_exactly_once(fake: &FakeLoki, n: usize) {
    let seen = stored(fake);
    let missing: Vec<u64> = (0..n as u64)
        .filter(|i| !seen.contains_key(i))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {n} stored; missing e.g. {missing:?}",
        seen.len()
    );
    assert_eq!(seen.len(), n);
    assert!(seen.values().all(|c| *c == 1));
    assert_eq!(fake.streams().len(), 3, "one stream per level");
}

fn run_once(s: &Scratch, p: &str, input: &str) -> (i32, String, Duration) {
    let start = Instant::now();
    let out = run_with_input(s.weir(&["run", p, "--once"]), input.as_bytes());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn steady_50k_lines() {
    let fake = FakeLoki::start();
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    let (code, stderr, _) = run_once(&s, &p, &lines(0, 50_000, now_ns() - 600_000_000_000));
    assert_eq!(code, 0, "{stderr}");
    assert_exactly_once(&fake, 50_000);
    let reqs = fake.requests();
    assert!(
        reqs.len() > 10,
        "batched into several requests: {}",
        reqs.len()
    );
    assert!(reqs.iter().all(|r| r.status == 204 && r.content_type.as_deref() == Some("application/x-protobuf")));
}

#[test]
fn json_encoding_with_gzip() {
    let fake = FakeLoki::start();
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    let text = read(std::path::Path::new(&p)).replace(
        "    batch:",
        "    encoding: json\n    compression: gzip\n    batch:",
    );
    std::fs::write(&p, text).unwrap();
    let (code, stderr, _) = run_once(&s, &p, &lines(0, 3000, now_ns() - 60_000_000_000));
    assert_eq!(code, 0, "{stderr}");
    assert_exactly_once(&fake, 3000);
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.content_encoding.as_deref() == Some("gzip"))
    );
}

#[test]
fn an_outage_of_30_seconds_mid_stream() {
    let fake = FakeLoki::start();
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    let t0 = now_ns() - 600_000_000_000;
    let mut w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::piped());
        c
    });
    w.api_address();
    let mut stdin = w.child.stdin.take().unwrap();
    stdin.write_all(lines(0, 20_000, t0).as_bytes()).unwrap();
    wait_until(LONG, || fake.entry_count() > 0).expect("first pushes");
    let outage = Instant::now();
    fake.down_for(Duration::from_secs(30));
    stdin
        .write_all(lines(20_000, 40_000, t0).as_bytes())
        .unwrap();
    drop(stdin); // end of input: weir drains and exits once Loki took everything
    let (code, stderr) = w.wait(LONG);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        outage.elapsed() >= Duration::from_secs(29),
        "weir waited out the outage"
    );
    assert!(stderr.contains("delivery failed; retrying"), "{stderr}");
    assert_exactly_once(&fake, 40_000);
}

#[test]
fn a_429_storm_honours_retry_after() {
    let fake = FakeLoki::start();
    fake.too_many_requests(4, 1);
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    let (code, stderr, took) = run_once(&s, &p, &lines(0, 5000, now_ns() - 60_000_000_000));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        took >= Duration::from_secs(4),
        "four 429s with Retry-After: 1 took {took:?}"
    );
    assert_exactly_once(&fake, 5000);
    assert_eq!(
        fake.requests().iter().filter(|r| r.status == 429).count(),
        4
    );
}

#[test]
fn entries_loki_refuses_go_to_the_dead_letter_file_and_nothing_is_resent() {
    let fake = FakeLoki::start();
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    let t0 = now_ns() - 600_000_000_000;
    let mut w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::piped());
        c
    });
    w.api_address();
    let mut stdin = w.child.stdin.take().unwrap();
    // Recent lines first, so Loki's streams have a newest entry…
    stdin.write_all(lines(0, 3000, t0).as_bytes()).unwrap();
    wait_until(LONG, || fake.entry_count() == 3000).expect("recent lines stored");
    // …then a mix: 40 lines two hours older (too far behind) among new ones.
    let old_t0 = t0 - 2 * 3_600_000_000_000;
    let mut mixed = String::new();
    for i in 3000..3400 {
        let src = if i % 10 == 0 {
            lines(i, i + 1, old_t0)
        } else {
            lines(i, i + 1, t0)
        };
        mixed.push_str(&src);
    }
    stdin.write_all(mixed.as_bytes()).unwrap();
    drop(stdin);
    let (code, stderr) = w.wait(LONG);
    assert_eq!(code, 0, "{stderr}");

    let rejected: Vec<u64> = (3000..3400).filter(|i| i % 10 == 0).collect();
    let seen = stored(&fake);
    for i in 0..3400u64 {
        let want = usize::from(!rejected.contains(&i));
        assert_eq!(seen.get(&i).copied().unwrap_or(0), want, "seq {i}");
    }
    let dead = read(&s.path("data/dead-letter/loki.ndjson"));
    let mut dead_seqs: Vec<u64> = dead
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["reason_class"], "too_far_behind");
            assert!(
                v["reason"].as_str().unwrap().contains("too far behind"),
                "{v}"
            );
            let line: serde_json::Value =
                serde_json::from_str(v["line"].as_str().unwrap()).unwrap();
            line["seq"].as_u64().unwrap()
        })
        .collect();
    dead_seqs.sort();
    assert_eq!(dead_seqs, rejected, "exactly the refused lines, each once");
    // Nothing was pushed twice: the refused lines were set aside before
    // sending (or dead-lettered from Loki's 400), never resent.
    let pushed: usize = fake.requests().iter().map(|r| r.entries).sum();
    assert!(pushed <= 3400, "{pushed} entries pushed for 3400 lines");
}

#[test]
fn sigkill_during_an_outage_loses_nothing() {
    let fake = FakeLoki::start();
    let s = Scratch::new();
    let source = format!(
        "    type: file\n    include: ['{}/*.log']\n    checkpoint_interval: 200ms",
        s.path("logs").display()
    );
    let p = pipeline_for(&s, &fake, &source);
    let t0 = now_ns() - 600_000_000_000;
    s.write("logs/app.log", lines(0, 10_000, t0));
    let start = |s: &Scratch| {
        let w = Running::start({
            let mut c = s.weir(&["run", &p]);
            c.stdin(Stdio::null());
            c
        });
        w.api_address();
        w
    };
    let w = start(&s);
    wait_until(LONG, || fake.entry_count() == 10_000).expect("first half delivered");
    std::thread::sleep(Duration::from_millis(600)); // a checkpoint covers it
    fake.down_for(Duration::from_secs(8));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path("logs/app.log"))
        .unwrap();
    f.write_all(lines(10_000, 20_000, t0).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_secs(2)); // read, and retrying
    w.signal(libc::SIGKILL);
    let _ = w.wait(LONG);
    let w = start(&s);
    wait_until(LONG, || fake.entry_count() == 20_000)
        .expect("everything delivered after the restart");
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(LONG).0, 0);
    assert_exactly_once(&fake, 20_000);
    // Only what was in flight may have been pushed twice.
    let pushed: usize = fake
        .requests()
        .iter()
        .filter(|r| r.status == 204)
        .map(|r| r.entries)
        .sum();
    assert!(
        pushed - 20_000 <= 10_000,
        "{} entries pushed twice",
        pushed - 20_000
    );
}

#[test]
fn lines_over_lokis_size_limit_are_dead_lettered_from_its_400() {
    let fake = FakeLoki::start();
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    // One stream (every level the same), so Loki's answer names every refusal.
    let t0 = now_ns() - 60_000_000_000;
    let mut input = String::new();
    for i in 0..100usize {
        let ts = jiff::Timestamp::from_nanosecond(i128::from(t0 + i as i64 * 1_000_000)).unwrap();
        let pad = if i % 40 == 7 {
            "x".repeat(300_000)
        } else {
            String::new()
        };
        input.push_str(&format!(
            "{{\"timestamp\": \"{ts}\", \"level\": \"INFO\", \"seq\": {i}, \"pad\": \"{pad}\"}}\n"
        ));
    }
    let (code, stderr, _) = run_once(&s, &p, &input);
    assert_eq!(code, 0, "{stderr}");
    let seen = stored(&fake);
    assert_eq!(seen.len(), 97);
    let dead = read(&s.path("data/dead-letter/loki.ndjson"));
    let mut seqs: Vec<u64> = dead
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["status"], 400);
            assert_eq!(v["reason_class"], "line_too_long");
            assert!(
                v["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("Max entry size '262144' bytes exceeded"),
                "{v}"
            );
            serde_json::from_str::<serde_json::Value>(v["line"].as_str().unwrap()).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, [7, 47, 87]);
    let pushed: usize = fake.requests().iter().map(|r| r.entries).sum();
    assert_eq!(pushed, 100, "the 400 was not answered by resending");
}

#[test]
fn tenant_basic_auth_and_structured_metadata_reach_loki() {
    let fake = FakeLoki::with_config(fake_loki::FakeConfig {
        auth_enabled: true,
        ..Default::default()
    });
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    let text = read(std::path::Path::new(&p)).replace(
        "    batch:",
        "    tenant_id: feynman\n    auth: {user: weir, password: s3cret}\n    structured_metadata: {seq: '{{ seq }}'}\n    batch:",
    );
    std::fs::write(&p, text).unwrap();
    let (code, stderr, _) = run_once(&s, &p, &lines(0, 300, now_ns() - 60_000_000_000));
    assert_eq!(code, 0, "{stderr}");
    let reqs = fake.requests();
    assert!(reqs.iter().all(|r| r.tenant.as_deref() == Some("feynman")));
    // base64("weir:s3cret")
    assert!(
        reqs.iter()
            .all(|r| r.authorization.as_deref() == Some("Basic d2VpcjpzM2NyZXQ="))
    );
    let streams = fake.tenant_streams("feynman");
    let entry = &streams.values().next().unwrap()[0];
    let seq: serde_json::Value = serde_json::from_str(&entry.line).unwrap();
    assert_eq!(
        entry.metadata,
        vec![("seq".to_string(), seq["seq"].to_string())]
    );
}

#[test]
fn retries_that_run_out_end_in_the_dead_letter_file() {
    let fake = FakeLoki::start();
    fake.fail_every(1);
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    let text = read(std::path::Path::new(&p)).replace(
        "    retry: {initial_backoff: 100ms, max_backoff: 2s}",
        "    retry: {initial_backoff: 100ms, max_backoff: 500ms, max_duration: 2s}",
    );
    std::fs::write(&p, text).unwrap();
    let (code, stderr, _) = run_once(&s, &p, &lines(0, 200, now_ns() - 60_000_000_000));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fake.entry_count(), 0);
    let dead = read(&s.path("data/dead-letter/loki.ndjson"));
    assert_eq!(dead.lines().count(), 200);
    assert!(
        dead.lines()
            .all(|l| l.contains("\"reason_class\":\"retry_exhausted\""))
    );
    assert!(
        stderr.contains("gave up after retry.max_duration"),
        "{stderr}"
    );
}

#[test]
fn concurrent_requests_keep_each_stream_whole_and_in_order() {
    use prost::Message;
    let fake = FakeLoki::start();
    let s = Scratch::new();
    let p = pipeline_for(&s, &fake, STDIN);
    let text =
        read(std::path::Path::new(&p)).replace("    batch:", "    concurrency: 3\n    batch:");
    std::fs::write(&p, text).unwrap();
    let (code, stderr, _) = run_once(&s, &p, &lines(0, 20_000, now_ns() - 60_000_000_000));
    assert_eq!(code, 0, "{stderr}");
    assert_exactly_once(&fake, 20_000);
    for r in fake.requests() {
        let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
        let req = weir::sink::loki::proto::PushRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(
            req.streams.len(),
            1,
            "three streams, three requests in flight, one stream each"
        );
    }
}
