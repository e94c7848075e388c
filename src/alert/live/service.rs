//! The running alerting: the evaluator's schedule and the notifiers'
//! task, started and stopped together, reloaded in place.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Alerting, Live, deliver, now_ms};
use crate::alert::notify::NotifyAlert;
use crate::shutdown::Shutdown;
use crate::telemetry::Registry;

/// Runs the schedule until `stop`, handing due alerts to `alerts`. A full
/// notification queue never holds evaluation back: the batch is dropped
/// and counted (the next resend carries the alerts again).
pub async fn run(live: Arc<Live>, alerts: mpsc::Sender<Vec<NotifyAlert>>, stop: Shutdown) {
    let dropped = live.registry.counter(
        "weir_notification_batches_dropped_total",
        "Batches of due alerts dropped because the notifiers' queue was full.",
        &[],
    );
    loop {
        let now = now_ms();
        let wake = live.next_wake_ms();
        if wake > now {
            let wait = Duration::from_millis((wake - now) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait() => break,
            }
            continue;
        }
        let l = live.clone();
        let due = match tokio::task::spawn_blocking(move || {
            let due = l.step(now);
            l.persist(now);
            due
        })
        .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "rule evaluation panicked; evaluating again at the next interval");
                continue;
            }
        };
        if !due.is_empty() && alerts.try_send(due).is_err() {
            dropped.inc();
        }
    }
    live.persist(now_ms());
}

/// The running alerting: the evaluator's and the notifiers' tasks.
pub struct Service {
    pub live: Arc<Live>,
    notifiers: tokio::sync::watch::Sender<Arc<deliver::Notifiers>>,
    registry: Registry,
    stop: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Starts evaluating `alerting`'s rules and delivering their alerts.
    pub fn start(
        alerting: &Alerting,
        registry: &Registry,
        data_dir: &Path,
    ) -> Result<Service, String> {
        let resend = alerting.config.resend_delay.0.as_millis() as i64;
        deliver::announce_off(&alerting.config.notify);
        let built = deliver::Notifiers::build(
            &alerting.config.notify,
            resend,
            &alerting.config.external_url,
            registry,
        )?;
        let live = Live::start(alerting, registry, data_dir);
        let (ntx, nrx) = tokio::sync::watch::channel(Arc::new(built));
        let (atx, arx) = mpsc::channel(64);
        let stop = Shutdown::default();
        let tasks = vec![
            tokio::spawn(run(live.clone(), atx, stop.clone())),
            tokio::spawn(deliver::run(
                nrx,
                arx,
                registry.clone(),
                data_dir.to_path_buf(),
                stop.clone(),
            )),
        ];
        tracing::info!(
            groups = alerting.groups.len(),
            rules = alerting.rule_count(),
            interval = ?alerting.config.evaluation_interval.0,
            "evaluating alert rules"
        );
        Ok(Service {
            live,
            notifiers: ntx,
            registry: registry.clone(),
            stop,
            tasks,
        })
    }

    /// Applies a reloaded `alerting:` section: new rules (unchanged ones
    /// keep their alerts) and new notifiers.
    pub fn reload(&self, alerting: &Alerting) {
        let resend = alerting.config.resend_delay.0.as_millis() as i64;
        match deliver::Notifiers::build(
            &alerting.config.notify,
            resend,
            &alerting.config.external_url,
            &self.registry,
        ) {
            Ok(n) => {
                let _ = self.notifiers.send(Arc::new(n));
            }
            Err(e) => {
                tracing::error!(error = %e, "reload: cannot build the notifiers; keeping the previous ones")
            }
        }
        self.live.reload(alerting);
    }

    /// Stops both tasks, saving the alert state.
    pub async fn stop(self) {
        self.stop.trigger();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Notifiers running on their own, for a back-test asked to notify.
pub struct Notifying {
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
    /// How long to let the last alerts reach the notifiers' groups.
    drain: Duration,
}

impl Service {
    /// Starts only the notifiers of `alerting`; the sender takes due alerts.
    pub fn notifiers(
        alerting: &Alerting,
        registry: &Registry,
        data_dir: &Path,
    ) -> Result<(mpsc::Sender<Vec<NotifyAlert>>, Notifying), String> {
        let cfg = &alerting.config;
        let resend = cfg.resend_delay.0.as_millis() as i64;
        deliver::announce_off(&cfg.notify);
        let built = deliver::Notifiers::build(&cfg.notify, resend, &cfg.external_url, registry)?;
        let (_ntx, nrx) = tokio::sync::watch::channel(Arc::new(built));
        let (atx, arx) = mpsc::channel(64);
        let stop = Shutdown::default();
        let task = tokio::spawn(deliver::run(
            nrx,
            arx,
            registry.clone(),
            data_dir.to_path_buf(),
            stop.clone(),
        ));
        let wait = cfg
            .notify
            .iter()
            .filter(|n| n.enabled() && n.kind != "alertmanager")
            .map(|n| n.route().group_wait.0)
            .max()
            .unwrap_or_default();
        let drain = (wait + Duration::from_secs(2)).min(Duration::from_secs(60));
        Ok((atx, Notifying { stop, task, drain }))
    }
}

impl Notifying {
    /// Gives the last notifications time to go out, then stops.
    pub async fn finish(self) {
        tokio::time::sleep(self.drain).await;
        self.stop.trigger();
        let _ = self.task.await;
    }
}
