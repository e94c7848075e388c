//! What the running rules look like from outside: the view the query API
//! (`/api/v1/*`) and the live page read.
//!
//! [`RulesView`] is implemented by the live evaluator (`alert::live`); the
//! API reads it and never changes anything through it. The status types
//! are snapshots, copied out under the evaluator's lock, so a slow API
//! client never holds an evaluation back.

use super::promql::Storage;
use super::state::{Alert, AlertState};

/// Read access to the running rules and the series they read.
pub trait RulesView: Send + Sync {
    /// Calls `f` with the storage the rules read: the history of weir's
    /// own `/metrics` (derived metrics, cost counters, self-metrics) with
    /// the rules' results on top. `f` runs under a read lock: keep it to
    /// one query.
    fn with_storage(&self, f: &mut dyn FnMut(&dyn Storage));

    /// The rule groups, in the order they are evaluated.
    fn groups(&self) -> Vec<GroupStatus>;

    /// The oldest time the storage has samples for, in ms (for
    /// `/api/v1/series` without `start`).
    fn oldest_ms(&self) -> i64;
}

/// One rule group as it was at its last evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStatus {
    pub name: String,
    /// The rule file it came from, as configured.
    pub file: String,
    pub interval_ms: i64,
    pub limit: usize,
    /// `None` before the first evaluation.
    pub last_evaluation_ms: Option<i64>,
    /// How long the last evaluation of the whole group took, in seconds.
    pub evaluation_seconds: f64,
    pub rules: Vec<RuleStatus>,
}

/// One rule as it was at its last evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleStatus {
    pub name: String,
    /// The expression as written.
    pub query: String,
    /// Sorted by name; for alerts, the templates as written.
    pub labels: Vec<(String, String)>,
    pub health: Health,
    /// Why the last evaluation failed.
    pub last_error: Option<String>,
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_seconds: f64,
    pub kind: RuleStatusKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleStatusKind {
    Recording,
    Alerting {
        for_ms: i64,
        keep_firing_for_ms: i64,
        /// Sorted by name, as written.
        annotations: Vec<(String, String)>,
        /// The highest state of its alerts.
        state: AlertState,
        /// Pending and firing alerts (not recently resolved ones).
        alerts: Vec<Alert>,
    },
}

/// Prometheus' rule health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    /// The word Prometheus' API uses: `unknown`, `ok`, `err`.
    pub fn word(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}
