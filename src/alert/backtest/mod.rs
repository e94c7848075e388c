//! Back-testing: the rules evaluated on the logs' own time, as a live run
//! would have evaluated them while the logs were written.
//!
//! In `weir run --once` with an `alerting:` section, and in `weir
//! backtest`, the metrics sink hands its events to a [`Backtest`] in time
//! order ([`feed`]): before an event at time `t` is counted, every scrape
//! and group evaluation due before `t` runs, so a step at `T` sees exactly
//! the lines whose time is at or before `T`. Scrapes and evaluations fall
//! on the same aligned times as live (multiples of `scrape_interval` and of
//! each group's interval), over the same history and state machine.
//!
//! Every alert that reached firing is recorded — labels, rendered
//! annotations, pending since, firing from, resolved at, peak value — in
//! `<data_dir>/backtest/alerts.ndjson`, and [`Backtest::table`] is the
//! short summary printed at the end. Notifiers are called only when asked
//! (`--notify`): a back-test never pages anyone by accident.
//!
//! Deliberately not here: self-metrics (a back-test's `weir_*` counters
//! describe the replay, not the past, so rules over them see only what the
//! metrics sink derived), and evaluating past the last line.

mod feed;
pub mod pipeline;
mod snapshot;

pub use snapshot::Snapshot;

pub use feed::drive;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::json;
use tokio::sync::mpsc;

use super::group::{GroupEval, RuleResults};
use super::live::history::History;
use super::live::{Alerting, due_alerts};
use super::notify::{NotifyAlert, rfc3339_millis};
use super::promql::Labels;
use super::rules::RuleKind;
use super::state::{AlertState, Expander};

/// How a back-test runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Lines before this time (ms) are left out.
    pub from_ms: Option<i64>,
    /// Lines after this time (ms) are left out.
    pub to_ms: Option<i64>,
    /// How late a line may come (behind the newest seen) and still be
    /// counted at its own time.
    pub window_ms: i64,
    /// Where due alerts go when notifiers are asked for (`--notify`).
    pub notify: Option<mpsc::Sender<Vec<NotifyAlert>>>,
}

/// One alert that would have fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub group: String,
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub pending_since: i64,
    pub firing_from: Option<i64>,
    pub resolved_at: Option<i64>,
    pub peak: f64,
}

impl Record {
    /// `Name {label=value<sep>…}`: the alert's name and its other labels.
    pub fn name_with_labels(&self, sep: &str) -> String {
        let others: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} {{{}}}", self.labels.get("alertname"), others.join(sep))
    }
}

struct GroupRun {
    eval: GroupEval,
    interval_ms: i64,
    next_ms: Option<i64>,
}

struct Inner {
    history: History,
    results: RuleResults,
    groups: Vec<GroupRun>,
    scrape_ms: i64,
    next_scrape: Option<i64>,
    external_labels: Labels,
    external_url: String,
    resend_delay_ms: i64,
    /// The last scrape, refreshed only when something was counted.
    snapshot: Snapshot,
    changed: bool,
    records: Vec<Record>,
    /// Open records by (group, rule, labels).
    open: HashMap<(usize, usize, Labels), usize>,
    /// The simulated time: the last step run.
    now: Option<i64>,
    last_progress: Instant,
    lines: u64,
    /// Due alerts not yet handed to the notifiers (`--notify`).
    to_notify: Vec<NotifyAlert>,
    /// What `--report` shows, when asked for.
    report: Option<crate::report::Timeline>,
}

/// A back-test in progress; the metrics sink drives it (see [`feed`]).
pub struct Backtest {
    inner: Mutex<Inner>,
    /// The metric names the rules read (`None`: any may be).
    wanted: Option<std::collections::HashSet<String>>,
    claimed: AtomicBool,
    opts: Options,
    out: PathBuf,
    /// How many alerting rules run.
    rules: usize,
    reporting: bool,
}

impl Backtest {
    /// A back-test of `alerting`'s rules writing to `<out_dir>/backtest/`.
    pub fn new(alerting: &Alerting, out_dir: &Path, opts: Options) -> Backtest {
        let cfg = &alerting.config;
        let eval_ms = alerting.eval_ms();
        let retention = alerting.retention_ms();
        let mut names = std::collections::HashSet::new();
        let all_named = alerting
            .groups
            .iter()
            .flat_map(|g| &g.group.rules)
            .all(|r| super::group::selector_names(&r.expr, &mut names));
        let groups = alerting
            .groups
            .iter()
            .map(|g| GroupRun {
                eval: GroupEval::new(g.group.clone()).with_subquery_step_ms(eval_ms),
                interval_ms: alerting.interval_ms(g),
                next_ms: None,
            })
            .collect();
        Backtest {
            inner: Mutex::new(Inner {
                history: History::new(retention, cfg.max_series),
                results: RuleResults::new(retention),
                groups,
                scrape_ms: alerting.scrape_ms(),
                next_scrape: None,
                external_labels: Labels::from_pairs(cfg.external_labels.clone()),
                external_url: cfg.external_url.trim_end_matches('/').to_string(),
                resend_delay_ms: cfg.resend_delay.0.as_millis() as i64,
                snapshot: Snapshot::default(),
                changed: true,
                records: Vec::new(),
                open: HashMap::new(),
                now: None,
                last_progress: Instant::now(),
                lines: 0,
                to_notify: Vec::new(),
                report: None,
            }),
            claimed: AtomicBool::new(false),
            wanted: all_named.then_some(names),
            opts,
            out: out_dir.join("backtest").join("alerts.ndjson"),
            rules: alerting
                .groups
                .iter()
                .flat_map(|g| &g.group.rules)
                .filter(|r| matches!(r.kind, RuleKind::Alerting(_)))
                .count(),
            reporting: false,
        }
    }

    /// Also gathers what `--report` shows; decode errors are read from
    /// `registry`.
    pub fn with_report(mut self, registry: crate::telemetry::Registry) -> Backtest {
        self.lock().report = Some(crate::report::Timeline::new(registry));
        self.reporting = true;
        self
    }

    /// Whether a report is gathered (the feed then counts error lines).
    pub fn reporting(&self) -> bool {
        self.reporting
    }

    /// For the report: lines counted at their own time, grouped by
    /// [`crate::report::by_slot`].
    pub fn report_counted(&self, groups: &[(i64, u64, u64)]) {
        if let Some(r) = self.lock().report.as_mut() {
            r.count(groups);
        }
    }

    /// For the report: `lines` without a time of their own (`errors` of
    /// them errors), counted at the current step.
    pub fn report_untimed(&self, lines: u64, errors: u64) {
        if let Some(r) = self.lock().report.as_mut() {
            r.count_now(lines, errors);
        }
    }

    /// Writes the report to `path` (after [`Backtest::finish`]).
    pub fn write_report(&self, path: &Path, mut meta: crate::report::Meta) -> std::io::Result<()> {
        let st = self.lock();
        let Some(r) = &st.report else {
            return Err(std::io::Error::other("no report was gathered"));
        };
        meta.rules = self.rules;
        crate::report::write(path, r, &st.records, &meta)
    }

    /// Whether a metrics sink drove this back-test.
    pub fn driven(&self) -> bool {
        self.claimed.load(Ordering::SeqCst)
    }

    /// Whether the rules may read the metric family `name` (a histogram's
    /// through `_bucket`, `_sum` or `_count`): the others are not sampled.
    pub fn wants(&self, family: &str) -> bool {
        let Some(w) = &self.wanted else {
            return true;
        };
        (self.reporting && crate::report::Timeline::wants(family))
            || w.contains(family)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| w.contains(&format!("{family}{s}")))
    }

    /// True for the first caller only: one metrics sink drives the clock.
    pub fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::SeqCst)
    }

    /// Whether a line at `t_ms` is inside `--from`/`--to`.
    pub fn wanted(&self, t_ms: i64) -> bool {
        self.opts.from_ms.is_none_or(|f| t_ms >= f) && self.opts.to_ms.is_none_or(|t| t_ms <= t)
    }

    pub fn window_ms(&self) -> i64 {
        self.opts.window_ms
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs every scrape and evaluation due before `t_ms` (a line at
    /// `t_ms` is about to be counted); `sample` reads the metrics as they
    /// are now into the snapshot.
    pub fn before(&self, t_ms: i64, sample: &dyn Fn(&mut Snapshot)) {
        let mut st = self.lock();
        st.start_at(t_ms);
        while let Some(next) = st.next_step() {
            if next >= t_ms {
                break;
            }
            st.step(next, sample, &self.opts);
        }
    }

    /// Whether a step is due before a line at `t_ms` (or the schedule has
    /// not started): [`Backtest::before`] has work to do.
    pub fn due_before(&self, t_ms: i64) -> bool {
        let st = self.lock();
        st.next_scrape.is_none() || st.next_step().is_some_and(|n| n < t_ms)
    }

    /// Notes that `n` lines were counted since the last call.
    pub fn counted(&self, n: u64) {
        let mut st = self.lock();
        st.changed = true;
        st.lines += n;
        if st.last_progress.elapsed().as_secs() >= 10 {
            st.last_progress = Instant::now();
            let at = st.now.map(rfc3339_millis).unwrap_or_default();
            let firing = st.records.len();
            tracing::info!(simulated_time = %at, lines = st.lines, alerts_fired = firing, "back-testing");
        }
    }

    /// Ends the back-test after the last line: runs the steps up to and at
    /// its time, writes the records. Returns where they were written.
    pub fn finish(
        &self,
        last_ms: Option<i64>,
        sample: &dyn Fn(&mut Snapshot),
    ) -> std::io::Result<PathBuf> {
        let mut st = self.lock();
        if let Some(last) = last_ms {
            st.start_at(last);
            while let Some(next) = st.next_step() {
                if next > last.saturating_add(st.scrape_ms.max(1)) {
                    break;
                }
                st.step(next, sample, &self.opts);
            }
        }
        if let Some(r) = st.report.as_mut() {
            r.close();
        }
        write_records(&self.out, &st.records)?;
        Ok(self.out.clone())
    }

    /// Hands the alerts found due to the notifiers, when asked for.
    pub async fn notify(&self) {
        let Some(tx) = &self.opts.notify else {
            return;
        };
        let due = std::mem::take(&mut self.lock().to_notify);
        if !due.is_empty() {
            let _ = tx.send(due).await;
        }
    }

    /// The alerts that fired, in order of firing.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// A short table of what fired, for the terminal.
    pub fn table(&self) -> String {
        table(&self.lock().records)
    }
}

impl Inner {
    /// Aligns the schedule to the first line's time.
    fn start_at(&mut self, t_ms: i64) {
        if self.next_scrape.is_some() {
            return;
        }
        let up = |t: i64, every: i64| {
            t.div_euclid(every) * every + if t.rem_euclid(every) == 0 { 0 } else { every }
        };
        self.next_scrape = Some(up(t_ms, self.scrape_ms));
        for g in &mut self.groups {
            g.next_ms = Some(up(t_ms, g.interval_ms));
        }
    }

    fn next_step(&self) -> Option<i64> {
        self.groups
            .iter()
            .filter_map(|g| g.next_ms)
            .chain(self.next_scrape)
            .min()
    }

    /// The scrape and the evaluations due at `t`, in that order.
    fn step(&mut self, t: i64, sample: &dyn Fn(&mut Snapshot), opts: &Options) {
        if self.next_scrape == Some(t) {
            let refreshed = self.changed;
            if self.changed {
                sample(&mut self.snapshot);
                self.changed = false;
            }
            self.history.ingest(&self.snapshot.samples, t);
            if let Some(r) = self.report.as_mut() {
                r.scrape(t, refreshed.then_some(&self.snapshot.samples[..]));
            }
            self.next_scrape = Some(t + self.scrape_ms);
        }
        self.now = Some(t);
        let mut due = Vec::new();
        for gi in 0..self.groups.len() {
            if self.groups[gi].next_ms != Some(t) {
                continue;
            }
            let exp = Expander {
                render: &super::template::render_alert,
                external_labels: &self.external_labels,
                external_url: &self.external_url,
            };
            let g = &mut self.groups[gi];
            g.next_ms = Some(t + g.interval_ms);
            g.eval.eval(t, &self.history, &mut self.results, &exp);
            let g = &mut self.groups[gi];
            let alerting: Vec<usize> = g
                .eval
                .group()
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r.kind, RuleKind::Alerting(_)))
                .map(|(i, _)| i)
                .collect();
            for ri in alerting {
                let Some(alerts) = g.eval.alerts(ri) else {
                    continue;
                };
                for a in alerts.alerts() {
                    let key = (gi, ri, a.labels.clone());
                    match (a.state, self.open.get(&key).copied()) {
                        (AlertState::Inactive, Some(i)) => {
                            self.records[i].resolved_at = a.resolved_at;
                            self.open.remove(&key);
                        }
                        (AlertState::Inactive, None) => {}
                        (AlertState::Pending, _) => {}
                        (AlertState::Firing, Some(i)) => {
                            let r = &mut self.records[i];
                            r.peak = r.peak.max(a.value);
                            r.annotations = a.annotations.clone();
                        }
                        (AlertState::Firing, None) => {
                            self.open.insert(key, self.records.len());
                            self.records.push(Record {
                                group: g.eval.group().name.clone(),
                                labels: a.labels.clone(),
                                annotations: a.annotations.clone(),
                                pending_since: a.active_at,
                                firing_from: a.fired_at,
                                resolved_at: None,
                                peak: a.value,
                            });
                        }
                    }
                }
                if opts.notify.is_some() {
                    due.extend(due_alerts(
                        &mut g.eval,
                        ri,
                        t,
                        self.resend_delay_ms,
                        g.interval_ms,
                        &self.external_labels,
                        &self.external_url,
                    ));
                }
            }
        }
        self.to_notify.extend(due);
    }
}

fn write_records(path: &Path, records: &[Record]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in records {
        let labels: serde_json::Map<String, serde_json::Value> = r
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let annotations: serde_json::Map<String, serde_json::Value> = r
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let line = json!({
            "alertname": r.labels.get("alertname"),
            "group": r.group,
            "labels": labels,
            "annotations": annotations,
            "pending_since": rfc3339_millis(r.pending_since),
            "firing_from": r.firing_from.map(rfc3339_millis),
            "resolved_at": r.resolved_at.map(rfc3339_millis),
            "peak_value": if r.peak.is_finite() { json!(r.peak) } else { json!(r.peak.to_string()) },
        });
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// The summary: one line per alert that fired.
fn table(records: &[Record]) -> String {
    if records.is_empty() {
        return "no alert would have fired\n".to_string();
    }
    let rows: Vec<[String; 5]> = records
        .iter()
        .map(|r| {
            [
                r.name_with_labels(","),
                r.firing_from.map(rfc3339_millis).unwrap_or_default(),
                r.resolved_at
                    .map(rfc3339_millis)
                    .unwrap_or_else(|| "(still firing)".into()),
                super::promql::format_float(r.peak),
                rfc3339_millis(r.pending_since),
            ]
        })
        .collect();
    let head = [
        "ALERT",
        "FIRING FROM",
        "RESOLVED AT",
        "PEAK",
        "PENDING SINCE",
    ];
    let mut widths = head.map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[&str], out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&head, &mut out);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells, &mut out);
    }
    out.push_str(&format!("{} alerts would have fired\n", records.len()));
    out
}
