//! Bad input never stops weir: each case shows what the user sees and that
//! the line is counted (and kept, where that makes sense).

mod common;

use std::process::Stdio;

use common::*;

/// Runs the shipped pipeline once over the scratch logs dir.
fn replay(s: &Scratch) -> (i32, String, String) {
    let feynman = repo().join("pipelines/feynman.yaml");
    let out = s
        .weir(&[
            "run",
            feynman.to_str().unwrap(),
            "--once",
            "--metrics-file",
            "m.prom",
        ])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    let prom = std::fs::read_to_string(s.path("m.prom")).unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        prom,
    )
}

fn json_lines(s: &Scratch) -> Vec<serde_json::Value> {
    s.output_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn empty_file() {
    let s = Scratch::new();
    s.write("logs/empty.log", "");
    let (code, stderr, prom) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    assert!(s.output_lines().is_empty());
    assert_eq!(
        metric(&prom, r#"weir_lines_read_total{source="app_logs"}"#),
        Some(0.0)
    );
}

#[test]
fn a_10_mb_line_is_truncated_marked_and_counted() {
    let s = Scratch::new();
    let mut big = String::from("{\"message\": \"");
    big.push_str(&"x".repeat(10 << 20));
    big.push_str("\"}\n{\"after\": 1}\n");
    s.write("logs/big.log", &big);
    let (code, stderr, prom) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    let out = json_lines(&s);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["weir_truncated"], true);
    assert_eq!(
        out[0]["message"].as_str().unwrap().len(),
        1 << 20,
        "cut at max_line_bytes"
    );
    assert!(
        out[0]["weir_decode_error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    assert_eq!(out[1]["after"], 1, "the next line is intact");
    assert_eq!(
        metric(&prom, r#"weir_lines_truncated_total{source="app_logs"}"#),
        Some(1.0)
    );
}

#[test]
fn an_oversized_line_can_be_dropped_instead() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        "drop.yaml",
        "api: {enabled: false}\nsources:\n  in: {type: stdin, max_line_bytes: 1KiB, oversize: drop}\nsinks:\n  out: {type: file, inputs: [in], path: data/out/x.ndjson}\n",
    );
    let mut input = format!("{{\"big\": \"{}\"}}\n", "y".repeat(5000));
    input.push_str("{\"small\": true}\n");
    let out = s
        .weir(&["run", &p, "--once", "--metrics-file", "m.prom"])
        .stdin(std::fs::File::open(s.write("in.txt", input)).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(s.output_lines(), ["{\"small\": true}"]);
    let prom = read(&s.path("m.prom"));
    assert_eq!(
        metric(
            &prom,
            r#"weir_lines_dropped_total{source="in",reason="too_long"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn invalid_utf8_is_replaced_and_counted() {
    let s = Scratch::new();
    s.write(
        "logs/bytes.log",
        b"{\"message\": \"caf\xe9 \xff\"}\n{\"ok\": \"\xe4\xb8\xad\"}\n",
    );
    let (code, stderr, prom) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    let out = json_lines(&s);
    assert_eq!(out[0]["message"], "caf\u{fffd} \u{fffd}");
    assert_eq!(out[1]["ok"], "中");
    assert_eq!(
        metric(&prom, r#"weir_invalid_utf8_lines_total{source="app_logs"}"#),
        Some(1.0)
    );
}

#[test]
fn json_that_is_not_an_object_is_kept_and_marked() {
    let s = Scratch::new();
    s.write(
        "logs/odd.log",
        "null\n[1,2]\n\"text\"\n{\"fine\": 1}\n\n   \n",
    );
    let (code, stderr, prom) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    let out = json_lines(&s);
    assert_eq!(
        out.len(),
        4,
        "blank lines are skipped, the rest kept: {out:?}"
    );
    assert_eq!(out[0]["message"], "null");
    assert_eq!(
        out[0]["weir_decode_error"],
        "expected a JSON object, found null"
    );
    assert_eq!(
        out[1]["weir_decode_error"],
        "expected a JSON object, found array"
    );
    assert_eq!(out[3]["fine"], 1);
    assert_eq!(
        metric(
            &prom,
            r#"weir_decode_errors_total{source="app_logs",reason="not_an_object"}"#
        ),
        Some(3.0)
    );
}

#[test]
fn unreadable_files_are_reported_and_skipped() {
    let s = Scratch::new();
    s.write("logs/good.log", "{\"n\": 1}\n");
    std::os::unix::fs::symlink(s.path("nowhere"), s.path("logs/dangling.log")).unwrap();
    std::fs::create_dir(s.path("logs/dir.log")).unwrap();
    let (code, stderr, prom) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("cannot read file; skipping it"), "{stderr}");
    assert!(stderr.contains("dangling.log"), "{stderr}");
    assert_eq!(s.output_lines(), ["{\"n\": 1}"]);
    assert_eq!(
        metric(&prom, r#"weir_file_errors_total{source="app_logs"}"#),
        Some(1.0)
    );
}

#[test]
fn a_glob_that_matches_nothing_is_a_warning() {
    let s = Scratch::new();
    let (code, stderr, _) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("no files match the include globs yet"),
        "{stderr}"
    );
    let missing_dir = s
        .weir(&[
            "run",
            repo().join("pipelines/feynman.yaml").to_str().unwrap(),
            "--once",
        ])
        .env("WEIR_LOGS_DIR", s.path("does/not/exist"))
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(missing_dir.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing_dir.stderr).contains("cannot list directory"));
}

#[test]
fn a_full_disk_loses_nothing() {
    // /dev/full answers every write with ENOSPC.
    let s = Scratch::new();
    let line = |i: usize| format!("{{\"n\": {i}, \"pad\": \"{}\"}}\n", "p".repeat(300));
    s.write("logs/app.log", (0..100).map(line).collect::<String>());
    let p = |out: &str| {
        pipeline(
            &s,
            "full.yaml",
            &format!(
                "api: {{address: '127.0.0.1:0'}}\ngrace_period: 2s\nsources:\n  app:\n    type: file\n    include: ['{}/*.log']\n    checkpoint_interval: 100ms\nsinks:\n  out: {{type: file, inputs: [app], path: '{out}', batch: {{timeout: 100ms}}}}\n",
                s.path("logs").display()
            ),
        )
    };
    let w = Running::start({
        let mut c = s.weir(&["run", &p("/dev/full")]);
        c.stdin(Stdio::null());
        c
    });
    let addr = w.api_address();
    w.wait_for_log(
        "No space left on device",
        std::time::Duration::from_secs(30),
    );
    let m = http_get(&addr, "/metrics").2;
    assert!(metric(&m, r#"weir_sink_errors_total{sink="out"}"#).unwrap() >= 1.0);
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(std::time::Duration::from_secs(30));
    assert_eq!(code, 1, "undelivered events make a non-zero exit: {stderr}");
    assert!(
        stderr.contains("some events were not delivered"),
        "{stderr}"
    );
    // Nothing was acknowledged, so nothing is checkpointed past the start…
    let cp = std::fs::read_to_string(s.path("data/checkpoints/app.json")).unwrap_or_default();
    assert!(
        !cp.contains("\"offset\": ") || cp.contains("\"offset\": 0,"),
        "{cp}"
    );
    // …and with room on the disk every line arrives.
    let out = s
        .weir(&["run", &p("data/out/x.ndjson"), "--once"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.output_lines().len(), 100);
}

/// A tmpfs mounted for one test, unmounted when it ends.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `dir`, or says why it cannot.
    fn mount(dir: &std::path::Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output_within(RUN_LIMIT)
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_disk_that_fills_up_and_frees_space_gets_every_line_once() {
    let s = Scratch::new();
    // Needs a small file system of its own: a tmpfs, which needs root.
    let disk = match Tmpfs::mount(&s.path("disk"), "2m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs to fill up ({why})");
            return;
        }
    };
    const LINES: usize = 20_000;
    let line = |i: usize| format!("{{\"n\": {i}, \"pad\": \"{}\"}}\n", "p".repeat(40));
    s.write("logs/app.log", (0..LINES).map(line).collect::<String>());
    // A filler leaves room for a few batches only (the output is ~1.2 MB).
    let filler = disk.0.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0usize;
        while written < (2 << 20) - (256 << 10) {
            use std::io::Write;
            f.write_all(&chunk).unwrap();
            written += chunk.len();
        }
    }
    let out = disk.0.join("out.ndjson");
    let p = pipeline(
        &s,
        "fill.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  app:\n    type: file\n    include: ['{}/*.log']\n    read_from: beginning\nsinks:\n  out: {{type: file, inputs: [app], path: '{}', batch: {{max_events: 1000, timeout: 100ms}}}}\n",
            s.path("logs").display(),
            out.display()
        ),
    );
    let w = Running::start({
        let mut c = s.weir(&["run", &p, "--once"]);
        c.stdin(Stdio::null());
        c
    });
    w.wait_for_log(
        "No space left on device",
        std::time::Duration::from_secs(60),
    );
    // Space returns.
    std::fs::remove_file(&filler).unwrap();
    let (code, stderr) = w.wait(std::time::Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'), "the output ends torn");
    let mut seen = vec![0u32; LINES];
    for l in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
        seen[v["n"].as_u64().unwrap() as usize] += 1;
    }
    let twice = seen.iter().filter(|&&n| n > 1).count();
    let missing = seen.iter().filter(|&&n| n == 0).count();
    assert_eq!(
        (twice, missing),
        (0, 0),
        "{} lines written for {LINES}",
        text.lines().count()
    );
}

#[test]
fn a_fifo_or_a_directory_matching_the_glob_is_reported_once_and_counted() {
    let s = Scratch::new();
    s.write("logs/good.log", "{\"n\": 1}\n");
    std::fs::create_dir(s.path("logs/archive.log")).unwrap();
    let fifo = std::ffi::CString::new(s.path("logs/pipe.log").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  logs:\n    type: file\n    include: ['{}/*.log']\n    glob_interval: 50ms\n    fingerprint_bytes: 4\nsinks:\n  out: {{type: file, inputs: [logs], path: data/out/x.ndjson, batch: {{timeout: 50ms}}}}\n",
            s.path("logs").display()
        ),
    );
    let w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::null());
        c
    });
    let addr = w.api_address();
    let skipped = r#"weir_files_skipped_total{source="logs",reason="not_a_file"}"#;
    wait_until(std::time::Duration::from_secs(30), || {
        metric(&http_get(&addr, "/metrics").2, skipped) == Some(2.0) && s.output_lines().len() == 1
    })
    .unwrap_or_else(|| panic!("{}", http_get(&addr, "/metrics").2));
    // Many more scans: still one warning per path, still counted once.
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(metric(&http_get(&addr, "/metrics").2, skipped), Some(2.0));
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(std::time::Duration::from_secs(30));
    assert_eq!(code, 0, "{stderr}");
    let dir_warning = format!(
        "{} is a directory, not a file; skipping it (to read the files in it, include a glob like `{}/*.log`)",
        s.path("logs/archive.log").display(),
        s.path("logs/archive.log").display()
    );
    let fifo_warning = format!(
        "{} is a FIFO (named pipe), not a regular file; skipping it",
        s.path("logs/pipe.log").display()
    );
    assert_eq!(stderr.matches(&dir_warning).count(), 1, "{stderr}");
    assert_eq!(stderr.matches(&fifo_warning).count(), 1, "{stderr}");
    assert_eq!(s.output_lines(), ["{\"n\": 1}"]);
}

#[test]
fn hostile_json_gets_serde_jsons_verdict_and_exact_counts() {
    // Lines the fast JSON scanner takes, lines it leaves to serde_json
    // (deep nesting, escaped keys), and lines that are not valid: each must
    // come out as serde_json decides, with serde_json's own message.
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    let huge = format!("{{\"message\":\"{}\",\"n\":1}}", "工具调用 ".repeat(20_000));
    let lines: Vec<String> = vec![
        r#"{"a":1}"#.into(),
        deep.clone(),
        r#"{"k":"\ud800 lone","x":{"y\u0041":1}}"#.into(),
        r#"{"a\u0062":2}"#.into(),
        huge.clone(),
        r#"{"a":1"#.into(),
        r#"{"a":01}"#.into(),
        "{\"a\":\"tab\there\"}".into(),
        r#"{"a":1}}"#.into(),
        format!("{{\"a\":{}", "[".repeat(5000)),
        r#"{"a":nul}"#.into(),
        r#"{"a":[1,]}"#.into(),
        "42".into(),
    ];
    let s = Scratch::new();
    s.write("logs/hostile.log", &(lines.join("\n") + "\n"));
    let (code, stderr, prom) = replay(&s);
    assert_eq!(code, 0, "{stderr}");
    let out = s.output_lines();
    assert_eq!(out.len(), lines.len(), "one event per line");
    let (mut invalid, mut not_objects) = (0.0, 0.0);
    for (line, got) in lines.iter().zip(&out) {
        match weir::decode::json::decode_with_serde(line.clone(), Vec::new(), 0) {
            Ok(event) => {
                // Decoded lines are written as read, or with their fields.
                if got != line {
                    let v: serde_json::Value = serde_json::from_str(got).unwrap();
                    for (key, _) in event.fields() {
                        assert!(v.get(key).is_some(), "{key} missing from {got}");
                    }
                    assert!(v.get("weir_decode_error").is_none(), "{got}");
                }
            }
            Err((why, _)) => {
                let want = match why {
                    weir::decode::json::JsonError::Invalid(m) => {
                        invalid += 1.0;
                        format!("invalid JSON: {m}")
                    }
                    weir::decode::json::JsonError::NotAnObject(kind) => {
                        not_objects += 1.0;
                        format!("expected a JSON object, found {kind}")
                    }
                };
                let v: serde_json::Value = serde_json::from_str(got).unwrap();
                assert_eq!(v["weir_decode_error"], want.as_str(), "for {line:.80}");
                assert_eq!(v["message"], line.as_str());
            }
        }
    }
    assert_eq!((invalid, not_objects), (7.0, 1.0));
    let count = |reason: &str| {
        metric(
            &prom,
            &format!(r#"weir_decode_errors_total{{source="app_logs",reason="{reason}"}}"#),
        )
    };
    assert_eq!(count("invalid_json"), Some(invalid));
    assert_eq!(count("not_an_object"), Some(not_objects));
    assert!(out.contains(&deep) && out.contains(&huge), "kept as read");
}
