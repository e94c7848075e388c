//! Where alerts go: the `notify:` list of the `alerting:` section, and the
//! task that delivers them without ever holding back evaluation or the
//! log pipeline.
//!
//! - `type: alertmanager` gets every due alert as Prometheus sends them
//!   (API v2, firing ones every `resend_delay`, resolved ones for 15 min);
//!   Alertmanager groups, routes and silences. Several `urls` are all sent
//!   to; a send counts as done when one of them took it.
//! - `webhook`, `slack`, `dingtalk`, `wecom`, `email` are for teams
//!   without an Alertmanager: each is a route with label `matchers`,
//!   `group_by`, `group_wait`, `group_interval`, `repeat_interval` and
//!   `send_resolved`, grouped and deduplicated as Alertmanager does
//!   ([`crate::alert::notify::route`]), with optional `title` / `text`
//!   message templates (Go template syntax over Alertmanager's data).
//!
//! A notifier whose address is empty (`url: "${SLACK_WEBHOOK_URL:-}"`
//! unset) is off. Secrets (URLs with tokens, DingTalk's signing secret,
//! SMTP passwords) can be given inline, from the environment, or from a
//! file (`url_file`, `secret_file`, `password_file`), and are never shown.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::units::Dur;
use crate::http::{BasicAuth, RetryConfig, TlsConfig};

/// One entry of `notify:`. One struct for all kinds, so that a key that
/// belongs to another kind gets a clear message rather than "unknown".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Names the notifier in messages, `receiver` and saved state
    /// (default: its type, numbered when there are several).
    pub name: Option<String>,
    pub url: Option<String>,
    /// Alertmanager: several base URLs.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Read the URL from this file (it holds a token).
    pub url_file: Option<String>,
    /// DingTalk: the robot's signing secret.
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    /// DingTalk and WeCom: `markdown` (default) or `text`.
    pub message: Option<String>,
    /// Message templates (Go template syntax over the alert group).
    pub title: Option<String>,
    pub text: Option<String>,

    // Routing (not for alertmanager).
    #[serde(default)]
    pub matchers: Vec<String>,
    pub group_by: Option<Vec<String>>,
    pub group_wait: Option<Dur>,
    pub group_interval: Option<Dur>,
    pub repeat_interval: Option<Dur>,
    pub send_resolved: Option<bool>,

    // HTTP.
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub bearer_token: Option<String>,
    pub auth: Option<BasicAuth>,
    pub tls: Option<TlsConfig>,
    pub retry: Option<RetryConfig>,

    // Email.
    pub host: Option<String>,
    /// Empty (an unset `${SMTP_PORT:-}`) is the default for `smtp_tls`.
    #[serde(default, deserialize_with = "port")]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    pub smtp_tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub from: Option<String>,
    /// Recipients: a list, or one comma-separated string.
    pub to: Option<Recipients>,
    pub hello_name: Option<String>,
    pub ca_file: Option<String>,
}

/// A port as a number or a string (from the environment); empty is none.
fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        N(u16),
        S(String),
    }
    match Option::<P>::deserialize(d)? {
        None => Ok(None),
        Some(P::N(n)) => Ok(Some(n)),
        Some(P::S(s)) if s.trim().is_empty() => Ok(None),
        Some(P::S(s)) => {
            s.trim().parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!("`{s}` is not a port number (1-65535)"))
            })
        }
    }
}

/// `to:` as a list or as `a@x, b@y`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Recipients {
    One(String),
    Many(Vec<String>),
}

impl Recipients {
    pub fn list(&self) -> Vec<String> {
        let all: Vec<&str> = match self {
            Recipients::One(s) => s.split(',').collect(),
            Recipients::Many(v) => v.iter().flat_map(|s| s.split(',')).collect(),
        };
        all.into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// The kinds, as written in `type:`.
pub const KINDS: &[&str] = &[
    "alertmanager",
    "webhook",
    "slack",
    "dingtalk",
    "wecom",
    "email",
];

impl NotifierConfig {
    pub fn kind_word(&self) -> &str {
        &self.kind
    }

    /// Whether it has an address (an unset `${VAR:-}` leaves it off).
    pub fn enabled(&self) -> bool {
        match self.kind.as_str() {
            "alertmanager" => {
                self.url.as_deref().is_some_and(|u| !u.trim().is_empty())
                    || self.urls.iter().any(|u| !u.trim().is_empty())
                    || self.url_file.is_some()
            }
            "email" => {
                self.host.as_deref().is_some_and(|h| !h.trim().is_empty())
                    && self.to.as_ref().is_some_and(|t| !t.list().is_empty())
            }
            _ => {
                self.url.as_deref().is_some_and(|u| !u.trim().is_empty()) || self.url_file.is_some()
            }
        }
    }

    /// The first problem, naming the key.
    pub fn check(&self) -> Result<(), String> {
        let kind = self.kind.as_str();
        if !KINDS.contains(&kind) {
            return Err(format!(
                "unknown notifier type `{kind}`; one of {}",
                KINDS.join(", ")
            ));
        }
        let only = |set: bool, key: &str, kinds: &[&str]| -> Result<(), String> {
            if set && !kinds.contains(&kind) {
                Err(format!(
                    "`{key}` is not a setting of a {kind} notifier (it is for {})",
                    kinds.join(", ")
                ))
            } else {
                Ok(())
            }
        };
        let http = ["alertmanager", "webhook", "slack", "dingtalk", "wecom"];
        let routed = ["webhook", "slack", "dingtalk", "wecom", "email"];
        only(!self.urls.is_empty(), "urls", &["alertmanager"])?;
        only(self.url.is_some(), "url", &http)?;
        only(self.url_file.is_some(), "url_file", &http)?;
        only(
            self.secret.is_some() || self.secret_file.is_some(),
            "secret",
            &["dingtalk"],
        )?;
        only(self.message.is_some(), "message", &["dingtalk", "wecom"])?;
        only(
            self.title.is_some() || self.text.is_some(),
            "title/text",
            &routed,
        )?;
        only(!self.matchers.is_empty(), "matchers", &routed)?;
        only(
            self.group_by.is_some()
                || self.group_wait.is_some()
                || self.group_interval.is_some()
                || self.repeat_interval.is_some()
                || self.send_resolved.is_some(),
            "group_by/group_wait/group_interval/repeat_interval/send_resolved",
            &routed,
        )?;
        only(
            !self.headers.is_empty()
                || self.bearer_token.is_some()
                || self.auth.is_some()
                || self.tls.is_some(),
            "headers/bearer_token/auth/tls",
            &http,
        )?;
        let smtp = self.host.is_some()
            || self.port.is_some()
            || self.smtp_tls.is_some()
            || self.username.is_some()
            || self.password.is_some()
            || self.password_file.is_some()
            || self.from.is_some()
            || self.to.is_some()
            || self.hello_name.is_some()
            || self.ca_file.is_some();
        only(
            smtp,
            "host/port/smtp_tls/username/password/from/to",
            &["email"],
        )?;
        if let Some(m) = &self.message
            && m != "text"
            && m != "markdown"
        {
            return Err(format!("`message` is `text` or `markdown`, not `{m}`"));
        }
        if !self.enabled() {
            return Ok(());
        }
        if kind == "email" {
            // The email module names its setting `tls`; here it is `smtp_tls`
            // (`tls` is the HTTP notifiers' CA setting).
            return self
                .email()
                .and_then(|e| e.check())
                .map_err(|e| e.replace("`tls: ", "`smtp_tls: "))
                .and_then(|()| self.route().check());
        }
        if kind != "alertmanager" {
            self.route().check()?;
        }
        for t in [&self.title, &self.text].into_iter().flatten() {
            crate::alert::notify::message::MessageTemplate::parse("message", t)?;
        }
        if kind != "email" && self.url_file.is_none() {
            let several = kind == "alertmanager";
            for u in self
                .url
                .iter()
                .chain(&self.urls)
                .flat_map(|u| split_if(u, several))
            {
                let u = u.trim();
                if !u.is_empty() && !crate::http::is_http_url(u) {
                    return Err(format!(
                        "`{}` is not an http(s) URL",
                        crate::redact::redact_url(u)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Reads a secret from a file, without its trailing newline.
pub fn read_secret(path: &str, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("cannot read the {what} from `{path}`: {e}"))
}

/// An inline value, or the file's content when `file` is set.
fn value_or_file(
    inline: &Option<String>,
    file: &Option<String>,
    what: &str,
) -> Result<Option<String>, String> {
    match file {
        Some(f) => read_secret(f, what).map(Some),
        None => Ok(inline.clone().filter(|s| !s.trim().is_empty())),
    }
}

impl NotifierConfig {
    /// The name it goes by: `name`, else its type (numbered after the first).
    pub fn display_name(&self, index_of_kind: usize) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None if index_of_kind == 0 => self.kind.clone(),
            None => format!("{}-{}", self.kind, index_of_kind + 1),
        }
    }

    fn auth(&self) -> crate::http::Auth {
        crate::http::Auth {
            basic: self.auth.clone(),
            bearer_token: self.bearer_token.clone(),
            api_key: None,
            headers: self.headers.clone().into_iter().collect(),
        }
    }

    fn timeout(&self) -> std::time::Duration {
        self.timeout
            .map_or(std::time::Duration::from_secs(10), |d| d.0)
    }

    /// The HTTP targets: every URL (for an Alertmanager, with
    /// `/api/v2/alerts` added to a base URL).
    pub(super) fn http_targets(
        &self,
        server: &'static str,
    ) -> Result<Vec<crate::http::Target>, String> {
        let mut urls: Vec<String> = Vec::new();
        if let Some(u) = value_or_file(&self.url, &self.url_file, "URL")? {
            urls.push(u);
        }
        urls.extend(self.urls.iter().cloned());
        // `urls: ["${ALERTMANAGER_URL:-}"]` with `a,b` in the variable.
        let several = self.kind == "alertmanager";
        let urls: Vec<String> = urls
            .iter()
            .flat_map(|u| split_if(u, several))
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        urls.iter()
            .map(|u| {
                let mut u = u.trim().to_string();
                if self.kind == "alertmanager"
                    && !u.trim_end_matches('/').ends_with("/api/v2/alerts")
                {
                    u = format!("{}/api/v2/alerts", u.trim_end_matches('/'));
                }
                if !crate::http::is_http_url(&u) {
                    return Err(format!(
                        "`{}` is not an http(s) URL",
                        crate::redact::redact_url(&u)
                    ));
                }
                crate::http::Target::new(server, u, self.timeout(), self.tls.as_ref(), self.auth())
            })
            .collect()
    }
}

/// An Alertmanager entry may list several URLs, comma separated; other
/// URLs are taken whole (a query string may hold a comma).
fn split_if(u: &str, several: bool) -> Vec<&str> {
    if several {
        u.split(',').collect()
    } else {
        vec![u]
    }
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.trim().is_empty())
}

impl NotifierConfig {
    /// The route part of a direct notifier, with Alertmanager's defaults.
    pub fn route(&self) -> crate::alert::notify::route::RouteConfig {
        let d = crate::alert::notify::route::RouteConfig::default();
        crate::alert::notify::route::RouteConfig {
            matchers: self.matchers.clone(),
            group_by: self.group_by.clone().unwrap_or(d.group_by),
            group_wait: self.group_wait.unwrap_or(d.group_wait),
            group_interval: self.group_interval.unwrap_or(d.group_interval),
            repeat_interval: self.repeat_interval.unwrap_or(d.repeat_interval),
            send_resolved: self.send_resolved.unwrap_or(d.send_resolved),
        }
    }

    /// The email settings of an `email` notifier (secrets read from their
    /// files).
    pub fn email(&self) -> Result<crate::alert::notify::email::EmailConfig, String> {
        use crate::alert::notify::email::{EmailConfig, EmailTls};
        let tls = match self.smtp_tls.as_deref().map(str::trim) {
            None | Some("") | Some("starttls") => EmailTls::Starttls,
            Some("tls") => EmailTls::Tls,
            Some("none") => EmailTls::None,
            Some(other) => {
                return Err(format!(
                    "`smtp_tls` is `starttls`, `tls` or `none`, not `{other}`"
                ));
            }
        };
        let password = value_or_file(&self.password, &self.password_file, "SMTP password")?;
        Ok(EmailConfig {
            host: self.host.clone().unwrap_or_default().trim().to_string(),
            port: self.port,
            tls,
            username: nonempty(&self.username),
            password: password.map(crate::alert::notify::send::Secret),
            from: self.from.clone().unwrap_or_default(),
            to: self.to.as_ref().map(Recipients::list).unwrap_or_default(),
            ca_file: nonempty(&self.ca_file),
            timeout: self
                .timeout
                .unwrap_or(Dur(std::time::Duration::from_secs(10))),
            hello_name: nonempty(&self.hello_name),
            retry: self.retry.unwrap_or_default(),
        })
    }

    /// DingTalk's signing secret, if any.
    pub fn dingtalk_secret(&self) -> Result<Option<String>, String> {
        value_or_file(&self.secret, &self.secret_file, "DingTalk secret")
    }

    /// `markdown` unless `message: text`.
    pub fn msg_type(&self) -> crate::alert::notify::MsgType {
        match self.message.as_deref() {
            Some("text") => crate::alert::notify::MsgType::Text,
            _ => crate::alert::notify::MsgType::Markdown,
        }
    }
}
