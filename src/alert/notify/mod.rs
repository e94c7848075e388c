//! Notifications: what weir sends about a group of alerts, to an
//! Alertmanager or directly to a chat service.
//!
//! Each builder here is a pure function from a [`Notification`] (or the
//! alerts due for sending) to the request body, so every service's wire
//! format (see `docs/protocols.md`, section 5) is checked by unit tests:
//!
//! - [`alertmanager_body`]: Alertmanager API v2 `POST /api/v2/alerts`, the
//!   array Prometheus 2.42 sends.
//! - [`webhook_body`]: Alertmanager's webhook JSON (`version` 4).
//! - [`slack_body`] / [`slack_blocks_body`], [`dingtalk_body`] (and [`dingtalk_sign`] for a robot
//!   with a secret), [`wecom_body`] (within WeCom's byte limits).
//! - [`default_text`] (and [`default_markdown`]): the default message:
//!   summary, description, labels, value and since when.
//!
//! Delivery (retries, `Retry-After`, the 200-with-`errcode` failures, the
//! `weir_notifications_total` counter) is in [`send`]; email over SMTP
//! (STARTTLS or implicit TLS, auth, UTF-8 subjects and bodies, the same
//! retries and counter) is in [`email`].
//!
//! Routing and grouping (matchers, `group_by`, `group_wait`,
//! `group_interval`, `repeat_interval`, `send_resolved`) are in [`route`],
//! a pure state machine; user message templates over Alertmanager's
//! template data are in [`message`]. The running shipper drives them from
//! `alert::live`.

pub mod email;
mod matcher;
pub mod message;
pub mod route;
pub mod send;

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::promql::Labels;
use super::state::Alert;

/// One alert as a notifier sees it: the alert and where it came from.
#[derive(Debug, Clone)]
pub struct NotifyAlert {
    pub alert: Alert,
    /// The link to the rule's expression (see [`generator_url`]).
    pub generator_url: String,
}

impl NotifyAlert {
    /// Whether it has been resolved.
    pub fn is_resolved(&self) -> bool {
        self.alert.resolved_at.is_some()
    }
}

/// A group of alerts notified together.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The receiver's name (the webhook's `receiver`).
    pub receiver: String,
    /// The labels the group was formed by (may be empty).
    pub group_labels: Labels,
    pub alerts: Vec<NotifyAlert>,
    /// Where weir's UI is (the webhook's `externalURL`).
    pub external_url: String,
}

impl Notification {
    /// The firing (unresolved) alerts.
    pub fn firing(&self) -> impl Iterator<Item = &NotifyAlert> {
        self.alerts.iter().filter(|a| !a.is_resolved())
    }

    /// The resolved alerts.
    pub fn resolved(&self) -> impl Iterator<Item = &NotifyAlert> {
        self.alerts.iter().filter(|a| a.is_resolved())
    }

    /// `firing` if any alert still fires, else `resolved` (as Alertmanager).
    pub fn status(&self) -> &'static str {
        if self.firing().next().is_some() {
            "firing"
        } else {
            "resolved"
        }
    }

    /// The labels every alert has, with the same value.
    pub fn common_labels(&self) -> BTreeMap<&str, &str> {
        common(self.alerts.iter().map(|a| a.alert.labels.iter()))
    }

    /// The annotations every alert has, with the same value.
    pub fn common_annotations(&self) -> BTreeMap<&str, &str> {
        common(self.alerts.iter().map(|a| {
            a.alert
                .annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
        }))
    }

    /// Alertmanager's group key for a receiver at the root route:
    /// `{}:{alertname="X", severity="y"}`.
    pub fn group_key(&self) -> String {
        let inner: Vec<String> = self
            .group_labels
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::alert::promql::format::go_quote(v)))
            .collect();
        format!("{{}}:{{{}}}", inner.join(", "))
    }
}

fn common<'a, I>(mut sets: impl Iterator<Item = I>) -> BTreeMap<&'a str, &'a str>
where
    I: Iterator<Item = (&'a str, &'a str)>,
{
    let Some(first) = sets.next() else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<&str, &str> = first.collect();
    for set in sets {
        let set: BTreeMap<&str, &str> = set.collect();
        out.retain(|k, v| set.get(k) == Some(v));
    }
    out
}

/// Prometheus' generator URL: `external_url` + `/graph?g0.expr=…&g0.tab=1`
/// (`strutil.TableLinkForExpression`).
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let mut q = reqwest::Url::parse("http://x/").expect("static URL");
    q.query_pairs_mut()
        .append_pair("g0.expr", expr)
        .append_pair("g0.tab", "1");
    format!(
        "{}/graph?{}",
        external_url.trim_end_matches('/'),
        q.query().unwrap_or("")
    )
}

/// Milliseconds since the epoch as RFC 3339 with milliseconds, UTC (the
/// `strfmt.DateTime` format Prometheus posts).
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => format!("{}.{frac:03}Z", t.strftime("%Y-%m-%dT%H:%M:%S")),
        Err(_) => ZERO_TIME.to_string(),
    }
}

/// Milliseconds since the epoch as RFC 3339 with only the needed fraction
/// digits (Go's `time.Time` JSON, as Alertmanager's webhook has it).
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ZERO_TIME.to_string())
}

/// Go's zero time: the webhook's `endsAt` of an alert that still fires.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn label_map(ls: &Labels) -> BTreeMap<&str, &str> {
    ls.iter().collect()
}

fn annotation_map(a: &Alert) -> BTreeMap<&str, &str> {
    a.annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// When an alert started, as Prometheus sends it: when it fired (or, not
/// yet fired, when it became active).
fn starts_at(a: &Alert) -> i64 {
    a.fired_at.unwrap_or(a.active_at)
}

/// The body of Alertmanager API v2 `POST /api/v2/alerts`, as Prometheus
/// 2.42 sends it: `startsAt` is when the alert fired; `endsAt` is when it
/// was resolved, else its `valid_until` (`now + 4·max(resend_delay,
/// interval)`, set by [`super::state::AlertRuleState::take_due`]); without
/// one, `now_ms + 4·resend_delay_ms`.
pub fn alertmanager_body(alerts: &[NotifyAlert], now_ms: i64, resend_delay_ms: i64) -> Vec<u8> {
    let arr: Vec<Value> = alerts
        .iter()
        .map(|n| {
            let a = &n.alert;
            let ends = a
                .resolved_at
                .or(a.valid_until)
                .unwrap_or(now_ms + 4 * resend_delay_ms);
            json!({
                "labels": label_map(&a.labels),
                "annotations": annotation_map(a),
                "startsAt": rfc3339_millis(starts_at(a)),
                "endsAt": rfc3339_millis(ends),
                "generatorURL": n.generator_url,
            })
        })
        .collect();
    serde_json::to_vec(&arr).expect("JSON of strings")
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted
/// names and values, each followed by `0xff`, as 16 hex digits.
pub fn fingerprint(ls: &Labels) -> String {
    const OFFSET: u64 = 14695981039346656037;
    const PRIME: u64 = 1099511628211;
    let mut pairs: Vec<(&str, &str)> = ls.iter().collect();
    pairs.sort();
    let mut h = OFFSET;
    for (k, v) in pairs {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    format!("{h:016x}")
}

/// Alertmanager's webhook JSON (`version` 4) for a notification.
pub fn webhook_body(n: &Notification) -> Vec<u8> {
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|na| {
            let a = &na.alert;
            json!({
                "status": if na.is_resolved() { "resolved" } else { "firing" },
                "labels": label_map(&a.labels),
                "annotations": annotation_map(a),
                "startsAt": rfc3339(starts_at(a)),
                "endsAt": a.resolved_at.map_or_else(|| ZERO_TIME.to_string(), rfc3339),
                "generatorURL": na.generator_url,
                "fingerprint": fingerprint(&a.labels),
            })
        })
        .collect();
    let body = json!({
        "version": "4",
        "groupKey": n.group_key(),
        "truncatedAlerts": 0,
        "status": n.status(),
        "receiver": n.receiver,
        "groupLabels": label_map(&n.group_labels),
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": n.external_url,
        "alerts": alerts,
    });
    serde_json::to_vec(&body).expect("JSON of strings")
}

/// A value as Prometheus' `$value` prints it (Go's `%g`-like, shortest).
fn show_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        v.to_string()
    }
}

/// The default message text of a notification, in plain UTF-8 (Chinese
/// text passes unchanged): a title line `[FIRING:2] HighErrorRate`, then
/// per alert its summary, description, labels, value and since when (and
/// when it was resolved).
pub fn default_text(n: &Notification) -> String {
    let mut out = default_title(n);
    for na in &n.alerts {
        let a = &na.alert;
        out.push_str("\n\n");
        let state = if na.is_resolved() {
            "RESOLVED"
        } else {
            "FIRING"
        };
        out.push_str(&format!("[{state}] {}", a.labels.get("alertname")));
        let ann = annotation_map(a);
        if let Some(s) = ann.get("summary").filter(|s| !s.is_empty()) {
            out.push_str(&format!("\nSummary: {s}"));
        }
        if let Some(d) = ann.get("description").filter(|s| !s.is_empty()) {
            out.push_str(&format!("\nDescription: {d}"));
        }
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !labels.is_empty() {
            out.push_str(&format!("\nLabels: {}", labels.join(", ")));
        }
        out.push_str(&format!("\nValue: {}", show_value(a.value)));
        out.push_str(&format!("\nSince: {}", rfc3339(starts_at(a))));
        if let Some(r) = a.resolved_at {
            out.push_str(&format!("\nResolved: {}", rfc3339(r)));
        }
    }
    out
}

/// The default message as markdown for DingTalk and WeCom: the title as a
/// heading, each alert as a bold line and a list (the same content as
/// [`default_text`]). Values are not escaped: both services render what
/// markdown they know and show the rest as written.
pub fn default_markdown(n: &Notification) -> String {
    let mut out = format!("#### {}", default_title(n));
    for na in &n.alerts {
        let a = &na.alert;
        let state = if na.is_resolved() {
            "RESOLVED"
        } else {
            "FIRING"
        };
        out.push_str(&format!(
            "\n\n**[{state}] {}**\n",
            a.labels.get("alertname")
        ));
        let ann = annotation_map(a);
        if let Some(s) = ann.get("summary").filter(|s| !s.is_empty()) {
            out.push_str(&format!("\n- Summary: {s}"));
        }
        if let Some(d) = ann.get("description").filter(|s| !s.is_empty()) {
            out.push_str(&format!("\n- Description: {d}"));
        }
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        if !labels.is_empty() {
            out.push_str(&format!("\n- Labels: {}", labels.join(" ")));
        }
        out.push_str(&format!("\n- Value: {}", show_value(a.value)));
        out.push_str(&format!("\n- Since: {}", rfc3339(starts_at(a))));
        if let Some(r) = a.resolved_at {
            out.push_str(&format!("\n- Resolved: {}", rfc3339(r)));
        }
    }
    out
}

/// `[FIRING:2] HighErrorRate` / `[RESOLVED] HighErrorRate`: the status,
/// the number of firing alerts and the common `alertname`.
pub fn default_title(n: &Notification) -> String {
    let firing = n.firing().count();
    let name = n
        .common_labels()
        .get("alertname")
        .copied()
        .unwrap_or("alerts");
    if firing > 0 {
        format!("[FIRING:{firing}] {name}")
    } else {
        format!("[RESOLVED] {name}")
    }
}

/// Text and markdown, the formats the chat robots take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Text,
    Markdown,
}

/// `text` with Slack's mrkdwn control characters escaped.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook body: `{"text": …}` (escaped).
pub fn slack_body(text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "text": slack_escape(text) })).expect("JSON of strings")
}

/// Slack's limit on a section block's text, in characters.
pub const SLACK_SECTION_MAX: usize = 3000;

/// A Slack incoming-webhook body with blocks: a header-like section with
/// `title` and a section with `text` (escaped, cut to Slack's section
/// limit), and `text` as the notification fallback.
pub fn slack_blocks_body(title: &str, text: &str) -> Vec<u8> {
    let section = |t: &str| {
        let t = slack_escape(t);
        let t = if t.chars().count() > SLACK_SECTION_MAX {
            let mut cut: String = t.chars().take(SLACK_SECTION_MAX - 1).collect();
            cut.push('…');
            cut
        } else {
            t
        };
        json!({"type": "section", "text": {"type": "mrkdwn", "text": t}})
    };
    let body = json!({
        "text": slack_escape(title),
        "blocks": [section(&format!("*{title}*")), section(text)],
    });
    serde_json::to_vec(&body).expect("JSON of strings")
}

/// A DingTalk robot body: `text` (`content`, nobody mentioned) or
/// `markdown` (`title`, `text`).
pub fn dingtalk_body(kind: MsgType, title: &str, text: &str) -> Vec<u8> {
    let v = match kind {
        MsgType::Text => json!({
            "msgtype": "text",
            "text": { "content": text },
            "at": { "atMobiles": [], "isAtAll": false },
        }),
        MsgType::Markdown => json!({
            "msgtype": "markdown",
            "markdown": { "title": title, "text": text },
        }),
    };
    serde_json::to_vec(&v).expect("JSON of strings")
}

/// DingTalk's signature for a robot with a secret: base64 of
/// HMAC-SHA256(key = secret, `"{timestamp_ms}\n{secret}"`), not yet
/// URL-encoded (see [`dingtalk_signed_url`]).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The query pairs a signed DingTalk request adds: `timestamp`, `sign`.
pub fn dingtalk_query(secret: &str, timestamp_ms: i64) -> [(&'static str, String); 2] {
    [
        ("timestamp", timestamp_ms.to_string()),
        ("sign", dingtalk_sign(secret, timestamp_ms)),
    ]
}

/// `url` with `&timestamp=…&sign=…` added (the sign URL-encoded). The
/// result holds a signature: show it only through `crate::redact::url`.
pub fn dingtalk_signed_url(url: &str, secret: &str, timestamp_ms: i64) -> Result<String, String> {
    let mut u = reqwest::Url::parse(url).map_err(|e| format!("invalid DingTalk URL: {e}"))?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in dingtalk_query(secret, timestamp_ms) {
            q.append_pair(k, &v);
        }
    }
    Ok(u.into())
}

/// WeCom's limit on a text message's `content`, in bytes.
pub const WECOM_TEXT_MAX: usize = 2048;
/// WeCom's limit on a markdown message's `content`, in bytes.
pub const WECOM_MARKDOWN_MAX: usize = 4096;

/// `text` cut to at most `max` bytes on a character boundary, ending in
/// `…` when cut.
pub fn truncate_bytes(text: &str, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end])
}

/// A WeCom group-robot body, its `content` within WeCom's byte limit.
pub fn wecom_body(kind: MsgType, text: &str) -> Vec<u8> {
    let v = match kind {
        MsgType::Text => json!({
            "msgtype": "text",
            "text": { "content": truncate_bytes(text, WECOM_TEXT_MAX) },
        }),
        MsgType::Markdown => json!({
            "msgtype": "markdown",
            "markdown": { "content": truncate_bytes(text, WECOM_MARKDOWN_MAX) },
        }),
    };
    serde_json::to_vec(&v).expect("JSON of strings")
}

#[cfg(test)]
mod tests;
