//! What a pipeline makes available to its alert rules: every metric name
//! weir serves on `/metrics` (which the rules' history is scraped from),
//! with its type, a histogram's buckets and its label names.
//!
//! - the families each `metrics` sink derives, as its store registers them
//!   ([`crate::metrics::Prepared::families`]): rules and cost counters;
//!   a histogram `x` is served as `x_bucket` (with `le`), `x_sum` and
//!   `x_count`, never as `x`;
//! - weir's self-metrics ([`SELF_METRICS`], checked against the sources by
//!   a test);
//! - `ALERTS` and `ALERTS_FOR_STATE`, whose labels are the alerts' own;
//! - the outputs of the recording rules loaded with the pipeline.
//!
//! A metric that is in none of these is never there for a rule to read.

use std::collections::BTreeSet;

use super::labels::{LabelSet, result_labels};
use crate::alert::live::config::LoadedGroup;
use crate::alert::rules::RuleKind;
use crate::config::Pipeline;
use crate::metrics::store::Kind;

/// A metric's type, as far as the lints care.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricType {
    Counter,
    Gauge,
    /// Finite bucket bounds, increasing (`+Inf` is always there too).
    Histogram(Vec<f64>),
    /// A recording rule's output: whatever its expression makes.
    Unknown,
}

/// Where a metric comes from, for messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A `metrics` sink's rule.
    Derived,
    /// A `metrics` sink's `costs:` block, which keeps `keep_days` days of
    /// its per-day series.
    Cost {
        keep_days: u32,
    },
    SelfMetric,
    Alerts,
    Recording,
}

/// One family of the catalog.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: MetricType,
    /// Label names besides `__name__` (and a histogram's `le`).
    pub labels: LabelSet,
    pub origin: Origin,
}

/// Which series of a family a name is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Part {
    /// The family's own name (for a histogram: not a series).
    Whole,
    Bucket,
    Sum,
    Count,
}

/// A series name looked up in the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub family: &'a Family,
    pub part: Part,
}

impl Found<'_> {
    /// Whether this series exists (a histogram's bare name does not).
    pub fn exists(&self) -> bool {
        !(matches!(self.family.kind, MetricType::Histogram(_)) && self.part == Part::Whole)
    }

    /// The labels of the series (with `le` for buckets).
    pub fn labels(&self) -> LabelSet {
        match (self.part, &self.family.labels) {
            (Part::Bucket, LabelSet::Known(l)) => {
                let mut l = l.clone();
                l.insert("le".to_string());
                LabelSet::Known(l)
            }
            (_, l) => l.clone(),
        }
    }

    /// Whether the series is a gauge (`rate()` of it is wrong).
    pub fn is_gauge(&self) -> bool {
        matches!(self.family.kind, MetricType::Gauge)
    }
}

/// Weir's self-metrics: name, whether a counter (else a gauge), labels.
/// `src/alert/lint/tests.rs` checks each against its registration.
pub const SELF_METRICS: &[(&str, bool, &[&str])] = &[
    ("weir_build_info", false, &["version"]),
    ("weir_lines_read_total", true, &["source"]),
    ("weir_bytes_read_total", true, &["source"]),
    ("weir_lines_truncated_total", true, &["source"]),
    ("weir_lines_dropped_total", true, &["source", "reason"]),
    ("weir_invalid_utf8_lines_total", true, &["source"]),
    ("weir_decode_errors_total", true, &["source", "reason"]),
    ("weir_timestamp_fallbacks_total", true, &["source"]),
    ("weir_files_open", false, &["source"]),
    ("weir_files_waiting", false, &["source"]),
    ("weir_file_truncations_total", true, &["source"]),
    ("weir_file_copies_followed_total", true, &["source"]),
    ("weir_file_errors_total", true, &["source"]),
    ("weir_checkpoint_errors_total", true, &["source"]),
    ("weir_checkpoint_lag_bytes", false, &["source"]),
    ("weir_files_skipped_total", true, &["source", "reason"]),
    ("weir_events_discarded_total", true, &["transform"]),
    ("weir_events_out_total", true, &["sink"]),
    ("weir_bytes_out_total", true, &["sink"]),
    ("weir_sink_errors_total", true, &["sink"]),
    ("weir_sink_retries_total", true, &["sink"]),
    ("weir_sink_given_up_events_total", true, &["sink"]),
    ("weir_sink_undelivered_events_total", true, &["sink"]),
    ("weir_dead_letter_events_total", true, &["sink", "reason"]),
    ("weir_buffer_events", false, &["sink"]),
    ("weir_buffer_bytes", false, &["sink"]),
    ("weir_buffer_replayed_events_total", true, &["sink"]),
    ("weir_buffer_corrupt_records_total", true, &["sink"]),
    ("weir_buffer_discarded_events_total", true, &["sink"]),
    ("weir_buffer_write_errors_total", true, &["sink"]),
    ("weir_metric_value_errors_total", true, &["metric"]),
    ("weir_metric_overflow_samples_total", true, &["metric"]),
    ("weir_llm_unpriced_events_total", true, &["sink"]),
    (
        "weir_remote_write_requests_total",
        true,
        &["sink", "outcome"],
    ),
    ("weir_remote_write_samples_total", true, &["sink"]),
    ("weir_config_reloads_total", true, &["outcome"]),
    ("weir_config_last_reload_successful", false, &[]),
    ("weir_loki_requests_total", true, &["sink", "status"]),
    ("weir_loki_bytes_total", true, &["sink", "stage"]),
    ("weir_loki_batch_entries", false, &["sink"]),
    ("weir_loki_stream_overflow_events_total", true, &["sink"]),
    ("weir_loki_out_of_order_dropped_total", true, &["sink"]),
    (
        "weir_elasticsearch_documents_total",
        true,
        &["sink", "outcome"],
    ),
    ("weir_elasticsearch_bytes_total", true, &["sink", "stage"]),
    ("weir_elasticsearch_batch_documents", false, &["sink"]),
    ("weir_api_connections_open", false, &[]),
    ("weir_api_max_connections", false, &[]),
    ("weir_api_connection_limit_reached_total", true, &[]),
    ("weir_api_connections_timed_out_total", true, &[]),
    ("weir_rule_group_evaluations_total", true, &["group"]),
    ("weir_rule_evaluation_failures_total", true, &["group"]),
    ("weir_rules_history_series_dropped_total", true, &[]),
    ("weir_rules_scrape_lines_skipped_total", true, &[]),
    ("weir_notifications_total", true, &["notifier", "outcome"]),
    ("weir_notifications_dropped_total", true, &["notifier"]),
    ("weir_notification_batches_dropped_total", true, &[]),
    ("weir_backtest_late_lines_total", true, &[]),
    ("weir_tap_events_dropped_total", true, &[]),
];

/// The metrics a pipeline's rules can read.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub families: Vec<Family>,
}

fn known(names: impl IntoIterator<Item = impl Into<String>>) -> LabelSet {
    LabelSet::Known(names.into_iter().map(Into::into).collect())
}

impl Catalog {
    /// The catalog of a checked pipeline with `groups` loaded beside it
    /// (its own `alerting:` groups, or a rule file linted against it).
    pub fn of_pipeline(p: &Pipeline, groups: &[LoadedGroup]) -> Catalog {
        let mut c = Catalog::default();
        for sink in &p.sinks {
            let Some(cfg) = sink.kind.metrics() else {
                continue;
            };
            let keep_days = cfg.costs.as_ref().map(|c| c.keep_days);
            // Checked when the pipeline was: this compiles again, no more.
            let Ok(prepared) = cfg.prepare() else {
                continue;
            };
            let rule_names: BTreeSet<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
            for (name, kind, labels) in prepared.families() {
                // What no rule names, the `costs:` block registered.
                let origin = match keep_days {
                    Some(keep_days) if !rule_names.contains(name) => Origin::Cost { keep_days },
                    _ => Origin::Derived,
                };
                c.add(Family {
                    name: name.to_string(),
                    kind: match kind {
                        Kind::Counter => MetricType::Counter,
                        Kind::Gauge => MetricType::Gauge,
                        Kind::Histogram { buckets } => MetricType::Histogram(buckets.clone()),
                    },
                    labels: known(labels.iter().cloned()),
                    origin,
                });
            }
        }
        for (name, counter, labels) in SELF_METRICS {
            c.add(Family {
                name: name.to_string(),
                kind: if *counter {
                    MetricType::Counter
                } else {
                    MetricType::Gauge
                },
                labels: known(labels.iter().copied()),
                origin: Origin::SelfMetric,
            });
        }
        for name in ["ALERTS", "ALERTS_FOR_STATE"] {
            c.add(Family {
                name: name.to_string(),
                kind: MetricType::Gauge,
                labels: LabelSet::Any,
                origin: Origin::Alerts,
            });
        }
        c.add_recordings(groups);
        c
    }

    /// Adds the recording rules' outputs: their labels are those their
    /// expression's result can have, plus the rule's own labels.
    pub fn add_recordings(&mut self, groups: &[LoadedGroup]) {
        let recordings = || {
            groups
                .iter()
                .flat_map(|g| &g.group.rules)
                .filter(|r| r.kind == RuleKind::Recording)
        };
        for r in recordings() {
            self.add(Family {
                name: r.name.clone(),
                kind: MetricType::Unknown,
                labels: LabelSet::Any,
                origin: Origin::Recording,
            });
        }
        // Twice over: a recording rule may read another's output.
        for _ in 0..2 {
            for r in recordings() {
                let mut labels = result_labels(&r.expr, Some(self));
                if let LabelSet::Known(l) = &mut labels {
                    l.extend(r.labels.iter().map(|(k, _)| k.clone()));
                }
                if let Some(f) = self
                    .families
                    .iter_mut()
                    .find(|f| f.name == r.name && f.origin == Origin::Recording)
                {
                    f.labels = labels;
                }
            }
        }
    }

    /// Adds a family; a name already there (two sinks deriving it) keeps
    /// the union of the label names.
    fn add(&mut self, f: Family) {
        match self.families.iter_mut().find(|o| o.name == f.name) {
            Some(o) => o.labels = o.labels.union(&f.labels),
            None => self.families.push(f),
        }
    }

    /// The family a series name belongs to, and which of its series it is.
    pub fn find(&self, name: &str) -> Option<Found<'_>> {
        if let Some(f) = self.families.iter().find(|f| f.name == name) {
            return Some(Found {
                family: f,
                part: Part::Whole,
            });
        }
        for (suffix, part) in [
            ("_bucket", Part::Bucket),
            ("_sum", Part::Sum),
            ("_count", Part::Count),
        ] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(f) = self.families.iter().find(|f| f.name == base)
                && matches!(f.kind, MetricType::Histogram(_))
            {
                return Some(Found { family: f, part });
            }
        }
        None
    }

    /// Every series name there is (histograms by their three series).
    pub fn series_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.families {
            match f.kind {
                MetricType::Histogram(_) => {
                    for s in ["_bucket", "_sum", "_count"] {
                        out.push(format!("{}{s}", f.name));
                    }
                }
                _ => out.push(f.name.clone()),
            }
        }
        out
    }
}
