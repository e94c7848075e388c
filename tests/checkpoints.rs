//! Restarts resume where delivery stopped; compressed generations are read
//! once; plain-text Python logs come out one event per record.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(30);

fn lines(from: usize, to: usize, tag: &str) -> String {
    (from..to)
        .map(|i| format!("{{\"timestamp\": \"2026-11-25T06:00:00.000000+00:00\", \"{tag}\": {i}, \"message\": \"用户会话开始 padding\"}}\n"))
        .collect()
}

fn feynman() -> String {
    repo().join("pipelines/feynman.yaml").display().to_string()
}

fn replay(s: &Scratch) -> (i32, String) {
    let out = s
        .weir(&["run", &feynman(), "--once"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn count(s: &Scratch, tag: &str) -> Vec<u64> {
    let mut v: Vec<u64> = s
        .output_lines()
        .iter()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()?
                .get(tag)?
                .as_u64()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_second_replay_reads_only_what_is_new() {
    let s = Scratch::new();
    s.write("logs/app.log", lines(0, 1000, "n"));
    let (code, stderr) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(count(&s, "n").len(), 1000);

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path("logs/app.log"))
        .unwrap();
    f.write_all(lines(1000, 1500, "n").as_bytes()).unwrap();
    let (code, stderr) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("resuming from checkpoints"), "{stderr}");
    assert_eq!(
        count(&s, "n"),
        (0..1500).collect::<Vec<u64>>(),
        "each line exactly once"
    );

    let cp: serde_json::Value =
        serde_json::from_str(&read(&s.path("data/checkpoints/app_logs.json"))).unwrap();
    let size = std::fs::metadata(s.path("logs/app.log")).unwrap().len();
    assert_eq!(cp["files"][0]["offset"], size);
    assert_eq!(cp["fingerprint_bytes"], 256);
}

#[test]
fn a_corrupt_checkpoint_is_reported_and_reading_starts_over() {
    let s = Scratch::new();
    s.write("logs/app.log", lines(0, 100, "n"));
    s.write(
        "data/checkpoints/app_logs.json",
        "{\"version\": 1, \"files\": [{\"fingerprint\": ",
    );
    let (code, stderr) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("checkpoint file"), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");
    assert!(stderr.contains("app_logs.json.corrupt"), "{stderr}");
    assert_eq!(count(&s, "n").len(), 100);
    // The next run has a good checkpoint again.
    let (code, _) = replay(&s);
    assert_eq!(code, 0);
    assert_eq!(count(&s, "n").len(), 100);
}

#[test]
fn read_from_end_applies_only_to_files_without_a_checkpoint() {
    let s = Scratch::new();
    s.write("logs/app.log", lines(0, 100, "old"));
    let p = pipeline(
        &s,
        "end.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  app:\n    type: file\n    include: ['{}/*.log']\n    read_from: end\n    glob_interval: 100ms\n    poll_interval: 20ms\nsinks:\n  out: {{type: file, inputs: [app], path: data/out/x.ndjson, batch: {{timeout: 50ms}}}}\n",
            s.path("logs").display()
        ),
    );
    let append = |text: String| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(s.path("logs/app.log"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let start = |s: &Scratch| {
        let w = Running::start({
            let mut c = s.weir(&["run", &p]);
            c.stdin(Stdio::null());
            c
        });
        w.wait_for_log("following file", SECS);
        w
    };
    let w = start(&s);
    append(lines(0, 10, "new"));
    wait_until(SECS, || count(&s, "new").len() == 10).expect("appended lines");
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(SECS).0, 0);
    // Written while weir was down: the checkpoint, not read_from, decides.
    append(lines(10, 20, "new"));
    let w = start(&s);
    wait_until(SECS, || count(&s, "new").len() == 20).expect("lines written while down");
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(SECS).0, 0);
    assert!(count(&s, "old").is_empty());
    assert_eq!(count(&s, "new"), (0..20).collect::<Vec<u64>>());
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

#[test]
fn compressed_generations_are_read_once() {
    let s = Scratch::new();
    // A generation read while plain, compressed later: not read again.
    s.write("logs/app.log.1", lines(0, 300, "a"));
    let (code, stderr) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(count(&s, "a").len(), 300);
    s.write("logs/app.log.1.gz", gzip(&lines(0, 300, "a")));
    std::fs::remove_file(s.path("logs/app.log.1")).unwrap();
    // An older generation never seen plain: read once, decompressed.
    s.write("logs/app.log.2.gz", gzip(&lines(0, 200, "b")));
    let (code, stderr) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        count(&s, "a").len(),
        300,
        "the compressed copy of a read file is skipped"
    );
    assert_eq!(count(&s, "b"), (0..200).collect::<Vec<u64>>());
    // And remembered as done.
    let (code, _) = replay(&s);
    assert_eq!(code, 0);
    assert_eq!(count(&s, "b").len(), 200);
    let cp = read(&s.path("data/checkpoints/app_logs.json"));
    assert!(cp.contains("\"done\": true"), "{cp}");
}

#[test]
fn python_tracebacks_in_text_logs_are_one_event_per_record() {
    let s = Scratch::new();
    std::fs::copy(
        repo().join("fixtures/feynman-text.log"),
        s.path("logs/app.log"),
    )
    .unwrap();
    let p = repo().join("pipelines/feynman-text.yaml");
    let out = s
        .weir(&["run", p.to_str().unwrap(), "--once"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = s
        .output_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let records = read(&repo().join("fixtures/feynman-text.log"))
        .lines()
        .filter(|l| l.starts_with("2026-"))
        .count();
    assert_eq!(events.len(), records);
    assert!(
        events.iter().all(|e| e.get("weir_decode_error").is_none()),
        "{events:?}"
    );
    let errors: Vec<&serde_json::Value> = events.iter().filter(|e| e["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 3);
    let llm = errors.iter().find(|e| e["logger"] == "core.llm").unwrap();
    let msg = llm["message"].as_str().unwrap();
    assert!(
        msg.starts_with("LLM call failed\nTraceback (most recent call last):\n"),
        "{msg}"
    );
    assert!(
        msg.contains("\n\nDuring handling of the above exception"),
        "{msg}"
    );
    assert!(
        msg.ends_with("RuntimeError: 模型调用失败，请稍后重试"),
        "{msg}"
    );
    assert_eq!(events.last().unwrap()["message"], "GET /health 200 1.2ms");
}
