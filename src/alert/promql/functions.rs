//! PromQL functions on instant vectors and scalars, as Prometheus 2.42's
//! `promql/functions.go` defines them; functions over range vectors are in
//! [`super::range_functions`].
//!
//! Go's float semantics are kept where Rust's differ (`math.Max`/`Min`
//! propagate NaN; `int64(f)` truncates). The native-histogram functions
//! `histogram_count`, `histogram_sum` and `histogram_fraction` exist in 2.42
//! and ignore float samples, so over float data they return nothing.
//! Functions that only exist in Prometheus 3.x are refused.

use regex::Regex;

use promql_parser::parser::{Call, Expr};

use super::engine::{Ev, EvalError, check_unique, query_err, selector_matchers, unparen};
use super::value::{Labels, METRIC_NAME, Sample, Value, Vector};
use super::{quantile, range_functions};

/// Every function of Prometheus 2.42.
const FUNCTIONS_2_42: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "ln",
    "log10",
    "log2",
    "last_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Refuses functions Prometheus 2.42 does not have.
pub(crate) fn check_function(name: &str) -> Result<(), EvalError> {
    if FUNCTIONS_2_42.contains(&name) {
        Ok(())
    } else {
        Err(EvalError::Unsupported(format!(
            "function {name}() is not in Prometheus 2.42"
        )))
    }
}

/// Go's `math.Max`.
pub(crate) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`.
pub(crate) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

fn string_arg(e: &Expr) -> Result<String, EvalError> {
    match unparen(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        other => query_err(format!("expected string literal, got {other}")),
    }
}

/// Prometheus' label name rule.
pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn map_values(vec: Vector, ts: i64, f: impl Fn(f64) -> f64) -> Vector {
    vec.into_iter()
        .map(|s| Sample {
            labels: s.labels.without_name(),
            t: ts,
            v: f(s.v),
        })
        .collect()
}

fn simple(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

/// Evaluates a function call at step `ts`.
pub(crate) fn call(ev: &Ev, c: &Call, ts: i64) -> Result<Value, EvalError> {
    let name = c.func.name;
    check_function(name)?;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| unparen(a)).collect();
    if args
        .iter()
        .any(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
    {
        return range_functions::call(ev, name, &args, ts).map(Value::Vector);
    }
    let scalar = |i: usize| ev.eval_scalar(args[i], ts);
    let out: Vector = match name {
        "time" => {
            return Ok(Value::Scalar {
                t: ts,
                v: ts as f64 / 1000.0,
            });
        }
        "pi" => {
            return Ok(Value::Scalar {
                t: ts,
                v: std::f64::consts::PI,
            });
        }
        "scalar" => {
            let v = ev.eval_vector(args[0], ts)?;
            let v = if v.len() == 1 { v[0].v } else { f64::NAN };
            return Ok(Value::Scalar { t: ts, v });
        }
        "vector" => vec![Sample {
            labels: Labels::new(),
            t: ts,
            v: scalar(0)?,
        }],
        "timestamp" => timestamp(ev, args[0], ts)?,
        "absent" => {
            if ev.eval_vector(args[0], ts)?.is_empty() {
                vec![Sample {
                    labels: absent_labels(args[0]),
                    t: ts,
                    v: 1.0,
                }]
            } else {
                vec![]
            }
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(args[0], ts)?;
            let desc = name == "sort_desc";
            // NaN last either way; a stable sort (Go's is not: ties may
            // come out in another order, never other values).
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.v.partial_cmp(&a.v).unwrap(),
                _ => a.v.partial_cmp(&b.v).unwrap(),
            });
            return Ok(Value::Vector(v));
        }
        "clamp" => {
            let v = ev.eval_vector(args[0], ts)?;
            let (lo, hi) = (scalar(1)?, scalar(2)?);
            if hi < lo {
                vec![]
            } else {
                map_values(v, ts, |x| go_max(lo, go_min(hi, x)))
            }
        }
        "clamp_min" => {
            let v = ev.eval_vector(args[0], ts)?;
            let lo = scalar(1)?;
            map_values(v, ts, |x| go_max(lo, x))
        }
        "clamp_max" => {
            let v = ev.eval_vector(args[0], ts)?;
            let hi = scalar(1)?;
            map_values(v, ts, |x| go_min(hi, x))
        }
        "round" => {
            let v = ev.eval_vector(args[0], ts)?;
            let to = if args.len() > 1 { scalar(1)? } else { 1.0 };
            let inv = 1.0 / to;
            map_values(v, ts, |x| (x * inv + 0.5).floor() / inv)
        }
        "histogram_quantile" => {
            let q = scalar(0)?;
            quantile::histogram_quantile(q, ev.eval_vector(args[1], ts)?, ts)
        }
        "histogram_count" | "histogram_sum" => {
            ev.eval_vector(args[0], ts)?;
            vec![]
        }
        "histogram_fraction" => {
            scalar(0)?;
            scalar(1)?;
            ev.eval_vector(args[2], ts)?;
            vec![]
        }
        "label_replace" => label_replace(ev.eval_vector(args[0], ts)?, &args)?,
        "label_join" => label_join(ev.eval_vector(args[0], ts)?, &args)?,
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => {
            if args.is_empty() {
                // Go: time.Unix(ts/1000, 0), integer division.
                let v = date_part(name, (ts / 1000) as f64)?;
                vec![Sample {
                    labels: Labels::new(),
                    t: ts,
                    v,
                }]
            } else {
                let mut out = Vec::new();
                for s in ev.eval_vector(args[0], ts)? {
                    out.push(Sample {
                        labels: s.labels.without_name(),
                        t: ts,
                        v: date_part(name, s.v)?,
                    });
                }
                out
            }
        }
        _ => match simple(name) {
            Some(f) => map_values(ev.eval_vector(args[0], ts)?, ts, f),
            None => {
                return Err(EvalError::Unsupported(format!(
                    "function {name}() on these arguments"
                )));
            }
        },
    };
    check_unique(&out)?;
    Ok(Value::Vector(out))
}

/// `timestamp(v)`: a plain selector gives its samples' own times (read at
/// the selector's `@` and offset, as for any selector). Anything else has
/// been evaluated at the step, so gives the step time.
fn timestamp(ev: &Ev, arg: &Expr, ts: i64) -> Result<Vector, EvalError> {
    let (vec, own_time) = match arg {
        Expr::VectorSelector(vs) => (ev.vector_selector(vs, ts), true),
        other => (ev.eval_vector(other, ts)?, false),
    };
    Ok(vec
        .into_iter()
        .map(|s| Sample {
            labels: s.labels.without_name(),
            t: ts,
            v: if own_time { s.t } else { ts } as f64 / 1000.0,
        })
        .collect())
}

/// The labels `absent()`/`absent_over_time()` report: the selector's
/// equality matchers, unless a name is matched twice; nothing otherwise.
pub(crate) fn absent_labels(arg: &Expr) -> Labels {
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut out = Labels::new();
    let mut has = std::collections::HashSet::new();
    for m in selector_matchers(vs) {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name) {
            out.set(&m.name, &m.value);
            has.insert(m.name.clone());
        } else {
            out.del(&m.name);
        }
    }
    out
}

fn label_replace(vec: Vector, args: &[&Expr]) -> Result<Vector, EvalError> {
    let dst = string_arg(args[1])?;
    let repl = string_arg(args[2])?;
    let src = string_arg(args[3])?;
    let re_src = string_arg(args[4])?;
    let Ok(re) = Regex::new(&format!("^(?:{re_src})$")) else {
        return query_err(format!(
            "invalid regular expression in label_replace(): {re_src}"
        ));
    };
    if !valid_label_name(&dst) {
        return query_err(format!(
            "invalid destination label name in label_replace(): {dst}"
        ));
    }
    let mut out = Vec::with_capacity(vec.len());
    for mut s in vec {
        let val = s.labels.get(&src).to_string();
        if let Some(caps) = re.captures(&val) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            s.labels.del(&dst);
            s.labels.set(&dst, &res);
        }
        out.push(s);
    }
    check_unique(&out)?;
    Ok(out)
}

fn label_join(vec: Vector, args: &[&Expr]) -> Result<Vector, EvalError> {
    let dst = string_arg(args[1])?;
    let sep = string_arg(args[2])?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        let src = string_arg(a)?;
        if !valid_label_name(&src) {
            return query_err(format!("invalid source label name in label_join(): {src}"));
        }
        srcs.push(src);
    }
    if !valid_label_name(&dst) {
        return query_err(format!(
            "invalid destination label name in label_join(): {dst}"
        ));
    }
    let mut out = Vec::with_capacity(vec.len());
    for mut s in vec {
        let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n)).collect();
        let joined = joined.join(&sep);
        s.labels.set(&dst, &joined);
        out.push(s);
    }
    check_unique(&out)?;
    Ok(out)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// A date function of a Unix time in seconds (UTC), as Go's `time`
/// computes it after `int64(v)` (truncation).
fn date_part(name: &str, v: f64) -> Result<f64, EvalError> {
    if !v.is_finite() || v.abs() > 1e15 {
        return Err(EvalError::Unsupported(format!(
            "{name}() of {} (Go's int64 conversion of it is platform-defined)",
            super::format::format_float(v)
        )));
    }
    let secs = v.trunc() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let dim = match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    Ok(match name {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => (CUM[m as usize - 1] + d + u32::from(m > 2 && is_leap(y))) as f64,
        "days_in_month" => dim as f64,
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        _ => unreachable!("date function {name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_go() {
        // 2024-02-29T13:45:00Z, a Thursday.
        let t = 1_709_214_300.0;
        assert_eq!(date_part("year", t).unwrap(), 2024.0);
        assert_eq!(date_part("month", t).unwrap(), 2.0);
        assert_eq!(date_part("day_of_month", t).unwrap(), 29.0);
        assert_eq!(date_part("day_of_week", t).unwrap(), 4.0);
        assert_eq!(date_part("day_of_year", t).unwrap(), 60.0);
        assert_eq!(date_part("days_in_month", t).unwrap(), 29.0);
        assert_eq!(date_part("hour", t).unwrap(), 13.0);
        assert_eq!(date_part("minute", t).unwrap(), 45.0);
        // Before the epoch: 1969-12-31T23:59:59Z, a Wednesday.
        assert_eq!(date_part("year", -1.0).unwrap(), 1969.0);
        assert_eq!(date_part("day_of_week", -1.0).unwrap(), 3.0);
        assert_eq!(date_part("minute", -1.0).unwrap(), 59.0);
        assert!(matches!(
            date_part("year", f64::NAN),
            Err(EvalError::Unsupported(_))
        ));
    }

    #[test]
    fn go_max_min_propagate_nan() {
        assert!(go_max(1.0, f64::NAN).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert!(go_min(f64::NAN, 1.0).is_nan());
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(go_max(-0.0, 0.0).to_bits(), 0.0f64.to_bits());
    }
}
