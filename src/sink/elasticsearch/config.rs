//! The `elasticsearch` sink's settings, and the checks `weir validate` runs on them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::invalid::Invalid;
use crate::config::units::Dur;
use crate::http::{BasicAuth, TlsConfig};
use crate::sink::{BatchConfig, RetryConfig};
use crate::template::{Template, TemplateConfig};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Index,
    DataStream,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStreamConfig {
    #[serde(default = "logs")]
    pub r#type: String,
    #[serde(default = "generic")]
    pub dataset: String,
    #[serde(default = "default_ns")]
    pub namespace: String,
}

pub(super) fn logs() -> String {
    "logs".into()
}
pub(super) fn generic() -> String {
    "generic".into()
}
pub(super) fn default_ns() -> String {
    "default".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EsCompression {
    #[default]
    Gzip,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL, possibly with a path prefix: `http://es:9200`, `https://proxy/es`.
    pub endpoint: String,
    #[serde(default)]
    pub mode: Mode,
    /// Index name (index mode): strftime of the event time in UTC and
    /// `{{ field }}` templates, e.g. `logs-feynman-%Y.%m.%d`.
    #[serde(default = "default_index")]
    pub index: String,
    pub data_stream: Option<DataStreamConfig>,
    /// `fingerprint` (file + offset; none for events not read from a file),
    /// `none` (Elasticsearch picks), or a template such as `"{{ request_id }}"`.
    #[serde(default = "fingerprint")]
    pub id: String,
    /// Ingest pipeline to run documents through.
    pub pipeline: Option<String>,
    /// Field renames, e.g. `{level: log.level}` for ECS.
    #[serde(default)]
    pub renames: BTreeMap<String, String>,
    #[serde(default)]
    pub compression: EsCompression,
    pub auth: Option<BasicAuth>,
    /// The `encoded` value of an Elasticsearch API key.
    pub api_key: Option<String>,
    pub bearer_token: Option<String>,
    pub tls: Option<TlsConfig>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_index() -> String {
    "weir-%Y.%m.%d".into()
}
fn fingerprint() -> String {
    "fingerprint".into()
}
fn default_request_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}

fn err(key: &'static str, message: impl Into<String>) -> Invalid {
    Invalid::at(&[key], message)
}

/// Characters Elasticsearch refuses in index names.
const BAD_INDEX_CHARS: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ' ', ':'];

pub(super) enum IdRule {
    Fingerprint,
    None,
    Template(Template),
}

impl ElasticsearchConfig {
    pub fn check(&self) -> Result<(), Invalid> {
        if !crate::http::is_http_url(&self.endpoint) {
            return Err(err(
                "endpoint",
                format!(
                    "`{}` is not an http(s) URL, e.g. http://127.0.0.1:9200",
                    self.endpoint
                ),
            ));
        }
        match self.mode {
            Mode::Index => {
                if self.data_stream.is_some() {
                    return Err(err(
                        "data_stream",
                        "`data_stream` needs `mode: data_stream`",
                    ));
                }
                // The fixed parts of the name must already be valid.
                let fixed: String = strip_specs(&self.index);
                if fixed.chars().any(|c| c.is_uppercase()) {
                    return Err(err(
                        "index",
                        format!("index names must be lowercase: `{}`", self.index),
                    ));
                }
                if let Some(c) = fixed.chars().find(|c| BAD_INDEX_CHARS.contains(c)) {
                    return Err(err(
                        "index",
                        format!("`{c}` is not allowed in an index name: `{}`", self.index),
                    ));
                }
                if self.index.starts_with(['-', '_', '+'])
                    || self.index.is_empty()
                    || self.index == "."
                    || self.index == ".."
                {
                    return Err(err(
                        "index",
                        format!(
                            "`{}` is not a valid index name (it may not start with - _ +, or be . or ..)",
                            self.index
                        ),
                    ));
                }
                jiff::fmt::strtime::format(&self.index, jiff::Timestamp::UNIX_EPOCH).map_err(
                    |e| {
                        err(
                            "index",
                            format!("invalid date pattern in `{}`: {e}", self.index),
                        )
                    },
                )?;
            }
            Mode::DataStream => {
                let ds = self.data_stream.clone().unwrap_or(DataStreamConfig {
                    r#type: logs(),
                    dataset: generic(),
                    namespace: default_ns(),
                });
                for (what, v) in [
                    ("type", &ds.r#type),
                    ("dataset", &ds.dataset),
                    ("namespace", &ds.namespace),
                ] {
                    if v.is_empty()
                        || v.chars()
                            .any(|c| c.is_uppercase() || BAD_INDEX_CHARS.contains(&c) || c == '-')
                    {
                        return Err(err(
                            "data_stream",
                            format!(
                                "data_stream.{what} `{v}` must be lowercase, without `-` or any of \\ / * ? \" < > | , # : and spaces"
                            ),
                        ));
                    }
                }
            }
        }
        self.id_rule()?;
        if let Some(ca) = self.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
            std::fs::read(ca).map_err(|e| err("tls", format!("cannot read {ca}: {e}")))?;
        }
        let auths = [
            self.auth.is_some(),
            self.api_key.is_some(),
            self.bearer_token.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if auths > 1 {
            return Err(err(
                "auth",
                "use one of `auth`, `api_key` and `bearer_token`",
            ));
        }
        Ok(())
    }

    /// Things that work but are probably not meant.
    pub fn warnings(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let fixed = strip_specs(&self.index);
        let parts: Vec<&str> = fixed.splitn(3, '-').collect();
        if self.mode == Mode::Index
            && parts.len() == 3
            && ["logs", "metrics", "synthetics"].contains(&parts[0])
        {
            out.push(("index", format!("Elasticsearch 8's built-in `{}-*-*` template turns `{}` into a data stream; say `mode: data_stream` to make that explicit, or pick a name outside that pattern", parts[0], self.index)));
        }
        out
    }

    pub(super) fn id_rule(&self) -> Result<IdRule, Invalid> {
        Ok(match self.id.as_str() {
            "fingerprint" => IdRule::Fingerprint,
            "none" => IdRule::None,
            t if t.contains("{{") => IdRule::Template(
                Template::compile(&TemplateConfig::Template(t.into()))
                    .map_err(|(_, m)| err("id", m))?,
            ),
            other => {
                return Err(err(
                    "id",
                    format!(
                        "`{other}`: use `fingerprint`, `none`, or a template such as \"{{{{ request_id }}}}\""
                    ),
                ));
            }
        })
    }
}

/// The text of a strftime pattern without its `%` specifiers (and without
/// `{{ … }}` templates), to check what is fixed.
pub(super) fn strip_specs(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['%', '{']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            rest = t.find("}}").map_or("", |e| &t[e + 2..]);
        } else if tail.starts_with('%') {
            rest = tail.get(2..).unwrap_or("");
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}
