//! `weir rules export`: the pipeline's alert rules for a Prometheus or a
//! Loki ruler, so that the same alerts can run outside weir.
//!
//! - [`prometheus`]: the rule files as they were loaded, byte for byte,
//!   plus a `prometheus.yml` that scrapes weir's `/metrics` at the
//!   evaluation interval and sends alerts to the pipeline's Alertmanagers.
//! - [`loki`]: the rules rewritten in LogQL over the logs weir ships, each
//!   derived metric a rule reads replaced by the LogQL metric query that
//!   counts or measures the same events ([`logql`] builds those).
//!
//! Deliberately not done: rewriting what has no exact LogQL equivalent
//! (gauges, cost counters, weir's self-metrics, `up`, `irate`, subqueries,
//! vector matching modifiers, …). Such rules are named with the reason and
//! left out; nothing is dropped silently. No secrets are written: notifier
//! credentials and TLS settings are not carried into `prometheus.yml`.

pub mod logql;
pub mod loki;
pub mod prometheus;

use std::path::{Path, PathBuf};

use crate::alert::rules::{Rule, RuleGroup, RuleKind};

/// What an export writes, and what it has to say about it.
#[derive(Debug, Default)]
pub struct Export {
    /// Paths relative to the output directory, and their contents.
    pub files: Vec<(PathBuf, String)>,
    /// Lines for standard error: refusals, notes, the summary.
    pub notes: Vec<String>,
}

impl Export {
    /// Writes every file under `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        for (rel, text) in &self.files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)?;
        }
        Ok(())
    }
}

/// One output file name per source rule file: its base name, numbered
/// when two sources share one.
pub fn file_names(sources: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sources {
        let base = Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rules.yml".into());
        let mut name = base.clone();
        let mut n = 2;
        while out.contains(&name) {
            let (stem, ext) = base.rsplit_once('.').unwrap_or((base.as_str(), "yml"));
            name = format!("{stem}-{n}.{ext}");
            n += 1;
        }
        out.push(name);
    }
    out
}

/// A YAML double-quoted scalar (JSON's string syntax is YAML's).
pub fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// A duration as Prometheus writes it (`15s`, `1m30s`, `250ms`).
pub fn duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// A rule group as Prometheus/Loki rule-file YAML, with each rule's
/// expression given by `expr` (the rule's own text for Prometheus).
pub fn write_group<'a>(
    out: &mut String,
    group: &RuleGroup,
    rules: impl Iterator<Item = (&'a Rule, String)>,
) {
    out.push_str(&format!("- name: {}\n", yaml_str(&group.name)));
    if let Some(ms) = group.interval_ms {
        out.push_str(&format!("  interval: {}\n", duration(ms)));
    }
    if group.limit > 0 {
        out.push_str(&format!("  limit: {}\n", group.limit));
    }
    out.push_str("  rules:\n");
    for (rule, expr) in rules {
        match &rule.kind {
            RuleKind::Alerting(_) => {
                out.push_str(&format!("  - alert: {}\n", yaml_str(&rule.name)))
            }
            RuleKind::Recording => out.push_str(&format!("  - record: {}\n", yaml_str(&rule.name))),
        }
        out.push_str(&format!("    expr: {}\n", yaml_str(&expr)));
        if let RuleKind::Alerting(a) = &rule.kind {
            if a.for_ms > 0 {
                out.push_str(&format!("    for: {}\n", duration(a.for_ms)));
            }
            if a.keep_firing_for_ms > 0 {
                out.push_str(&format!(
                    "    keep_firing_for: {}\n",
                    duration(a.keep_firing_for_ms)
                ));
            }
        }
        map(out, "labels", &rule.labels);
        if let RuleKind::Alerting(a) = &rule.kind {
            map(out, "annotations", &a.annotations);
        }
    }
}

fn map(out: &mut String, key: &str, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    out.push_str(&format!("    {key}:\n"));
    for (k, v) in pairs {
        out.push_str(&format!("      {}: {}\n", yaml_str(k), yaml_str(v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_names() {
        assert_eq!(duration(15_000), "15s");
        assert_eq!(duration(90_000), "1m30s");
        assert_eq!(duration(250), "250ms");
        assert_eq!(duration(3_600_000), "1h");
        assert_eq!(
            file_names(&["a/r.yml".into(), "b/r.yml".into(), "c.yaml".into()]),
            ["r.yml", "r-2.yml", "c.yaml"]
        );
    }
}
