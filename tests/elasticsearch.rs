//! The Elasticsearch sink against a protocol-faithful fake (crates/testkit/src/es.rs):
//! every line indexed exactly once, through outages, whole-request and
//! per-item 429s, mapping conflicts and a SIGKILL mid-batch.

mod common;
use weir_testkit::es as fake_es;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use fake_es::FakeEs;

const LONG: Duration = Duration::from_secs(120);
const INDEX: &str = "feynman-2026.11.25";

/// Numbered JSON lines, all on 2026-11-25 (UTC).
fn lines(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            // Every 50th line has a string where the others have a number.
            let code = if i % 50 == 25 { "\"not-a-number\"".to_string() } else { i.to_string() };
            format!(
                "{{\"timestamp\": \"2026-11-25T06:00:00.{:06}+00:00\", \"level\": \"INFO\", \"seq\": {i}, \"code\": {code}, \"message\": \"工具调用完成 {i}\"}}\n",
                i % 1_000_000
            )
        })
        .collect()
}

fn pipeline_for(s: &Scratch, es: &FakeEs, source: &str, extra: &str) -> String {
    // A string `code` is refused as a mapping conflict (long), whatever
    // the index's settings.
    es.conflict_field("code");
    pipeline(
        s,
        "es.yaml",
        &format!(
            "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
grace_period: 60s
sources:
  in:
{source}
    decode: {{codec: json, timestamp: {{field: timestamp}}}}
sinks:
  es:
    type: elasticsearch
    inputs: [in]
    endpoint: {url}
    index: 'feynman-%Y.%m.%d'
    batch: {{max_bytes: 256KiB, timeout: 200ms}}
    retry: {{initial_backoff: 100ms, max_backoff: 2s}}
{extra}",
            data = s.path("data").display(),
            url = es.url(),
        ),
    )
}

fn file_source(s: &Scratch) -> String {
    format!(
        "    type: file\n    include: ['{}/*.log']\n    checkpoint_interval: 200ms",
        s.path("logs").display()
    )
}

/// seq → how many documents hold it.
fn indexed(es: &FakeEs, index: &str) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for (_, doc) in es.docs(index) {
        *seen.entry(doc["seq"].as_u64().unwrap()).or_insert(0) += 1;
    }
    seen
}

fn assert_exactly_once(es: &FakeEs, index: &str, want: impl Iterator<Item = u64>) {
    let seen = indexed(es, index);
    let want: Vec<u64> = want.collect();
    let missing: Vec<&u64> = want
        .iter()
        .filter(|i| !seen.contains_key(i))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} indexed; missing e.g. {missing:?}",
        seen.len(),
        want.len()
    );
    let dups: Vec<(&u64, &usize)> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    assert_eq!(seen.len(), want.len());
}

fn replay(s: &Scratch, p: &str) -> (i32, String) {
    let out = s
        .weir(&["run", p, "--once"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn clean(n: usize) -> impl Iterator<Item = u64> {
    (0..n as u64).filter(|i| i % 50 != 25)
}

#[test]
fn steady_lines_indexed_once_with_ids_and_mapping_conflicts_dead_lettered() {
    let es = FakeEs::start();
    let s = Scratch::new();
    s.write("logs/app.log", lines(0, 20_000));
    let p = pipeline_for(&s, &es, &file_source(&s), "");
    let (code, stderr) = replay(&s, &p);
    assert_eq!(code, 0, "{stderr}");
    assert_exactly_once(&es, INDEX, clean(20_000));
    let docs = es.docs(INDEX);
    let (id, doc) = &docs[0];
    assert!(id.contains('-'), "fingerprint-offset id: {id}");
    assert_eq!(doc["@timestamp"], "2026-11-25T06:00:00Z");
    assert_eq!(doc["message"], "工具调用完成 0");
    let reqs = es.requests();
    assert!(
        reqs.iter()
            .all(|r| r.content_encoding.as_deref() == Some("gzip")
                && r.content_type.as_deref() == Some("application/x-ndjson"))
    );
    assert!(
        reqs.iter()
            .flat_map(|r| r.items.iter())
            .all(|i| i.0 == "create")
    );
    // The documents whose `code` is a string conflict with the mapping (long).
    let dead = read(&s.path("data/dead-letter/es.ndjson"));
    let mut seqs: Vec<u64> = dead
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["status"], 400);
            assert_eq!(v["error_type"], "document_parsing_exception", "{v}");
            v["document"]["seq"].as_u64().unwrap()
        })
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (0..20_000u64).filter(|i| i % 50 == 25).collect::<Vec<_>>()
    );
}

#[test]
fn an_outage_and_whole_request_429s_are_waited_out() {
    let es = FakeEs::start();
    es.reject_requests(3, 429);
    let s = Scratch::new();
    s.write("logs/app.log", lines(0, 5000));
    let p = pipeline_for(&s, &es, &file_source(&s), "");
    let w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::null());
        c
    });
    w.api_address();
    wait_until(LONG, || es.doc_count(INDEX) > 0).expect("first documents");
    // The outage cuts connections too, possibly after a request was
    // indexed but before its answer arrived: the resend gets 409s.
    es.down_for(Duration::from_secs(8));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path("logs/app.log"))
        .unwrap();
    f.write_all(lines(5000, 10_000).as_bytes()).unwrap();
    let total = clean(10_000).count();
    wait_until(LONG, || es.doc_count(INDEX) == total).expect("everything indexed after the outage");
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(LONG);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("delivery failed; retrying"), "{stderr}");
    assert_exactly_once(&es, INDEX, clean(10_000));
    assert_eq!(es.requests().iter().filter(|r| r.status == 429).count(), 3);
}

#[test]
fn per_item_429s_resend_only_those_items() {
    let es = FakeEs::start();
    es.reject_items(7, 5);
    let s = Scratch::new();
    s.write("logs/app.log", lines(0, 5000));
    let p = pipeline_for(&s, &es, &file_source(&s), "");
    let (code, stderr) = replay(&s, &p);
    assert_eq!(code, 0, "{stderr}");
    assert_exactly_once(&es, INDEX, clean(5000));
    let reqs = es.requests();
    let sent: usize = reqs.iter().map(|r| r.actions).sum();
    let rejected: usize = reqs
        .iter()
        .map(|r| r.item_statuses().iter().filter(|s| **s == 429).count())
        .sum();
    assert!(rejected > 0);
    assert_eq!(
        sent,
        5000 + rejected,
        "only the rejected items were sent again"
    );
}

#[test]
fn sigkill_mid_batch_then_restart_indexes_every_line_exactly_once() {
    let es = FakeEs::start();
    es.slow(Duration::from_millis(300));
    let s = Scratch::new();
    s.write("logs/app.log", lines(0, 30_000));
    let p = pipeline_for(&s, &es, &file_source(&s), "");
    let w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::null());
        c
    });
    w.api_address();
    wait_until(LONG, || es.doc_count(INDEX) > 5000).expect("some batches indexed");
    w.signal(libc::SIGKILL);
    let _ = w.wait(LONG);
    es.slow(Duration::ZERO);
    let (code, stderr) = replay(&s, &p);
    assert_eq!(code, 0, "{stderr}");
    assert_exactly_once(&es, INDEX, clean(30_000));
    // Batches in flight at the kill were sent again and answered 409.
    let conflicts: usize = es
        .requests()
        .iter()
        .map(|r| r.item_statuses().iter().filter(|s| **s == 409).count())
        .sum();
    eprintln!("{conflicts} documents resent after the kill were already indexed (409)");
}

#[test]
fn data_streams_take_create_with_timestamp_under_a_path_prefix() {
    let es = FakeEs::with_config(fake_es::EsConfig {
        path_prefix: "/es".into(),
        ..Default::default()
    });
    let s = Scratch::new();
    let p = pipeline_for(
        &s,
        &es,
        "    type: stdin",
        "    mode: data_stream\n    data_stream: {dataset: feynman}\n    id: none\n    renames: {level: log.level}\n",
    );
    let text = read(std::path::Path::new(&p)).replace("    index: 'feynman-%Y.%m.%d'\n", "");
    std::fs::write(&p, text).unwrap();
    let out = run_with_input(s.weir(&["run", &p, "--once"]), lines(0, 1000).as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(es.data_streams(), ["logs-feynman-default"]);
    let docs = es.docs("logs-feynman-default");
    assert_eq!(docs.len(), 1000 - 20, "20 mapping conflicts dead-lettered");
    assert_eq!(docs[0].1["log.level"], "INFO");
    assert_eq!(docs[0].1["data_stream"]["dataset"], "feynman");
    assert!(
        es.requests()
            .iter()
            .all(|r| r.path.starts_with("/es/_bulk"))
    );
}

#[test]
fn api_key_auth_and_ingest_pipeline_reach_elasticsearch() {
    let key = fake_es::Credential::api_key("weir", "s3cret");
    let es = FakeEs::with_config(fake_es::EsConfig {
        credentials: vec![key.clone()],
        ..Default::default()
    });
    let s = Scratch::new();
    let encoded = fake_es::base64_encode(b"weir:s3cret");
    let p = pipeline_for(
        &s,
        &es,
        "    type: stdin",
        &format!("    api_key: {encoded}\n    pipeline: feynman-ingest\n"),
    );
    let out = run_with_input(s.weir(&["run", &p, "--once"]), lines(0, 100).as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = es.requests();
    assert!(
        reqs.iter()
            .all(|r| r.authorization.as_deref() == Some(key.header().as_str()))
    );
    assert!(
        reqs.iter()
            .all(|r| r.path.ends_with("/_bulk?pipeline=feynman-ingest")),
        "{:?}",
        reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // No such pipeline exists in the fake (as in a fresh cluster): every
    // document is refused per item, and weir keeps them with the reason.
    assert_eq!(es.doc_count(INDEX), 0);
    let dead = read(&s.path("data/dead-letter/es.ndjson"));
    assert_eq!(dead.lines().count(), 100);
    assert!(
        dead.lines()
            .all(|l| l.contains("pipeline with id [feynman-ingest] does not exist"))
    );
}
