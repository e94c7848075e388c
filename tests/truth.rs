//! The derived metrics are exact: over 150,000 generated lines, every
//! sample weir writes for pipelines/feynman.yaml equals the truth the
//! generator kept while writing them (counts per label set, token sums,
//! histogram buckets, costs), with no extra series. 150k lines also push
//! `sse_messages_total` past its max_series of 1000 into `__overflow__`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use common::*;

/// Samples of an exposition: series text → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            };
            (series.to_string(), v)
        })
        .collect()
}

fn family(series: &str) -> &str {
    let name = series.split('{').next().unwrap();
    ["_bucket", "_sum", "_count"]
        .iter()
        .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n))
}

#[test]
fn derived_metrics_equal_the_generator_truth() {
    let s = Scratch::new();
    let out = s
        .weir(&[
            "generate",
            "--lines",
            "150000",
            "--seed",
            "42",
            "-o",
            "logs/app.log",
            "--truth",
            "truth.prom",
        ])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let feynman = repo().join("pipelines/feynman.yaml");
    let out = s
        .weir(&[
            "run",
            feynman.to_str().unwrap(),
            "--once",
            "--metrics-file",
            "weir.prom",
        ])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let truth = samples(&read(&s.path("truth.prom")));
    let got = samples(&read(&s.path("weir.prom")));
    assert!(truth.len() > 1000, "{} truth samples", truth.len());
    let mut wrong = Vec::new();
    for (series, want) in &truth {
        match got.get(series) {
            Some(v) if v == want => {}
            other => wrong.push(format!("{series}: weir {other:?}, truth {want}")),
        }
    }
    let families: BTreeSet<&str> = truth.keys().map(|k| family(k)).collect();
    for series in got.keys().filter(|k| families.contains(family(k))) {
        if !truth.contains_key(series) {
            wrong.push(format!("{series}: only in weir's output"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} differences, first: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(15)]
    );

    // The cardinality guard did its job, said so once, and counted it.
    assert!(
        truth
            .keys()
            .any(|k| k.starts_with("sse_messages_total{session_id=\"__overflow__\"}"))
    );
    assert_eq!(
        stderr.matches("metric reached max_series").count(),
        1,
        "{stderr}"
    );
    let overflowed = got[r#"weir_metric_overflow_samples_total{metric="sse_messages_total"}"#];
    assert_eq!(
        overflowed,
        truth[r#"sse_messages_total{session_id="__overflow__"}"#]
    );
}
