//! Differential tests of weir's PromQL evaluator against promtool 2.42.
//!
//! Every `tests/promql/*.yml` is a promtool rule unit-test file with only
//! `promql_expr_test`s. For each file this (a) runs `promtool test rules`
//! on it and requires it to pass, which proves the expected samples are
//! what Prometheus 2.42 computes (skipped with a message when promtool is
//! missing), and (b) loads the same `input_series` into a `MemStorage`,
//! evaluates every expression with weir's engine at its `eval_time`, and
//! requires exactly the expected samples (labels and bit-for-bit values,
//! as promtool compares them).
//!
//! Because promtool compares with Go's `reflect.DeepEqual`, a NaN result
//! can never pass there; the files avoid expecting NaN.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use weir::alert::promql::storage::{parse_series_labels, parse_values};
use weir::alert::promql::{Engine, Labels, MemStorage, Value, format_float, parse};

#[derive(Deserialize)]
struct TestFile {
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Deserialize)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// Prometheus' duration syntax (`1h30m`, `90s`, `500ms`, `0`).
fn duration_ms(s: &str) -> i64 {
    if s == "0" {
        return 0;
    }
    let mut total = 0i64;
    let mut num = String::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        if cs[i].is_ascii_digit() {
            num.push(cs[i]);
            i += 1;
            continue;
        }
        let (unit, len) = if cs[i] == 'm' && cs.get(i + 1) == Some(&'s') {
            (1, 2)
        } else {
            let u = match cs[i] {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 7 * 86_400_000,
                'y' => 365 * 86_400_000,
                c => panic!("bad duration {s:?} ({c})"),
            };
            (u, 1)
        };
        total += num.parse::<i64>().unwrap() * unit;
        num.clear();
        i += len;
    }
    total
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    v.sort();
    v
}

fn promtool() -> Option<&'static str> {
    let p = "/usr/bin/promtool";
    Path::new(p).exists().then_some(p)
}

#[test]
fn promtool_agrees_with_the_expected_samples() {
    let Some(promtool) = promtool() else {
        eprintln!("skipping: /usr/bin/promtool not installed");
        return;
    };
    let mut failed = Vec::new();
    for f in files() {
        let out = Command::new(promtool)
            .arg("test")
            .arg("rules")
            .arg(&f)
            .output()
            .unwrap();
        if !out.status.success() {
            failed.push(format!(
                "{}:\n{}{}",
                f.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failed.is_empty(), "promtool failed:\n{}", failed.join("\n"));
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Go implements most transcendental functions in Go (Cephes-derived);
/// weir uses Rust's (the platform libm). They may differ in the last bit.
const GO_MATH: &[&str] = &[
    "sin(", "cos(", "tan(", "asin(", "acos(", "atan(", "sinh(", "cosh(", "tanh(", "asinh(",
    "acosh(", "atanh(", "atan2", "exp(", "ln(", "log2(", "log10(", "^",
];

fn within_one_ulp(a: f64, b: f64) -> bool {
    a.is_finite()
        && b.is_finite()
        && a.is_sign_negative() == b.is_sign_negative()
        && a.to_bits().abs_diff(b.to_bits()) <= 1
}

fn show(v: &[(Labels, f64)]) -> String {
    let s: Vec<String> = v
        .iter()
        .map(|(l, x)| format!("{l} {}", format_float(*x)))
        .collect();
    s.join(", ")
}

/// Runs one file through weir's engine; returns the failures and the
/// known last-bit differences of transcendental functions.
fn run_file(path: &Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let file: TestFile = serde_saphyr::from_str(&text).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    });
    let mut errs = Vec::new();
    let mut ulps = Vec::new();
    for (gi, g) in file.tests.iter().enumerate() {
        let interval = duration_ms(g.interval.as_deref().unwrap_or("1m"));
        // promtool loads samples lazily, only up to the last evaluation
        // step (a multiple of evaluation_interval) at or before the
        // group's latest eval_time; later samples are never visible.
        let eval_interval = duration_ms(file.evaluation_interval.as_deref().unwrap_or("1m"));
        let max_eval = g
            .promql_expr_test
            .iter()
            .map(|t| duration_ms(&t.eval_time))
            .max()
            .unwrap_or(0);
        let loaded_until = max_eval / eval_interval * eval_interval;
        let mut store = MemStorage::new();
        for s in &g.input_series {
            let labels = parse_series_labels(&s.series).unwrap();
            for (i, v) in parse_values(&s.values).unwrap().into_iter().enumerate() {
                let t = i as i64 * interval;
                if let Some(v) = v
                    && t <= loaded_until
                {
                    store.append(labels.clone(), t, v);
                }
            }
        }
        let engine = Engine::new(&store);
        for t in &g.promql_expr_test {
            let at = duration_ms(&t.eval_time);
            let ctx = format!("group {gi}, expr {:?} at {}", t.expr, t.eval_time);
            let expr = match parse(&t.expr) {
                Ok(e) => e,
                Err(e) => {
                    errs.push(format!("{ctx}: parse: {e}"));
                    continue;
                }
            };
            let mut got: Vec<(Labels, f64)> = match engine.instant(&expr, at) {
                Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
                Ok(Value::Scalar { v, .. }) => vec![(Labels::new(), v)],
                Ok(other) => {
                    errs.push(format!("{ctx}: got a {}", other.type_name()));
                    continue;
                }
                Err(e) => {
                    errs.push(format!("{ctx}: error: {e}"));
                    continue;
                }
            };
            let mut exp: Vec<(Labels, f64)> = t
                .exp_samples
                .iter()
                .map(|s| (parse_series_labels(&s.labels).unwrap(), s.value))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            exp.sort_by(|a, b| a.0.cmp(&b.0));
            let ok = got.len() == exp.len()
                && got
                    .iter()
                    .zip(&exp)
                    .all(|(g, e)| g.0 == e.0 && same(g.1, e.1));
            if ok {
                continue;
            }
            let msg = format!("{ctx}:\n  exp: {}\n  got: {}", show(&exp), show(&got));
            let ulp_only = GO_MATH.iter().any(|f| t.expr.contains(f))
                && got.len() == exp.len()
                && got
                    .iter()
                    .zip(&exp)
                    .all(|(g, e)| g.0 == e.0 && (same(g.1, e.1) || within_one_ulp(g.1, e.1)));
            if ulp_only {
                ulps.push(msg);
            } else {
                errs.push(msg);
            }
        }
    }
    (errs, ulps)
}

#[test]
fn weir_agrees_with_promtool() {
    let files = files();
    assert!(files.len() >= 20, "only {} differential files", files.len());
    let mut failed = Vec::new();
    let mut ulp_cases = 0;
    for f in &files {
        let (errs, ulps) = run_file(f);
        if !errs.is_empty() {
            failed.push(format!("{}:\n{}", f.display(), errs.join("\n")));
        }
        for u in &ulps {
            eprintln!(
                "known last-bit difference (Go math vs libm) in {}: {u}",
                f.display()
            );
        }
        ulp_cases += ulps.len();
    }
    eprintln!(
        "{} files, {} disagree, {} expressions differ only in the last bit of a transcendental function",
        files.len(),
        failed.len(),
        ulp_cases
    );
    assert!(
        failed.is_empty(),
        "{} of {} files disagree:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n\n")
    );
}
