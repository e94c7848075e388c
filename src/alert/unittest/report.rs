//! How promtool 2.42 prints unit-test failures: label sets, alert lists
//! (`labelsAndAnnotations.String`), samples (`%E` values) and the two
//! duration formats (Go's `time.Duration` and Prometheus' `model.Duration`).

use crate::alert::promql::Labels;
use crate::alert::promql::format::{format_float_upper_e, go_quote};

/// Label or annotation pairs sorted by name; empty values kept (as Go's
/// `labels.FromMap` keeps them).
pub type Pairs = Vec<(String, String)>;

/// Alerts as (labels, annotations), compared as sorted lists.
pub type AlertSet = Vec<(Pairs, Pairs)>;

/// `{a="b", c="d"}`.
pub fn pairs_string(p: &Pairs) -> String {
    let inner: Vec<String> = p
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Prefixes every line but the first with `indent` (promtool's
/// `indentLines`).
pub fn indent_lines(lines: &str, indent: &str) -> String {
    lines
        .split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

/// promtool's `labelsAndAnnotations.String()`.
pub fn alerts_string(la: &AlertSet) -> String {
    if la.is_empty() {
        return "[]".into();
    }
    let one = |(l, a): &(Pairs, Pairs)| {
        let s = format!(
            "\nLabels:{}\nAnnotations:{}",
            pairs_string(l),
            pairs_string(a)
        );
        indent_lines(&s, "  ")
    };
    let mut s = format!("[\n0:{}", one(&la[0]));
    for (i, x) in la[1..].iter().enumerate() {
        s += &format!(",\n{}:{}", i + 1, one(x));
    }
    s + "\n]"
}

/// promtool's `parsedSamplesString`: `{…} 1E+00, {…} 2.5E+00`, or `nil`.
pub fn samples_string(s: &[(Labels, f64)]) -> String {
    if s.is_empty() {
        return "nil".into();
    }
    s.iter()
        .map(|(l, v)| format!("{l} {}", format_float_upper_e(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prometheus' `model.Duration.String()`: `0s`, `1m30s`, `2h`, `1d`, `1w`.
pub fn model_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut ms = ms;
    let mut r = String::new();
    const DAY: i64 = 86_400_000;
    let units: [(&str, i64, bool); 7] = [
        ("y", 365 * DAY, true),
        ("w", 7 * DAY, true),
        ("d", DAY, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ];
    for (unit, mult, exact) in units {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            r += &format!("{v}{unit}");
            ms -= v * mult;
        }
    }
    r
}

/// Go's `time.Duration.String()` for whole milliseconds: `0s`, `500ms`,
/// `1m0s`, `1h30m0s`, `1.5s`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{neg}{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{neg}{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{neg}{m}m{secs}")
    } else {
        format!("{neg}{secs}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go() {
        assert_eq!(model_duration(90_000), "1m30s");
        assert_eq!(model_duration(7 * 86_400_000), "1w");
        assert_eq!(model_duration(8 * 86_400_000), "8d");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(5_400_000), "1h30m0s");
        assert_eq!(go_duration(1_500), "1.5s");
        assert_eq!(go_duration(250), "250ms");
    }

    #[test]
    fn alert_lists_as_promtool() {
        let la: AlertSet = vec![(
            vec![("alertname".into(), "A".into())],
            vec![("s".into(), "x".into())],
        )];
        assert_eq!(
            alerts_string(&la),
            "[\n0:\n  Labels:{alertname=\"A\"}\n  Annotations:{s=\"x\"}\n]"
        );
    }
}
