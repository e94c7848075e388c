//! `weir rules export --to prometheus`: the rule files as loaded and a
//! `prometheus.yml` that evaluates them on weir's `/metrics`.
//!
//! The rule files are copied unchanged (the same expressions, labels and
//! annotations weir evaluates). `prometheus.yml` scrapes weir at the
//! pipeline's `api.address`, every `alerting.scrape_interval` (default: the
//! evaluation interval, as weir itself samples), evaluates at
//! `evaluation_interval`, carries `external_labels`, and sends alerts to
//! every Alertmanager of the pipeline's `notify:` that is on. Not carried
//! over: Alertmanager credentials and TLS settings (no secrets are
//! written), and weir's direct notifiers (webhook, Slack, …), which
//! Prometheus does not have.

use std::path::PathBuf;

use super::{Export, duration, file_names, yaml_str};
use crate::config::Pipeline;

/// Builds the export of `pipeline`'s alerting section.
pub fn export(pipeline: &Pipeline) -> Result<Export, String> {
    let Some(alerting) = &pipeline.alerting else {
        return Err(format!(
            "{}: no `alerting:` section, so no rules to export",
            pipeline.origin
        ));
    };
    let mut ex = Export::default();
    let mut sources: Vec<String> = Vec::new();
    for g in &alerting.groups {
        if !sources.contains(&g.file) {
            sources.push(g.file.clone());
        }
    }
    let names = file_names(&sources);
    for (src, name) in sources.iter().zip(&names) {
        let text = crate::alert::live::config::rule_file_text(src)
            .map_err(|e| format!("cannot read the rule file {src}: {e}"))?;
        ex.files.push((PathBuf::from("rules").join(name), text));
    }
    let cfg = &alerting.config;
    let eval_ms = cfg.evaluation_interval.0.as_millis() as i64;
    let scrape_ms = cfg
        .scrape_interval
        .map_or(eval_ms, |d| d.0.as_millis() as i64);
    let mut y = format!(
        "# Written by `weir rules export --to prometheus` from {}.\n# Prometheus scrapes weir's /metrics and evaluates the pipeline's rules on it.\nglobal:\n  scrape_interval: {}\n  evaluation_interval: {}\n",
        pipeline.origin,
        duration(scrape_ms),
        duration(eval_ms)
    );
    if scrape_ms < 10_000 {
        // The default scrape_timeout (10s) may not exceed the interval.
        y.push_str(&format!("  scrape_timeout: {}\n", duration(scrape_ms)));
    }
    if !cfg.external_labels.is_empty() {
        y.push_str("  external_labels:\n");
        for (k, v) in &cfg.external_labels {
            y.push_str(&format!("    {}: {}\n", yaml_str(k), yaml_str(v)));
        }
    }
    y.push_str("rule_files:\n");
    for name in &names {
        y.push_str(&format!("  - {}\n", yaml_str(&format!("rules/{name}"))));
    }
    if !pipeline.api.enabled {
        ex.notes.push(
            "warning: the pipeline has `api.enabled: false`: weir serves no /metrics for Prometheus to scrape".into(),
        );
    }
    y.push_str(&format!(
        "scrape_configs:\n  - job_name: weir\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
        yaml_str(&pipeline.api.address)
    ));
    let mut managers = Vec::new();
    for n in cfg.notify.iter().filter(|n| n.kind == "alertmanager") {
        if n.url_file.is_some() {
            ex.notes.push("note: an Alertmanager URL read from `url_file` is not written out; add it to prometheus.yml yourself".into());
        }
        if n.auth.is_some() || n.bearer_token.is_some() || n.tls.is_some() || !n.headers.is_empty()
        {
            ex.notes.push("note: Alertmanager credentials, headers and TLS settings are not written out; add them to prometheus.yml yourself".into());
        }
        for u in n.url.iter().chain(&n.urls) {
            if u.trim().is_empty() {
                continue;
            }
            match alertmanager(u.trim()) {
                Some(m) => managers.push(m),
                None => ex.notes.push(format!(
                    "warning: Alertmanager URL `{}` is not http(s)://host[:port][/path]; left out",
                    crate::redact::redact_url(u)
                )),
            }
        }
    }
    if managers.is_empty() {
        ex.notes.push(
            "note: no Alertmanager is configured (or its URL is unset): prometheus.yml has no `alerting:` section".into(),
        );
    } else {
        y.push_str("alerting:\n  alertmanagers:\n");
        for (scheme, host, prefix) in managers {
            y.push_str(&format!(
                "    - scheme: {scheme}\n      api_version: v2\n      static_configs:\n        - targets: [{}]\n",
                yaml_str(&host)
            ));
            if !prefix.is_empty() {
                y.push_str(&format!("      path_prefix: {}\n", yaml_str(&prefix)));
            }
        }
    }
    ex.files.push((PathBuf::from("prometheus.yml"), y));
    ex.notes.push(format!(
        "{} rule files ({} rules) and prometheus.yml written",
        names.len(),
        alerting.rule_count()
    ));
    Ok(ex)
}

/// An Alertmanager base URL as (scheme, host:port, path prefix); the
/// `/api/v2/alerts` weir sends to is left out, and so is any user:password.
fn alertmanager(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return None;
    }
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix("/api/v2/alerts").unwrap_or(path);
    Some((scheme.to_string(), host.to_string(), path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_urls() {
        assert_eq!(
            alertmanager("http://am:9093"),
            Some(("http".into(), "am:9093".into(), String::new()))
        );
        assert_eq!(
            alertmanager("https://u:p@am.example/prefix/api/v2/alerts"),
            Some(("https".into(), "am.example".into(), "/prefix".into()))
        );
        assert_eq!(alertmanager("am:9093"), None);
    }
}
