//! The report's charts as inline SVG, drawn here rather than by a script:
//! bars over time, stacked bars per category, and rows of intervals on a
//! time axis. Every mark carries its figures in `data-*` attributes and a
//! `<title>` (the browser's tooltip). Colours come from the page's CSS
//! classes (`s0`…`s7`, `pending`, `firing`).
//!
//! Not a charting library: no legends beyond what the report writes next
//! to a chart, no interaction, no log scales.

use std::fmt::Write as _;

/// The drawing's width in user units; the page scales it to fit.
const W: f64 = 960.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const AXIS: f64 = 26.0;

/// Escapes text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (1 for nothing).
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// A UTC time as the axis writes it: the date when ticks are a day or
/// more apart, else the time of day (with the date at midnight).
pub fn fmt_time(ms: i64, step_ms: i64) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
        return ms.to_string();
    };
    let z = ts.to_zoned(jiff::tz::TimeZone::UTC);
    if step_ms >= 86_400_000 || (z.hour() == 0 && z.minute() == 0) {
        z.strftime("%m-%d").to_string()
    } else {
        z.strftime("%H:%M").to_string()
    }
}

/// Tick times within `[from, to]`, about six of them, at round times.
fn time_ticks(from: i64, to: i64) -> (i64, Vec<i64>) {
    const STEPS: [i64; 12] = [
        60_000,
        5 * 60_000,
        10 * 60_000,
        15 * 60_000,
        30 * 60_000,
        3_600_000,
        2 * 3_600_000,
        3 * 3_600_000,
        6 * 3_600_000,
        12 * 3_600_000,
        86_400_000,
        7 * 86_400_000,
    ];
    let span = (to - from).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8)
        .unwrap_or(30 * 86_400_000);
    let mut t = from.div_euclid(step) * step;
    if t < from {
        t += step;
    }
    let mut out = Vec::new();
    while t <= to {
        out.push(t);
        t += step;
    }
    (step, out)
}

/// Maps times to x between the margins.
struct TimeAxis {
    from: i64,
    to: i64,
}

impl TimeAxis {
    fn x(&self, t: i64) -> f64 {
        let span = (self.to - self.from).max(1) as f64;
        LEFT + (t.clamp(self.from, self.to) - self.from) as f64 / span * (W - LEFT - RIGHT)
    }

    /// Vertical grid lines and labels under a plot of height `h`.
    fn draw(&self, out: &mut String, h: f64) {
        let (step, ticks) = time_ticks(self.from, self.to);
        for t in ticks {
            let x = self.x(t);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{y:.1}"/><text class="tick" x="{x:.1}" y="{ty:.1}" text-anchor="middle">{}</text>"#,
                esc(&fmt_time(t, step)),
                y = TOP + h,
                ty = TOP + h + 16.0,
            );
        }
    }
}

/// Horizontal grid lines and labels from 0 to `max`, on a plot of height `h`.
fn value_axis(out: &mut String, max: f64, h: f64, fmt: &dyn Fn(f64) -> String) {
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = TOP + h - h * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}"/><text class="tick" x="{tx}" y="{ty:.1}" text-anchor="end">{}</text>"#,
            esc(&fmt(v)),
            x2 = W - RIGHT,
            tx = LEFT - 6.0,
            ty = y + 4.0,
        );
    }
}

fn open(out: &mut String, id: &str, h: f64, label: &str) {
    let _ = write!(
        out,
        r#"<svg id="{}" class="chart" viewBox="0 0 {W} {vh}" role="img" aria-label="{}">"#,
        esc(id),
        esc(label),
        vh = TOP + h + AXIS,
    );
}

/// One part of a bar: a CSS class, its value, and its tooltip.
pub struct Part {
    pub class: String,
    pub value: f64,
    pub title: String,
    /// Extra `data-*` attributes, written as they are (already escaped).
    pub data: String,
}

/// A bar over `[start_ms, end_ms)` made of stacked parts.
pub struct TimeBar {
    pub start_ms: i64,
    pub end_ms: i64,
    pub parts: Vec<Part>,
}

/// Stacked bars on a time axis from `from` to `to`.
pub fn time_bars(
    id: &str,
    label: &str,
    from: i64,
    to: i64,
    bars: &[TimeBar],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let h = 180.0;
    let axis = TimeAxis { from, to };
    let top = bars
        .iter()
        .map(|b| b.parts.iter().map(|p| p.value).sum::<f64>())
        .fold(0.0, f64::max);
    let max = nice_max(top);
    let mut out = String::new();
    open(&mut out, id, h, label);
    value_axis(&mut out, max, h, fmt);
    axis.draw(&mut out, h);
    for b in bars {
        let (x0, x1) = (axis.x(b.start_ms), axis.x(b.end_ms));
        let w = (x1 - x0 - 1.0).max(1.0);
        let mut base = 0.0;
        for p in &b.parts {
            let y1 = TOP + h - h * (base + p.value) / max;
            let y0 = TOP + h - h * base / max;
            base += p.value;
            let _ = write!(
                out,
                r#"<rect class="{}" x="{x0:.1}" y="{y1:.1}" width="{w:.1}" height="{:.1}" data-start="{}" data-end="{}" data-value="{}"{}><title>{}</title></rect>"#,
                esc(&p.class),
                (y0 - y1).max(0.0),
                b.start_ms,
                b.end_ms,
                p.value,
                p.data,
                esc(&p.title),
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// Stacked bars, one per category (a day), with an optional dashed line at
/// `line` (the budget).
pub fn category_bars(
    id: &str,
    label: &str,
    cats: &[(String, Vec<Part>)],
    line: Option<(f64, String)>,
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let h = 180.0;
    let top = cats
        .iter()
        .map(|(_, parts)| parts.iter().map(|p| p.value).sum::<f64>())
        .fold(line.as_ref().map_or(0.0, |l| l.0), f64::max);
    let max = nice_max(top);
    let mut out = String::new();
    open(&mut out, id, h, label);
    value_axis(&mut out, max, h, fmt);
    let n = cats.len().max(1) as f64;
    let slot = (W - LEFT - RIGHT) / n;
    let bw = (slot * 0.6).min(80.0);
    for (i, (name, parts)) in cats.iter().enumerate() {
        let cx = LEFT + slot * (i as f64 + 0.5);
        let mut base = 0.0;
        for p in parts {
            let y1 = TOP + h - h * (base + p.value) / max;
            let y0 = TOP + h - h * base / max;
            base += p.value;
            let _ = write!(
                out,
                r#"<rect class="{}" x="{:.1}" y="{y1:.1}" width="{bw:.1}" height="{:.1}" data-value="{}"{}><title>{}</title></rect>"#,
                esc(&p.class),
                cx - bw / 2.0,
                (y0 - y1).max(0.0),
                p.value,
                p.data,
                esc(&p.title),
            );
        }
        let _ = write!(
            out,
            r#"<text class="tick" x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + h + 16.0,
            esc(name),
        );
    }
    if let Some((v, title)) = line {
        let y = TOP + h - h * v / max;
        let _ = write!(
            out,
            r#"<line class="budget" x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" data-value="{v}"><title>{}</title></line>"#,
            W - RIGHT,
            esc(&title),
        );
    }
    out.push_str("</svg>");
    out
}

/// An interval of one row of a timeline.
pub struct Span {
    pub class: &'static str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub title: String,
}

/// Rows of intervals on a time axis from `from` to `to`, each row named.
pub fn timeline(id: &str, label: &str, from: i64, to: i64, rows: &[(String, Vec<Span>)]) -> String {
    let row_h = 22.0;
    let h = (rows.len().max(1) as f64) * row_h;
    let axis = TimeAxis { from, to };
    let mut out = String::new();
    open(&mut out, id, h, label);
    axis.draw(&mut out, h);
    for (i, (name, spans)) in rows.iter().enumerate() {
        let y = TOP + i as f64 * row_h;
        let _ = write!(
            out,
            r#"<text class="rowname" x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 4.0,
            y + 15.0,
            esc(name),
        );
        for s in spans {
            let (x0, x1) = (axis.x(s.start_ms), axis.x(s.end_ms));
            let _ = write!(
                out,
                r#"<rect class="{}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" data-start="{}" data-end="{}"><title>{}</title></rect>"#,
                s.class,
                y + 3.0,
                (x1 - x0).max(2.0),
                row_h - 6.0,
                s.start_ms,
                s.end_ms,
                esc(&s.title),
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima_and_ticks() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(101.0), 200.0);
        // An hour from 06:00: ticks every 10 minutes, on the minute.
        let from = 1_795_586_400_000;
        let (step, ticks) = time_ticks(from, from + 3_600_000);
        assert_eq!(step, 10 * 60_000);
        assert_eq!(ticks.len(), 7);
        assert_eq!(fmt_time(ticks[1], step), "06:10");
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
