//! Functions over range vectors (`rate`, `*_over_time`, `deriv`, …), as
//! Prometheus 2.42's `promql/functions.go` computes them, including its
//! Kahan summation in `sum_over_time`/`avg_over_time`/`std*_over_time` and
//! the 2.x extrapolation of `extrapolatedRate` (zero-point clamp, half an
//! average interval beyond 1.1 intervals; no 3.x changes).
//!
//! Each series of the argument with at least one sample in its window is
//! handed to the function; the result drops the metric name except for
//! `last_over_time`.

use promql_parser::parser::Expr;

use super::engine::{Ev, EvalError, RangeArg, check_unique, query_err};
use super::functions::absent_labels;
use super::quantile::quantile;
use super::value::{Sample, Vector};

/// Evaluates a function whose arguments include a range vector.
pub(crate) fn call(ev: &Ev, name: &str, args: &[&Expr], ts: i64) -> Result<Vector, EvalError> {
    let idx = args
        .iter()
        .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
        .expect("a range argument");
    let mut scalars = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        scalars.push(if i == idx {
            0.0
        } else {
            ev.eval_scalar(a, ts)?
        });
    }
    let ra = ev.eval_range_arg(args[idx], ts)?;
    if name == "absent_over_time" {
        if ra.series.iter().any(|s| !s.samples.is_empty()) {
            return Ok(vec![]);
        }
        return Ok(vec![Sample {
            labels: absent_labels(args[0]),
            t: ts,
            v: 1.0,
        }]);
    }
    let mut out = Vec::new();
    for s in &ra.series {
        if s.samples.is_empty() {
            continue;
        }
        if let Some(v) = apply(name, &s.samples, &scalars, &ra, ts)? {
            let labels = if name == "last_over_time" {
                s.labels.clone()
            } else {
                s.labels.without_name()
            };
            out.push(Sample { labels, t: ts, v });
        }
    }
    check_unique(&out)?;
    Ok(out)
}

fn apply(
    name: &str,
    pts: &[(i64, f64)],
    scalars: &[f64],
    ra: &RangeArg,
    ts: i64,
) -> Result<Option<f64>, EvalError> {
    let vals = || pts.iter().map(|p| p.1);
    Ok(match name {
        "rate" => extrapolated_rate(pts, ra, true, true),
        "increase" => extrapolated_rate(pts, ra, true, false),
        "delta" => extrapolated_rate(pts, ra, false, false),
        "irate" => instant_value(pts, true),
        "idelta" => instant_value(pts, false),
        "count_over_time" => Some(pts.len() as f64),
        "present_over_time" => Some(1.0),
        "last_over_time" => Some(pts[pts.len() - 1].1),
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for v in vals() {
                (sum, c) = kahan_inc(v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        "avg_over_time" => Some(avg_over_time(pts)),
        "max_over_time" => {
            Some(vals().fold(pts[0].1, |m, v| if v > m || m.is_nan() { v } else { m }))
        }
        "min_over_time" => {
            Some(vals().fold(pts[0].1, |m, v| if v < m || m.is_nan() { v } else { m }))
        }
        "stddev_over_time" => Some(stdvar(pts).sqrt()),
        "stdvar_over_time" => Some(stdvar(pts)),
        "quantile_over_time" => Some(quantile(scalars[0], vals().collect())),
        "changes" => {
            let n = pts
                .windows(2)
                .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                .count();
            Some(n as f64)
        }
        "resets" => Some(pts.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
        "deriv" => {
            if pts.len() < 2 {
                None
            } else {
                Some(linear_regression(pts, pts[0].0).0)
            }
        }
        "predict_linear" => {
            if pts.len() < 2 {
                None
            } else {
                let (slope, intercept) = linear_regression(pts, ts);
                Some(slope * scalars[1] + intercept)
            }
        }
        "holt_winters" => holt_winters(pts, scalars[1], scalars[2])?,
        other => {
            return Err(EvalError::Unsupported(format!(
                "function {other}() over a range vector"
            )));
        }
    })
}

/// Neumaier-compensated summation step, as Prometheus' `kahanSumInc`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `rate`/`increase`/`delta`: the 2.x extrapolation.
fn extrapolated_rate(pts: &[(i64, f64)], ra: &RangeArg, counter: bool, rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut prev = first.1;
        for &(_, v) in &pts[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first.0 - ra.range_start) as f64 / 1000.0;
    let to_end = (ra.range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (pts.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg / 2.0
    };
    let mut factor = interval / sampled;
    if rate {
        factor /= ra.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate`/`idelta`: the last two samples.
fn instant_value(pts: &[(i64, f64)], rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (prev, last) = (pts[pts.len() - 2], pts[pts.len() - 1]);
    let mut v = if rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let dt = last.0 - prev.0;
    if dt == 0 {
        return None;
    }
    if rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

fn avg_over_time(pts: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in pts {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn stdvar(pts: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in pts {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Least squares over the samples, x in seconds relative to `intercept_t`.
fn linear_regression(pts: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = pts[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in pts.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn holt_winters(pts: &[(i64, f64)], sf: f64, tf: f64) -> Result<Option<f64>, EvalError> {
    if sf <= 0.0 || sf >= 1.0 {
        return query_err(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        ));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return query_err(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        ));
    }
    if pts.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, pts[0].1);
    let mut b = pts[1].1 - pts[0].1;
    for (i, &(_, v)) in pts.iter().enumerate().skip(1) {
        let x = sf * v;
        // The trend at i-1; the first one is the initial slope itself.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ra(start: i64, end: i64) -> RangeArg {
        RangeArg {
            series: vec![],
            range_start: start,
            range_end: end,
            range_ms: end - start,
        }
    }

    #[test]
    fn rate_matches_the_documented_example() {
        // 0+10x20 at 1m, rate over 5m at 10m: 50 over 300 s.
        let pts: Vec<(i64, f64)> = (5..=10).map(|i| (i * 60_000, i as f64 * 10.0)).collect();
        let v = extrapolated_rate(&pts, &ra(300_000, 600_000), true, true).unwrap();
        assert_eq!(v, 0.16666666666666669);
    }

    #[test]
    fn counter_resets_are_added() {
        let pts = vec![(0, 5.0), (60_000, 10.0), (120_000, 2.0), (180_000, 4.0)];
        let v = extrapolated_rate(&pts, &ra(0, 180_000), true, false).unwrap();
        assert_eq!(v, 9.0);
        assert_eq!(instant_value(&pts, true), Some(2.0 / 60.0));
        assert_eq!(instant_value(&pts[..3], true), Some(2.0 / 60.0));
    }
}
