//! Alert rules evaluated live, on the wall clock, inside `weir run`.
//!
//! What the rules read is what a Prometheus scraping weir would see: every
//! `scrape_interval` weir's own `/metrics` (derived metrics, cost
//! counters, self-metrics) is read back ([`scrape`]) into a bounded
//! [`history::History`]. Each group is evaluated at its interval, at times
//! aligned to it, over that history with the rules' results on top (so a
//! recording rule feeds later rules and the query API). Pending and firing
//! alerts are served on `/metrics` as `ALERTS` and `ALERTS_FOR_STATE`,
//! saved in `data_dir` after each evaluation ([`persist`]) and handed to
//! the notifiers ([`notifiers`]) as Prometheus hands them to Alertmanager:
//! firing ones at most every `resend_delay`, resolved ones at once.
//!
//! [`Live`] is also the [`super::status::RulesView`] the query API reads
//! (`view`); [`Service`] runs it with the notifiers. Evaluation holds
//! the write lock for one group at a time; a query holds the read lock for
//! one query.
//!
//! Deliberately not here: evaluating on the logs' own timestamps
//! (back-testing), remote storage, and Prometheus' per-group offsets
//! (every group here is evaluated at multiples of its interval).

pub mod config;
mod deliver;
pub mod history;
pub mod notifiers;
pub mod persist;
pub mod scrape;
mod service;
mod view;

pub use service::{Notifying, Service};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::group::{GroupEval, RuleResults, history_ms};
use super::notify::{NotifyAlert, generator_url};
use super::promql::{Labels, Sample};
use super::rules::RuleKind;
use super::state::Expander;
use super::status::Health;
use crate::telemetry::{Counter, Registry};
use config::{AlertingConfig, LoadedGroup, MIN_RETENTION};
use history::History;
use persist::RuleKey;

/// The registry key of the `ALERTS` families (left out of the scrape: the
/// rules' own results already hold them).
pub const ALERTS_KEY: &str = "alerting:ALERTS";

/// One problem of an `alerting:` section; `notifier` is the index in
/// `notify:` it is about, if any (for its position in the file).
#[derive(Debug, Clone)]
pub struct LoadError {
    pub notifier: Option<usize>,
    pub message: String,
}

/// A checked `alerting:` section with its rule files loaded.
#[derive(Debug, Clone)]
pub struct Alerting {
    pub config: AlertingConfig,
    pub groups: Vec<LoadedGroup>,
}

impl Alerting {
    /// No rules, scraping every 15 s (Prometheus' usual interval): what a
    /// back-test report of a pipeline without `alerting:` runs on.
    pub fn without_rules() -> Alerting {
        Alerting {
            config: AlertingConfig {
                evaluation_interval: crate::config::units::Dur(std::time::Duration::from_secs(15)),
                ..AlertingConfig::default()
            },
            groups: Vec::new(),
        }
    }

    /// Loads the rule files of `config`; `base` is the pipeline file's
    /// directory. Every problem is one message.
    pub fn load(config: AlertingConfig, base: Option<&Path>) -> Result<Alerting, Vec<LoadError>> {
        let mut errors: Vec<String> = Vec::new();
        let mut notifier_errors = Vec::new();
        let globs = config::rule_globs(&config);
        if config.evaluation_interval.0.is_zero() {
            errors.push("`evaluation_interval` must be more than 0 (default 1m)".to_string());
        }
        if config.scrape_interval.is_some_and(|d| d.0.is_zero()) {
            errors.push("`scrape_interval` must be more than 0".to_string());
        }
        if !config.external_url.is_empty() && !crate::http::is_http_url(&config.external_url) {
            errors.push(format!(
                "`external_url` `{}` is not an http(s) URL, e.g. http://weir.example:9464",
                config.external_url
            ));
        }
        for k in config.external_labels.keys() {
            if !super::rules::is_label_name(k) {
                errors.push(format!(
                    "`external_labels`: `{k}` is not a valid label name"
                ));
            }
        }
        for (i, n) in config.notify.iter().enumerate() {
            if let Err(e) = n.check() {
                notifier_errors.push(LoadError {
                    notifier: Some(i),
                    message: format!("notify[{i}] ({}): {e}", n.kind_word()),
                });
            }
        }
        if notifier_errors.is_empty() {
            // Build them once, as a start would (files read, CAs parsed).
            let resend = config.resend_delay.0.as_millis() as i64;
            if let Err(e) = deliver::Notifiers::build(
                &config.notify,
                resend,
                &config.external_url,
                &Registry::default(),
            ) {
                notifier_errors.push(LoadError {
                    notifier: None,
                    message: e,
                });
            }
        }
        let groups = match load_rules_or(&globs, base) {
            Ok(g) => g,
            Err(es) => {
                errors.extend(es);
                Vec::new()
            }
        };
        if errors.is_empty() && notifier_errors.is_empty() {
            return Ok(Alerting { config, groups });
        }
        let mut all: Vec<LoadError> = errors
            .into_iter()
            .map(|message| LoadError {
                notifier: None,
                message,
            })
            .collect();
        all.extend(notifier_errors);
        Err(all)
    }

    /// The global evaluation interval, in ms.
    pub(crate) fn eval_ms(&self) -> i64 {
        (self.config.evaluation_interval.0.as_millis() as i64).max(1)
    }

    /// A group's interval: its own, or the global one.
    pub(crate) fn interval_ms(&self, g: &LoadedGroup) -> i64 {
        g.group.interval_ms.unwrap_or(self.eval_ms()).max(1)
    }

    /// How often weir's metrics are sampled (default: the evaluation
    /// interval).
    pub(crate) fn scrape_ms(&self) -> i64 {
        self.config
            .scrape_interval
            .map_or(self.eval_ms(), |d| d.0.as_millis() as i64)
            .max(1)
    }

    /// The history kept: `retention` (at least [`MIN_RETENTION`] by
    /// default), or more when a rule reads further back.
    pub(crate) fn retention_ms(&self) -> i64 {
        let need = self
            .groups
            .iter()
            .flat_map(|g| &g.group.rules)
            .map(|r| history_ms(&r.expr))
            .max()
            .unwrap_or(0);
        let keep = self.config.retention.map_or(MIN_RETENTION, |d| d.0);
        (keep.as_millis() as i64).max(need)
    }

    /// Number of rules in all groups.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.group.rules.len()).sum()
    }
}

fn load_rules_or(globs: &[String], base: Option<&Path>) -> Result<Vec<LoadedGroup>, Vec<String>> {
    if globs.is_empty() {
        return Ok(Vec::new());
    }
    config::load_rules(globs, base)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// What one rule did last.
#[derive(Debug, Clone)]
struct RuleHealth {
    health: Health,
    last_error: Option<String>,
    last_ms: Option<i64>,
}

/// One group, its state and its schedule.
struct GroupRun {
    file: String,
    eval: GroupEval,
    interval_ms: i64,
    next_ms: i64,
    last_ms: Option<i64>,
    seconds: f64,
    rules: Vec<RuleHealth>,
    /// `ALERTS` and `ALERTS_FOR_STATE` written at the last evaluation.
    alert_samples: Vec<Sample>,
    evaluations: Counter,
    failures: Counter,
}

struct State {
    history: History,
    results: RuleResults,
    groups: Vec<GroupRun>,
    scrape_ms: i64,
    next_scrape_ms: i64,
    external_labels: Labels,
    external_url: String,
    resend_delay_ms: i64,
    /// Something changed since the state was last saved.
    dirty: bool,
}

/// The running rules: history, results, alert state and schedule.
pub struct Live {
    state: RwLock<State>,
    registry: Registry,
    state_path: PathBuf,
    save_failing: std::sync::atomic::AtomicBool,
    scrape_failures: Counter,
    dropped_series: Counter,
}

impl Live {
    /// Sets up the rules of `alerting`, putting back the alert state saved
    /// under `data_dir`, and serves `ALERTS` on `registry`.
    pub fn start(alerting: &Alerting, registry: &Registry, data_dir: &Path) -> Arc<Live> {
        let state_path = persist::path(data_dir);
        let saved = persist::load(&state_path);
        let now = now_ms();
        let state = State::new(alerting, registry, saved, now);
        let live = Arc::new(Live {
            state: RwLock::new(state),
            registry: registry.clone(),
            state_path,
            save_failing: std::sync::atomic::AtomicBool::new(false),
            scrape_failures: registry.counter(
                "weir_rules_scrape_lines_skipped_total",
                "Lines of weir's own /metrics the rule history could not read.",
                &[],
            ),
            dropped_series: registry.counter(
                "weir_rules_history_series_dropped_total",
                "Series left out of the rule history because it held alerting.max_series.",
                &[],
            ),
        });
        registry.set_render(
            ALERTS_KEY,
            Arc::new(view::AlertsRender(Arc::downgrade(&live))),
        );
        live
    }

    /// Takes the rules of a reloaded `alerting` section: rules that are
    /// unchanged (same file, group, name and expression) keep their alerts.
    pub fn reload(&self, alerting: &Alerting) {
        let mut st = self.write();
        let mut saved: BTreeMap<RuleKey, Vec<super::state::Alert>> = BTreeMap::new();
        for g in &st.groups {
            for (i, rule) in g.eval.group().rules.iter().enumerate() {
                if let Some(a) = g.eval.alerts(i) {
                    saved.insert(
                        rule_key(&g.file, &g.eval.group().name, rule),
                        a.to_save().cloned().collect(),
                    );
                }
            }
        }
        let history = std::mem::take(&mut st.history);
        let results = std::mem::take(&mut st.results);
        let mut fresh = State::new(alerting, &self.registry, saved, now_ms());
        fresh.history = history;
        fresh.results = results;
        fresh.dirty = true;
        *st = fresh;
        tracing::info!(
            groups = alerting.groups.len(),
            rules = alerting.rule_count(),
            "alert rules reloaded"
        );
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// When the next scrape or evaluation is due.
    fn next_wake_ms(&self) -> i64 {
        let st = self.read();
        st.groups
            .iter()
            .map(|g| g.next_ms)
            .chain([st.next_scrape_ms])
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Scrapes if due, then evaluates every group that is due at `now`;
    /// returns the alerts to send.
    pub fn step(&self, now: i64) -> Vec<NotifyAlert> {
        if now >= self.read().next_scrape_ms {
            self.scrape(now);
        }
        let mut out = Vec::new();
        let n = self.read().groups.len();
        for i in 0..n {
            let mut guard = self.write();
            let st = &mut *guard;
            let g = &mut st.groups[i];
            if g.next_ms > now {
                continue;
            }
            // The latest slot that is due; missed ones are skipped.
            let ts = g.next_ms + (now - g.next_ms) / g.interval_ms * g.interval_ms;
            g.next_ms = ts + g.interval_ms;
            let exp = Expander {
                render: &super::template::render_alert,
                external_labels: &st.external_labels,
                external_url: &st.external_url,
            };
            let started = Instant::now();
            let outcomes = g.eval.eval(ts, &st.history, &mut st.results, &exp);
            g.seconds = started.elapsed().as_secs_f64();
            g.last_ms = Some(ts);
            g.evaluations.inc();
            g.alert_samples.clear();
            for (idx, (o, h)) in outcomes.into_iter().zip(&mut g.rules).enumerate() {
                h.last_ms = Some(ts);
                match o.error {
                    Some(e) => {
                        g.failures.inc();
                        tracing::debug!(group = %g.eval.group().name, rule = %o.rule, error = %e, "rule evaluation failed");
                        h.health = Health::Err;
                        h.last_error = Some(e);
                    }
                    None => {
                        h.health = Health::Ok;
                        h.last_error = None;
                    }
                }
                let rule = &g.eval.group().rules[idx];
                if let RuleKind::Alerting(_) = rule.kind {
                    g.alert_samples.extend(o.samples);
                    out.extend(due_alerts(
                        &mut g.eval,
                        idx,
                        ts,
                        st.resend_delay_ms,
                        g.interval_ms,
                        &st.external_labels,
                        &st.external_url,
                    ));
                }
            }
            st.dirty = true;
        }
        out
    }

    fn scrape(&self, now: i64) {
        let mut text = String::with_capacity(64 * 1024);
        self.registry.render_except(&mut text, ALERTS_KEY);
        let (samples, bad) = scrape::parse(&text);
        if bad > 0 {
            self.scrape_failures.add(bad as u64);
        }
        let mut st = self.write();
        let left_out = st.history.ingest(&samples, now);
        if left_out > 0 {
            self.dropped_series.add(left_out as u64);
        }
        st.next_scrape_ms = (now / st.scrape_ms + 1) * st.scrape_ms;
    }

    /// Saves the alert state if it changed.
    pub fn persist(&self, now: i64) {
        let rules = {
            let mut st = self.write();
            if !st.dirty {
                return;
            }
            st.dirty = false;
            let mut rules = Vec::new();
            for g in &st.groups {
                for (i, rule) in g.eval.group().rules.iter().enumerate() {
                    if let Some(a) = g.eval.alerts(i) {
                        let alerts: Vec<super::state::Alert> = a.to_save().cloned().collect();
                        rules.push((rule_key(&g.file, &g.eval.group().name, rule), alerts));
                    }
                }
            }
            rules
        };
        let refs: Vec<(RuleKey, Vec<&super::state::Alert>)> = rules
            .iter()
            .map(|(k, a)| (k.clone(), a.iter().collect()))
            .collect();
        // Said once while it fails (a full or read-only disk would
        // otherwise warn at every evaluation), and once when it works again.
        match persist::save(&self.state_path, now, &refs) {
            Err(e) => {
                if !self
                    .save_failing
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    tracing::warn!(path = %self.state_path.display(), error = %e, "cannot save the alert state; a restart now would start `for` timers again (said once until it works)");
                }
            }
            Ok(()) => {
                if self
                    .save_failing
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    tracing::info!(path = %self.state_path.display(), "the alert state is saved again");
                }
            }
        }
    }
}

/// The alerts of rule `idx` due for sending at `ts`, as Prometheus'
/// `sendAlerts` picks them (see [`super::state::AlertRuleState::take_due`]),
/// with the external labels added and the link to the rule's expression.
pub(crate) fn due_alerts(
    eval: &mut GroupEval,
    idx: usize,
    ts: i64,
    resend_delay_ms: i64,
    interval_ms: i64,
    external_labels: &Labels,
    external_url: &str,
) -> Vec<NotifyAlert> {
    let url = generator_url(external_url, &eval.group().rules[idx].expr_text);
    let due = eval
        .alerts_mut(idx)
        .map(|a| a.take_due(ts, resend_delay_ms, interval_ms))
        .unwrap_or_default();
    due.into_iter()
        .map(|mut alert| {
            for (k, v) in external_labels.iter() {
                if alert.labels.get(k).is_empty() {
                    alert.labels.set(k, v);
                }
            }
            NotifyAlert {
                alert,
                generator_url: url.clone(),
            }
        })
        .collect()
}

fn rule_key(file: &str, group: &str, rule: &super::rules::Rule) -> RuleKey {
    RuleKey {
        file: file.to_string(),
        group: group.to_string(),
        rule: rule.name.clone(),
        expr: rule.expr_text.clone(),
    }
}

impl State {
    fn new(
        alerting: &Alerting,
        registry: &Registry,
        mut saved: BTreeMap<RuleKey, Vec<super::state::Alert>>,
        now: i64,
    ) -> State {
        let cfg = &alerting.config;
        let eval_ms = alerting.eval_ms();
        let retention = alerting.retention_ms();
        let scrape_ms = alerting.scrape_ms();
        let mut restored = 0;
        let restore_grace = cfg.restore_grace_period.0.as_millis() as i64;
        let groups = alerting
            .groups
            .iter()
            .map(|lg| {
                let interval_ms = alerting.interval_ms(lg);
                let mut eval = GroupEval::new(lg.group.clone()).with_subquery_step_ms(eval_ms);
                for (i, rule) in lg.group.rules.iter().enumerate() {
                    let key = rule_key(&lg.file, &lg.group.name, rule);
                    if let (Some(alerts), Some(st)) = (saved.remove(&key), eval.alerts_mut(i)) {
                        restored += alerts.len();
                        st.restore(alerts, now + restore_grace);
                    }
                }
                let labels = [("group", lg.group.name.as_str())];
                GroupRun {
                    file: lg.file.clone(),
                    rules: vec![
                        RuleHealth {
                            health: Health::Unknown,
                            last_error: None,
                            last_ms: None,
                        };
                        lg.group.rules.len()
                    ],
                    eval,
                    interval_ms,
                    next_ms: (now / interval_ms + 1) * interval_ms,
                    last_ms: None,
                    seconds: 0.0,
                    alert_samples: Vec::new(),
                    evaluations: registry.counter(
                        "weir_rule_group_evaluations_total",
                        "Evaluations of each rule group.",
                        &labels,
                    ),
                    failures: registry.counter(
                        "weir_rule_evaluation_failures_total",
                        "Rule evaluations that failed, by group (the rule's health is then err; see /api/v1/rules).",
                        &labels,
                    ),
                }
            })
            .collect();
        if restored > 0 {
            tracing::info!(alerts = restored, "alert state restored from the last run");
        }
        State {
            history: History::new(retention, cfg.max_series),
            results: RuleResults::new(retention),
            groups,
            scrape_ms,
            // The first scrape comes at once, so the first evaluation has data.
            next_scrape_ms: now,
            external_labels: Labels::from_pairs(cfg.external_labels.clone()),
            external_url: cfg.external_url.trim_end_matches('/').to_string(),
            resend_delay_ms: cfg.resend_delay.0.as_millis() as i64,
            dirty: false,
        }
    }
}
