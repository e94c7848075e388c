//! The notifiers' task: takes the alerts the evaluator found due and
//! delivers them, on tasks of their own, so that a slow or failing
//! receiver never holds back evaluation or the log pipeline.
//!
//! - Alertmanagers get each batch as it comes, one send at a time; while
//!   one is in flight, further batches wait in a short queue, and a full
//!   queue drops the oldest waiting batch (counted: the next resend
//!   carries the alerts again, as Prometheus' own notifier queue does).
//! - Direct notifiers (webhook, Slack, DingTalk, WeCom, email) go through
//!   one [`Dispatcher`]: routes, groups, `group_wait`/`group_interval`/
//!   `repeat_interval`. A notification is recorded as notified only when
//!   its send succeeded, so a failed one is tried again at the group's
//!   next flush. What was notified is saved in
//!   `<data_dir>/alerts/notifications.json`, so a restart does not page
//!   again for alerts already sent.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, watch};

use super::notifiers::NotifierConfig;
use crate::alert::notify::email::{EmailTarget, send_email};
use crate::alert::notify::message::MessageTemplate;
use crate::alert::notify::route::{DispatchState, Dispatcher, Route};
use crate::alert::notify::send::{Kind, NotifyTarget, Secret, send, send_all};
use crate::alert::notify::{self, MsgType, Notification, NotifyAlert, alertmanager_body};
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Registry};

/// Batches waiting for the Alertmanagers, at most.
const AM_QUEUE: usize = 32;

/// How a direct notifier delivers a notification.
enum Channel {
    Webhook(NotifyTarget),
    Slack(NotifyTarget),
    DingTalk(NotifyTarget, MsgType),
    WeCom(NotifyTarget, MsgType),
    Email(EmailTarget),
}

/// A notifier with its own route.
struct Direct {
    name: String,
    channel: Channel,
    title: Option<MessageTemplate>,
    text: Option<MessageTemplate>,
}

/// The built notifiers of one `notify:` list.
pub struct Notifiers {
    alertmanagers: Vec<NotifyTarget>,
    direct: Vec<Arc<Direct>>,
    routes: Vec<Route>,
    resend_delay_ms: i64,
    external_url: String,
}

impl Notifiers {
    /// Builds every notifier that has an address; one that has none is
    /// off (logged once).
    pub fn build(
        cfgs: &[NotifierConfig],
        resend_delay_ms: i64,
        external_url: &str,
        registry: &Registry,
    ) -> Result<Notifiers, String> {
        let mut n = Notifiers {
            alertmanagers: Vec::new(),
            direct: Vec::new(),
            routes: Vec::new(),
            resend_delay_ms,
            external_url: external_url.to_string(),
        };
        let mut seen_kind: Vec<&str> = Vec::new();
        for c in cfgs {
            let nth = seen_kind.iter().filter(|k| **k == c.kind).count();
            seen_kind.push(&c.kind);
            let name = c.display_name(nth);
            if !c.enabled() {
                continue;
            }
            let fail = |e: String| format!("notifier `{name}`: {e}");
            if c.kind == "alertmanager" {
                // A failed send is not retried for long: the next resend
                // (every resend_delay) carries the alerts again.
                let mut retry = c.retry.unwrap_or_default();
                if retry.max_duration.is_none() {
                    retry.max_duration = Some(crate::config::units::Dur(Duration::from_millis(
                        resend_delay_ms.max(1000) as u64,
                    )));
                }
                for t in c.http_targets("Alertmanager").map_err(fail)? {
                    n.alertmanagers.push(NotifyTarget::new(
                        Kind::Alertmanager,
                        t,
                        retry,
                        None,
                        registry,
                    ));
                }
                continue;
            }
            let http = |kind: Kind, secret: Option<Secret>| -> Result<NotifyTarget, String> {
                let t = c
                    .http_targets(kind.name())?
                    .into_iter()
                    .next()
                    .ok_or("no URL")?;
                Ok(NotifyTarget::new(
                    kind,
                    t,
                    c.retry.unwrap_or_default(),
                    secret,
                    registry,
                ))
            };
            let channel = match c.kind.as_str() {
                "webhook" => Channel::Webhook(http(Kind::Webhook, None).map_err(fail)?),
                "slack" => Channel::Slack(http(Kind::Slack, None).map_err(fail)?),
                "dingtalk" => {
                    let secret = c.dingtalk_secret().map_err(fail)?.map(Secret);
                    Channel::DingTalk(http(Kind::DingTalk, secret).map_err(fail)?, c.msg_type())
                }
                "wecom" => Channel::WeCom(http(Kind::WeCom, None).map_err(fail)?, c.msg_type()),
                "email" => {
                    let cfg = c.email().map_err(fail)?;
                    Channel::Email(EmailTarget::new(&cfg, registry).map_err(fail)?)
                }
                other => return Err(fail(format!("unknown notifier type `{other}`"))),
            };
            let template = |t: &Option<String>, what: &str| {
                t.as_deref()
                    .map(|t| MessageTemplate::parse(&format!("{name}.{what}"), t))
                    .transpose()
            };
            let direct = Direct {
                title: template(&c.title, "title").map_err(fail)?,
                text: template(&c.text, "text").map_err(fail)?,
                name: name.clone(),
                channel,
            };
            if n.direct.iter().any(|d| d.name == name) {
                return Err(format!(
                    "two notifiers are named `{name}`; give them different `name`s"
                ));
            }
            n.routes.push(c.route().compile(&name).map_err(fail)?);
            n.direct.push(Arc::new(direct));
        }
        Ok(n)
    }
}

/// Says which notifiers are off for want of an address (once, at start).
pub fn announce_off(cfgs: &[NotifierConfig]) {
    let mut seen_kind: Vec<&str> = Vec::new();
    for c in cfgs {
        let nth = seen_kind.iter().filter(|k| **k == c.kind).count();
        seen_kind.push(&c.kind);
        if !c.enabled() {
            tracing::info!(
                notifier = %c.display_name(nth),
                "notifier has no address (its variable is unset); it is off"
            );
        }
    }
}

/// Renders a template, or the default when there is none or it fails (a
/// page with the default text beats no page; the error is logged).
fn render(
    t: &Option<MessageTemplate>,
    n: &Notification,
    default: fn(&Notification) -> String,
) -> String {
    match t {
        Some(t) => t.render(n).unwrap_or_else(|e| {
            tracing::warn!(receiver = %n.receiver, error = %e, "message template failed; sending the default message");
            default(n)
        }),
        None => default(n),
    }
}

async fn deliver(d: &Direct, n: &Notification) -> Result<(), String> {
    let title = || render(&d.title, n, notify::default_title);
    match &d.channel {
        Channel::Webhook(t) => send(t, &notify::webhook_body(n)).await,
        Channel::Slack(t) => {
            let text = render(&d.text, n, notify::default_text);
            send(t, &notify::slack_blocks_body(&title(), &text)).await
        }
        Channel::DingTalk(t, kind) | Channel::WeCom(t, kind) => {
            let default = match kind {
                MsgType::Markdown => notify::default_markdown,
                MsgType::Text => notify::default_text,
            };
            let text = render(&d.text, n, default);
            let body = match &d.channel {
                Channel::DingTalk(..) => notify::dingtalk_body(*kind, &title(), &text),
                _ => notify::wecom_body(*kind, &text),
            };
            send(t, &body).await
        }
        Channel::Email(t) => {
            let text = render(&d.text, n, notify::default_text);
            send_email(t, &title(), &text, None).await
        }
    }
}

/// Queued batches for the Alertmanagers.
struct AmQueue {
    batches: Mutex<VecDeque<Vec<NotifyAlert>>>,
    wake: Notify,
}

/// What a finished direct send reports back.
struct Sent {
    generation: u64,
    route: usize,
    key: String,
    notification: Notification,
    ok: bool,
}

/// Where the dispatcher's record of what was notified is kept.
pub fn state_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("alerts").join("notifications.json")
}

fn load_state(path: &std::path::Path) -> Option<DispatchState> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the record of sent notifications; starting without it (alerts already sent may be sent once more)");
            None
        }
    }
}

fn save_state(path: &std::path::Path, d: &Dispatcher) {
    let r = serde_json::to_vec_pretty(&d.snapshot())
        .map_err(std::io::Error::other)
        .and_then(|b| crate::source::checkpoint::write_atomic(path, &b));
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the record of sent notifications");
    }
}

/// Runs until `alerts` closes or `stop` fires.
pub async fn run(
    mut notifiers: watch::Receiver<Arc<Notifiers>>,
    mut alerts: mpsc::Receiver<Vec<NotifyAlert>>,
    registry: Registry,
    data_dir: PathBuf,
    stop: Shutdown,
) {
    let dropped: Counter = registry.counter(
        "weir_notifications_dropped_total",
        "Batches of alerts dropped because a notifier's queue was full (the next resend carries them again).",
        &[("notifier", "alertmanager")],
    );
    let queue = Arc::new(AmQueue {
        batches: Mutex::new(VecDeque::new()),
        wake: Notify::new(),
    });
    let am = tokio::spawn(send_to_alertmanagers(
        notifiers.clone(),
        queue.clone(),
        stop.clone(),
    ));
    let path = state_path(&data_dir);
    let mut current = notifiers.borrow_and_update().clone();
    let mut dispatcher = Dispatcher::new(current.routes.clone(), &current.external_url);
    if let Some(s) = load_state(&path) {
        dispatcher.restore(s);
    }
    let mut generation = 0u64;
    let mut in_flight: HashSet<(usize, String)> = HashSet::new();
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Sent>();
    loop {
        let now = super::now_ms();
        let wait = dispatcher
            .next_due_ms()
            .map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis((t - now).max(0) as u64)
            });
        tokio::select! {
            b = alerts.recv() => {
                let Some(batch) = b else { break };
                if !current.alertmanagers.is_empty() {
                    let mut q = queue.batches.lock().await;
                    if q.len() >= AM_QUEUE {
                        q.pop_front();
                        dropped.inc();
                    }
                    q.push_back(batch.clone());
                    queue.wake.notify_one();
                }
                if !current.direct.is_empty() {
                    dispatcher.ingest(&batch, super::now_ms());
                }
            }
            Some(s) = sent_rx.recv() => {
                if s.generation == generation {
                    in_flight.remove(&(s.route, s.key.clone()));
                    if s.ok {
                        dispatcher.delivered(s.route, &s.key, &s.notification, super::now_ms());
                        save_state(&path, &dispatcher);
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {
                for p in dispatcher.due(super::now_ms()) {
                    if !in_flight.insert((p.route, p.key.clone())) {
                        // Still being sent: the next flush has it again.
                        continue;
                    }
                    let d = current.direct[p.route].clone();
                    let tx = sent_tx.clone();
                    tokio::spawn(async move {
                        let r = deliver(&d, &p.notification).await;
                        if let Err(e) = &r {
                            tracing::warn!(notifier = %d.name, group = %p.key, error = %e, "notification failed; it is tried again at the group's next flush");
                        }
                        let _ = tx.send(Sent {
                            generation,
                            route: p.route,
                            key: p.key,
                            notification: p.notification,
                            ok: r.is_ok(),
                        });
                    });
                }
            }
            r = notifiers.changed() => {
                if r.is_err() {
                    break;
                }
                current = notifiers.borrow_and_update().clone();
                let saved = dispatcher.snapshot();
                dispatcher = Dispatcher::new(current.routes.clone(), &current.external_url);
                dispatcher.restore(saved);
                generation += 1;
                in_flight.clear();
            }
            _ = stop.wait() => break,
        }
    }
    save_state(&path, &dispatcher);
    am.abort();
}

async fn send_to_alertmanagers(
    notifiers: watch::Receiver<Arc<Notifiers>>,
    queue: Arc<AmQueue>,
    stop: Shutdown,
) {
    loop {
        let next = queue.batches.lock().await.pop_front();
        let Some(batch) = next else {
            tokio::select! {
                _ = queue.wake.notified() => continue,
                _ = stop.wait() => return,
            }
        };
        let current = notifiers.borrow().clone();
        let body = alertmanager_body(&batch, super::now_ms(), current.resend_delay_ms);
        if let Err(e) = send_all(&current.alertmanagers, &body).await {
            tracing::warn!(alerts = batch.len(), error = %e, "cannot send alerts to any Alertmanager; they are sent again at the next resend");
        }
    }
}
