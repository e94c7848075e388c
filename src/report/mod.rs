//! The back-test report (`--report report.html` on `weir run --once` and
//! `weir backtest`): what the replay saw over the logs' own time, in one
//! self-contained HTML file.
//!
//! [`Timeline`] is filled by the back-test at each of its scrapes, the same
//! moments the rules see: the lines counted so far, those among them whose
//! `level` says error, the lines that could not be decoded, and each day's
//! LLM cost by model. [`write`] turns it and the back-test's alert records
//! into HTML ([`html`]) whose charts are inline SVG drawn here: no script,
//! nothing fetched, so it opens from disk, a CI artifact or an e-mail.
//!
//! Deliberately not here: evaluating anything again. Every figure is one
//! the back-test had, and each alert's pending, firing and resolved times
//! are its records. A line that could not be decoded has no time of its
//! own, so it is placed at the step during which it was read.

mod html;
mod svg;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use crate::alert::backtest::Record;
use crate::alert::promql::Labels;
use crate::event::Event;
use crate::telemetry::Registry;

/// The family of each day's cost by model (see `metrics::cost`).
pub const DAILY_MODEL_COSTS: &str = "llm_daily_model_costs_usd";
/// The family of the daily budget.
pub const DAILY_BUDGET: &str = "llm_daily_budget_usd";

/// Counts of lines are kept per slot of this many ms of the logs' time;
/// every bar width is a multiple of it.
const SLOT_MS: i64 = 10_000;

/// The lines of one slot `[start_ms, start_ms + SLOT_MS)`, or of one bar.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bucket {
    pub start_ms: i64,
    pub lines: u64,
    pub error_lines: u64,
    pub decode_errors: u64,
}

/// What the report shows, gathered during a back-test.
pub struct Timeline {
    registry: Registry,
    /// By start, ascending.
    slots: Vec<Bucket>,
    /// The first and the last scrape.
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    /// Untimed lines seen before the first scrape: they go to its slot.
    early: Bucket,
    decode_errors_seen: u64,
    /// date → model → USD, the newest value of each (a day's cost only grows).
    costs: BTreeMap<String, BTreeMap<String, f64>>,
    budget: Option<f64>,
}

/// Whether an event's `level` says it is an error (`ERROR`, `CRITICAL`,
/// `FATAL`, … in any case), as Python's logging and most loggers write it.
pub fn is_error(event: &Event) -> bool {
    event.get_text("level").is_some_and(|l| {
        [
            "error", "err", "critical", "crit", "fatal", "alert", "emerg",
        ]
        .iter()
        .any(|e| l.eq_ignore_ascii_case(e))
    })
}

/// Lines counted together: (their time in ms, whether an error), grouped
/// by slot as `(slot start, lines, errors)`.
pub fn by_slot(lines: impl Iterator<Item = (i64, bool)>) -> Vec<(i64, u64, u64)> {
    let mut out: Vec<(i64, u64, u64)> = Vec::new();
    for (t, error) in lines {
        let slot = t.div_euclid(SLOT_MS) * SLOT_MS;
        match out.last_mut() {
            Some(last) if last.0 == slot => {
                last.1 += 1;
                last.2 += u64::from(error);
            }
            _ => out.push((slot, 1, u64::from(error))),
        }
    }
    out
}

impl Timeline {
    /// An empty timeline; decode errors are read from `registry`.
    pub fn new(registry: Registry) -> Timeline {
        Timeline {
            registry,
            slots: Vec::new(),
            first_ms: None,
            last_ms: None,
            early: Bucket::default(),
            decode_errors_seen: 0,
            costs: BTreeMap::new(),
            budget: None,
        }
    }

    /// Whether the report reads the metric family `name` from scrapes.
    pub fn wants(name: &str) -> bool {
        name == DAILY_MODEL_COSTS || name == DAILY_BUDGET
    }

    fn slot(&mut self, start_ms: i64) -> &mut Bucket {
        // Lines come in time order, so this is nearly always the last slot.
        let i = match self.slots.last() {
            Some(l) if l.start_ms == start_ms => self.slots.len() - 1,
            _ => match self.slots.binary_search_by_key(&start_ms, |b| b.start_ms) {
                Ok(i) => i,
                Err(i) => {
                    let new = Bucket {
                        start_ms,
                        ..Bucket::default()
                    };
                    self.slots.insert(i, new);
                    i
                }
            },
        };
        &mut self.slots[i]
    }

    /// Lines counted at their own time, as [`by_slot`] grouped them.
    pub fn count(&mut self, groups: &[(i64, u64, u64)]) {
        for &(slot, lines, errors) in groups {
            let b = self.slot(slot);
            b.lines += lines;
            b.error_lines += errors;
        }
    }

    /// Lines without a time of their own, counted at the current step.
    pub fn count_now(&mut self, lines: u64, errors: u64) {
        match self.last_ms {
            Some(t) => {
                let b = self.slot((t - 1).div_euclid(SLOT_MS) * SLOT_MS);
                b.lines += lines;
                b.error_lines += errors;
            }
            None => {
                self.early.lines += lines;
                self.early.error_lines += errors;
            }
        }
    }

    /// A scrape at `t_ms`; `samples` when it was refreshed (something was
    /// counted since the last one). Lines that could not be decoded since
    /// the last scrape are placed just before it.
    pub fn scrape(&mut self, t_ms: i64, samples: Option<&[(Labels, f64)]>) {
        self.first_ms.get_or_insert(t_ms);
        self.last_ms = Some(t_ms);
        let slot = (t_ms - 1).div_euclid(SLOT_MS) * SLOT_MS;
        let early = std::mem::take(&mut self.early);
        let decode_errors = self.registry.sum("weir_decode_errors_total").max(0) as u64;
        let new = decode_errors.saturating_sub(self.decode_errors_seen);
        self.decode_errors_seen = decode_errors;
        if new > 0 || early.lines > 0 {
            let b = self.slot(slot);
            b.decode_errors += new;
            b.lines += early.lines;
            b.error_lines += early.error_lines;
        }
        for (labels, v) in samples.unwrap_or_default() {
            match labels.get(crate::alert::promql::value::METRIC_NAME) {
                DAILY_MODEL_COSTS => {
                    let day = self
                        .costs
                        .entry(labels.get("date").to_string())
                        .or_default();
                    day.insert(labels.get("model").to_string(), *v);
                }
                DAILY_BUDGET => self.budget = Some(*v),
                _ => {}
            }
        }
    }

    /// After the last line: what was read since the last scrape (decode
    /// errors at the very end included) goes with it.
    pub fn close(&mut self) {
        if let Some(t) = self.last_ms {
            self.scrape(t, None);
        }
    }

    /// The slots with lines, in time order.
    pub fn slots(&self) -> &[Bucket] {
        &self.slots
    }

    /// The first and the last scrape.
    pub fn span(&self) -> Option<(i64, i64)> {
        Some((self.first_ms?, self.last_ms?))
    }

    /// Everything counted: lines, error lines, lines not decoded.
    pub fn totals(&self) -> Bucket {
        let mut t = self.early;
        for b in &self.slots {
            t.lines += b.lines;
            t.error_lines += b.error_lines;
            t.decode_errors += b.decode_errors;
        }
        t
    }

    pub fn costs(&self) -> &BTreeMap<String, BTreeMap<String, f64>> {
        &self.costs
    }

    pub fn budget(&self) -> Option<f64> {
        self.budget
    }
}

/// What the report says about the run itself.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// The pipeline file (or "<embedded feynman.yaml>").
    pub pipeline: String,
    /// How many alerting rules were evaluated.
    pub rules: usize,
    /// Lines later than the out-of-order window, counted at the current step.
    pub late_lines: u64,
}

/// Writes the report to `path` (through a temporary file beside it, so a
/// reader never sees half of it).
pub fn write(
    path: &Path,
    timeline: &Timeline,
    records: &[Record],
    meta: &Meta,
) -> std::io::Result<()> {
    let page = html::render(timeline, records, meta);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(page.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Bar widths the charts choose from, in ms (multiples of [`SLOT_MS`]).
const WIDTHS: [i64; 11] = [
    60_000,
    5 * 60_000,
    15 * 60_000,
    30 * 60_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
    30 * 86_400_000,
];

/// At most this many bars per chart.
const MAX_BUCKETS: i64 = 120;

/// The slots merged into aligned bars `[start, start + width)` of the
/// smallest width that keeps them to [`MAX_BUCKETS`] over `[from, to)`;
/// stretches without lines are bars of zero.
pub fn buckets(slots: &[Bucket], from: i64, to: i64) -> (i64, Vec<Bucket>) {
    let span = (to - from).max(1);
    let width = WIDTHS
        .iter()
        .copied()
        .find(|w| span / w < MAX_BUCKETS)
        .unwrap_or(WIDTHS[WIDTHS.len() - 1]);
    let start = |t: i64| t.div_euclid(width) * width;
    let mut out: Vec<Bucket> = Vec::new();
    let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
        return (width, out);
    };
    let mut t = start(first.start_ms.min(from));
    let end = start(last.start_ms).max(start(to - 1));
    while t <= end {
        out.push(Bucket {
            start_ms: t,
            ..Bucket::default()
        });
        t += width;
    }
    let base = out[0].start_ms;
    for s in slots {
        let b = &mut out[((start(s.start_ms) - base) / width) as usize];
        b.lines += s.lines;
        b.error_lines += s.error_lines;
        b.decode_errors += s.decode_errors;
    }
    (width, out)
}

#[cfg(test)]
mod tests;
