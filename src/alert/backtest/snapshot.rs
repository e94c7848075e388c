//! The back-test's scrape: the metrics store read straight into samples,
//! without going through the text exposition.
//!
//! A back-test scrapes at every step of a long span, so the label sets of
//! the series are built once and kept; each step only refreshes values
//! and adds the series that are new. Histograms give their cumulative
//! `_bucket` series, `_sum` and `_count`, as the exposition does.

use std::collections::HashMap;

use crate::alert::promql::Labels;
use crate::alert::promql::value::METRIC_NAME;
use crate::metrics::store::{Kind, Store, format_value};

/// A store series' label values when it was placed, and its first sample.
type Placed = (Vec<Box<str>>, usize);

/// The samples of the last scrape and where each store series went.
#[derive(Default)]
pub struct Snapshot {
    pub samples: Vec<(Labels, f64)>,
    /// (family, series) → the label values it had and its first sample.
    index: HashMap<(usize, usize), Placed>,
}

impl Snapshot {
    /// Refreshes the samples from `store`, for the families `keep` accepts.
    pub fn update<S>(&mut self, store: &Store<S>, keep: &dyn Fn(&str) -> bool) {
        let mut seen = vec![false; self.samples.len()];
        for (fi, f) in store.families.iter().enumerate() {
            if f.series.is_empty() || !keep(&f.name) {
                continue;
            }
            for (si, s) in f.series.iter().enumerate() {
                let at = match self.index.get(&(fi, si)) {
                    Some((values, at)) if *values == s.labels => *at,
                    _ => {
                        let at = self.samples.len();
                        for labels in series_labels(&f.name, &f.label_names, &s.labels, &f.kind) {
                            self.samples.push((labels, 0.0));
                            seen.push(false);
                        }
                        self.index.insert((fi, si), (s.labels.clone(), at));
                        at
                    }
                };
                let mut i = at;
                let mut put = |v: f64| {
                    self.samples[i].1 = v;
                    seen[i] = true;
                    i += 1;
                };
                match &f.kind {
                    Kind::Histogram { .. } => {
                        let mut cumulative = 0u64;
                        for n in &s.buckets {
                            cumulative += n;
                            put(cumulative as f64);
                        }
                        put(s.value);
                        put(s.count as f64);
                    }
                    _ => put(s.value),
                }
            }
        }
        // Series the store no longer has (expired days) leave the scrape.
        if seen.iter().any(|s| !s) {
            let mut keep_at = Vec::with_capacity(seen.len());
            let mut n = 0;
            for s in &seen {
                keep_at.push(n);
                n += usize::from(*s);
            }
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                seen[i - 1]
            });
            self.index.retain(|_, (_, at)| {
                if seen[*at] {
                    *at = keep_at[*at];
                    true
                } else {
                    false
                }
            });
        }
    }
}

/// The label sets a store series is exposed as, in the order of its values.
fn series_labels(
    name: &str,
    label_names: &[String],
    values: &[Box<str>],
    kind: &Kind,
) -> Vec<Labels> {
    let base = |metric: &str| {
        let mut l = Labels::from_pairs(
            label_names
                .iter()
                .map(String::as_str)
                .zip(values.iter().map(|v| &**v)),
        );
        l.set(METRIC_NAME, metric);
        l
    };
    match kind {
        Kind::Histogram { buckets } => {
            let bucket = format!("{name}_bucket");
            let mut out: Vec<Labels> = buckets
                .iter()
                .map(|b| format_value(*b))
                .chain(["+Inf".to_string()])
                .map(|le| {
                    let mut l = base(&bucket);
                    l.set("le", &le);
                    l
                })
                .collect();
            out.push(base(&format!("{name}_sum")));
            out.push(base(&format!("{name}_count")));
            out
        }
        _ => vec![base(name)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The snapshot holds what the text exposition says, value for value.
    #[test]
    fn equals_the_exposition() {
        let mut store = Store::default();
        let mut key = String::new();
        let h = store
            .family(
                "lat_seconds",
                "",
                Kind::Histogram {
                    buckets: vec![0.1, 1.0],
                },
                &["path".to_string()],
                100,
            )
            .unwrap();
        let c = store
            .family("req_total", "", Kind::Counter, &["code".to_string()], 100)
            .unwrap();
        let s = store.series(h, &["/a"], &mut key);
        store.observe(h, s, 0.5);
        store.observe(h, s, 3.0);
        let s = store.series(c, &["200"], &mut key);
        store.add(c, s, 2.0);
        let mut snap = Snapshot::default();
        snap.update(&store, &|_| true);
        let s2 = store.series(c, &["500"], &mut key);
        store.add(c, s2, 1.0);
        snap.update(&store, &|_| true);
        let mut text = String::new();
        store.render(&mut text);
        let (mut want, _) = crate::alert::live::scrape::parse(&text);
        let mut got = snap.samples.clone();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);
    }
}
