//! Alert state that survives a restart: `<data_dir>/alerts/state.json`.
//!
//! After each evaluation that changed something, every rule's alerts
//! (pending since, firing since, resolved at, last sent, value, rendered
//! annotations) are written atomically (temporary file, fsync, rename).
//! At start they are put back, so a restart neither restarts `for` timers
//! nor sends an alert again before its resend delay. A file that cannot be
//! read is moved aside (`state.json.corrupt`) with a warning and weir
//! starts without it: a broken state file never stops the shipper.
//!
//! Rules are matched by (file, group, rule name, expression): a rule whose
//! expression changed starts afresh, as Prometheus does on reload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alert::promql::Labels;
use crate::alert::state::{Alert, AlertState};

const VERSION: u32 = 1;

/// Where the state lives under `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("alerts").join("state.json")
}

/// Which rule a set of alerts belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuleKey {
    pub file: String,
    pub group: String,
    pub rule: String,
    pub expr: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    saved_at_ms: i64,
    rules: Vec<SavedRule>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedRule {
    #[serde(flatten)]
    key: RuleKey,
    alerts: Vec<SavedAlert>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedAlert {
    labels: BTreeMap<String, String>,
    state: String,
    annotations: Vec<(String, String)>,
    /// `None` for NaN (JSON has no NaN).
    value: Option<f64>,
    active_at: i64,
    fired_at: Option<i64>,
    resolved_at: Option<i64>,
    last_sent_at: Option<i64>,
    valid_until: Option<i64>,
    keep_firing_since: Option<i64>,
}

impl SavedAlert {
    fn from(a: &Alert) -> SavedAlert {
        SavedAlert {
            labels: a.labels.iter().map(|(k, v)| (k.into(), v.into())).collect(),
            state: a.state.to_string(),
            annotations: a.annotations.clone(),
            value: (!a.value.is_nan()).then_some(a.value),
            active_at: a.active_at,
            fired_at: a.fired_at,
            resolved_at: a.resolved_at,
            last_sent_at: a.last_sent_at,
            valid_until: a.valid_until,
            keep_firing_since: a.keep_firing_since,
        }
    }

    fn into_alert(self) -> Option<Alert> {
        let state = match self.state.as_str() {
            "pending" => AlertState::Pending,
            "firing" => AlertState::Firing,
            "inactive" => AlertState::Inactive,
            _ => return None,
        };
        Some(Alert {
            state,
            labels: Labels::from_pairs(self.labels),
            annotations: self.annotations,
            value: self.value.unwrap_or(f64::NAN),
            active_at: self.active_at,
            fired_at: self.fired_at,
            resolved_at: self.resolved_at,
            last_sent_at: self.last_sent_at,
            valid_until: self.valid_until,
            keep_firing_since: self.keep_firing_since,
        })
    }
}

/// Writes every rule's alerts atomically.
pub fn save(path: &Path, now_ms: i64, rules: &[(RuleKey, Vec<&Alert>)]) -> std::io::Result<()> {
    let disk = OnDisk {
        version: VERSION,
        saved_at_ms: now_ms,
        rules: rules
            .iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(key, alerts)| SavedRule {
                key: key.clone(),
                alerts: alerts.iter().map(|a| SavedAlert::from(a)).collect(),
            })
            .collect(),
    };
    crate::source::checkpoint::write_atomic(path, &serde_json::to_vec_pretty(&disk)?)
}

/// The saved alerts by rule; empty when there is no file. A file that
/// cannot be read or parsed is moved aside, with a warning.
pub fn load(path: &Path) -> BTreeMap<RuleKey, Vec<Alert>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved alert state; starting without it (`for` timers start again)");
            return BTreeMap::new();
        }
    };
    match serde_json::from_slice::<OnDisk>(&bytes) {
        Ok(d) if d.version == VERSION => d
            .rules
            .into_iter()
            .map(|r| {
                let alerts = r
                    .alerts
                    .into_iter()
                    .filter_map(SavedAlert::into_alert)
                    .collect();
                (r.key, alerts)
            })
            .collect(),
        Ok(d) => {
            set_aside(
                path,
                &format!("it has version {}, not {VERSION}", d.version),
            );
            BTreeMap::new()
        }
        Err(e) => {
            set_aside(path, &e.to_string());
            BTreeMap::new()
        }
    }
}

fn set_aside(path: &Path, why: &str) {
    let aside = path.with_extension("json.corrupt");
    let moved = std::fs::rename(path, &aside).is_ok();
    tracing::warn!(
        path = %path.display(),
        moved_to = %if moved { aside.display().to_string() } else { "(could not move it)".into() },
        "the saved alert state cannot be used ({why}); starting without it: `for` timers start again and firing alerts may be sent once more"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: AlertState) -> Alert {
        Alert {
            state,
            labels: Labels::from_pairs([("alertname", "X"), ("sev", "严重")]),
            annotations: vec![("summary".into(), "错误率过高".into())],
            value: f64::NAN,
            active_at: 1000,
            fired_at: Some(2000),
            resolved_at: None,
            last_sent_at: Some(2000),
            valid_until: Some(9000),
            keep_firing_since: None,
        }
    }

    fn key() -> RuleKey {
        RuleKey {
            file: "r.yml".into(),
            group: "g".into(),
            rule: "X".into(),
            expr: "up == 0".into(),
        }
    }

    #[test]
    fn round_trips_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let a = alert(AlertState::Firing);
        save(&p, 5, &[(key(), vec![&a])]).unwrap();
        let back = load(&p);
        let got = &back[&key()][0];
        assert_eq!(got.labels, a.labels);
        assert_eq!(got.annotations, a.annotations);
        assert!(got.value.is_nan());
        assert_eq!(
            (got.state, got.active_at, got.fired_at, got.last_sent_at),
            (AlertState::Firing, 1000, Some(2000), Some(2000))
        );
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"{\"version\": 1, \"rules\": [tr").unwrap();
        assert!(load(&p).is_empty());
        assert!(!p.exists());
        assert!(p.with_extension("json.corrupt").exists());
    }
}
