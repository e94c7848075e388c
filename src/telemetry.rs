//! weir's own metrics: what it read, dropped, decoded and delivered.
//!
//! Components register their counters once, when the topology is built, and
//! then bump plain atomics — a handful per batch, never per field. Label values
//! here come from the pipeline (component names) and from fixed reason words,
//! never from log data; metrics derived from log data live in their own store.
//!
//! The registry renders the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed)
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
enum Cell {
    Counter(Counter),
    Gauge(Gauge),
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: &'static str,
    series: Vec<(Vec<(String, String)>, Cell)>,
}

/// The counters of one family that differ in one label — by status, by
/// outcome, by reason — each registered on first use and kept, so a hot
/// path counts without looking the family up again.
#[derive(Clone)]
pub struct CounterFamily {
    registry: Registry,
    name: &'static str,
    help: &'static str,
    /// Labels every counter of the family has (e.g. `sink`).
    fixed: Vec<(String, String)>,
    label: &'static str,
    counters: Vec<(String, Counter)>,
}

impl CounterFamily {
    pub fn new(
        registry: &Registry,
        name: &'static str,
        help: &'static str,
        fixed: &[(&str, &str)],
        label: &'static str,
    ) -> Self {
        CounterFamily {
            registry: registry.clone(),
            name,
            help,
            fixed: fixed
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            label,
            counters: Vec::new(),
        }
    }

    /// The counter whose varying label is `value`.
    pub fn get(&mut self, value: &str) -> &Counter {
        if let Some(i) = self.counters.iter().position(|(v, _)| v == value) {
            return &self.counters[i].1;
        }
        let mut labels: Vec<(&str, &str)> = self
            .fixed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        labels.push((self.label, value));
        let c = self.registry.counter(self.name, self.help, &labels);
        self.counters.push((value.to_string(), c));
        &self.counters.last().expect("just pushed").1
    }

    pub fn add(&mut self, value: &str, n: u64) {
        self.get(value).add(n);
    }
}

/// Something else that writes families into the exposition (derived metrics).
pub trait Render: Send + Sync {
    fn render(&self, out: &mut String);
}

/// A store served beside the self-metrics, and the key it was added under.
type Keyed = (String, Arc<dyn Render>);

/// The self-metrics of one running pipeline, and the other stores whose
/// families are served beside them.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<Vec<Family>>>,
    /// Other stores by key (a metrics sink's name), in the order added.
    others: Arc<Mutex<Vec<Keyed>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// The counter `name{labels}`, created on first use.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.cell(name, help, "counter", labels, || {
            Cell::Counter(Counter::default())
        }) {
            Cell::Counter(c) => c,
            Cell::Gauge(_) => panic!("{name} is registered as a gauge"),
        }
    }

    /// The gauge `name{labels}`, created on first use.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.cell(
            name,
            help,
            "gauge",
            labels,
            || Cell::Gauge(Gauge::default()),
        ) {
            Cell::Gauge(g) => g,
            Cell::Counter(_) => panic!("{name} is registered as a counter"),
        }
    }

    fn cell(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Cell,
    ) -> Cell {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut families = self.families.lock().expect("registry lock");
        let idx = match families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    series: Vec::new(),
                });
                families.len() - 1
            }
        };
        let fam = &mut families[idx];
        if let Some((_, cell)) = fam.series.iter().find(|(l, _)| *l == labels) {
            return cell.clone();
        }
        let cell = make();
        fam.series.push((labels, cell.clone()));
        cell
    }
    /// The sum of a family's series (0 if it does not exist).
    pub fn sum(&self, name: &str) -> i64 {
        let families = self.families.lock().expect("registry lock");
        families
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.series.iter())
            .map(|(_, cell)| match cell {
                Cell::Counter(c) => c.get() as i64,
                Cell::Gauge(g) => g.get(),
            })
            .sum()
    }

    /// Serves `r`'s families too, in place of any store added under `key`
    /// before (a metrics sink rebuilt by a reload).
    pub fn set_render(&self, key: &str, r: Arc<dyn Render>) {
        let mut others = self.others.lock().expect("registry lock");
        match others.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = r,
            None => others.push((key.to_string(), r)),
        }
    }

    /// Appends the text exposition: the other stores' families, then weir's own.
    pub fn render(&self, out: &mut String) {
        self.render_except(out, "");
    }

    /// [`Registry::render`] without the store added under `key` (the rules
    /// read `/metrics` back without the `ALERTS` they wrote themselves).
    pub fn render_except(&self, out: &mut String, key: &str) {
        let others: Vec<Arc<dyn Render>> = self
            .others
            .lock()
            .expect("registry lock")
            .iter()
            .filter(|(k, _)| k != key)
            .map(|(_, r)| Arc::clone(r))
            .collect();
        for r in others {
            r.render(out);
        }
        let families = self.families.lock().expect("registry lock");
        for fam in families.iter() {
            let _ = writeln!(out, "# HELP {} {}", fam.name, escape_help(&fam.help));
            let _ = writeln!(out, "# TYPE {} {}", fam.name, fam.kind);
            for (labels, cell) in &fam.series {
                out.push_str(&fam.name);
                write_labels(out, labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let _ = match cell {
                    Cell::Counter(c) => writeln!(out, " {}", c.get()),
                    Cell::Gauge(g) => writeln!(out, " {}", g.get()),
                };
            }
        }
    }
}

/// Writes `{a="x",b="y"}` (nothing for an empty set) with values escaped.
pub fn write_labels<'a>(out: &mut String, labels: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_family_registers_each_value_once() {
        let r = Registry::default();
        let mut f = CounterFamily::new(
            &r,
            "weir_req_total",
            "Requests.",
            &[("sink", "s")],
            "status",
        );
        f.add("204", 2);
        f.add("500", 1);
        f.add("204", 1);
        let mut out = String::new();
        r.render(&mut out);
        assert!(
            out.contains("weir_req_total{sink=\"s\",status=\"204\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("weir_req_total{sink=\"s\",status=\"500\"} 1"),
            "{out}"
        );
    }

    #[test]
    fn renders_families_with_escaped_labels() {
        let r = Registry::default();
        let c = r.counter("weir_x_total", "X things.", &[("source", "a\"b")]);
        c.add(3);
        r.counter("weir_x_total", "X things.", &[("source", "a\"b")])
            .inc();
        r.gauge("weir_open", "Open.", &[]).set(-2);
        let mut out = String::new();
        r.render(&mut out);
        assert_eq!(
            out,
            "# HELP weir_x_total X things.\n# TYPE weir_x_total counter\nweir_x_total{source=\"a\\\"b\"} 4\n\
             # HELP weir_open Open.\n# TYPE weir_open gauge\nweir_open -2\n"
        );
    }
}
