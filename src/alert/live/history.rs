//! The bounded history the live rules and the query API read: samples of
//! weir's own `/metrics`, taken at each scrape, kept for `retention`.
//!
//! Each scrape is one time: every series in it gets a sample, and a series
//! that was in the previous scrape but not in this one gets a stale marker
//! (as Prometheus does for a series that disappears from a target), so
//! instant selectors stop returning it at once instead of after the 5 m
//! lookback. Series are grouped by metric name, as nearly every selector
//! names one.
//!
//! The number of series is bounded (`max_series`): a scrape's new series
//! beyond it are left out and counted, never evicting series already held.
//! Deliberately not here: compression, disk persistence (the history is
//! rebuilt from `/metrics` after a restart; counters restart as Prometheus
//! sees a restarted target).

use std::collections::{BTreeMap, VecDeque};

use promql_parser::label::Matcher;

use crate::alert::promql::storage::select_by_name;
use crate::alert::promql::value::{METRIC_NAME, is_stale_nan, stale_nan};
use crate::alert::promql::{Labels, Series, Storage};

type Samples = VecDeque<(i64, f64)>;

/// Scraped samples by metric name, then by label set.
#[derive(Debug, Default)]
pub struct History {
    by_name: BTreeMap<String, BTreeMap<Labels, Samples>>,
    /// The time of the last scrape (its series that the next one lacks
    /// get a stale marker).
    last_scrape: Option<i64>,
    retention_ms: i64,
    max_series: usize,
    series: usize,
    /// Series left out because of `max_series`, counted once per scrape.
    dropped: u64,
}

impl History {
    pub fn new(retention_ms: i64, max_series: usize) -> History {
        History {
            retention_ms,
            max_series,
            ..History::default()
        }
    }

    /// Adds one scrape taken at `t_ms`; returns how many series were left
    /// out because the store is full. Label sets are cloned only for
    /// series not seen before.
    pub fn ingest(&mut self, scrape: &[(Labels, f64)], t_ms: i64) -> usize {
        let mut left_out = 0;
        for (labels, v) in scrape {
            let name = labels.get(METRIC_NAME);
            let group = match self.by_name.get_mut(name) {
                Some(g) => g,
                None => self.by_name.entry(name.to_string()).or_default(),
            };
            let samples = match group.get_mut(labels) {
                Some(s) => s,
                None if self.series >= self.max_series => {
                    left_out += 1;
                    continue;
                }
                None => {
                    self.series += 1;
                    group.entry(labels.clone()).or_default()
                }
            };
            push(samples, t_ms, *v);
        }
        // In the previous scrape but not in this one: stale from now on.
        if let Some(prev) = self.last_scrape.filter(|p| *p != t_ms) {
            for s in self.by_name.values_mut().flat_map(|g| g.values_mut()) {
                if s.back()
                    .is_some_and(|(t, v)| *t == prev && !is_stale_nan(*v))
                {
                    push(s, t_ms, stale_nan());
                }
            }
        }
        self.last_scrape = Some(t_ms);
        self.dropped += left_out as u64;
        self.trim(t_ms);
        left_out
    }

    /// Drops samples older than `now_ms - retention`, and empty series.
    pub fn trim(&mut self, now_ms: i64) {
        let oldest = now_ms.saturating_sub(self.retention_ms);
        let mut removed = 0;
        self.by_name.retain(|_, group| {
            group.retain(|_, s| {
                while s.front().is_some_and(|(t, _)| *t < oldest) {
                    s.pop_front();
                }
                let keep = !s.is_empty();
                removed += usize::from(!keep);
                keep
            });
            !group.is_empty()
        });
        self.series -= removed;
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series
    }

    pub fn is_empty(&self) -> bool {
        self.series == 0
    }

    /// Number of samples held.
    pub fn sample_count(&self) -> usize {
        self.by_name
            .values()
            .flat_map(|g| g.values())
            .map(VecDeque::len)
            .sum()
    }

    /// The oldest sample's time (`None` when empty).
    pub fn oldest_ms(&self) -> Option<i64> {
        self.by_name
            .values()
            .flat_map(|g| g.values())
            .filter_map(|s| s.front().map(|(t, _)| *t))
            .min()
    }

    /// Series left out since start because of `max_series`.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Appends in time order; a sample at the newest time replaces it, an
/// older one is dropped.
fn push(s: &mut Samples, t: i64, v: f64) {
    match s.back_mut() {
        Some(last) if last.0 == t => last.1 = v,
        Some(last) if last.0 > t => {}
        _ => s.push_back((t, v)),
    }
}

impl Storage for History {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<Series> {
        select_by_name(&self.by_name, matchers, |samples| {
            let lo = samples.partition_point(|(t, _)| *t < start_ms);
            let hi = samples.partition_point(|(t, _)| *t <= end_ms);
            samples.range(lo..hi).copied().collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::MatchOp;

    fn l(name: &str, a: &str) -> Labels {
        Labels::from_pairs([(METRIC_NAME, name), ("a", a)])
    }

    fn all(h: &History, name: &str) -> Vec<Series> {
        let m = Matcher::new(MatchOp::Equal, METRIC_NAME, name);
        h.select(&[m], i64::MIN, i64::MAX)
    }

    #[test]
    fn a_vanished_series_gets_one_stale_marker() {
        let mut h = History::new(60_000, 100);
        h.ingest(&[(l("x", "1"), 1.0), (l("x", "2"), 2.0)], 1000);
        h.ingest(&[(l("x", "1"), 3.0)], 2000);
        h.ingest(&[(l("x", "1"), 4.0)], 3000);
        let s = all(&h, "x");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].samples, vec![(1000, 1.0), (2000, 3.0), (3000, 4.0)]);
        assert_eq!(s[1].samples.len(), 2);
        assert!(is_stale_nan(s[1].samples[1].1));
    }

    #[test]
    fn old_samples_and_empty_series_go() {
        let mut h = History::new(10_000, 100);
        h.ingest(&[(l("x", "1"), 1.0), (l("y", "1"), 1.0)], 0);
        h.ingest(&[(l("x", "1"), 2.0)], 5_000);
        h.ingest(&[(l("x", "1"), 3.0)], 20_000);
        assert_eq!(all(&h, "x")[0].samples, vec![(20_000, 3.0)]);
        assert!(all(&h, "y").is_empty());
        assert_eq!(h.len(), 1);
        assert_eq!(h.oldest_ms(), Some(20_000));
    }

    #[test]
    fn full_store_keeps_what_it_has_and_counts_the_rest() {
        let mut h = History::new(60_000, 2);
        let left = h.ingest(
            &[(l("x", "1"), 1.0), (l("x", "2"), 1.0), (l("x", "3"), 1.0)],
            0,
        );
        assert_eq!(left, 1);
        assert_eq!(h.len(), 2);
        assert_eq!(h.dropped(), 1);
        h.ingest(&[(l("x", "1"), 2.0), (l("x", "2"), 2.0)], 1000);
        assert_eq!(all(&h, "x").len(), 2);
    }
}
