//! File-system events as a wake-up hint for the tailer.
//!
//! inotify tells the tailer at once that something changed, so it can read
//! or look for new files without waiting for its next poll. It is only a
//! hint: inotify drops events when its queue overflows and does not work on
//! every file system (NFS, some overlays), so the tailer polls anyway and
//! never depends on an event having arrived.
//!
//! While rounds keep finding data, the tailer reads at its own pace and
//! events carry no news, yet an app appending thousands of times a second
//! costs an event each (a fifth of weir's CPU in the tail bench). So the
//! watches are taken down while the tailer is busy ([`Wakeup::pause`]) and
//! put back when a round finds nothing ([`Wakeup::resume`]); the tailer
//! then scans once for what it did not hear about meanwhile.

use std::collections::HashMap;
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
    /// Directories to watch, and whether recursively.
    watched: HashMap<PathBuf, bool>,
    /// The watches are down (see the module's doc).
    paused: bool,
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
                watched: HashMap::new(),
                paused: false,
                rx,
                tx: own,
            },
            Err(e) => {
                tracing::info!(error = %e, "file-system events unavailable; polling only");
                Wakeup {
                    watcher: None,
                    watched: HashMap::new(),
                    paused: false,
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
        if self.watched.contains_key(dir) || !dir.is_dir() {
            return;
        }
        if self.paused || add(w, dir, recursive) {
            self.watched.insert(dir.to_path_buf(), recursive);
        }
    }

    /// Takes the watches down while the tailer is busy reading anyway.
    pub fn pause(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        if self.paused {
            return;
        }
        self.paused = true;
        for dir in self.watched.keys() {
            let _ = w.unwatch(dir);
        }
    }

    /// Puts the watches back. Returns whether they were down: then what
    /// happened meanwhile was not heard, and the caller should scan.
    pub fn resume(&mut self) -> bool {
        let Some(w) = self.watcher.as_mut() else {
            return false;
        };
        if !self.paused {
            return false;
        }
        self.paused = false;
        // A directory that cannot be watched now is tried again by the
        // next `watch` call, as a new one.
        self.watched
            .retain(|dir, recursive| add(w, dir, *recursive));
        true
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

/// Watches `dir`; whether that worked.
fn add(w: &mut RecommendedWatcher, dir: &Path, recursive: bool) -> bool {
    let mode = if recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    match w.watch(dir, mode) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory; polling it");
            false
        }
    }
}

impl Default for Wakeup {
    fn default() -> Self {
        Wakeup::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_watches_are_silent_and_resuming_asks_for_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let mut wake = Wakeup::new();
        if wake.watcher.is_none() {
            eprintln!("no file-system events here; nothing to test");
            return;
        }
        wake.watch(dir.path(), false);
        std::fs::write(dir.path().join("a.log"), "x\n").unwrap();
        let heard = wake.wait(Duration::from_secs(5));
        assert_eq!(heard.map(|h| h.rescan), Some(true), "a new file is heard");

        wake.pause();
        // What was on its way before the pause.
        while wake.wait(Duration::from_millis(200)).is_some() {}
        std::fs::write(dir.path().join("b.log"), "x\n").unwrap();
        std::fs::write(dir.path().join("a.log"), "x\ny\n").unwrap();
        assert_eq!(
            wake.wait(Duration::from_millis(300)),
            None,
            "nothing while paused"
        );
        assert!(wake.resume(), "resuming says the caller missed events");
        assert!(!wake.resume(), "only once");

        std::fs::write(dir.path().join("c.log"), "x\n").unwrap();
        assert!(wake.wait(Duration::from_secs(5)).is_some(), "heard again");
    }
}
