//! How the running rules look from outside: the [`RulesView`] the query
//! API reads, and `ALERTS` / `ALERTS_FOR_STATE` on `/metrics`.

use std::collections::BTreeMap;

use super::{Live, now_ms};
use crate::alert::promql::{Sample, Storage};
use crate::alert::rules::RuleKind;
use crate::alert::status::{GroupStatus, RuleStatus, RuleStatusKind, RulesView};
use crate::telemetry::{Render, write_labels};

impl RulesView for Live {
    fn with_storage(&self, f: &mut dyn FnMut(&dyn Storage)) {
        let st = self.read();
        let layered = crate::alert::group::Layered {
            base: &st.history,
            top: &st.results,
        };
        f(&layered);
    }

    fn groups(&self) -> Vec<GroupStatus> {
        let st = self.read();
        st.groups
            .iter()
            .map(|g| {
                let group = g.eval.group();
                GroupStatus {
                    name: group.name.clone(),
                    file: g.file.clone(),
                    interval_ms: g.interval_ms,
                    limit: group.limit,
                    last_evaluation_ms: g.last_ms,
                    evaluation_seconds: g.seconds,
                    rules: group
                        .rules
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            let h = &g.rules[i];
                            let kind = match &r.kind {
                                RuleKind::Recording => RuleStatusKind::Recording,
                                RuleKind::Alerting(spec) => {
                                    let a = g.eval.alerts(i);
                                    RuleStatusKind::Alerting {
                                        for_ms: spec.for_ms,
                                        keep_firing_for_ms: spec.keep_firing_for_ms,
                                        annotations: spec.annotations.clone(),
                                        state: a.map_or(
                                            crate::alert::state::AlertState::Inactive,
                                            |a| a.state(),
                                        ),
                                        alerts: a
                                            .map(|a| a.active_alerts().cloned().collect())
                                            .unwrap_or_default(),
                                    }
                                }
                            };
                            RuleStatus {
                                name: r.name.clone(),
                                query: r.expr_text.clone(),
                                labels: r.labels.clone(),
                                health: h.health,
                                last_error: h.last_error.clone(),
                                last_evaluation_ms: h.last_ms,
                                evaluation_seconds: 0.0,
                                kind,
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn oldest_ms(&self) -> i64 {
        self.read().history.oldest_ms().unwrap_or_else(now_ms)
    }
}

/// `ALERTS` and `ALERTS_FOR_STATE` on `/metrics`, as the last evaluations
/// wrote them. Holds the evaluator weakly: a reload that replaces it
/// leaves nothing behind.
pub(super) struct AlertsRender(pub(super) std::sync::Weak<Live>);

impl Render for AlertsRender {
    fn render(&self, out: &mut String) {
        let Some(live) = self.0.upgrade() else {
            return;
        };
        let st = live.read();
        let mut by_name: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
        for s in st.groups.iter().flat_map(|g| &g.alert_samples) {
            by_name
                .entry(s.labels.get(crate::alert::promql::value::METRIC_NAME))
                .or_default()
                .push(s);
        }
        for (name, samples) in by_name {
            let help = if name == "ALERTS" {
                "Pending and firing alerts of weir's rules (1 each)."
            } else {
                "When each pending or firing alert became active (Unix seconds)."
            };
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for s in samples {
                out.push_str(name);
                let labels = s.labels.without_name();
                write_labels(out, labels.iter());
                out.push(' ');
                out.push_str(&crate::metrics::store::format_value(s.v));
                out.push('\n');
            }
        }
    }
}
