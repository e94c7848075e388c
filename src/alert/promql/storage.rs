//! Where the evaluator reads samples from.
//!
//! [`Storage`] is the one question the engine asks: the series matching a
//! set of label matchers, with their samples in a closed time window
//! (stale markers included; the engine interprets them). [`MemStorage`] is
//! a plain in-memory implementation for tests and small setups, with a
//! loader for promtool's expanding notation (`0+10x100`, `_`, `stale`).
//! It deliberately has no retention, no limits and no indexing: the
//! bounded live store the alert rules need comes later.

use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;

use super::value::{Labels, METRIC_NAME, Series, stale_nan};

/// A source of series for the engine.
pub trait Storage {
    /// Every series whose labels satisfy all `matchers` (a missing label
    /// counts as `""`), with its samples in `[start_ms, end_ms]`, sorted by
    /// time. Series come sorted by labels. Stale markers are included.
    /// Series with no sample in the window may be left out.
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<Series>;
}

/// Series held in memory, grouped by metric name (a selector almost always
/// names one), each group sorted by labels.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    by_name: BTreeMap<String, BTreeMap<Labels, Vec<(i64, f64)>>>,
    len: usize,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample; a sample at an existing timestamp replaces it.
    pub fn append(&mut self, labels: Labels, t_ms: i64, v: f64) {
        let group = self
            .by_name
            .entry(labels.get(METRIC_NAME).to_string())
            .or_default();
        if !group.contains_key(&labels) {
            self.len += 1;
        }
        let samples = group.entry(labels).or_default();
        match samples.binary_search_by_key(&t_ms, |(t, _)| *t) {
            Ok(i) => samples[i].1 = v,
            Err(i) => samples.insert(i, (t_ms, v)),
        }
    }

    /// Marks the series stale at `t_ms` (it disappeared).
    pub fn append_stale(&mut self, labels: Labels, t_ms: i64) {
        self.append(labels, t_ms, stale_nan());
    }

    /// Loads one series as promtool's `input_series` does: `series` is a
    /// selector such as `up{job="a"}`, `values` the expanding notation, the
    /// first value at time 0 and one every `interval_ms`.
    pub fn load(&mut self, series: &str, values: &str, interval_ms: i64) -> Result<(), String> {
        let labels = parse_series_labels(series)?;
        for (i, v) in parse_values(values)?.into_iter().enumerate() {
            if let Some(v) = v {
                self.append(labels.clone(), i as i64 * interval_ms, v);
            }
        }
        Ok(())
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<Series> {
        select_by_name(&self.by_name, matchers, |samples| {
            let lo = samples.partition_point(|(t, _)| *t < start_ms);
            let hi = samples.partition_point(|(t, _)| *t <= end_ms);
            samples[lo..hi].to_vec()
        })
    }
}

/// [`Storage::select`] for a store that groups series by metric name:
/// only the named group is looked at when a matcher names one; `window`
/// gives a series' samples in the wanted time range (empty leaves the
/// series out). Series come sorted by labels.
pub(crate) fn select_by_name<S>(
    by_name: &BTreeMap<String, BTreeMap<Labels, S>>,
    matchers: &[Matcher],
    window: impl Fn(&S) -> Vec<(i64, f64)>,
) -> Vec<Series> {
    let named = matchers
        .iter()
        .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
        .map(|m| m.value.as_str());
    let groups: Vec<&BTreeMap<Labels, S>> = match named {
        Some(name) => by_name.get(name).into_iter().collect(),
        None => by_name.values().collect(),
    };
    let several = groups.len() > 1;
    let mut out = Vec::new();
    for (labels, samples) in groups.into_iter().flatten() {
        if !matchers.iter().all(|m| m.is_match(labels.get(&m.name))) {
            continue;
        }
        let picked = window(samples);
        if !picked.is_empty() {
            out.push(Series {
                labels: labels.clone(),
                samples: picked,
            });
        }
    }
    if several {
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    out
}

/// Parses a series descriptor `name{label="value", ...}` (or `{...}`) into
/// labels. Only `=` matchers are allowed.
pub fn parse_series_labels(s: &str) -> Result<Labels, String> {
    let s = s.trim();
    if s == "{}" {
        return Ok(Labels::new());
    }
    let expr = promql_parser::parser::parse(s).map_err(|e| format!("series {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("series {s:?}: not a series selector"));
    };
    if vs.offset.is_some() || vs.at.is_some() || !vs.matchers.or_matchers.is_empty() {
        return Err(format!("series {s:?}: not a plain series"));
    }
    let mut labels = Labels::new();
    if let Some(name) = &vs.name {
        labels.set(METRIC_NAME, name);
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!("series {s:?}: only = matchers describe a series"));
        }
        labels.set(&m.name, &m.value);
    }
    Ok(labels)
}

fn parse_number(s: &str) -> Result<f64, String> {
    let lower = s.to_ascii_lowercase();
    let (neg, body) = match lower.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    let v = match body {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => body
            .parse::<f64>()
            .map_err(|_| format!("bad number {s:?} in series values"))?,
    };
    Ok(if neg { -v } else { v })
}

fn parse_value(s: &str) -> Result<f64, String> {
    if s == "stale" {
        Ok(stale_nan())
    } else {
        parse_number(s)
    }
}

/// Splits `a+b` / `a-b` at the operator that is not a sign or exponent.
fn split_step(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    for i in 1..bytes.len() {
        if (bytes[i] == b'+' || bytes[i] == b'-')
            && !matches!(bytes[i - 1], b'e' | b'E' | b'+' | b'-')
        {
            return Some((&s[..i], &s[i..]));
        }
    }
    None
}

/// Expands promtool's series notation into one optional value per step:
/// `_` is a missing sample, `_xN` N missing samples, `stale` a stale
/// marker, `vxN` N+1 copies of v, `a+bxN` / `a-bxN` N+1 values from a.
pub fn parse_values(s: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        let Some((head, times)) = tok.rsplit_once('x') else {
            out.push(Some(parse_value(tok)?));
            continue;
        };
        let n: u64 = times
            .parse()
            .map_err(|_| format!("bad repetition {tok:?} in series values"))?;
        if head == "_" {
            out.extend((0..n).map(|_| None));
            continue;
        }
        let (start, step) = match split_step(head) {
            Some((a, b)) => (parse_value(a)?, parse_number(b)?),
            None => (parse_value(head)?, 0.0),
        };
        let mut v = start;
        for _ in 0..=n {
            out.push(Some(v));
            v += step;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::promql::value::is_stale_nan;
    use promql_parser::label::MatchOp;

    #[test]
    fn expanding_notation() {
        let v = parse_values("0+10x3 _ 5 _x2 1-1x1 stale 7x2 -2+1x1 1e3").unwrap();
        let f: Vec<String> = v
            .iter()
            .map(|x| match x {
                None => "_".into(),
                Some(x) if is_stale_nan(*x) => "stale".into(),
                Some(x) => x.to_string(),
            })
            .collect();
        assert_eq!(f.join(" "), "0 10 20 30 _ 5 _ _ 1 0 stale 7 7 7 -2 -1 1000");
    }

    #[test]
    fn select_matches_missing_labels_as_empty() {
        let mut s = MemStorage::new();
        s.load(r#"up{job="a"}"#, "1 2 3", 60_000).unwrap();
        s.load(r#"up{job="b",env="x"}"#, "4", 60_000).unwrap();
        let m = Matcher::new(MatchOp::Equal, "env", "");
        let got = s.select(&[m], 0, 60_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, vec![(0, 1.0), (60_000, 2.0)]);
    }
}
