//! Lint 5: per-second rates compared with thresholds sized per minute or
//! per hour (or as a count over a window), and rates of gauges.

use std::sync::LazyLock;

use promql_parser::parser::{Expr, MatrixSelector};
use promql_parser::util::display_duration;
use regex::Regex;

use super::catalog::Catalog;
use super::{Found, LintKind, compared_with_number, unparen};

/// Lint 5, second part.
pub(super) fn rate_of_gauge(e: &Expr, cat: &Catalog, out: &mut Found) {
    let Expr::Call(c) = e else {
        return;
    };
    let f = c.func.name;
    if !matches!(f, "rate" | "irate" | "increase") {
        return;
    }
    let Some(Expr::MatrixSelector(m)) = c.args.args.first().map(|a| a.as_ref()) else {
        return;
    };
    let Some(name) = m.vs.name.as_deref() else {
        return;
    };
    if !cat.find(name).is_some_and(|found| found.is_gauge()) {
        return;
    }
    let range = display_duration(&m.range);
    out.push((
        LintKind::RateOfGauge,
        format!(
            "{f}() of `{name}`, a gauge: {f}() is for counters and reads every fall of a gauge as a counter reset, so the result is wrong"
        ),
        Some(format!(
            "for how a gauge changes use `delta({name}[{range}])` or `deriv({name}[{range}])`, or compare `{name}` itself"
        )),
    ));
}

/// Whether `e` is a per-second rate, summed or not (sums and differences
/// of rates are too; a product or a ratio is scaled or unitless).
fn per_second(e: &Expr) -> Option<&MatrixSelector> {
    match unparen(e) {
        Expr::Call(c) if matches!(c.func.name, "rate" | "irate") => {
            match c.args.args.first().map(|a| a.as_ref()) {
                Some(Expr::MatrixSelector(m)) => Some(m),
                _ => None,
            }
        }
        Expr::Aggregate(a)
            if matches!(
                a.op.to_string().as_str(),
                "sum" | "max" | "min" | "avg" | "topk" | "bottomk" | "quantile"
            ) =>
        {
            per_second(&a.expr)
        }
        Expr::Binary(b) if matches!(b.op.to_string().as_str(), "+" | "-") => {
            let l = per_second(&b.lhs)?;
            per_second(&b.rhs).map(|_| l)
        }
        _ => None,
    }
}

static PER_MINUTE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)per[ -]minute|\ba minute\b|/min\b|每分钟|每分").expect("valid regex")
});
static PER_HOUR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)per[ -]hour|\bhours?\b|hourly|/h\b|每小时|小时").expect("valid regex")
});
static WINDOW_COUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(\d+)\s*分钟内[^，。,;；]*?[数次]|\b(?:count|number) of [^.]*\bin (?:the last )?(\d+) ?min(?:ute)?s?\b")
        .expect("valid regex")
});

/// Lint 5, first part.
pub(super) fn rate_units(e: &Expr, text: &str, out: &mut Found) {
    let Some((side, op, n)) = compared_with_number(e) else {
        return;
    };
    let Some(m) = per_second(side) else {
        return;
    };
    let range = display_duration(&m.range);
    let per = |re: &Regex, unit: &str, secs: f64| {
        re.find(text).map(|p| {
            (
                format!(
                    "rate() is per second, but the rule speaks of a threshold per {unit} (\"{}\"): `{op} {n}` means {op} {} per {unit}",
                    p.as_str(),
                    n * secs
                ),
                format!(
                    "compare `({}) * {secs} {op} {n}`, or use increase(...[1{}])",
                    unparen(side),
                    &unit[..1]
                ),
            )
        })
    };
    let found = per(&PER_MINUTE, "minute", 60.0)
        .or_else(|| per(&PER_HOUR, "hour", 3600.0))
        .or_else(|| {
            WINDOW_COUNT.captures(text).map(|c| {
                let whole = c.get(0).map_or("", |m| m.as_str());
                let mins = c.get(1).or(c.get(2)).map_or("", |m| m.as_str());
                (
                    format!(
                        "rate() is per second, but the rule speaks of a count over {mins} minutes (\"{whole}\"): `{op} {n}` is {n} per second"
                    ),
                    format!("count with increase(...[{mins}m]) instead of rate(...[{range}])"),
                )
            })
        });
    if let Some((message, hint)) = found {
        out.push((LintKind::RateUnits, message, Some(hint)));
    }
}
