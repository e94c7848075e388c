//! Container log decoders as a user meets them: `weir run --once` on a CRI
//! file (containerd, CRI-O) and a Docker json-file, and on CRI lines piped
//! to standard input, each into a `file` sink; and `weir validate` on the
//! ways the setting is gotten wrong.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;

use common::*;
use serde_json::Value;

/// The runtime's time: a day before the app's own stamps, so that where an
/// event lands (`%Y-%m-%d` of its time) tells which time it got.
const RUNTIME_TIME: &str = "2026-11-24T23:59:59.123456789Z";

/// What the runtimes split longer lines at.
const SPLIT: usize = 16 * 1024;

/// The application's lines, and the stream each is written to.
fn app_lines(s: &Scratch) -> Vec<(String, &'static str)> {
    let out = s
        .weir(&["generate", "--clean", "--lines", "60", "--seed", "7"])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(out.status.success());
    let mut lines: Vec<(String, &'static str)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| (l.to_string(), if i % 4 == 3 { "stderr" } else { "stdout" }))
        .collect();
    // Longer than the runtimes' 16 KiB, without a time of its own.
    let big = serde_json::json!({"event": "big", "message": "é".repeat(20_000)}).to_string();
    lines.insert(10, (big, "stdout"));
    lines
}

/// Cuts `text` into pieces of at most `max` bytes, at character boundaries.
fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

/// One record of a container log: the stream, whether it is partial, the content.
type Rec<'a> = (&'a str, bool, &'a str);

/// The records the runtime writes for `lines`: long lines split, every
/// fifth line in three parts with a whole line of the other stream in
/// between, and a plain-text stderr line.
fn records<'a>(lines: &'a [(String, &'static str)]) -> Vec<Rec<'a>> {
    let mut recs: Vec<Rec<'_>> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (line, stream) = (&lines[i].0, lines[i].1);
        let parts = if i % 5 == 0 && line.len() < SPLIT {
            pieces(line, line.len() / 3 + 1)
        } else {
            pieces(line, SPLIT)
        };
        let last = parts.len() - 1;
        for (k, part) in parts.into_iter().enumerate() {
            recs.push((stream, k < last, part));
            // The other stream writes a whole line meanwhile.
            if k == 0 && k < last && i + 1 < lines.len() && lines[i + 1].1 != stream {
                recs.push((lines[i + 1].1, false, &lines[i + 1].0));
                i += 1;
            }
        }
        i += 1;
    }
    recs
}

fn cri(recs: &[Rec<'_>]) -> String {
    let mut out = String::new();
    for (stream, partial, content) in recs {
        let tag = if *partial { "P" } else { "F" };
        out.push_str(&format!("{RUNTIME_TIME} {stream} {tag} {content}\n"));
    }
    out
}

fn docker(recs: &[Rec<'_>]) -> String {
    let mut out = String::new();
    for (stream, partial, content) in recs {
        let log = if *partial {
            content.to_string()
        } else {
            format!("{content}\n")
        };
        let v = serde_json::json!({"log": log, "stream": stream, "time": RUNTIME_TIME});
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// The events a sink wrote, per output file name.
fn events(s: &Scratch) -> BTreeMap<String, Vec<Value>> {
    let mut by_file = BTreeMap::new();
    for e in std::fs::read_dir(s.path("data/out")).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let events = read(&path)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        by_file.insert(name, events);
    }
    by_file
}

/// Checks what one source made of `lines` wrapped as its runtime writes
/// them, with the line `malformed` among them.
fn check_source(
    out: &BTreeMap<String, Vec<Value>>,
    source: &str,
    lines: &[(String, &'static str)],
    malformed: &str,
) {
    let day = |d: &str| -> Vec<&Value> {
        out.get(&format!("{source}-{d}.ndjson"))
            .unwrap_or_else(|| panic!("no {d} output for {source}: {:?}", out.keys()))
            .iter()
            .filter(|e| e["message"] != malformed)
            .collect()
    };
    let own_day = day("2026-11-25");
    let runtime_day = day("2026-11-24");

    // Every app line that has its own time arrives whole, as it was
    // written, plus the stream it came on.
    let mut want: Vec<String> = lines
        .iter()
        .filter(|(l, _)| l.contains("\"timestamp\""))
        .map(|(l, stream)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["stream"] = Value::from(*stream);
            v.to_string()
        })
        .collect();
    let mut got: Vec<String> = own_day.iter().map(|v| v.to_string()).collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "{source}");
    assert_eq!(got, want, "{source}");

    // The rest took the runtime's time.
    let by_event = |name: &str| {
        *runtime_day
            .iter()
            .find(|e| e["event"] == name || e["message"] == name)
            .unwrap_or_else(|| panic!("{source}: no `{name}` in {runtime_day:#?}"))
    };
    let big = by_event("big");
    assert_eq!(big["message"].as_str().unwrap(), "é".repeat(20_000));
    assert_eq!(big["stream"], "stdout");
    // A plain-text line on stderr follows on_error: kept, marked, with its stream.
    let text = by_event("Traceback (most recent call last):");
    assert_eq!(text["stream"], "stderr");
    assert!(
        text["weir_decode_error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    // A partial line whose continuation never came is released at the end.
    assert_eq!(by_event("dangling")["stream"], "stdout");
    assert_eq!(runtime_day.len(), 3, "{source}: {runtime_day:#?}");

    // A line that is no container record is kept whole and marked (at the
    // time it was read), and the lines after it are read on.
    let bad: Vec<&Value> = out
        .iter()
        .filter(|(name, _)| name.starts_with(&format!("{source}-")))
        .flat_map(|(_, events)| events)
        .filter(|e| e["message"] == malformed)
        .collect();
    assert_eq!(bad.len(), 1, "{source}: {bad:#?}");
    assert!(bad[0].get("stream").is_none());
    assert!(
        bad[0]["weir_decode_error"]
            .as_str()
            .unwrap()
            .starts_with("invalid "),
        "{}",
        bad[0]
    );
}

/// The full test input: app lines, a plain-text stderr line, a malformed
/// line after the first ten records, and a dangling partial record last.
fn input<'a>(lines: &'a [(String, &'static str)]) -> Vec<Rec<'a>> {
    let mut recs = records(lines);
    recs.push(("stderr", false, "Traceback (most recent call last):"));
    recs.push(("stdout", true, r#"{"event":"dangling"}"#));
    recs
}

const PIPELINE: &str = r#"
data_dir: ./data
api: {address: "${WEIR_API_ADDR}"}
sources:
  cri:
    type: file
    include: ["${WEIR_LOGS_DIR}/cri.log"]
    decode: {container: cri, codec: json}
  docker:
    type: file
    include: ["${WEIR_LOGS_DIR}/docker.log"]
    decode: {container: docker, codec: json, timestamp: {field: timestamp}}
sinks:
  cri_out: {type: file, inputs: [cri], path: "./data/out/cri-%Y-%m-%d.ndjson"}
  docker_out: {type: file, inputs: [docker], path: "./data/out/docker-%Y-%m-%d.ndjson"}
"#;

#[test]
fn cri_and_docker_files_become_the_apps_events() {
    let s = Scratch::new();
    let lines = app_lines(&s);
    let recs = input(&lines);
    let cri_bad = "not a CRI line at all";
    let docker_bad = r#"{"log": "cut short"#;
    let mut cri_text = cri(&recs);
    let mut docker_text = docker(&recs);
    // Malformed lines in the middle.
    let at = cri_text.match_indices('\n').nth(9).unwrap().0 + 1;
    cri_text.insert_str(at, &format!("{cri_bad}\n"));
    let at = docker_text.match_indices('\n').nth(9).unwrap().0 + 1;
    docker_text.insert_str(at, &format!("{docker_bad}\n"));
    s.write("logs/cri.log", &cri_text);
    s.write("logs/docker.log", &docker_text);
    let p = pipeline(&s, "containers.yaml", PIPELINE);

    let out = s
        .weir(&["run", &p, "--once", "--metrics-file", "final.prom"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let out = events(&s);
    check_source(&out, "cri", &lines, cri_bad);
    check_source(&out, "docker", &lines, docker_bad);

    // Malformed wrapper lines are decode errors of their own reason.
    let prom = read(&s.path("final.prom"));
    for source in ["cri", "docker"] {
        let series = prom
            .lines()
            .find(|l| {
                l.starts_with("weir_decode_errors_total{")
                    && l.contains(&format!("source=\"{source}\""))
                    && l.contains("reason=\"invalid_container_line\"")
            })
            .unwrap_or_else(|| panic!("no invalid_container_line series for {source}:\n{prom}"));
        assert!(series.ends_with(" 1"), "{series}");
    }
}

#[test]
fn cri_lines_on_standard_input_are_unwrapped_too() {
    let s = Scratch::new();
    let lines = app_lines(&s);
    let recs = input(&lines);
    let bad = "not a CRI line at all";
    let text = format!("{bad}\n{}", cri(&recs));
    let p = pipeline(
        &s,
        "stdin.yaml",
        r#"
data_dir: ./data
api: {address: "${WEIR_API_ADDR}"}
sources:
  cri:
    type: stdin
    decode: {container: auto}
sinks:
  out: {type: file, inputs: [cri], path: "./data/out/cri-%Y-%m-%d.ndjson"}
"#,
    );
    let out = run_with_input(s.weir(&["run", &p, "--once"]), text.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    check_source(&events(&s), "cri", &lines, bad);
}

/// `weir validate` on a source whose `decode` is `body`; returns stderr.
fn validate_decode(s: &Scratch, source_body: &str) -> String {
    let text = format!(
        "sources:\n  pods:\n    type: file\n    include: [/var/log/containers/*.log]\n{source_body}sinks:\n  out: {{type: console, inputs: [pods]}}\n"
    );
    let p = pipeline(s, "bad.yaml", &text);
    let out = s.weir(&["validate", &p]).output_within(RUN_LIMIT).unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).replace(&p, "bad.yaml")
}

#[test]
fn validate_says_how_to_fix_a_misused_container_setting() {
    let s = Scratch::new();
    let err = validate_decode(&s, "    decode: {codec: cri}\n");
    assert!(
        err.contains("bad.yaml:5:21: sources.pods: `cri` is a container format, not a codec: write `container: cri` and keep `codec:` for the application's line inside (json, regex or raw)"),
        "{err}"
    );
    let err = validate_decode(&s, "    decode:\n      container: crio\n");
    assert!(
        err.contains("bad.yaml:6:18: sources.pods: unknown value `crio`, expected one of `cri`, `docker`, `auto` (did you mean `cri`?)"),
        "{err}"
    );
    let err = validate_decode(&s, "    container: cri\n");
    assert!(
        err.contains("bad.yaml:5:5: sources.pods: `container` belongs inside `decode:`, e.g. `decode: {container: cri, codec: json}`"),
        "{err}"
    );
}
