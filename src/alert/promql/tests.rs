//! Unit tests of the evaluator over small in-memory data sets.

use super::*;

const M: i64 = 60_000;

fn store(series: &[(&str, &str)]) -> MemStorage {
    let mut s = MemStorage::new();
    for (name, values) in series {
        s.load(name, values, M).unwrap();
    }
    s
}

/// Evaluates `q` at `t_ms` and prints the result as `labels value` lines,
/// sorted.
fn eval(s: &MemStorage, q: &str, t_ms: i64) -> Result<Vec<String>, EvalError> {
    let expr = parse(q).unwrap_or_else(|e| panic!("parse {q}: {e}"));
    let v = Engine::new(s).instant(&expr, t_ms)?;
    let mut out: Vec<String> = match v {
        Value::Scalar { v, .. } => vec![format!("scalar {}", format_float(v))],
        Value::Vector(vec) => vec
            .iter()
            .map(|s| format!("{} {}", s.labels, format_float(s.v)))
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                let pts: Vec<String> = s
                    .samples
                    .iter()
                    .map(|(t, v)| format!("{}@{}", format_float(*v), t / 1000))
                    .collect();
                format!("{} [{}]", s.labels, pts.join(" "))
            })
            .collect(),
        Value::String { v, .. } => vec![format!("string {v}")],
    };
    out.sort();
    Ok(out)
}

#[test]
fn lookback_and_staleness() {
    let s = store(&[(r#"up{job="a"}"#, "1 1 0x5 _ stale")]);
    assert_eq!(
        eval(&s, "up == 0", 8 * M).unwrap(),
        vec![r#"{__name__="up", job="a"} 0"#]
    );
    assert!(eval(&s, "up", 9 * M).unwrap().is_empty());
    // Lookback is [t-5m, t]: the 1m sample is still seen at 6m.
    let s = store(&[("x", "1 _x10")]);
    assert_eq!(eval(&s, "x", 5 * M).unwrap().len(), 1);
    assert!(eval(&s, "x", 5 * M + 1).unwrap().is_empty());
}

#[test]
fn range_window_is_closed_on_the_left() {
    let s = store(&[("x", "0+1x20")]);
    assert_eq!(
        eval(&s, "count_over_time(x[5m])", 10 * M).unwrap(),
        vec!["{} 6"]
    );
    assert_eq!(
        eval(&s, "x[2m]", 10 * M).unwrap(),
        vec![r#"{__name__="x"} [8@480 9@540 10@600]"#]
    );
}

#[test]
fn unsupported_is_refused() {
    let s = store(&[]);
    for q in [
        "double_exponential_smoothing(x[5m], 0.5, 0.5)",
        "limitk(1, x)",
        "mad_over_time(x[5m])",
    ] {
        match eval(&s, q, 0) {
            Err(EvalError::Unsupported(_)) => {}
            other => panic!("{q}: {other:?}"),
        }
    }
}
