//! Alertmanager-style routing in small: which alerts a notifier takes,
//! how they are grouped, and when a group is notified.
//!
//! There is no route tree: each notifier has one [`Route`], every route
//! sees every alert and takes those its [`Matcher`]s all accept. Taken
//! alerts go into aggregation groups keyed by the route's `group_by`
//! label values (`["..."]`: all labels; `[]`: one group).
//!
//! The [`Dispatcher`] is a pure state machine, time passed in as
//! milliseconds, no IO:
//!
//! - [`Dispatcher::ingest`] takes the latest state of some alerts;
//! - [`Dispatcher::due`] flushes the groups whose time has come: a new
//!   group at creation + `group_wait`, then every `group_interval`. A
//!   flush yields a notification when Alertmanager's `DedupStage`
//!   (`needsUpdate`) would send one: first notification with something
//!   firing; a firing alert not in the last notified firing set; all
//!   alerts resolved that were notified firing; (`send_resolved`) a
//!   resolved alert that was notified firing and not yet as resolved; or
//!   `repeat_interval` passed since the last notification (measured from
//!   the time given to `delivered`, so `>=`, not Alertmanager's `>`);
//! - [`Dispatcher::delivered`], called after a successful send, records
//!   what was notified and only then removes the delivered resolved
//!   alerts. Without it (the send failed) the next flush sends again.
//!
//! Choices that differ from or go beyond Alertmanager, for a shipper that
//! produces its own alerts:
//!
//! - A resolved alert is only ever notified if the receiver was told it
//!   fired (its fingerprint is in the last notified firing set); other
//!   resolved alerts are dropped at the flush (or not taken at all when
//!   their group does not exist), without a notification.
//! - With `send_resolved: false` resolved alerts are left out and dropped
//!   at the flush; the "all resolved" case is recorded without sending.
//! - A firing alert whose `valid_until` has passed counts as resolved at
//!   `valid_until`, as Alertmanager resolves an alert at its `endsAt`: the
//!   caller must ingest what `take_due` sends, at least that often.
//! - [`Dispatcher::snapshot`] / [`Dispatcher::restore`] keep, per route
//!   name and group key, what was last notified, so a restart does not
//!   page again before `repeat_interval`; a group re-created with such a
//!   record flushes at its next `group_interval` boundary after the last
//!   notification instead of after `group_wait`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::matcher::{MatchOp, Matcher};
use super::{Notification, NotifyAlert, fingerprint};
use crate::alert::promql::Labels;
use crate::config::units::Dur;

/// One notifier's route, as configured.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Alertmanager matchers, all of which must accept an alert:
    /// `severity="critical"`, `team!=db`, `alertname=~"High.*"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Labels to group by; `["..."]` for all labels, `[]` for one group.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    #[serde(default = "default_group_wait")]
    pub group_wait: Dur,
    #[serde(default = "default_group_interval")]
    pub group_interval: Dur,
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: Dur,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

fn default_group_by() -> Vec<String> {
    vec!["alertname".to_string()]
}
fn default_group_wait() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_group_interval() -> Dur {
    Dur(Duration::from_secs(5 * 60))
}
fn default_repeat_interval() -> Dur {
    Dur(Duration::from_secs(4 * 3600))
}
fn yes() -> bool {
    true
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            matchers: Vec::new(),
            group_by: default_group_by(),
            group_wait: default_group_wait(),
            group_interval: default_group_interval(),
            repeat_interval: default_repeat_interval(),
            send_resolved: true,
        }
    }
}

impl RouteConfig {
    /// Checks the route; errors name the matcher or field that is wrong.
    pub fn check(&self) -> Result<(), String> {
        self.compile("").map(|_| ())
    }

    /// The route ready for a [`Dispatcher`], named `name` (the notifier's
    /// name: the notifications' receiver and the key of saved state).
    pub fn compile(&self, name: &str) -> Result<Route, String> {
        let matchers = self
            .matchers
            .iter()
            .map(|m| Matcher::parse(m).map_err(|e| format!("matcher {m:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let group_by = if self.group_by.iter().any(|g| g == "...") {
            if self.group_by.len() > 1 {
                return Err("group_by: \"...\" groups by all labels and cannot be combined with label names".into());
            }
            GroupBy::All
        } else {
            for g in &self.group_by {
                if !crate::alert::rules::is_label_name(g) {
                    return Err(format!("group_by: {g:?} is not a valid label name"));
                }
            }
            GroupBy::Labels(self.group_by.clone())
        };
        let ms = |d: Dur| i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX);
        if self.group_interval.0.is_zero() {
            return Err("group_interval cannot be zero".into());
        }
        if self.repeat_interval.0.is_zero() {
            return Err("repeat_interval cannot be zero".into());
        }
        Ok(Route {
            name: name.to_string(),
            matchers,
            group_by,
            group_wait_ms: ms(self.group_wait),
            group_interval_ms: ms(self.group_interval),
            repeat_interval_ms: ms(self.repeat_interval),
            send_resolved: self.send_resolved,
        })
    }
}

/// What a route groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `["..."]`: every label.
    All,
    /// These labels (those an alert has); empty: one group.
    Labels(Vec<String>),
}

/// A checked route (see [`RouteConfig::compile`]).
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub group_by: GroupBy,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
    pub send_resolved: bool,
}

impl Route {
    /// Whether every matcher accepts the labels.
    pub fn matches(&self, ls: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(ls))
    }

    /// The labels of the group an alert with `ls` goes into.
    pub fn group_labels(&self, ls: &Labels) -> Labels {
        match &self.group_by {
            GroupBy::All => ls.clone(),
            GroupBy::Labels(names) => ls.keep(names),
        }
    }
}

/// What a group last notified: fingerprints ([`fingerprint`]) and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    pub firing: BTreeSet<String>,
    pub resolved: BTreeSet<String>,
    pub at_ms: i64,
}

/// What [`Dispatcher::snapshot`] saves for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// The route's name.
    pub route: String,
    /// The group key (see [`Notification::group_key`]).
    pub key: String,
    #[serde(flatten)]
    pub notified: Notified,
}

/// The dispatcher's state that outlives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchState {
    pub groups: Vec<GroupState>,
}

/// A notification due for sending by route `route` (its index).
#[derive(Debug, Clone)]
pub struct Pending {
    pub route: usize,
    pub key: String,
    pub notification: Notification,
}

#[derive(Debug, Clone)]
struct Group {
    labels: Labels,
    /// By fingerprint.
    alerts: BTreeMap<String, NotifyAlert>,
    next_flush_ms: i64,
    notified: Option<Notified>,
}

/// Routes alerts into groups and decides when to notify (see the module
/// doc).
#[derive(Debug, Clone)]
pub struct Dispatcher {
    routes: Vec<Route>,
    external_url: String,
    groups: BTreeMap<(usize, String), Group>,
    /// Restored records whose group does not exist (yet).
    restored: BTreeMap<(usize, String), Notified>,
}

impl Dispatcher {
    /// A dispatcher for `routes` (one per notifier, names unique);
    /// `external_url` goes into the notifications.
    pub fn new(routes: Vec<Route>, external_url: &str) -> Dispatcher {
        Dispatcher {
            routes,
            external_url: external_url.to_string(),
            groups: BTreeMap::new(),
            restored: BTreeMap::new(),
        }
    }

    /// The routes, in the order given (a [`Pending::route`] indexes them).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Takes the latest state of `alerts` (firing, or resolved with
    /// `resolved_at` set) into the groups of every route that matches.
    pub fn ingest(&mut self, alerts: &[NotifyAlert], now_ms: i64) {
        for na in alerts {
            let ls = &na.alert.labels;
            let fp = fingerprint(ls);
            for (ri, route) in self.routes.iter().enumerate() {
                if !route.matches(ls) {
                    continue;
                }
                let glabels = route.group_labels(ls);
                let key = group_key(&glabels);
                let id = (ri, key);
                let notified_firing =
                    |n: &Option<Notified>| n.as_ref().is_some_and(|n| n.firing.contains(&fp));
                if let Some(g) = self.groups.get_mut(&id) {
                    if na.is_resolved()
                        && !g.alerts.contains_key(&fp)
                        && !notified_firing(&g.notified)
                    {
                        continue;
                    }
                    g.alerts.insert(fp.clone(), na.clone());
                    continue;
                }
                let notified = self.restored.get(&id).cloned();
                if na.is_resolved() && !notified_firing(&notified) {
                    continue;
                }
                self.restored.remove(&id);
                let next_flush_ms = match &notified {
                    Some(n) => next_boundary(n.at_ms, route.group_interval_ms, now_ms),
                    None => now_ms.saturating_add(route.group_wait_ms),
                };
                let mut alerts = BTreeMap::new();
                alerts.insert(fp.clone(), na.clone());
                self.groups.insert(
                    id,
                    Group {
                        labels: glabels,
                        alerts,
                        next_flush_ms,
                        notified,
                    },
                );
            }
        }
    }

    /// Flushes the groups due at `now_ms`; returns the notifications to
    /// send (none when nothing needs telling).
    pub fn due(&mut self, now_ms: i64) -> Vec<Pending> {
        let mut out = Vec::new();
        let mut empty = Vec::new();
        for ((ri, key), g) in self.groups.iter_mut() {
            if g.next_flush_ms > now_ms {
                continue;
            }
            let route = &self.routes[*ri];
            let next = g.next_flush_ms.saturating_add(route.group_interval_ms);
            g.next_flush_ms = if next > now_ms {
                next
            } else {
                now_ms.saturating_add(route.group_interval_ms)
            };
            if let Some(n) = flush(g, route, now_ms, &self.external_url) {
                out.push(Pending {
                    route: *ri,
                    key: key.clone(),
                    notification: n,
                });
            } else if g.alerts.is_empty() {
                empty.push((*ri, key.clone()));
            }
        }
        for id in empty {
            self.groups.remove(&id);
        }
        let routes = &self.routes;
        self.restored
            .retain(|(ri, _), n| now_ms - n.at_ms < routes[*ri].repeat_interval_ms);
        out
    }

    /// Records that `n` (from [`Dispatcher::due`] for `route` and `key`)
    /// was sent at `now_ms`, and removes its resolved alerts that have not
    /// changed since.
    pub fn delivered(&mut self, route: usize, key: &str, n: &Notification, now_ms: i64) {
        let id = (route, key.to_string());
        let Some(g) = self.groups.get_mut(&id) else {
            return;
        };
        let fps = |it: &mut dyn Iterator<Item = &NotifyAlert>| -> BTreeSet<String> {
            it.map(|a| fingerprint(&a.alert.labels)).collect()
        };
        let resolved = fps(&mut n.resolved());
        g.notified = Some(Notified {
            firing: fps(&mut n.firing()),
            resolved: resolved.clone(),
            at_ms: now_ms,
        });
        for fp in &resolved {
            if g.alerts.get(fp).is_some_and(|a| a.is_resolved()) {
                g.alerts.remove(fp);
            }
        }
        if g.alerts.is_empty() {
            self.groups.remove(&id);
        }
    }

    /// When [`Dispatcher::due`] next has something to do.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// What was last notified, per route name and group key.
    pub fn snapshot(&self) -> DispatchState {
        let mut groups: Vec<GroupState> = self
            .groups
            .iter()
            .filter_map(|(id, g)| g.notified.as_ref().map(|n| (id, n)))
            .chain(self.restored.iter())
            .map(|((ri, key), n)| GroupState {
                route: self.routes[*ri].name.clone(),
                key: key.clone(),
                notified: n.clone(),
            })
            .collect();
        groups.sort_by(|a, b| (&a.route, &a.key).cmp(&(&b.route, &b.key)));
        DispatchState { groups }
    }

    /// Takes back a [`Dispatcher::snapshot`]; entries of routes no longer
    /// configured are dropped. Best called before the first ingest.
    pub fn restore(&mut self, state: DispatchState) {
        for gs in state.groups {
            let Some(ri) = self.routes.iter().position(|r| r.name == gs.route) else {
                continue;
            };
            let id = (ri, gs.key);
            match self.groups.get_mut(&id) {
                Some(g) if g.notified.is_none() => {
                    let gi = self.routes[ri].group_interval_ms;
                    g.next_flush_ms = g.next_flush_ms.min(next_boundary(
                        gs.notified.at_ms,
                        gi,
                        gs.notified.at_ms,
                    ));
                    g.notified = Some(gs.notified);
                }
                Some(_) => {}
                None => {
                    self.restored.insert(id, gs.notified);
                }
            }
        }
    }
}

/// The group key of group labels: `{}:{alertname="X"}`.
pub fn group_key(labels: &Labels) -> String {
    Notification {
        receiver: String::new(),
        group_labels: labels.clone(),
        alerts: Vec::new(),
        external_url: String::new(),
    }
    .group_key()
}

/// The first `at + k·interval` (k ≥ 1) at or after `now`.
fn next_boundary(at: i64, interval: i64, now: i64) -> i64 {
    let first = at.saturating_add(interval);
    if now <= first {
        return first;
    }
    let k = (now - at + interval - 1) / interval;
    at.saturating_add(k.saturating_mul(interval))
}

/// One flush of a group: drops what will never be told, decides as
/// `needsUpdate` does, and builds the notification.
fn flush(g: &mut Group, route: &Route, now: i64, external_url: &str) -> Option<Notification> {
    for a in g.alerts.values_mut() {
        if let (None, Some(v)) = (a.alert.resolved_at, a.alert.valid_until)
            && v < now
        {
            a.alert.resolved_at = Some(v);
            a.alert.state = crate::alert::state::AlertState::Inactive;
        }
    }
    let told = |fp: &String| g.notified.as_ref().is_some_and(|n| n.firing.contains(fp));
    let drop: Vec<String> = g
        .alerts
        .iter()
        .filter(|(fp, a)| a.is_resolved() && (!route.send_resolved || !told(fp)))
        .map(|(fp, _)| fp.clone())
        .collect();
    let dropped_resolved: BTreeSet<String> = drop.iter().filter(|fp| told(fp)).cloned().collect();
    for fp in &drop {
        g.alerts.remove(fp);
    }
    let firing: BTreeSet<&String> = g
        .alerts
        .iter()
        .filter(|(_, a)| !a.is_resolved())
        .map(|(fp, _)| fp)
        .collect();
    let resolved: BTreeSet<&String> = g
        .alerts
        .iter()
        .filter(|(_, a)| a.is_resolved())
        .map(|(fp, _)| fp)
        .collect();
    let send = match &g.notified {
        None => !firing.is_empty(),
        Some(n) if !firing.iter().all(|fp| n.firing.contains(*fp)) => true,
        Some(n) if firing.is_empty() => {
            if n.firing.is_empty() {
                false
            } else if resolved.is_empty() {
                // All resolved, nothing to tell (send_resolved off):
                // recorded as if sent, as Alertmanager's log does.
                g.notified = Some(Notified {
                    firing: BTreeSet::new(),
                    resolved: dropped_resolved,
                    at_ms: now,
                });
                false
            } else {
                true
            }
        }
        Some(n) if resolved.iter().any(|fp| !n.resolved.contains(*fp)) => true,
        Some(n) => now - n.at_ms >= route.repeat_interval_ms,
    };
    if !send {
        return None;
    }
    let mut alerts: Vec<NotifyAlert> = g.alerts.values().cloned().collect();
    alerts.sort_by(|a, b| a.alert.labels.cmp(&b.alert.labels));
    Some(Notification {
        receiver: route.name.clone(),
        group_labels: g.labels.clone(),
        alerts,
        external_url: external_url.to_string(),
    })
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
