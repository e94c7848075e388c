//! Aggregation operators (`sum`, `avg`, …, `topk`, `count_values`) with
//! `by`/`without`, as Prometheus 2.42's `aggregation()` computes them:
//! plain summation in `sum` (no Kahan in 2.42), the incremental mean in
//! `avg`, Welford in `stddev`/`stdvar`, and `topk`/`bottomk` selecting
//! through the same binary heap as Go's `container/heap`, so ties keep the
//! same elements. Output order of `topk` ties may differ (Go's sort is not
//! stable); values never do.
//!
//! The 3.x aggregations `limitk` and `limit_ratio` are refused.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::engine::{Ev, EvalError, check_unique, query_err, unparen};
use super::format::{format_f, format_float, go_quote};
use super::functions::valid_label_name;
use super::quantile::quantile;
use super::value::{Labels, METRIC_NAME, Sample, Value, Vector};

/// The aggregations of Prometheus 2.42.
pub(crate) const KNOWN: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    count: usize,
    heap: Vec<Sample>,
    values: Vec<f64>,
}

/// Go's `container/heap` over a vector with a `less` order.
struct GoHeap<'a> {
    items: &'a mut Vec<Sample>,
    less: fn(&Sample, &Sample) -> bool,
}

impl GoHeap<'_> {
    fn less(&self, i: usize, j: usize) -> bool {
        (self.less)(&self.items[i], &self.items[j])
    }

    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let i = (j - 1) / 2;
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    fn down(&mut self, mut i: usize, n: usize) {
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            if j1 + 1 < n && self.less(j1 + 1, j1) {
                j = j1 + 1;
            }
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
    }

    fn push(&mut self, s: Sample) {
        self.items.push(s);
        let n = self.items.len() - 1;
        self.up(n);
    }

    fn pop(&mut self) {
        let n = self.items.len() - 1;
        self.items.swap(0, n);
        self.down(0, n);
        self.items.pop();
    }
}

fn by_value(a: &Sample, b: &Sample) -> bool {
    a.v.is_nan() || a.v < b.v
}

fn by_reverse_value(a: &Sample, b: &Sample) -> bool {
    a.v.is_nan() || a.v > b.v
}

/// Evaluates an aggregation at step `ts`.
pub(crate) fn aggregate(ev: &Ev, a: &AggregateExpr, ts: i64) -> Result<Value, EvalError> {
    let op = a.op.to_string();
    if !KNOWN.contains(&op.as_str()) {
        return Err(EvalError::Unsupported(format!(
            "aggregation {op} is not in Prometheus 2.42"
        )));
    }
    let (without, mut grouping) = match &a.modifier {
        None => (false, Vec::new()),
        Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
    };
    let mut k = 0i64;
    let mut q = 0.0;
    let mut value_label = String::new();
    if let Some(p) = &a.param {
        match op.as_str() {
            "count_values" => {
                let Expr::StringLiteral(s) = unparen(p) else {
                    return query_err("count_values needs a string parameter");
                };
                value_label = s.val.clone();
            }
            _ => {
                let f = ev.eval_scalar(p, ts)?;
                if op == "quantile" {
                    q = f;
                } else {
                    if !(f <= i64::MAX as f64 && f >= i64::MIN as f64) {
                        return query_err(format!(
                            "Scalar value {} overflows int64",
                            format_float(f)
                        ));
                    }
                    k = f as i64;
                }
            }
        }
    }
    let vec = ev.eval_vector(&a.expr, ts)?;
    if (op == "topk" || op == "bottomk") && k < 1 {
        return Ok(Value::Vector(vec![]));
    }
    if op == "count_values" {
        if !valid_label_name(&value_label) {
            return query_err(format!("invalid label name {}", go_quote(&value_label)));
        }
        if !without {
            grouping.push(value_label.clone());
        }
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for mut s in vec {
        if op == "count_values" {
            s.labels.set(&value_label, &format_f(s.v));
        }
        let key = if without {
            let mut l = s.labels.drop_names(&grouping);
            l.del(METRIC_NAME);
            l
        } else {
            s.labels.keep(&grouping)
        };
        let Some(&gi) = index.get(&key) else {
            index.insert(key.clone(), groups.len());
            let mut g = Group {
                labels: key,
                value: s.v,
                mean: s.v,
                count: 1,
                heap: Vec::new(),
                values: Vec::new(),
            };
            match op.as_str() {
                "stddev" | "stdvar" => g.value = 0.0,
                "group" => g.value = 1.0,
                "quantile" => g.values.push(s.v),
                "topk" | "bottomk" => g.heap.push(s),
                _ => {}
            }
            groups.push(g);
            continue;
        };
        let g = &mut groups[gi];
        match op.as_str() {
            "sum" => g.value += s.v,
            "avg" => {
                g.count += 1;
                if g.mean.is_infinite() {
                    if s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0) {
                        continue;
                    }
                    if !s.v.is_infinite() && !s.v.is_nan() {
                        continue;
                    }
                }
                let n = g.count as f64;
                g.mean += s.v / n - g.mean / n;
            }
            "max" if g.value < s.v || g.value.is_nan() => g.value = s.v,
            "min" if g.value > s.v || g.value.is_nan() => g.value = s.v,
            "count" | "count_values" => g.count += 1,
            "stddev" | "stdvar" => {
                g.count += 1;
                let delta = s.v - g.mean;
                g.mean += delta / g.count as f64;
                g.value += delta * (s.v - g.mean);
            }
            "topk" | "bottomk" => {
                let less = if op == "topk" {
                    by_value
                } else {
                    by_reverse_value
                };
                let top = g.heap[0].v;
                let better = if op == "topk" { top < s.v } else { top > s.v };
                if (g.heap.len() as i64) < k || better || top.is_nan() {
                    if g.heap.len() as i64 == k {
                        if k == 1 {
                            g.heap[0] = s;
                            continue;
                        }
                        GoHeap {
                            items: &mut g.heap,
                            less,
                        }
                        .pop();
                    }
                    GoHeap {
                        items: &mut g.heap,
                        less,
                    }
                    .push(s);
                }
            }
            "quantile" => g.values.push(s.v),
            _ => {}
        }
    }
    let mut out: Vector = Vec::with_capacity(groups.len());
    for g in groups {
        let v = match op.as_str() {
            "avg" => g.mean,
            "count" | "count_values" => g.count as f64,
            "stdvar" => g.value / g.count as f64,
            "stddev" => (g.value / g.count as f64).sqrt(),
            "quantile" => quantile(q, g.values),
            "topk" | "bottomk" => {
                let less = if op == "topk" {
                    by_value
                } else {
                    by_reverse_value
                };
                let mut heap = g.heap;
                heap.sort_by(|a, b| {
                    if less(b, a) && !less(a, b) {
                        std::cmp::Ordering::Less
                    } else if less(a, b) && !less(b, a) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                });
                out.extend(heap.into_iter().map(|s| Sample { t: ts, ..s }));
                continue;
            }
            _ => g.value,
        };
        out.push(Sample {
            labels: g.labels,
            t: ts,
            v,
        });
    }
    check_unique(&out)?;
    Ok(Value::Vector(out))
}
