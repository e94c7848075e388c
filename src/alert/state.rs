//! The alert state machine of one alerting rule, exactly as Prometheus
//! 2.42's `rules/alerting.go` runs it.
//!
//! Per alert label set, at each evaluation time `ts`:
//!
//! - a series in the expression's result that has no active alert becomes
//!   a **pending** alert with `active_at = ts`; one that has gets its value
//!   and annotations updated;
//! - pending for at least `for` → **firing** (`for: 0` fires at once);
//! - gone from the result: a pending alert is deleted (it was never sent);
//!   a firing one keeps firing for `keep_firing_for` (counted from the
//!   first evaluation it was missing), then is **resolved**
//!   (`resolved_at = ts`, state inactive) and kept for 15 minutes
//!   ([`RESOLVED_RETENTION_MS`]) so the resolution can be re-sent;
//! - every pending or firing alert writes `ALERTS{alertname, alertstate,
//!   …labels} 1` and `ALERTS_FOR_STATE{alertname, …labels} active_at`
//!   (Unix seconds).
//!
//! `keep_firing_for` is in 2.42 (`rulefmt` and `alerting.go` of v2.42.0
//! both have it) and follows its semantics. Alerts are treated as
//! "restored" from the first evaluation, as `promtool test rules` does;
//! after a restart the live evaluator puts saved alerts back with
//! [`AlertRuleState::restore`]. Sending to an Alertmanager is not here either, only the choice
//! of what is due ([`AlertRuleState::take_due`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::promql::value::METRIC_NAME;
use super::promql::{Labels, Sample, Vector};

/// How long a resolved alert is kept (and re-sent as resolved).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        })
    }
}

/// One alert of a rule: one label set of its expression's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub state: AlertState,
    /// Series labels without `__name__`, rule labels (rendered), `alertname`.
    pub labels: Labels,
    /// Rendered annotations, sorted by name (empty values kept).
    pub annotations: Vec<(String, String)>,
    /// The expression's value at the last evaluation that returned it.
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: Option<i64>,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Whether it is due for sending at `ts` (Prometheus' `needsSending`).
    pub fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let sent = self.last_sent_at.unwrap_or(i64::MIN);
        if self.resolved_at.is_some_and(|r| r > sent) {
            return true;
        }
        self.last_sent_at
            .is_none_or(|s| s.saturating_add(resend_delay_ms) < ts)
    }
}

/// What a label or annotation template sees of an alert.
#[derive(Debug, Clone, Copy)]
pub struct AlertData<'a> {
    /// The alerting rule's name (Prometheus names templates `__alert_` + it).
    pub alertname: &'a str,
    /// The series' labels, `__name__` included if it has one (`$labels`).
    pub labels: &'a Labels,
    pub external_labels: &'a Labels,
    pub external_url: &'a str,
    /// `$value`.
    pub value: f64,
}

/// Expands one template (`text`) for an alert; an error is shown as
/// `<error expanding template: …>`, as Prometheus does.
pub type Renderer<'r> = &'r dyn Fn(&str, &AlertData) -> Result<String, String>;

/// A renderer that leaves text as written.
pub fn no_templates(text: &str, _: &AlertData) -> Result<String, String> {
    Ok(text.to_string())
}

/// How an alerting rule's templates are expanded: the renderer and what it
/// is given besides the alert.
#[derive(Clone, Copy)]
pub struct Expander<'a> {
    pub render: Renderer<'a>,
    pub external_labels: &'a Labels,
    pub external_url: &'a str,
}

/// Renders label or annotation values: a value without `{{` is used as is,
/// one with `{{` goes through `render`. Keeps the order and empty values.
pub fn render_labels(
    pairs: &[(String, String)],
    data: &AlertData,
    render: Renderer,
) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            let out = if v.contains("{{") {
                render(v, data).unwrap_or_else(|e| format!("<error expanding template: {e}>"))
            } else {
                v.clone()
            };
            (k.clone(), out)
        })
        .collect()
}

/// What an alerting rule is, as the state machine needs it.
#[derive(Debug, Clone, Copy)]
pub struct AlertRuleDef<'a> {
    pub name: &'a str,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    /// Rule labels as written (templates), sorted by name.
    pub labels: &'a [(String, String)],
    /// Annotations as written (templates), sorted by name.
    pub annotations: &'a [(String, String)],
}

/// The alerts of one alerting rule, by label set.
#[derive(Debug, Clone, Default)]
pub struct AlertRuleState {
    active: BTreeMap<Labels, Alert>,
    /// Saved alerts waiting to be returned again (see [`AlertRuleState::restore`]).
    restored: BTreeMap<Labels, Alert>,
    restore_until: i64,
}

impl AlertRuleState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every alert held: pending, firing and recently resolved.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// What a restart must keep: every alert held, and saved ones still
    /// waiting to be returned again.
    pub fn to_save(&self) -> impl Iterator<Item = &Alert> {
        self.active.values().chain(self.restored.values())
    }

    /// Pending and firing alerts (not resolved ones).
    pub fn active_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active.values().filter(|a| a.resolved_at.is_none())
    }

    /// The highest state of any alert.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Puts back alerts saved before a restart (see `alert::live`). A
    /// resolved one is held again at once (its resolution may still need
    /// sending). A pending or firing one waits until the expression returns
    /// its label set again — right after a restart the history may be too
    /// short for `rate()` — and then goes on as it was: a pending alert
    /// keeps its `active_at`, so its `for` timer is not restarted; a firing
    /// one keeps firing and keeps `last_sent_at`, so it is not sent again
    /// before the resend delay. One the expression has not returned by
    /// `until_ms` is dropped, or, if it was firing, resolved then.
    pub fn restore(&mut self, alerts: impl IntoIterator<Item = Alert>, until_ms: i64) {
        for a in alerts {
            if a.state == AlertState::Inactive {
                self.active.insert(a.labels.clone(), a);
            } else {
                self.restored.insert(a.labels.clone(), a);
            }
        }
        self.restore_until = until_ms;
    }

    /// One evaluation at `ts` with the expression's result `result`;
    /// returns the `ALERTS` and `ALERTS_FOR_STATE` samples to write, sorted
    /// by labels. `limit` > 0 caps pending plus firing alerts: above it,
    /// every alert is dropped and the evaluation fails, as in Prometheus.
    pub fn eval(
        &mut self,
        rule: &AlertRuleDef,
        ts: i64,
        result: &[Sample],
        limit: usize,
        exp: &Expander,
    ) -> Result<Vector, String> {
        let mut fresh: BTreeMap<Labels, Alert> = BTreeMap::new();
        for s in result {
            let data = AlertData {
                alertname: rule.name,
                labels: &s.labels,
                external_labels: exp.external_labels,
                external_url: exp.external_url,
                value: s.v,
            };
            let mut labels = s.labels.without_name();
            for (k, v) in render_labels(rule.labels, &data, exp.render) {
                labels.set(&k, &v);
            }
            labels.set("alertname", rule.name);
            let mut annotations = render_labels(rule.annotations, &data, exp.render);
            annotations.sort();
            if fresh.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            let alert = Alert {
                state: AlertState::Pending,
                labels: labels.clone(),
                annotations,
                value: s.v,
                active_at: ts,
                fired_at: None,
                resolved_at: None,
                last_sent_at: None,
                valid_until: None,
                keep_firing_since: None,
            };
            fresh.insert(labels, alert);
        }
        let returned: BTreeSet<Labels> = fresh.keys().cloned().collect();
        if !self.restored.is_empty() && ts > self.restore_until {
            // Never returned since the restart: resolve the firing ones.
            for (labels, mut a) in std::mem::take(&mut self.restored) {
                if a.state == AlertState::Firing && !returned.contains(&labels) {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                    self.active.entry(labels).or_insert(a);
                }
            }
        }
        for (labels, alert) in fresh {
            match self.active.get_mut(&labels) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = alert.value;
                    a.annotations = alert.annotations;
                }
                _ => {
                    let alert = match self.restored.remove(&labels) {
                        Some(saved) => Alert {
                            value: alert.value,
                            annotations: alert.annotations,
                            resolved_at: None,
                            keep_firing_since: None,
                            ..saved
                        },
                        None => alert,
                    };
                    self.active.insert(labels, alert);
                }
            }
        }

        let mut out = Vec::new();
        let mut counted = 0usize;
        let keys: Vec<Labels> = self.active.keys().cloned().collect();
        for key in keys {
            let Some(a) = self.active.get_mut(&key) else {
                continue;
            };
            if !returned.contains(&key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && rule.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < rule.keep_firing_for_ms;
                }
                let delete = a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS);
                if delete {
                    // Pending, or resolved long enough ago (never kept firing).
                    self.active.remove(&key);
                    continue;
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            counted += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= rule.for_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            out.push(series_sample(rule, a, ts, "ALERTS", Some(a.state), 1.0));
            let active_s = a.active_at.div_euclid(1000) as f64;
            out.push(series_sample(
                rule,
                a,
                ts,
                "ALERTS_FOR_STATE",
                None,
                active_s,
            ));
        }
        if limit > 0 && counted > limit {
            self.active.clear();
            return Err(format!("exceeded limit of {limit} with {counted} alerts"));
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// The alerts due for sending at `ts`, marked as sent: each gets
    /// `last_sent_at = ts` and `valid_until = ts + 4·max(interval,
    /// resend_delay)` (Prometheus' `sendAlerts`).
    pub fn take_due(&mut self, ts: i64, resend_delay_ms: i64, interval_ms: i64) -> Vec<Alert> {
        let delta = resend_delay_ms.max(interval_ms);
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts, resend_delay_ms) {
                a.last_sent_at = Some(ts);
                a.valid_until = Some(ts + 4 * delta);
                out.push(a.clone());
            }
        }
        out
    }
}

/// An `ALERTS` or `ALERTS_FOR_STATE` sample: the rule's labels as written,
/// overridden by the alert's, then name, `alertname` (and `alertstate`).
fn series_sample(
    rule: &AlertRuleDef,
    a: &Alert,
    ts: i64,
    metric: &str,
    state: Option<AlertState>,
    v: f64,
) -> Sample {
    let mut labels = Labels::from_pairs(rule.labels.iter().cloned());
    for (k, v) in a.labels.iter() {
        labels.set(k, v);
    }
    labels.set(METRIC_NAME, metric);
    labels.set("alertname", rule.name);
    if let Some(s) = state {
        labels.set("alertstate", &s.to_string());
    }
    Sample { labels, t: ts, v }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
