//! Feeding a back-test: the metrics sink's loop in back-test mode.
//!
//! Lines are counted in time order, each after every step before its time
//! has run. Lines from several files and from stdin interleave, and a file
//! may hold a line a little out of order: events wait in a buffer until
//! they are `window` older than the newest seen, and leave it oldest
//! first. A line later than that is counted at once, at the current step,
//! and counted in `weir_backtest_late_lines_total`.
//!
//! A line without a time of its own (a plain-text line kept by `on_error:
//! keep`, a line whose timestamp is missing) counts at once, at the
//! current step: it does not move the clock.
//!
//! A batch is acknowledged once every one of its events has been counted,
//! in the order the batches came.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Backtest, Snapshot};
use crate::event::SharedBatch;
use crate::metrics::Derived;
use crate::telemetry::{Counter, Registry};

/// A buffered event: (time ms, arrival order) → (batch number, index).
type Slot = Reverse<((i64, u64), (u64, usize))>;

struct Held {
    batch: SharedBatch,
    left: usize,
}

struct Feed<'a> {
    derived: &'a mut Derived,
    bt: &'a Backtest,
    heap: BinaryHeap<Slot>,
    held: VecDeque<Held>,
    /// The number of `held[0]`.
    first: u64,
    arrivals: u64,
    newest: Option<i64>,
    /// The last time counted (a line older than it is late).
    counted_to: Option<i64>,
    late: Counter,
}

impl Feed<'_> {
    fn take(&mut self, batch: SharedBatch) {
        let number = self.first + self.held.len() as u64;
        let mut left = 0;
        let mut untimed = Vec::new();
        for (i, e) in batch.events.iter().enumerate() {
            if !e.timed {
                // No time of its own (a plain-text line, a line without a
                // timestamp): it counts at the current step.
                untimed.push(i);
                continue;
            }
            let t = e.time.div_euclid(1_000_000);
            if !self.bt.wanted(t) {
                continue;
            }
            left += 1;
            self.arrivals += 1;
            self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
            self.heap.push(Reverse(((t, self.arrivals), (number, i))));
        }
        for &i in &untimed {
            self.derived.apply(std::slice::from_ref(&batch.events[i]));
        }
        if !untimed.is_empty() {
            if self.bt.reporting() {
                let errors = untimed
                    .iter()
                    .filter(|&&i| crate::report::is_error(&batch.events[i]))
                    .count();
                self.bt.report_untimed(untimed.len() as u64, errors as u64);
            }
            self.bt.counted(untimed.len() as u64);
        }
        self.held.push_back(Held { batch, left });
        let horizon = self.newest.map(|n| n.saturating_sub(self.bt.window_ms()));
        self.drain(horizon);
    }

    /// Counts buffered events up to `until` (everything when `None`).
    fn drain(&mut self, until: Option<i64>) {
        // Consecutive events of one batch are counted together: (batch
        // number, first index, end index).
        let mut run: Option<(u64, usize, usize)> = None;
        let mut n = 0;
        while let Some(Reverse(((t, _), _))) = self.heap.peek() {
            if until.is_some_and(|u| *t > u) {
                break;
            }
            let Some(Reverse(((t, _), (number, i)))) = self.heap.pop() else {
                break;
            };
            if self.counted_to.is_some_and(|c| t < c) {
                self.late.inc();
            } else {
                if self.bt.due_before(t) {
                    // What was counted so far is what the steps before `t` see.
                    n += self.count(run.take());
                    if n > 0 {
                        self.bt.counted(n);
                        n = 0;
                    }
                    let store = self.derived.store.clone();
                    let bt = self.bt;
                    self.bt
                        .before(t, &|snap: &mut Snapshot| sample(&store, bt, snap));
                }
                self.counted_to = Some(t);
            }
            run = match run {
                Some((num, start, end)) if num == number && end == i => Some((num, start, end + 1)),
                other => {
                    n += self.count(other);
                    Some((number, i, i + 1))
                }
            };
        }
        n += self.count(run);
        if n > 0 {
            self.bt.counted(n);
        }
        while self.held.front().is_some_and(|h| h.left == 0) {
            let h = self.held.pop_front().expect("front exists");
            h.batch.delivered();
            self.first += 1;
        }
    }

    /// Counts a run of events; how many.
    fn count(&mut self, run: Option<(u64, usize, usize)>) -> u64 {
        let Some((number, start, end)) = run else {
            return 0;
        };
        let held = &mut self.held[(number - self.first) as usize];
        let events = &held.batch.events[start..end];
        self.derived.apply(events);
        if self.bt.reporting() {
            let groups = crate::report::by_slot(
                events
                    .iter()
                    .map(|e| (e.time.div_euclid(1_000_000), crate::report::is_error(e))),
            );
            self.bt.report_counted(&groups);
        }
        held.left -= end - start;
        (end - start) as u64
    }
}

/// Reads the families the rules read.
fn sample(store: &crate::metrics::SharedStore, bt: &Backtest, snap: &mut Snapshot) {
    let store = store.lock().expect("metrics store lock");
    snap.update(&store, &|f| bt.wants(f));
}

/// Runs a `metrics` sink in back-test mode until its inputs close, then
/// ends the back-test.
pub async fn drive(
    mut derived: Derived,
    mut input: mpsc::Receiver<SharedBatch>,
    bt: Arc<Backtest>,
    registry: Registry,
) {
    let late = registry.counter(
        "weir_backtest_late_lines_total",
        "Lines that came later than the back-test's out-of-order window and were counted at the current step.",
        &[],
    );
    let mut feed = Feed {
        derived: &mut derived,
        bt: &bt,
        heap: BinaryHeap::new(),
        held: VecDeque::new(),
        first: 0,
        arrivals: 0,
        newest: None,
        counted_to: None,
        late,
    };
    while let Some(batch) = input.recv().await {
        tokio::task::block_in_place(|| feed.take(batch));
        bt.notify().await;
    }
    tokio::task::block_in_place(|| feed.drain(None));
    let last = feed.counted_to;
    let store = derived.store.clone();
    let done = tokio::task::block_in_place(|| {
        bt.finish(last, &|snap: &mut Snapshot| sample(&store, &bt, snap))
    });
    bt.notify().await;
    match done {
        Ok(path) => {
            tracing::info!(alerts = bt.records().len(), path = %path.display(), "back-test done")
        }
        Err(e) => tracing::error!(error = %e, "cannot write the back-test's alerts"),
    }
}
