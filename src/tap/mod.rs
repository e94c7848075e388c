//! Taps: a look at the events leaving a component of a running pipeline,
//! for `weir tap` (the API's `GET /tap`, in [`http`]; the command, in
//! [`client`]).
//!
//! Every source's and transform's [`Fanout`](crate::fanout::Fanout) holds
//! a [`TapPoint`], one per component name, kept across reloads. While
//! nobody taps, a batch costs the point one relaxed atomic load. While
//! someone does, the point hands each subscriber the batch's shared events
//! (an `Arc` clone, never a copy) with a `try_send` into a small bounded
//! channel; when that channel is full the batch is dropped for that tap and
//! counted, so a slow tap client never slows the pipeline down. A tap gets
//! the events only, never the batch's acknowledgement: it holds nothing
//! back and delivers nothing.
//!
//! A sink is tapped through its inputs (the events entering it are the
//! events leaving them), as they are wired when the tap starts.
//!
//! Deliberately not here: filtering, sampling and encoding (the API task
//! does those, off the pipeline's threads), any guarantee that a tap sees
//! every event, and taps on the events *leaving* a sink (a sink's output is
//! its destination's business).

pub mod client;
pub mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::event::Event;
use crate::telemetry::{Counter, Registry};

/// Batches that wait for one tap before more are dropped for it.
pub const TAP_BATCHES: usize = 16;

/// One batch's events as a tap receives them, with the name it is shown
/// under (the component tapped; for a sink, the sink).
#[derive(Debug, Clone)]
pub struct Tapped {
    pub component: Arc<str>,
    pub events: Arc<Vec<Event>>,
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    label: Arc<str>,
    tx: mpsc::Sender<Tapped>,
    /// Events dropped for this tap because its channel was full.
    dropped: Arc<AtomicU64>,
}

/// Where one component's outgoing batches can be looked at.
#[derive(Debug, Default)]
pub struct TapPoint {
    /// How many taps are subscribed: the one thing read per batch.
    active: AtomicUsize,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl TapPoint {
    /// Offers a batch's events to the taps, if there are any; never waits.
    #[inline]
    pub fn offer(&self, events: &Arc<Vec<Event>>) {
        if self.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.offer_to_taps(events);
    }

    #[cold]
    fn offer_to_taps(&self, events: &Arc<Vec<Event>>) {
        if events.is_empty() {
            return;
        }
        let subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        for s in subs.iter() {
            let t = Tapped {
                component: Arc::clone(&s.label),
                events: Arc::clone(events),
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(t) {
                s.dropped.fetch_add(events.len() as u64, Ordering::Relaxed);
            }
        }
    }

    fn add(&self, s: Subscriber) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(s);
        self.active.store(subs.len(), Ordering::Relaxed);
    }

    fn remove(&self, id: u64) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.id != id);
        self.active.store(subs.len(), Ordering::Relaxed);
    }

    fn clear(&self) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.clear();
        self.active.store(0, Ordering::Relaxed);
    }

    /// Taps subscribed now.
    pub fn taps(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// What a component is, for resolving tap requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Transform,
    Sink,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

/// One component of the running pipeline, as taps see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub name: String,
    pub role: Role,
    pub inputs: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    points: HashMap<String, Arc<TapPoint>>,
    components: Vec<ComponentInfo>,
    next_id: u64,
    closed: bool,
}

/// The tap points of a running pipeline, by component name. Clones share them.
#[derive(Debug, Clone)]
pub struct Taps {
    inner: Arc<Mutex<Inner>>,
    dropped: Counter,
}

impl Taps {
    pub fn new(registry: &Registry) -> Taps {
        Taps {
            inner: Arc::default(),
            dropped: registry.counter(
                "weir_tap_events_dropped_total",
                "Events `weir tap` clients did not get because they fell behind (the pipeline never waits for a tap).",
                &[],
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tap point of the component called `name`: the same one for
    /// every generation of it, so that taps survive reloads.
    pub fn point(&self, name: &str) -> Arc<TapPoint> {
        Arc::clone(self.lock().points.entry(name.to_string()).or_default())
    }

    /// The components running now (the topology keeps this current).
    pub fn set_components(&self, components: Vec<ComponentInfo>) {
        self.lock().components = components;
    }

    pub fn components(&self) -> Vec<ComponentInfo> {
        self.lock().components.clone()
    }

    /// Subscribes to `names` (every source and transform when empty).
    pub fn subscribe(&self, names: &[String]) -> Result<Subscription, SubscribeError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(SubscribeError::Stopping);
        }
        let mut wanted: Vec<(String, Arc<str>)> = Vec::new();
        if names.is_empty() {
            for c in inner.components.iter().filter(|c| c.role != Role::Sink) {
                wanted.push((c.name.clone(), c.name.as_str().into()));
            }
        }
        for name in names {
            let Some(c) = inner.components.iter().find(|c| &c.name == name) else {
                let known: Vec<String> = inner
                    .components
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.role.as_str()))
                    .collect();
                return Err(SubscribeError::Unknown(format!(
                    "no component `{name}` in the running pipeline; there are: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            let label: Arc<str> = c.name.as_str().into();
            match c.role {
                Role::Sink => wanted.extend(c.inputs.iter().map(|i| (i.clone(), label.clone()))),
                _ => wanted.push((c.name.clone(), label)),
            }
        }
        let (tx, rx) = mpsc::channel(TAP_BATCHES);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut entries = Vec::new();
        for (point, label) in wanted {
            let id = inner.next_id;
            inner.next_id += 1;
            let p = Arc::clone(inner.points.entry(point).or_default());
            p.add(Subscriber {
                id,
                label,
                tx: tx.clone(),
                dropped: Arc::clone(&dropped),
            });
            entries.push((p, id));
        }
        Ok(Subscription {
            rx,
            dropped,
            total_dropped: self.dropped.clone(),
            entries,
        })
    }

    /// Ends every tap (the pipeline has stopped) and refuses new ones.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for p in inner.points.values() {
            p.clear();
        }
    }
}

/// Why a tap cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// No such component runs; the message lists those that do.
    Unknown(String),
    Stopping,
}

/// One tap's subscriptions; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    /// What the tapped components send; ends when the pipeline stops.
    pub rx: mpsc::Receiver<Tapped>,
    dropped: Arc<AtomicU64>,
    total_dropped: Counter,
    entries: Vec<(Arc<TapPoint>, u64)>,
}

impl Subscription {
    /// Events dropped for this tap since the last call (counted in
    /// `weir_tap_events_dropped_total` too); `extra` adds those the caller
    /// dropped itself.
    pub fn take_dropped(&self, extra: u64) -> u64 {
        let n = self.dropped.swap(0, Ordering::Relaxed) + extra;
        self.total_dropped.add(n);
        n
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for (p, id) in &self.entries {
            p.remove(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Arc<Vec<Event>> {
        Arc::new(
            (0..n)
                .map(|i| Event::from_text(format!("line {i}"), 0))
                .collect(),
        )
    }

    fn taps() -> Taps {
        let t = Taps::new(&Registry::default());
        t.set_components(vec![
            ComponentInfo {
                name: "app".into(),
                role: Role::Source,
                inputs: vec![],
            },
            ComponentInfo {
                name: "errors".into(),
                role: Role::Transform,
                inputs: vec!["app".into()],
            },
            ComponentInfo {
                name: "out".into(),
                role: Role::Sink,
                inputs: vec!["app".into(), "errors".into()],
            },
        ]);
        t
    }

    #[test]
    fn nobody_tapping_costs_nothing_and_subscribing_is_undone_on_drop() {
        let t = taps();
        let p = t.point("app");
        p.offer(&batch(3));
        assert_eq!(p.taps(), 0);
        let mut s = t.subscribe(&["app".into()]).unwrap();
        assert_eq!(p.taps(), 1);
        let b = batch(3);
        p.offer(&b);
        let got = s.rx.try_recv().unwrap();
        assert_eq!(&*got.component, "app");
        assert!(Arc::ptr_eq(&got.events, &b), "shared, not copied");
        drop(s);
        assert_eq!(p.taps(), 0);
    }

    #[test]
    fn a_full_tap_drops_and_counts_instead_of_waiting() {
        let registry = Registry::default();
        let t = Taps::new(&registry);
        t.set_components(taps().components());
        let p = t.point("app");
        let s = t.subscribe(&["app".into()]).unwrap();
        for _ in 0..TAP_BATCHES + 5 {
            p.offer(&batch(2));
        }
        assert_eq!(s.take_dropped(1), 11);
        assert_eq!(s.take_dropped(0), 0);
        assert_eq!(registry.sum("weir_tap_events_dropped_total"), 11);
    }

    #[test]
    fn a_sink_is_tapped_through_its_inputs_under_its_own_name() {
        let t = taps();
        let mut s = t.subscribe(&["out".into()]).unwrap();
        t.point("app").offer(&batch(1));
        t.point("errors").offer(&batch(1));
        assert_eq!(&*s.rx.try_recv().unwrap().component, "out");
        assert_eq!(&*s.rx.try_recv().unwrap().component, "out");
        let all = t.subscribe(&[]).unwrap();
        assert_eq!(all.entries.len(), 2, "every source and transform");
        let Err(SubscribeError::Unknown(e)) = t.subscribe(&["nope".into()]) else {
            panic!("an unknown component is refused");
        };
        assert!(
            e.contains("app (source), errors (transform), out (sink)"),
            "{e}"
        );
    }

    #[test]
    fn closing_ends_every_tap() {
        let t = taps();
        let mut s = t.subscribe(&["app".into()]).unwrap();
        t.close();
        assert!(s.rx.try_recv().is_err());
        assert!(s.rx.is_closed());
        assert_eq!(
            t.subscribe(&["app".into()]).unwrap_err(),
            SubscribeError::Stopping
        );
    }
}
