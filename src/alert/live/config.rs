//! The pipeline's `alerting:` section: which rule files, how often, what
//! alerts carry, and where notifications go.
//!
//! ```yaml
//! alerting:
//!   rule_files: ["${WEIR_RULES:-pipelines/rules/alerting_rules.yml}"]
//!   evaluation_interval: 15s
//!   external_labels: {service: feynman}
//!   external_url: http://weir.example:9464
//!   notify:
//!     - {type: alertmanager, url: "${ALERTMANAGER_URL:-}"}
//!     - {type: dingtalk, url: "${DINGTALK_WEBHOOK_URL:-}", secret: "${DINGTALK_SECRET:-}",
//!        matchers: ['severity="critical"']}
//! ```
//!
//! Names and defaults are Prometheus' where it has them
//! (`evaluation_interval` 1 m, `resend_delay` 1 m). Rule files are globs
//! (in the last path element, as Prometheus' `rule_files`), several may
//! be given in one entry separated by commas (`WEIR_RULES=a.yml,b/*.yml`),
//! and relative paths are read from the working directory, then from the
//! pipeline file's directory. Loading them ([`load_rules`]) reports every
//! problem with file:line:column, as `weir validate` does for a rule file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::notifiers::NotifierConfig;
use crate::alert::rules::{self, RuleGroup};
use crate::config::units::Dur;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Rule file globs; an entry may list several, comma separated.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// How often groups without their own `interval` are evaluated.
    #[serde(default = "default_interval")]
    pub evaluation_interval: Dur,
    /// How often weir's own `/metrics` is sampled into the history the
    /// rules read (default: the evaluation interval).
    pub scrape_interval: Option<Dur>,
    /// How much history is kept for rules and the query API (default: 1 h,
    /// or more when a rule reads further back).
    pub retention: Option<Dur>,
    /// Most series the history holds; new ones beyond it are left out.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Labels added to every alert sent (not to `ALERTS`).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Where weir is reachable; alerts' generator links point here.
    #[serde(default)]
    pub external_url: String,
    /// The least time between two sends of the same firing alert to an
    /// Alertmanager (Prometheus' `--rules.alert.resend-delay`).
    #[serde(default = "default_resend_delay")]
    pub resend_delay: Dur,
    /// After a restart, how long a saved pending or firing alert waits for
    /// its expression to return it again (the rebuilt history may be too
    /// short for `rate()` at first) before it is dropped or resolved.
    #[serde(default = "default_restore_grace")]
    pub restore_grace_period: Dur,
    #[serde(default)]
    pub notify: Vec<NotifierConfig>,
}

impl Default for AlertingConfig {
    /// What an empty `alerting: {}` section means.
    fn default() -> Self {
        AlertingConfig {
            rule_files: Vec::new(),
            evaluation_interval: default_interval(),
            scrape_interval: None,
            retention: None,
            max_series: default_max_series(),
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            resend_delay: default_resend_delay(),
            restore_grace_period: default_restore_grace(),
            notify: Vec::new(),
        }
    }
}

fn default_restore_grace() -> Dur {
    Dur(Duration::from_secs(300))
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_resend_delay() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_max_series() -> usize {
    100_000
}

/// The least retention: the live page charts the last hour.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// One loaded rule group and the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedGroup {
    pub file: String,
    pub group: RuleGroup,
}

/// The rule files shipped in `pipelines/rules/`, built in so that the
/// embedded default pipeline works from any directory: a glob naming one
/// of them exactly that matches no file loads the built-in copy.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "pipelines/rules/alerting_rules.yml",
        include_str!("../../../pipelines/rules/alerting_rules.yml"),
    ),
    (
        "pipelines/rules/app-alerting-rules.yml",
        include_str!("../../../pipelines/rules/app-alerting-rules.yml"),
    ),
];

/// The rule file entries, split at commas, trimmed, empty ones dropped.
pub fn rule_globs(cfg: &AlertingConfig) -> Vec<String> {
    cfg.rule_files
        .iter()
        .flat_map(|e| e.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Loads every rule file the globs match, in order (each glob's matches
/// sorted by name, a file matched twice loaded once). `base` is the
/// pipeline file's directory, tried for a relative glob that matches
/// nothing in the working directory. Errors are one per problem.
pub fn load_rules(globs: &[String], base: Option<&Path>) -> Result<Vec<LoadedGroup>, Vec<String>> {
    let mut files: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    for g in globs {
        let mut matched = crate::alert::unittest::input::glob(g);
        if matched.is_empty()
            && !Path::new(g).is_absolute()
            && let Some(b) = base.filter(|b| !b.as_os_str().is_empty())
        {
            matched = crate::alert::unittest::input::glob(&b.join(g).to_string_lossy());
        }
        if matched.is_empty()
            && let Some((_, text)) = BUILT_IN.iter().find(|(p, _)| p == g)
        {
            tracing::info!(rule_file = %g, "no such file here; using weir's built-in copy of it");
            match rules::from_text(text, &format!("{g} (built in)")) {
                Ok(rf) => groups.extend(rf.groups.into_iter().map(|group| LoadedGroup {
                    file: g.clone(),
                    group,
                })),
                Err(es) => errors.extend(es.into_iter().map(|e| e.to_string())),
            }
            continue;
        }
        if matched.is_empty() {
            errors.push(format!(
                "rule file `{g}` matches no file (relative paths are read from the working directory, then from the pipeline file's directory)"
            ));
        }
        for m in matched {
            if !files.contains(&m) {
                files.push(m);
            }
        }
    }
    for f in &files {
        match rules::load(Path::new(f)) {
            Ok(rf) => groups.extend(rf.groups.into_iter().map(|group| LoadedGroup {
                file: f.clone(),
                group,
            })),
            Err(es) => errors.extend(es.into_iter().map(|e| e.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// The text of a loaded rule file (`LoadedGroup::file`): the file itself,
/// or weir's built-in copy when that is what was loaded.
pub fn rule_file_text(file: &str) -> std::io::Result<String> {
    match std::fs::read_to_string(file) {
        Ok(t) => Ok(t),
        Err(e) => BUILT_IN
            .iter()
            .find(|(p, _)| *p == file)
            .map(|(_, t)| t.to_string())
            .ok_or(e),
    }
}
