//! `weir validate` on Prometheus rule files, with the real binary, and a
//! differential check against `promtool check rules` (Debian's 2.42).
//!
//! Every `tests/rules/check/*.yml` is named `good-*` or `bad-*`: weir must
//! accept or refuse it accordingly, and — when `/usr/bin/promtool` is
//! installed — promtool must decide the same. Without promtool the
//! differential half is skipped with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn weir(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .args(args)
        .output()
        .expect("run weir")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> Option<&'static str> {
    let p = "/usr/bin/promtool";
    Path::new(p).exists().then_some(p)
}

fn promtool_passes(promtool: &str, file: &Path) -> bool {
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(file)
        .output()
        .expect("run promtool");
    out.status.success()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const FIXTURES: [&str; 2] = ["alerting_rules.yml", "app-alerting-rules.yml"];

#[test]
fn plan_and_app_rules_validate() {
    let files: Vec<PathBuf> = FIXTURES
        .iter()
        .map(|f| root().join("pipelines/rules").join(f))
        .collect();
    let args: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = weir(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("alerting_rules.yml: ok (1 groups, 6 rules)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("app-alerting-rules.yml: ok (11 groups, 30 rules)"),
        "{stdout}"
    );
    // Nothing promtool would say; the rule lints (tests/lint.rs) may warn.
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("warning: ") && l.contains(": rule \"")),
        "{stderr}"
    );
    if let Some(p) = promtool() {
        for f in &files {
            assert!(promtool_passes(p, f), "promtool refuses {}", f.display());
        }
    }
}

#[test]
fn fixtures_are_the_shared_files_unchanged() {
    let shared = Path::new("/work/shared/fixtures");
    if !shared.exists() {
        eprintln!("skipping: {} not here", shared.display());
        return;
    }
    for f in FIXTURES {
        let ours = std::fs::read(root().join("pipelines/rules").join(f)).unwrap();
        assert_eq!(ours, std::fs::read(shared.join(f)).unwrap(), "{f} differs");
    }
}

#[test]
fn every_problem_is_reported_with_its_position_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    std::fs::write(
        &path,
        r#"groups:
- name: api
  rules:
  - alert: HighErrorRate
    expr: rate(fastapi_requests_total[5m] > 0.1
    for: 1minute
  - record: job-rate
    expr: sum(up)
- name: api
  intervl: 1m
"#,
    )
    .unwrap();
    let out = weir(&[&path]);
    assert_eq!(out.status.code(), Some(2));
    let f = path.display();
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let want = [
        format!(
            r#"error: {f}:5:11: group "api", rule "HighErrorRate": could not parse expression: "#
        ),
        format!(
            r#"error: {f}:6:10: group "api", rule "HighErrorRate": `for`: not a valid duration string: "1minute""#
        ),
        format!(
            r#"error: {f}:7:13: group "api", rule "job-rate": invalid recording rule name: job-rate"#
        ),
        format!(r#"error: {f}:9:3: groupname: "api" is repeated in the same file"#),
        format!(r#"error: {f}:10:3: group "api": unknown key `intervl`: did you mean `interval`?"#),
    ];
    assert_eq!(lines.len(), want.len(), "{stderr}");
    for (l, w) in lines.iter().zip(&want) {
        assert!(l.starts_with(w.as_str()), "got  {l}\nwant {w}…");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn pipelines_and_rule_files_in_one_call() {
    let rules = root().join("pipelines/rules/alerting_rules.yml");
    let pipeline = root().join("pipelines/feynman.yaml");
    let out = weir(&[&pipeline, &rules]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("feynman.yaml: ok ("), "{stdout}");
    assert!(stdout.contains("sources"), "{stdout}");
    assert!(
        stdout.contains("alerting_rules.yml: ok (1 groups, 6 rules)"),
        "{stdout}"
    );
}

#[test]
fn weir_and_promtool_agree_on_pass_or_fail() {
    let dir = root().join("tests/rules/check");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "only {} files", files.len());
    let promtool = promtool();
    if promtool.is_none() {
        eprintln!("skipping the promtool half: /usr/bin/promtool not installed");
    }
    let mut disagreements = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let out = weir(&[f]);
        let weir_ok = match out.status.code() {
            Some(0) => true,
            Some(2) => false,
            other => panic!("{name}: weir exited {other:?}: {}", text(&out.stderr)),
        };
        if !weir_ok && !text(&out.stderr).lines().all(|l| l.starts_with("error: ")) {
            disagreements.push(format!("{name}: stderr not all `error:` lines"));
        }
        let expected = name.starts_with("good-");
        if weir_ok != expected {
            disagreements.push(format!(
                "{name}: weir {} it: {}",
                if weir_ok { "accepts" } else { "refuses" },
                text(&out.stderr).trim()
            ));
        }
        if let Some(p) = promtool
            && promtool_passes(p, f) != weir_ok
        {
            disagreements.push(format!(
                "{name}: promtool and weir disagree (weir ok: {weir_ok})"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
