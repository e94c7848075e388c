//! Delivering one notification body to one notifier through the shared
//! [`crate::http::Target`]: retries with [`crate::http::Backoff`] (full
//! jitter, never sooner than a `Retry-After`), DingTalk's and WeCom's
//! 200-with-`errcode` answers treated as failures, and every delivery
//! counted in `weir_notifications_total{notifier,outcome}` (`outcome` is
//! `success`, `retry` per failed attempt that is tried again, or `failure`).
//!
//! Which answers are retried: no answer, 408, 429, 5xx and a non-zero
//! `errcode`; any other status fails at once (Slack's 400
//! `invalid_payload`, 403, 404, 410 do not get better).
//!
//! Secrets stay out of the errors: the URL shown is the target's redacted
//! one, a DingTalk signing secret is only used to sign, and the `sign`
//! query is never printed. Not here: queueing, rate limits per robot, and
//! keeping the log pipeline unblocked (the caller runs this on its own task).

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::units::Dur;
use crate::http::{Backoff, RetryConfig, Target, retry_after};
use crate::telemetry::{Counter, CounterFamily, Registry};

/// The kinds of notifier; the `notifier` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Alertmanager,
    Webhook,
    Slack,
    DingTalk,
    WeCom,
    Email,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Alertmanager => "alertmanager",
            Kind::Webhook => "webhook",
            Kind::Slack => "slack",
            Kind::DingTalk => "dingtalk",
            Kind::WeCom => "wecom",
            Kind::Email => "email",
        }
    }

    /// Whether a 200 answer carries an `errcode` that must be 0.
    fn has_errcode(self) -> bool {
        matches!(self, Kind::DingTalk | Kind::WeCom)
    }
}

/// A secret that never shows in `Debug` output; read from config as a
/// plain string.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::MASK)
    }
}

/// The longest a notification is retried when the policy sets no limit:
/// later than that it is stale (the next evaluation re-sends anyway).
pub const DEFAULT_MAX_RETRY: Duration = Duration::from_secs(10 * 60);

/// One notifier's destination and counters. Its `Debug` shows only the
/// kind and the redacted URL (a [`Target`]'s own holds the token).
#[derive(Clone)]
pub struct NotifyTarget {
    pub kind: Kind,
    pub target: Target,
    retry: RetryConfig,
    /// DingTalk's signing secret, if the robot has one.
    dingtalk_secret: Option<Secret>,
    outcomes: Outcomes,
}

/// One notifier's `weir_notifications_total{notifier,outcome}` children.
#[derive(Clone)]
pub(crate) struct Outcomes {
    pub(crate) success: Counter,
    pub(crate) retried: Counter,
    pub(crate) failure: Counter,
}

impl Outcomes {
    pub(crate) fn new(registry: &Registry, kind: Kind) -> Outcomes {
        let mut fam = CounterFamily::new(
            registry,
            "weir_notifications_total",
            "Notifications sent, by notifier and outcome (retry: an attempt that failed and is tried again).",
            &[("notifier", kind.name())],
            "outcome",
        );
        Outcomes {
            success: fam.get("success").clone(),
            retried: fam.get("retry").clone(),
            failure: fam.get("failure").clone(),
        }
    }
}

impl NotifyTarget {
    /// A notifier of `kind` sending to `target`, counted in `registry`
    /// under `notifier="<kind>"`. A `retry` without `max_duration` gives up
    /// after [`DEFAULT_MAX_RETRY`].
    pub fn new(
        kind: Kind,
        target: Target,
        mut retry: RetryConfig,
        dingtalk_secret: Option<Secret>,
        registry: &Registry,
    ) -> NotifyTarget {
        if retry.max_duration.is_none() {
            retry.max_duration = Some(Dur(DEFAULT_MAX_RETRY));
        }
        NotifyTarget {
            kind,
            target,
            retry,
            dingtalk_secret,
            outcomes: Outcomes::new(registry, kind),
        }
    }
}

impl fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyTarget")
            .field("kind", &self.kind)
            .field("url", &self.target.shown_url())
            .field("signed", &self.dingtalk_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
pub(crate) enum Attempt {
    Done,
    /// Worth trying again, not sooner than the `Retry-After` if any.
    Retry(String, Option<Duration>),
    Fail(String),
}

/// Sends `body` (JSON) to `to`, retrying as the module says; the error is
/// the last attempt's, without secrets.
pub async fn send(to: &NotifyTarget, body: &[u8]) -> Result<(), String> {
    with_retries(&to.outcomes, to.retry, to.kind, || attempt(to, body)).await
}

/// Runs `attempt` until it is done, fails, or `retry` is exhausted
/// (backoff with full jitter, `Retry-After` honoured), counting each
/// outcome; the error is the last attempt's.
pub(crate) async fn with_retries<F, Fut>(
    outcomes: &Outcomes,
    retry: RetryConfig,
    kind: Kind,
    mut attempt: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let started = Instant::now();
    let mut backoff = Backoff::new(retry);
    loop {
        let (err, after) = match attempt().await {
            Attempt::Done => {
                outcomes.success.inc();
                return Ok(());
            }
            Attempt::Fail(e) => {
                outcomes.failure.inc();
                return Err(e);
            }
            Attempt::Retry(e, after) => (e, after),
        };
        let wait = backoff.wait(after);
        if backoff.exhausted(started.elapsed() + wait) {
            outcomes.failure.inc();
            return Err(format!("{err} (gave up after {:?})", started.elapsed()));
        }
        outcomes.retried.inc();
        tracing::debug!(notifier = kind.name(), error = %err, ?wait, "notification failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

async fn attempt(to: &NotifyTarget, body: &[u8]) -> Attempt {
    let mut req = to.target.post(body.to_vec(), "application/json", None);
    if let Some(s) = &to.dingtalk_secret {
        // Signed per attempt: DingTalk refuses a timestamp over an hour old.
        let now = jiff::Timestamp::now().as_millisecond();
        req = req.query(&super::dingtalk_query(&s.0, now));
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(to.target.describe(&e), None),
    };
    let status = resp.status();
    let after = retry_after(resp.headers());
    let text = resp.text().await.unwrap_or_default();
    let shown = to.target.shown_url();
    if status.is_success() {
        if to.kind.has_errcode()
            && let Some((code, msg)) = errcode(&text)
        {
            return Attempt::Retry(
                format!("{shown} answered errcode {code}: {}", snippet(&msg)),
                after,
            );
        }
        return Attempt::Done;
    }
    let e = format!("{shown} answered {status}: {}", snippet(&text));
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        Attempt::Retry(e, after)
    } else {
        Attempt::Fail(e)
    }
}

/// A non-zero `errcode` and its `errmsg`; `None` when the answer is ok
/// (or not the JSON these services answer).
fn errcode(body: &str) -> Option<(i64, String)> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let code = v.get("errcode")?.as_i64()?;
    (code != 0).then(|| {
        let msg = v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("");
        (code, msg.to_string())
    })
}

/// At most 200 bytes of an answer, for an error message.
fn snippet(text: &str) -> String {
    super::truncate_bytes(text.trim(), 200)
}

/// Sends `body` to every target at once (several Alertmanagers): `Ok` when
/// at least one took it, as Prometheus counts a send to its Alertmanagers;
/// otherwise every target's error, one a line.
pub async fn send_all(to: &[NotifyTarget], body: &[u8]) -> Result<(), String> {
    let mut set = tokio::task::JoinSet::new();
    for t in to {
        let (t, body) = (t.clone(), body.to_vec());
        set.spawn(async move { send(&t, &body).await });
    }
    let mut errors = Vec::new();
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("notification task failed: {e}")),
        }
    }
    if ok > 0 || to.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}
