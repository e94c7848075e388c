//! Quantiles: `histogram_quantile` over classic `le` buckets and the
//! φ-quantile of a set of values (`quantile`, `quantile_over_time`), as
//! Prometheus 2.42's `promql/quantile.go` computes them.
//!
//! Native histograms are not handled (there are none in this engine).

use std::collections::HashMap;

use super::value::{Labels, Sample, Vector};

/// `histogram_quantile(q, buckets)`: groups the samples by their labels
/// without `le` (samples without a parsable `le` are ignored) and
/// interpolates in each group. Results drop `__name__` and `le`.
pub(crate) fn histogram_quantile(q: f64, vec: Vector, ts: i64) -> Vector {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, (Labels, Vec<(f64, f64)>)> = HashMap::new();
    for s in vec {
        let Some(upper) = parse_go_float(s.labels.get("le")) else {
            continue;
        };
        let mut sig = s.labels.clone();
        sig.del("le");
        let entry = groups.entry(sig.clone()).or_insert_with(|| {
            order.push(sig.clone());
            let mut out = sig.without_name();
            out.del("le");
            (out, Vec::new())
        });
        entry.1.push((upper, s.v));
    }
    order
        .into_iter()
        .map(|sig| {
            let (labels, buckets) = groups.remove(&sig).expect("group");
            Sample {
                labels,
                t: ts,
                v: bucket_quantile(q, buckets),
            }
        })
        .collect()
}

/// Go's `strconv.ParseFloat` for the forms a bucket bound takes (Rust,
/// like Go, accepts `inf`, `infinity` and `nan` in any case; Go's hex
/// floats are not accepted).
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Prometheus' `bucketQuantile` over `(upper bound, cumulative count)`.
pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    // Merge buckets with equal bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    // Force monotonic counts.
    let mut max = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    let buckets = merged;
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    let b = (0..n).find(|&i| buckets[i].1 >= rank).unwrap_or(n);
    if b == n {
        return buckets[n - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let end = buckets[b].0;
    let mut count = buckets[b].1;
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks,
/// NaN sorting first.
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap(),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantile_interpolates() {
        let b = vec![(0.1, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(bucket_quantile(0.5, b.clone()), 0.1);
        assert_eq!(bucket_quantile(0.75, b.clone()), 0.30000000000000004);
        assert_eq!(bucket_quantile(1.0, b.clone()), 0.5);
        assert_eq!(bucket_quantile(-1.0, b.clone()), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(2.0, b), f64::INFINITY);
        assert!(bucket_quantile(0.5, vec![(1.0, 1.0), (2.0, 2.0)]).is_nan());
        assert!(bucket_quantile(0.5, vec![(f64::INFINITY, 2.0)]).is_nan());
    }

    #[test]
    fn non_monotonic_buckets_are_fixed() {
        let b = vec![(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.5, b), 0.5);
    }

    #[test]
    fn quantile_of_values() {
        assert_eq!(quantile(0.5, vec![1.0, 3.0, 2.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, vec![5.0]), 5.0);
        assert!(quantile(0.5, vec![]).is_nan());
    }
}
