//! The report page: its figures, tables and charts, and its styles, in one
//! HTML document. Each figure carries its exact value in `data-value`
//! (times in Unix milliseconds), so a test or a script can read the page
//! back without parsing formatted text.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::svg::{self, Part, Span, TimeBar, esc};
use super::{Meta, Timeline, buckets};
use crate::alert::backtest::Record;
use crate::alert::notify::rfc3339_millis;

const STYLE: &str = r#"
:root { --fg: #1d2330; --muted: #5b6475; --line: #d8dce4; --bg: #fff; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1040px; padding: 24px; font: 14px/1.45 system-ui, "Noto Sans CJK SC", "WenQuanYi Zen Hei", sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
p.note, .caption { color: var(--muted); margin: 4px 0; } p.empty { color: var(--muted); font-style: italic; }
dl.figures { display: grid; grid-template-columns: repeat(4, 1fr); gap: 8px; margin: 16px 0; }
dl.figures div { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
dl.figures dt { color: var(--muted); font-size: 12px; } dl.figures dd { margin: 0; font-size: 18px; font-weight: 600; }
svg.chart { width: 100%; height: auto; display: block; margin: 8px 0; }
svg .grid { stroke: #eceef2; stroke-width: 1; } svg .tick { fill: var(--muted); font-size: 11px; } svg .rowname { fill: var(--fg); font-size: 12px; }
svg .budget { stroke: #c0392b; stroke-width: 1.5; stroke-dasharray: 6 4; }
.lines { fill: #4f7cc4; } .err { fill: #d9534f; } .bad { fill: #f0a030; }
.pending { fill: #f3c04a; } .firing { fill: #d9534f; }
.s0 { fill: #4f7cc4; } .s1 { fill: #59a14f; } .s2 { fill: #e49444; } .s3 { fill: #b07aa1; } .s4 { fill: #76b7b2; } .s5 { fill: #edc948; } .s6 { fill: #9c755f; } .s7 { fill: #bab0ac; }
.key { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 12px; vertical-align: baseline; }
.key.lines { background: #4f7cc4; } .key.err { background: #d9534f; } .key.bad { background: #f0a030; } .key.pending { background: #f3c04a; } .key.firing { background: #d9534f; }
.key.s0 { background: #4f7cc4; } .key.s1 { background: #59a14f; } .key.s2 { background: #e49444; } .key.s3 { background: #b07aa1; } .key.s4 { background: #76b7b2; } .key.s5 { background: #edc948; } .key.s6 { background: #9c755f; } .key.s7 { background: #bab0ac; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; } tr.over td { color: #b02a20; font-weight: 600; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"#;

fn fmt_int(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

fn fmt_usd(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

fn fmt_width(ms: i64) -> String {
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{} d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms => format!("{} min", ms / 60_000),
    }
}

/// A figure of the summary: label, element id, exact value, shown text.
fn figure(out: &mut String, label: &str, id: &str, value: &str, text: &str) {
    let _ = write!(
        out,
        r#"<div><dt>{}</dt><dd id="{id}" data-value="{}">{}</dd></div>"#,
        esc(label),
        esc(value),
        esc(text)
    );
}

pub fn render(t: &Timeline, records: &[Record], meta: &Meta) -> String {
    let span = t.span();
    let from = span
        .map(|s| s.0)
        .into_iter()
        .chain(t.slots().first().map(|b| b.start_ms))
        .chain(records.iter().map(|r| r.pending_since))
        .min()
        .unwrap_or(0);
    let to = span
        .map(|s| s.1)
        .into_iter()
        .chain(records.iter().filter_map(|r| r.resolved_at))
        .max()
        .unwrap_or(from)
        .max(from + 1);
    let total_cost: f64 = t.costs().values().flat_map(|d| d.values()).sum();

    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"><title>weir back-test report</title><style>{STYLE}</style></head><body data-report="weir-backtest"><h1>weir back-test report</h1><p class="note">Pipeline <code>{}</code>; {} alerting rules evaluated on the logs' own time. Times are UTC.</p>"#,
        esc(&meta.pipeline),
        meta.rules,
    );

    out.push_str(r#"<dl class="figures">"#);
    match span {
        Some((first, last)) => {
            figure(
                &mut out,
                "logs from",
                "logs-from",
                &first.to_string(),
                &rfc3339_millis(first),
            );
            figure(
                &mut out,
                "logs to",
                "logs-to",
                &last.to_string(),
                &rfc3339_millis(last),
            );
        }
        None => {
            figure(&mut out, "logs from", "logs-from", "", "no lines");
            figure(&mut out, "logs to", "logs-to", "", "no lines");
        }
    }
    let l = t.totals();
    figure(
        &mut out,
        "lines counted",
        "total-lines",
        &l.lines.to_string(),
        &fmt_int(l.lines as f64),
    );
    figure(
        &mut out,
        "error lines (level)",
        "total-error-lines",
        &l.error_lines.to_string(),
        &fmt_int(l.error_lines as f64),
    );
    figure(
        &mut out,
        "lines not decoded",
        "total-decode-errors",
        &l.decode_errors.to_string(),
        &fmt_int(l.decode_errors as f64),
    );
    figure(
        &mut out,
        "late lines",
        "total-late-lines",
        &meta.late_lines.to_string(),
        &fmt_int(meta.late_lines as f64),
    );
    figure(
        &mut out,
        "alerts that fired",
        "total-alerts",
        &records.len().to_string(),
        &fmt_int(records.len() as f64),
    );
    figure(
        &mut out,
        "LLM cost",
        "total-cost",
        &total_cost.to_string(),
        &fmt_usd(total_cost),
    );
    out.push_str("</dl>");

    events_section(&mut out, t, from, to);
    cost_section(&mut out, t);
    alerts_section(&mut out, records, from, to);

    out.push_str(
        "<footer>Written by weir. Lines are counted at their own time, as the back-test counts them \
         for the rules; a line that could not be decoded has no time of its own and is placed where \
         it was read. Costs are the pipeline's <code>llm_daily_model_costs_usd</code> at the \
         back-test's last scrape of each day. Alert times are the back-test's (aligned evaluation \
         steps).</footer></body></html>\n",
    );
    out
}

fn events_section(out: &mut String, t: &Timeline, from: i64, to: i64) {
    out.push_str("<h2>Events and errors over time</h2>");
    let (width, bs) = buckets(t.slots(), from, to);
    if bs.is_empty() {
        out.push_str(r#"<p class="empty" id="events-empty">no lines were counted</p>"#);
        return;
    }
    let span_to = to.max(bs.last().map_or(to, |b| b.start_ms + width));
    let bar = |b: &super::Bucket, parts: Vec<Part>| TimeBar {
        start_ms: b.start_ms,
        end_ms: b.start_ms + width,
        parts,
    };
    let when =
        |b: &super::Bucket| format!("{} (+{})", rfc3339_millis(b.start_ms), fmt_width(width));
    let lines: Vec<TimeBar> = bs
        .iter()
        .map(|b| {
            bar(
                b,
                vec![Part {
                    class: "lines".into(),
                    value: b.lines as f64,
                    title: format!("{}: {} lines", when(b), fmt_int(b.lines as f64)),
                    data: r#" data-kind="lines""#.into(),
                }],
            )
        })
        .collect();
    let errors: Vec<TimeBar> = bs
        .iter()
        .map(|b| {
            bar(
                b,
                vec![
                    Part {
                        class: "err".into(),
                        value: b.error_lines as f64,
                        title: format!(
                            "{}: {} error lines",
                            when(b),
                            fmt_int(b.error_lines as f64)
                        ),
                        data: r#" data-kind="error_lines""#.into(),
                    },
                    Part {
                        class: "bad".into(),
                        value: b.decode_errors as f64,
                        title: format!(
                            "{}: {} lines not decoded",
                            when(b),
                            fmt_int(b.decode_errors as f64)
                        ),
                        data: r#" data-kind="decode_errors""#.into(),
                    },
                ],
            )
        })
        .collect();
    let _ = write!(
        out,
        r#"<p class="caption"><span class="key lines"></span>lines per {w}</p>{}<p class="caption"><span class="key err"></span>lines whose level is an error<span class="key bad"></span>lines that could not be decoded, per {w}</p>{}"#,
        svg::time_bars(
            "chart-events",
            "lines over time",
            from,
            span_to,
            &lines,
            &fmt_int
        ),
        svg::time_bars(
            "chart-errors",
            "errors over time",
            from,
            span_to,
            &errors,
            &fmt_int
        ),
        w = fmt_width(width),
    );
}

fn cost_section(out: &mut String, t: &Timeline) {
    out.push_str("<h2>LLM cost per day and model</h2>");
    let costs = t.costs();
    if costs.is_empty() {
        out.push_str(r#"<p class="empty" id="cost-empty">no LLM cost was booked: the pipeline has no <code>costs:</code> block, or the logs hold no LLM call</p>"#);
        return;
    }
    let models: Vec<&String> = costs
        .values()
        .flat_map(|d| d.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let class = |m: &str| format!("s{}", models.iter().position(|x| *x == m).unwrap_or(0) % 8);
    let cats: Vec<(String, Vec<Part>)> = costs
        .iter()
        .map(|(date, by_model)| {
            let parts = by_model
                .iter()
                .map(|(m, v)| Part {
                    class: class(m),
                    value: *v,
                    title: format!("{date} {m}: {}", fmt_usd(*v)),
                    data: format!(r#" data-date="{}" data-model="{}""#, esc(date), esc(m)),
                })
                .collect();
            (date.clone(), parts)
        })
        .collect();
    let budget = t.budget();
    let line = budget.map(|b| (b, format!("daily budget {}", fmt_usd(b))));
    out.push_str(r#"<p class="caption">"#);
    for m in &models {
        let _ = write!(out, r#"<span class="key {}"></span>{}"#, class(m), esc(m));
    }
    if let Some(b) = budget {
        let _ = write!(out, " · dashed: the daily budget, {}", fmt_usd(b));
    }
    out.push_str("</p>");
    out.push_str(&svg::category_bars(
        "chart-cost",
        "LLM cost per day and model",
        &cats,
        line,
        &fmt_usd,
    ));
    out.push_str(r#"<table id="cost-table"><tr><th>day</th>"#);
    for m in &models {
        let _ = write!(out, r#"<th class="num">{}</th>"#, esc(m));
    }
    out.push_str(r#"<th class="num">total</th></tr>"#);
    for (date, by_model) in costs {
        let total: f64 = by_model.values().sum();
        let over = budget.is_some_and(|b| total > b);
        let _ = write!(
            out,
            r#"<tr data-date="{}"{}><td>{}</td>"#,
            esc(date),
            if over { r#" class="over""# } else { "" },
            esc(date)
        );
        for m in &models {
            match by_model.get(*m) {
                Some(v) => {
                    let _ = write!(
                        out,
                        r#"<td class="num" data-date="{}" data-model="{}" data-value="{v}">{}</td>"#,
                        esc(date),
                        esc(m),
                        fmt_usd(*v)
                    );
                }
                None => out.push_str(r#"<td class="num">—</td>"#),
            }
        }
        let _ = write!(
            out,
            r#"<td class="num" data-date="{}" data-total="{total}">{}{}</td></tr>"#,
            esc(date),
            fmt_usd(total),
            if over { " over budget" } else { "" }
        );
    }
    out.push_str("</table>");
}

fn alerts_section(out: &mut String, records: &[Record], from: i64, to: i64) {
    out.push_str("<h2>Alerts: pending, firing, resolved</h2>");
    if records.is_empty() {
        out.push_str(r#"<p class="empty" id="alerts-empty">no alert would have fired</p>"#);
        return;
    }
    let rows: Vec<(String, Vec<Span>)> = records
        .iter()
        .map(|r| {
            let fired = r.firing_from.unwrap_or(r.pending_since);
            let end = r.resolved_at.unwrap_or(to);
            let mut spans = Vec::new();
            if fired > r.pending_since {
                spans.push(Span {
                    class: "pending",
                    start_ms: r.pending_since,
                    end_ms: fired,
                    title: format!("pending from {}", rfc3339_millis(r.pending_since)),
                });
            }
            spans.push(Span {
                class: "firing",
                start_ms: fired,
                end_ms: end,
                title: match r.resolved_at {
                    Some(res) => format!(
                        "firing {} to {}",
                        rfc3339_millis(fired),
                        rfc3339_millis(res)
                    ),
                    None => format!(
                        "firing from {}, still firing at the end",
                        rfc3339_millis(fired)
                    ),
                },
            });
            (r.name_with_labels(", "), spans)
        })
        .collect();
    out.push_str(r#"<p class="caption"><span class="key pending"></span>pending<span class="key firing"></span>firing (to its resolution, or to the end of the logs)</p>"#);
    out.push_str(&svg::timeline(
        "chart-alerts",
        "alert timelines",
        from,
        to,
        &rows,
    ));
    out.push_str(r#"<table id="alerts-table"><tr><th>alert</th><th>pending since</th><th>firing from</th><th>resolved at</th><th class="num">peak</th><th>summary</th></tr>"#);
    let ms = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in records {
        let summary = r
            .annotations
            .iter()
            .find(|(k, _)| k == "summary")
            .or(r.annotations.first())
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let _ = write!(
            out,
            r#"<tr class="alert" data-alertname="{}" data-pending-since="{}" data-firing-from="{}" data-resolved-at="{}" data-peak="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            esc(r.labels.get("alertname")),
            r.pending_since,
            ms(r.firing_from),
            ms(r.resolved_at),
            r.peak,
            esc(&r.name_with_labels(", ")),
            rfc3339_millis(r.pending_since),
            r.firing_from.map(rfc3339_millis).unwrap_or_default(),
            r.resolved_at
                .map(rfc3339_millis)
                .unwrap_or_else(|| "still firing".into()),
            esc(&crate::alert::promql::format_float(r.peak)),
            esc(summary),
        );
    }
    out.push_str("</table>");
}
