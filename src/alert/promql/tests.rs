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

fn err(s: &MemStorage, q: &str, t_ms: i64) -> String {
    match eval(s, q, t_ms) {
        Err(EvalError::Query(m)) => m,
        other => panic!("{q}: expected a query error, got {other:?}"),
    }
}

/// The messages promtool 2.42 prints for the same queries and data.
#[test]
fn errors_use_prometheus_messages() {
    let s = store(&[
        (r#"a{job="x",i="1"}"#, "1"),
        (r#"a{job="x",i="2"}"#, "2"),
        (r#"b{job="x",i="1"}"#, "10"),
        (r#"b{job="x",i="3"}"#, "30"),
        (r#"c{job="x"}"#, "100"),
    ]);
    assert_eq!(
        err(&s, "a + on(job) b", 0),
        r#"found duplicate series for the match group {job="x"} on the right hand-side of the operation: [{__name__="b", i="3", job="x"}, {__name__="b", i="1", job="x"}];many-to-many matching not allowed: matching labels must be unique on one side"#
    );
    // Prometheus lists the pair in its storage's series order, which in
    // promtool is random (series are created from a Go map); here it is
    // label order, the later series first.
    assert_eq!(
        err(&s, "c + on(job) a", 0),
        r#"found duplicate series for the match group {job="x"} on the right hand-side of the operation: [{__name__="a", i="2", job="x"}, {__name__="a", i="1", job="x"}];many-to-many matching not allowed: matching labels must be unique on one side"#
    );
    assert_eq!(
        err(&s, r#"label_replace(a, "i", "z", "i", ".*")"#, 0),
        "vector cannot contain metrics with the same labelset"
    );
    assert_eq!(
        err(&s, r#"-{job="x"}"#, 0),
        "vector cannot contain metrics with the same labelset"
    );
    assert_eq!(
        err(&s, "holt_winters(a[5m], 2, 0.5)", M),
        "invalid smoothing factor. Expected: 0 < sf < 1, got: 2.000000"
    );
    assert_eq!(
        err(&s, r#"count_values("1x", a)"#, 0),
        r#"invalid label name "1x""#
    );
    assert_eq!(
        err(&s, "topk(1e300, a)", 0),
        "Scalar value 1e+300 overflows int64"
    );
}

#[test]
fn one_to_one_duplicates_on_the_many_side() {
    let s = store(&[
        (r#"a{job="x",i="1"}"#, "1"),
        (r#"a{job="x",i="2"}"#, "2"),
        (r#"c{job="x"}"#, "100"),
    ]);
    assert_eq!(
        err(&s, "a + on(job) c", 0),
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    );
    assert_eq!(
        eval(&s, "a + on(job) group_left c", 0).unwrap(),
        vec![r#"{i="1", job="x"} 101"#, r#"{i="2", job="x"} 102"#]
    );
}

#[test]
fn range_queries() {
    let s = store(&[(r#"x{a="1"}"#, "0+1x10"), (r#"y"#, "5 _ _ _ _ _ _ _ 6")]);
    let e = parse("x * 2").unwrap();
    let m = Engine::new(&s).range(&e, 0, 3 * M, M).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].labels.to_string(), r#"{a="1"}"#);
    assert_eq!(
        m[0].samples,
        vec![(0, 0.0), (M, 2.0), (2 * M, 4.0), (3 * M, 6.0)]
    );
    // A gap longer than the lookback leaves steps out.
    let m = Engine::new(&s)
        .range(&parse("y").unwrap(), 0, 8 * M, M)
        .unwrap();
    let ts: Vec<i64> = m[0].samples.iter().map(|p| p.0 / M).collect();
    assert_eq!(ts, vec![0, 1, 2, 3, 4, 5, 8]);
    // Scalars give one series without labels; @ end() is the range's end.
    let m = Engine::new(&s)
        .range(&parse("time()").unwrap(), 0, 2 * M, M)
        .unwrap();
    assert_eq!(m[0].samples, vec![(0, 0.0), (M, 60.0), (2 * M, 120.0)]);
    let m = Engine::new(&s)
        .range(&parse("x @ end()").unwrap(), 0, 2 * M, M)
        .unwrap();
    assert_eq!(m[0].samples, vec![(0, 2.0), (M, 2.0), (2 * M, 2.0)]);
    let m = Engine::new(&s)
        .range(&parse("x @ start()").unwrap(), M, 2 * M, M)
        .unwrap();
    assert_eq!(m[0].samples, vec![(M, 1.0), (2 * M, 1.0)]);
    assert!(matches!(
        Engine::new(&s).range(&parse("x[5m]").unwrap(), 0, M, M),
        Err(EvalError::Query(_))
    ));
}

#[test]
fn instant_results_of_other_types() {
    let s = store(&[("x", "0+1x10")]);
    assert_eq!(eval(&s, r#""hello""#, 0).unwrap(), vec!["string hello"]);
    assert_eq!(
        eval(&s, "x[1m:30s]", 2 * M).unwrap(),
        vec![r#"{__name__="x"} [1@60 1@90 2@120]"#]
    );
    assert_eq!(eval(&s, "1 + 1", 0).unwrap(), vec!["scalar 2"]);
}
