//! The notifiers' task: takes the alerts the evaluator found due and
//! delivers them, on tasks of their own, so that a slow or failing
//! receiver never holds back evaluation or the log pipeline.
//!
//! Alertmanagers get each batch as it comes, one send at a time; while one
//! is in flight, further batches wait in a short queue, and a full queue
//! drops the oldest waiting batch (counted: the next resend carries the
//! alerts again, as Prometheus' own notifier queue does).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{Mutex, Notify, mpsc, watch};

use super::notifiers::NotifierConfig;
use crate::alert::notify::send::{Kind, NotifyTarget, send_all};
use crate::alert::notify::{NotifyAlert, alertmanager_body};
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Registry};

/// Batches waiting for the Alertmanagers, at most.
const AM_QUEUE: usize = 32;

/// The built notifiers of one `notify:` list.
pub struct Notifiers {
    alertmanagers: Vec<NotifyTarget>,
    resend_delay_ms: i64,
}

impl Notifiers {
    /// Builds every notifier that has an address; one that has none is
    /// off (logged once).
    pub fn build(
        cfgs: &[NotifierConfig],
        resend_delay_ms: i64,
        registry: &Registry,
    ) -> Result<Notifiers, String> {
        let mut alertmanagers = Vec::new();
        for c in cfgs {
            if !c.enabled() {
                tracing::info!(
                    notifier = c.kind_word(),
                    "notifier has no address (its variable is unset); it is off"
                );
                continue;
            }
            if c.kind == "alertmanager" {
                // A failed send is not retried for long: the next resend
                // (every resend_delay) carries the alerts again.
                let mut retry = c.retry.unwrap_or_default();
                if retry.max_duration.is_none() {
                    retry.max_duration = Some(crate::config::units::Dur(
                        std::time::Duration::from_millis(resend_delay_ms.max(1000) as u64),
                    ));
                }
                for t in c.http_targets("Alertmanager")? {
                    alertmanagers.push(NotifyTarget::new(
                        Kind::Alertmanager,
                        t,
                        retry,
                        None,
                        registry,
                    ));
                }
            }
        }
        Ok(Notifiers {
            alertmanagers,
            resend_delay_ms,
        })
    }
}

/// Queued batches for the Alertmanagers.
struct AmQueue {
    batches: Mutex<VecDeque<Vec<NotifyAlert>>>,
    wake: Notify,
}

/// Runs until `alerts` closes or `stop` fires.
pub async fn run(
    notifiers: watch::Receiver<Arc<Notifiers>>,
    mut alerts: mpsc::Receiver<Vec<NotifyAlert>>,
    registry: Registry,
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
    let sender = tokio::spawn(send_to_alertmanagers(
        notifiers.clone(),
        queue.clone(),
        stop.clone(),
    ));
    loop {
        let batch = tokio::select! {
            b = alerts.recv() => match b {
                Some(b) => b,
                None => break,
            },
            _ = stop.wait() => break,
        };
        let current = notifiers.borrow().clone();
        if !current.alertmanagers.is_empty() {
            let mut q = queue.batches.lock().await;
            if q.len() >= AM_QUEUE {
                q.pop_front();
                dropped.inc();
            }
            q.push_back(batch.clone());
            queue.wake.notify_one();
        }
    }
    sender.abort();
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
