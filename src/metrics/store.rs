//! The series store: every derived metric, every label set, every value.
//!
//! Label sets are keyed by their full values, not by a hash of them: the
//! key is each value prefixed with its length, so `("ab","c")` and
//! `("a","bc")` are different keys, and two label sets whose hashes collide
//! are still compared by value (the `prometheus` crate keys children by a
//! hash alone and merges them). The store is owned by one task at a time;
//! callers lock it once per batch, not per event.
//!
//! Each family has a `max_series` bound; past it, new label sets go to one
//! overflow series whose label values are all `__overflow__`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher;

use crate::telemetry::write_labels;

/// The label value that marks the overflow series.
pub const OVERFLOW: &str = "__overflow__";

/// Prometheus' default histogram buckets.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram { buckets: Vec<f64> },
}

impl Kind {
    pub fn word(&self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram { .. } => "histogram",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Vec<Box<str>>,
    /// Counter or gauge value; a histogram's sum.
    pub value: f64,
    /// Histogram: per-bucket (not cumulative) counts, the last for +Inf.
    pub buckets: Vec<u64>,
    pub count: u64,
}

#[derive(Debug)]
pub struct Family<S> {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub label_names: Vec<String>,
    pub max_series: usize,
    index: HashMap<Box<str>, usize, S>,
    pub series: Vec<Series>,
    overflow: Option<usize>,
    /// Samples that went to the overflow series.
    pub overflowed: u64,
}

/// Identifies a family in its store.
pub type FamilyId = usize;

#[derive(Debug)]
pub struct Store<S = std::collections::hash_map::RandomState> {
    pub families: Vec<Family<S>>,
    hasher: S,
}

impl Default for Store {
    fn default() -> Self {
        Store::with_hasher(Default::default())
    }
}

fn encode_key<V: AsRef<str>>(key: &mut String, values: &[V]) {
    key.clear();
    for v in values {
        let v = v.as_ref();
        // The length in decimal, without the formatting machinery: this
        // runs for every matched rule of every event.
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = v.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        key.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
        key.push(':');
        key.push_str(v);
    }
}

impl<S: BuildHasher + Clone> Store<S> {
    pub fn with_hasher(hasher: S) -> Self {
        Store {
            families: Vec::new(),
            hasher,
        }
    }

    /// Registers a family, or returns the existing one of that name if it
    /// has the same type and label names.
    pub fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        label_names: &[String],
        max_series: usize,
    ) -> Result<FamilyId, String> {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            let f = &mut self.families[i];
            if f.kind != kind {
                return Err(format!(
                    "`{name}` is already a {} here; one name, one type",
                    f.kind.word()
                ));
            }
            if f.label_names != label_names {
                return Err(format!(
                    "`{name}` already has labels [{}]; every rule for one metric needs the same label names",
                    f.label_names.join(", ")
                ));
            }
            if f.help.is_empty() {
                f.help = help.to_string();
            }
            f.max_series = f.max_series.min(max_series);
            return Ok(i);
        }
        self.families.push(Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            label_names: label_names.to_vec(),
            max_series,
            index: HashMap::with_hasher(self.hasher.clone()),
            series: Vec::new(),
            overflow: None,
            overflowed: 0,
        });
        Ok(self.families.len() - 1)
    }

    /// The series for these label values, created if there is room, else the
    /// overflow series. `key` is scratch space reused between calls.
    pub fn series<V: AsRef<str>>(
        &mut self,
        fam: FamilyId,
        values: &[V],
        key: &mut String,
    ) -> usize {
        encode_key(key, values);
        let f = &mut self.families[fam];
        if let Some(&i) = f.index.get(key.as_str()) {
            return i;
        }
        let own = f.series.len() - usize::from(f.overflow.is_some());
        if own >= f.max_series {
            f.overflowed += 1;
            if let Some(i) = f.overflow {
                return i;
            }
            let i = f.push_series(vec![OVERFLOW.into(); values.len()]);
            f.overflow = Some(i);
            return i;
        }
        let i = f.push_series(values.iter().map(|v| Box::from(v.as_ref())).collect());
        f.index.insert(key.as_str().into(), i);
        i
    }

    pub fn add(&mut self, fam: FamilyId, series: usize, v: f64) {
        self.families[fam].series[series].value += v;
    }

    pub fn set(&mut self, fam: FamilyId, series: usize, v: f64) {
        self.families[fam].series[series].value = v;
    }

    pub fn get(&self, fam: FamilyId, series: usize) -> f64 {
        self.families[fam].series[series].value
    }

    pub fn observe(&mut self, fam: FamilyId, series: usize, v: f64) {
        let f = &mut self.families[fam];
        let Kind::Histogram { buckets } = &f.kind else {
            return;
        };
        let slot = buckets
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(buckets.len());
        let s = &mut f.series[series];
        s.buckets[slot] += 1;
        s.count += 1;
        s.value += v;
    }

    /// Drops the series for which `keep` is false (e.g. old dates).
    pub fn retain(&mut self, fam: FamilyId, mut keep: impl FnMut(&Series) -> bool) {
        let f = &mut self.families[fam];
        let before = f.series.len();
        f.series.retain(|s| keep(s));
        if f.series.len() == before {
            return;
        }
        f.index.clear();
        f.overflow = None;
        let mut key = String::new();
        for (i, s) in f.series.iter().enumerate() {
            if s.labels.iter().all(|l| &**l == OVERFLOW) && !s.labels.is_empty() {
                f.overflow = Some(i);
                continue;
            }
            let values: Vec<&str> = s.labels.iter().map(|l| &**l).collect();
            encode_key(&mut key, &values);
            f.index.insert(key.as_str().into(), i);
        }
    }

    /// Appends the text exposition of every family that has series.
    pub fn render(&self, out: &mut String) {
        for f in self.families.iter().filter(|f| !f.series.is_empty()) {
            f.render(out);
        }
    }
}

impl<S> Family<S> {
    fn push_series(&mut self, labels: Vec<Box<str>>) -> usize {
        let buckets = match &self.kind {
            Kind::Histogram { buckets } => vec![0; buckets.len() + 1],
            _ => Vec::new(),
        };
        self.series.push(Series {
            labels,
            value: 0.0,
            buckets,
            count: 0,
        });
        self.series.len() - 1
    }

    fn render(&self, out: &mut String) {
        let help = if self.help.is_empty() {
            self.name.as_str()
        } else {
            self.help.as_str()
        };
        let _ = writeln!(
            out,
            "# HELP {} {}",
            self.name,
            help.replace('\\', "\\\\").replace('\n', "\\n")
        );
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.word());
        for s in &self.series {
            let labels = || {
                self.label_names
                    .iter()
                    .map(String::as_str)
                    .zip(s.labels.iter().map(|l| &**l))
            };
            match &self.kind {
                Kind::Histogram { buckets } => {
                    let mut cumulative = 0;
                    for (i, n) in s.buckets.iter().enumerate() {
                        cumulative += n;
                        let le = match buckets.get(i) {
                            Some(b) => format_value(*b),
                            None => "+Inf".to_string(),
                        };
                        let _ = write!(out, "{}_bucket", self.name);
                        let mut with_le: Vec<(&str, &str)> = labels().collect();
                        with_le.push(("le", &le));
                        write_labels(out, with_le.into_iter());
                        let _ = writeln!(out, " {cumulative}");
                    }
                    let _ = write!(out, "{}_sum", self.name);
                    write_labels(out, labels());
                    let _ = writeln!(out, " {}", format_value(s.value));
                    let _ = write!(out, "{}_count", self.name);
                    write_labels(out, labels());
                    let _ = writeln!(out, " {}", s.count);
                }
                _ => {
                    out.push_str(&self.name);
                    write_labels(out, labels());
                    let _ = writeln!(out, " {}", format_value(s.value));
                }
            }
        }
    }
}

/// A sample value as Prometheus writes it: shortest round-trip digits,
/// `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_prefix_each_value_with_its_length() {
        let mut key = String::new();
        encode_key(&mut key, &["0123456789abc", "", "x"]);
        assert_eq!(key, "13:0123456789abc0:1:x");
    }

    #[test]
    fn label_sets_that_concatenate_alike_stay_apart() {
        let mut st = Store::default();
        let f = st
            .family("x_total", "", Kind::Counter, &labels(&["a", "b"]), 100)
            .unwrap();
        let mut key = String::new();
        let s1 = st.series(f, &["ab", "c"], &mut key);
        let s2 = st.series(f, &["a", "bc"], &mut key);
        assert_ne!(s1, s2);
        st.add(f, s1, 1.0);
        st.add(f, s2, 2.0);
        let mut out = String::new();
        st.render(&mut out);
        assert!(out.contains("x_total{a=\"ab\",b=\"c\"} 1\n"), "{out}");
        assert!(out.contains("x_total{a=\"a\",b=\"bc\"} 2\n"), "{out}");
    }

    /// Every key hashes alike: the map must still tell label sets apart.
    #[derive(Clone, Default)]
    struct Colliding;
    impl BuildHasher for Colliding {
        type Hasher = Constant;
        fn build_hasher(&self) -> Constant {
            Constant
        }
    }
    struct Constant;
    impl std::hash::Hasher for Constant {
        fn finish(&self) -> u64 {
            42
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn label_sets_whose_hashes_collide_stay_apart() {
        let mut st = Store::with_hasher(Colliding);
        let f = st
            .family("y_total", "", Kind::Counter, &labels(&["k"]), 100)
            .unwrap();
        let mut key = String::new();
        for (i, v) in ["a", "b", "c", "a"].iter().enumerate() {
            let s = st.series(f, &[v], &mut key);
            st.add(f, s, (i + 1) as f64);
        }
        let vals: Vec<f64> = st.families[f].series.iter().map(|s| s.value).collect();
        assert_eq!(vals, [5.0, 2.0, 3.0]);
    }

    #[test]
    fn overflow_series_past_max_series() {
        let mut st = Store::default();
        let f = st
            .family("z_total", "", Kind::Counter, &labels(&["id"]), 2)
            .unwrap();
        let mut key = String::new();
        for id in ["1", "2", "3", "4", "1"] {
            let s = st.series(f, &[id], &mut key);
            st.add(f, s, 1.0);
        }
        let fam = &st.families[f];
        assert_eq!(fam.series.len(), 3);
        assert_eq!(&*fam.series[2].labels[0], OVERFLOW);
        assert_eq!(fam.series[2].value, 2.0);
        assert_eq!(fam.series[0].value, 2.0);
        assert_eq!(fam.overflowed, 2);
    }

    #[test]
    fn histogram_exposition_is_cumulative_and_ends_with_inf() {
        let mut st = Store::default();
        let kind = Kind::Histogram {
            buckets: vec![0.1, 1.0],
        };
        let f = st
            .family("d_seconds", "Latency.", kind, &labels(&["m"]), 10)
            .unwrap();
        let mut key = String::new();
        let s = st.series(f, &["GET"], &mut key);
        for v in [0.05, 0.1, 0.5, 3.0] {
            st.observe(f, s, v);
        }
        let mut out = String::new();
        st.render(&mut out);
        assert_eq!(
            out,
            "# HELP d_seconds Latency.\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{m=\"GET\",le=\"0.1\"} 2\nd_seconds_bucket{m=\"GET\",le=\"1\"} 3\n\
             d_seconds_bucket{m=\"GET\",le=\"+Inf\"} 4\nd_seconds_sum{m=\"GET\"} 3.65\nd_seconds_count{m=\"GET\"} 4\n"
        );
    }

    #[test]
    fn one_name_one_type_and_one_label_set() {
        let mut st = Store::default();
        st.family("a", "", Kind::Counter, &labels(&["x"]), 10)
            .unwrap();
        assert!(
            st.family("a", "", Kind::Gauge, &labels(&["x"]), 10)
                .is_err()
        );
        assert!(
            st.family("a", "", Kind::Counter, &labels(&["y"]), 10)
                .is_err()
        );
        assert_eq!(
            st.family("a", "", Kind::Counter, &labels(&["x"]), 10),
            Ok(0)
        );
    }
}
