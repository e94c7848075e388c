//! Differential tests of `weir test` against `promtool test rules` 2.42.
//!
//! Every `tests/rule_tests/*.yml` is a promtool rule unit-test file (many
//! of them with deliberately wrong expectations, so failure reports are
//! compared too). For each file both tools run; they must agree on the
//! exit code and on the failure details: the lines naming an alert, an
//! expression, a rule, an expected or a got value (error texts after
//! `err:` excluded, as parse errors are worded by different parsers).
//! Apart from the few files in [`TEXT_DIFFERS`], the whole output (stdout
//! and stderr) must be byte-identical. Skipped with a message when
//! `/usr/bin/promtool` is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Files whose failure text comes from a parser (rule file or
/// `exp_samples` labels) and is worded differently by weir.
const TEXT_DIFFERS: &[&str] = &["26_bad_rule_file.yml", "43_bad_exp_labels.yml"];

const KEYS: &[&str] = &["alertname:", "expr:", "exp:", "got:", "rule:", "name:"];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    v.sort();
    v
}

fn run(cmd: &mut Command, dir: &Path, file: &Path) -> Output {
    cmd.current_dir(dir)
        .arg(file.file_name().unwrap())
        .output()
        .unwrap()
}

/// The failure details: lines with a key, error texts cut after `err:`.
fn details(o: &Output) -> Vec<String> {
    let text =
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    text.lines()
        .filter(|l| KEYS.iter().any(|k| l.contains(k)))
        .map(|l| match l.find(" err: ") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect()
}

#[test]
fn weir_test_agrees_with_promtool() {
    let promtool = "/usr/bin/promtool";
    if !Path::new(promtool).exists() {
        eprintln!("skipping: {promtool} not installed");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rule_tests");
    let files = files(&dir);
    assert!(files.len() >= 40, "only {} rule test files", files.len());
    let mut problems = Vec::new();
    let (mut identical, mut failing) = (0, 0);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let p = run(Command::new(promtool).args(["test", "rules"]), &dir, f);
        let w = run(
            Command::new(env!("CARGO_BIN_EXE_weir")).arg("test"),
            &dir,
            f,
        );
        if p.status.code() != w.status.code() {
            problems.push(format!(
                "{name}: exit promtool {:?}, weir {:?}\n{}\n{}",
                p.status.code(),
                w.status.code(),
                String::from_utf8_lossy(&p.stderr),
                String::from_utf8_lossy(&w.stderr)
            ));
            continue;
        }
        failing += usize::from(p.status.code() != Some(0));
        if details(&p) != details(&w) {
            problems.push(format!(
                "{name}: failure details differ\npromtool:\n{}\nweir:\n{}",
                details(&p).join("\n"),
                details(&w).join("\n")
            ));
            continue;
        }
        let same = p.stdout == w.stdout && p.stderr == w.stderr;
        identical += usize::from(same);
        if !same && !TEXT_DIFFERS.contains(&name.as_str()) {
            problems.push(format!(
                "{name}: output differs\npromtool:\n{}{}\nweir:\n{}{}",
                String::from_utf8_lossy(&p.stdout),
                String::from_utf8_lossy(&p.stderr),
                String::from_utf8_lossy(&w.stdout),
                String::from_utf8_lossy(&w.stderr)
            ));
        }
    }
    eprintln!(
        "{} files, {failing} failing as expected in both, {identical} byte-identical",
        files.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
