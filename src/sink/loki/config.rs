//! The `loki` sink's settings, and the checks `weir validate` runs on them.

use std::time::Duration;

use serde::Deserialize;

use crate::config::invalid::Invalid;
use crate::config::ordered::OrderedMap;
use crate::config::units::Dur;
use crate::sink::{BatchConfig, RetryConfig};
use crate::template::{Template, TemplateConfig};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Protobuf,
    Json,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// snappy for protobuf (always), none for JSON.
    #[default]
    Default,
    Gzip,
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfOrder {
    #[default]
    Reorder,
    Drop,
    Pass,
}

pub use crate::http::{BasicAuth, TlsConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Loki's base URL; `/loki/api/v1/push` is appended.
    pub endpoint: String,
    pub labels: OrderedMap<TemplateConfig>,
    #[serde(default)]
    pub structured_metadata: OrderedMap<TemplateConfig>,
    /// `original` (the line as read), `event` (the event as JSON) or a template.
    #[serde(default = "original")]
    pub line: String,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub out_of_order: OutOfOrder,
    /// How far behind its stream's newest entry Loki still accepts one
    /// (`max_chunk_age / 2`, 1h by default). Older entries are set aside
    /// here, before sending: Loki would refuse them, and when a request
    /// holds several streams it reports the refusals of the last one only.
    #[serde(default = "default_window")]
    pub out_of_order_window: Dur,
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Push requests in flight at once. A batch is split by stream, so
    /// each stream's entries still arrive in order; 1 (the default) sends
    /// the whole batch in one request.
    #[serde(default = "one")]
    pub concurrency: usize,
    pub tenant_id: Option<String>,
    pub auth: Option<BasicAuth>,
    pub bearer_token: Option<String>,
    pub tls: Option<TlsConfig>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn original() -> String {
    "original".into()
}
fn default_max_streams() -> usize {
    1000
}
fn one() -> usize {
    1
}
fn default_request_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_window() -> Dur {
    Dur(Duration::from_secs(3600))
}

/// Loki's limit on label names per stream (3.x).
const MAX_LABELS: usize = 15;

fn cfg_err(path: &[&str], message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
    }
}

pub(super) enum Line {
    Original,
    Event,
    Template(Template),
}

pub(super) type Pairs = Vec<(String, Template)>;

impl LokiConfig {
    fn compile_pairs(map: &OrderedMap<TemplateConfig>, key: &str) -> Result<Pairs, Invalid> {
        map.iter()
            .map(|(name, t)| {
                if !crate::metrics::rules::valid_label_name(name) {
                    return Err(cfg_err(&[key, name], format!("`{name}` is not a valid Loki label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")));
                }
                Template::compile(t).map(|t| (name.clone(), t)).map_err(|(sub, m)| {
                    let mut path = vec![key, name.as_str()];
                    path.extend(sub);
                    cfg_err(&path, m)
                })
            })
            .collect()
    }

    pub(super) fn compile(&self) -> Result<(Pairs, Pairs, Line, String), Invalid> {
        if !crate::http::is_http_url(&self.endpoint) {
            return Err(cfg_err(
                &["endpoint"],
                format!(
                    "`{}` is not an http(s) URL, e.g. http://127.0.0.1:3100",
                    self.endpoint
                ),
            ));
        }
        let labels = Self::compile_pairs(&self.labels, "labels")?;
        if labels.is_empty() {
            return Err(cfg_err(
                &["labels"],
                "Loki needs at least one label per stream, e.g. `labels: {app: feynman}`",
            ));
        }
        if labels.len() > MAX_LABELS {
            return Err(cfg_err(
                &["labels"],
                format!(
                    "{} labels; Loki accepts at most {MAX_LABELS} per stream",
                    labels.len()
                ),
            ));
        }
        if !labels.iter().any(|(_, t)| t.is_static()) {
            return Err(cfg_err(
                &["labels"],
                "give at least one fixed label (e.g. `app: feynman`): a stream whose templated labels are all empty would have none",
            ));
        }
        let metadata = Self::compile_pairs(&self.structured_metadata, "structured_metadata")?;
        let line = match self.line.as_str() {
            "original" => Line::Original,
            "event" => Line::Event,
            t if t.contains("{{") => Line::Template(
                Template::compile(&TemplateConfig::Template(t.into()))
                    .map_err(|(_, m)| cfg_err(&["line"], m))?,
            ),
            other => {
                return Err(cfg_err(
                    &["line"],
                    format!(
                        "`{other}`: use `original`, `event`, or a template such as \"{{{{ level }}}} {{{{ message }}}}\""
                    ),
                ));
            }
        };
        if self.encoding == Encoding::Protobuf && self.compression == Compression::Gzip {
            return Err(cfg_err(
                &["compression"],
                "protobuf pushes are always snappy-compressed; `compression: gzip` is for `encoding: json`",
            ));
        }
        if let Some(ca) = self.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
            std::fs::read(ca)
                .map_err(|e| cfg_err(&["tls", "ca_file"], format!("cannot read {ca}: {e}")))?;
        }
        let url = format!("{}/loki/api/v1/push", self.endpoint.trim_end_matches('/'));
        Ok((labels, metadata, line, url))
    }

    pub fn check(&self) -> Result<(), Invalid> {
        self.compile().map(|_| ())
    }
}
