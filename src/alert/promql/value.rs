//! The values an expression evaluates to, and label sets.
//!
//! [`Labels`] is a label set sorted by name, compared and printed the way
//! Prometheus 2.42's `labels.Labels` is (`{a="1", b="2"}`, `__name__` as an
//! ordinary label). Only float samples exist here: native histograms are
//! deliberately not modelled.

use std::fmt;

use super::format::go_quote;

/// The name of the metric-name label.
pub const METRIC_NAME: &str = "__name__";

/// Prometheus' stale marker: a NaN with this exact bit pattern ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The stale marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the stale marker (not just any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A label set, sorted by label name, without empty values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// The empty label set.
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order; later duplicates win and
    /// empty values are dropped, as Prometheus' label builder does.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut ls = Labels::new();
        for (k, v) in pairs {
            ls.set(&k.into(), &v.into());
        }
        ls
    }

    /// The value of `name`, or `""` when absent (as Prometheus' `Get`).
    pub fn get(&self, name: &str) -> &str {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) => &self.0[i].1,
            Err(_) => "",
        }
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    /// Removes `name` if present.
    pub fn del(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            self.0.remove(i);
        }
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        let mut l = self.clone();
        l.del(METRIC_NAME);
        l
    }

    /// A copy keeping only the listed names.
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        )
    }

    /// A copy without the listed names.
    pub fn drop_names(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        )
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Labels {
    /// As Prometheus 2.42 prints a label set: `{__name__="up", job="a"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={}", go_quote(v))?;
        }
        f.write_str("}")
    }
}

/// One element of an instant vector. `t` is the sample's own timestamp
/// right after a vector selector, the evaluation time otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A series of float samples `(t_ms, value)`, sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// An instant vector.
pub type Vector = Vec<Sample>;

/// A range vector (or a range query's result).
pub type Matrix = Vec<Series>;

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vector),
    Matrix(Matrix),
}

impl Value {
    /// The PromQL type name, as Prometheus' error messages spell it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sorted_and_printed_like_go() {
        let l = Labels::from_pairs([("job", "a\"b"), ("__name__", "up"), ("empty", "")]);
        assert_eq!(l.to_string(), r#"{__name__="up", job="a\"b"}"#);
        assert_eq!(l.get("job"), "a\"b");
        assert_eq!(l.get("nope"), "");
        assert_eq!(l.without_name().to_string(), r#"{job="a\"b"}"#);
    }

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(stale_nan().is_nan());
        assert!(!is_stale_nan(f64::NAN));
    }
}
