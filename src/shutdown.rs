//! The stop signal shared by every task and thread of a running pipeline,
//! and the grace period that follows it.
//!
//! Sources poll it between reads (they run on their own threads); async tasks
//! await it. Stopping is one-way. When a stop is asked for, the grace period
//! starts: components deliver what they hold until [`Shutdown::expired`],
//! then give up on the rest, which stays unacknowledged. Draining is not
//! signalled here: it follows from sources dropping their senders, which
//! closes the channels downstream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    grace: Duration,
    deadline: Arc<OnceLock<Instant>>,
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    /// A stop with no grace period.
    fn default() -> Self {
        Shutdown::with_grace(Duration::ZERO)
    }
}

impl Shutdown {
    /// A stop signal after which components have `grace` to finish.
    pub fn with_grace(grace: Duration) -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            grace,
            deadline: Arc::new(OnceLock::new()),
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Asks everything to stop; the first call starts the grace period.
    pub fn trigger(&self) {
        self.deadline.get_or_init(|| Instant::now() + self.grace);
        self.flag.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// When the grace period ends, once a stop was asked for.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// Resolves once stopping has been asked for.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Resolves when the grace period after a stop has passed.
    pub async fn expired(&self) {
        self.wait().await;
        if let Some(d) = self.deadline() {
            tokio::time::sleep_until(d.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grace_runs_from_the_first_trigger() {
        let s = Shutdown::with_grace(Duration::from_millis(300));
        assert!(s.deadline().is_none());
        s.trigger();
        let d = s.deadline().unwrap();
        s.trigger();
        assert_eq!(s.deadline(), Some(d), "a second stop does not extend it");
        s.expired().await;
        assert!(Instant::now() >= d);
    }
}
