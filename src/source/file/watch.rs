//! File-system events as a wake-up hint for the tailer.
//!
//! inotify tells the tailer at once that something changed, so it can read
//! or look for new files without waiting for its next poll. It is only a
//! hint: inotify drops events when its queue overflows and does not work on
//! every file system (NFS, some overlays), so the tailer polls anyway and
//! never depends on an event having arrived.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// What the events suggest doing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    /// Files were created, renamed or removed: look for files again.
    pub rescan: bool,
}

pub struct Wakeup {
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    rx: mpsc::Receiver<bool>,
    /// For wake-ups that are not file-system events.
    tx: mpsc::SyncSender<bool>,
}

impl Wakeup {
    pub fn new() -> Wakeup {
        let (tx, rx) = mpsc::sync_channel(64);
        let own = tx.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let rescan = match res {
                Ok(ev) => !matches!(
                    ev.kind,
                    EventKind::Modify(notify::event::ModifyKind::Data(_)) | EventKind::Access(_)
                ),
                Err(_) => true,
            };
            // A full channel already holds a wake-up; dropping this one is fine.
            let _ = tx.try_send(rescan);
        });
        match watcher {
            Ok(w) => Wakeup {
                watcher: Some(w),
                watched: HashSet::new(),
                rx,
                tx: own,
            },
            Err(e) => {
                tracing::info!(error = %e, "file-system events unavailable; polling only");
                Wakeup {
                    watcher: None,
                    watched: HashSet::new(),
                    rx,
                    tx: own,
                }
            }
        }
    }

    /// Watches `dir` (once it exists); cheap to call on every scan.
    pub fn watch(&mut self, dir: &Path, recursive: bool) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if self.watched.contains(dir) || !dir.is_dir() {
            return;
        }
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        match w.watch(dir, mode) {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory; polling it")
            }
        }
    }

    /// Something other than the file system that wakes [`Wakeup::wait`]
    /// (with no rescan): acknowledgements, so checkpoints follow them.
    pub fn waker(&self) -> crate::ack::Waker {
        let tx = self.tx.clone();
        Arc::new(move || {
            // Full means a wake-up is pending already.
            let _ = tx.try_send(false);
        })
    }

    /// Waits up to `timeout` for an event; returns what the events suggest.
    /// `None` means the timeout passed quietly.
    pub fn wait(&self, timeout: Duration) -> Option<Hint> {
        let first = self.rx.recv_timeout(timeout).ok()?;
        let mut hint = Hint { rescan: first };
        while let Ok(r) = self.rx.try_recv() {
            hint.rescan |= r;
        }
        Some(hint)
    }
}

impl Default for Wakeup {
    fn default() -> Self {
        Wakeup::new()
    }
}
