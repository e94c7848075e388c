//! Binary operators, as Prometheus 2.42's `VectorBinop`,
//! `VectorscalarBinop`, `scalarBinop` and the set operators compute them:
//! label matching with `on`/`ignoring` (always ignoring `__name__`),
//! `group_left`/`group_right` copying labels from the "one" side, the
//! metric name dropped by arithmetic (not by comparisons, not by `atan2`)
//! and by `bool`, and Prometheus' error messages for ambiguous matches.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::engine::{Ev, EvalError, check_unique, query_err};
use super::value::{Labels, METRIC_NAME, Sample, Value, Vector};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn drops_name(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Mod
        )
    }

    /// The value and whether the element is kept (`vectorElemBinop`).
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (f64::NAN, false),
        }
    }
}

/// How two vectors are matched.
struct Matching {
    card: VectorMatchCardinality,
    on: bool,
    names: Vec<String>,
    include: Vec<String>,
}

impl Matching {
    fn of(b: &BinaryExpr, set_op: bool) -> Matching {
        let (card, matching) = match &b.modifier {
            Some(m) => (m.card.clone(), m.matching.clone()),
            None => (VectorMatchCardinality::OneToOne, None),
        };
        let card = if set_op {
            VectorMatchCardinality::ManyToMany
        } else {
            card
        };
        let (on, names) = match matching {
            Some(LabelModifier::Include(l)) => (true, l.labels),
            Some(LabelModifier::Exclude(l)) => (false, l.labels),
            None => (false, Vec::new()),
        };
        let include = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
        Matching {
            card,
            on,
            names,
            include,
        }
    }

    /// The labels two elements must share to match (also Prometheus'
    /// `MatchLabels` for error messages).
    fn signature(&self, l: &Labels) -> Labels {
        if self.on {
            l.keep(&self.names)
        } else {
            let mut s = l.drop_names(&self.names);
            s.del(METRIC_NAME);
            s
        }
    }
}

/// Evaluates a binary expression at step `ts`.
pub(crate) fn binary(ev: &Ev, b: &BinaryExpr, ts: i64) -> Result<Value, EvalError> {
    let op_s = b.op.to_string();
    let Some(op) = Op::parse(&op_s) else {
        return Err(EvalError::Unsupported(format!("binary operator {op_s}")));
    };
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    let out = match (lhs, rhs) {
        (Value::Scalar { v: l, .. }, Value::Scalar { v: r, .. }) => {
            let (v, keep) = op.apply(l, r);
            let v = if op.is_comparison() {
                if keep { 1.0 } else { 0.0 }
            } else {
                v
            };
            return Ok(Value::Scalar { t: ts, v });
        }
        (Value::Vector(l), Value::Scalar { v: r, .. }) => {
            vector_scalar(op, l, r, false, return_bool, ts)
        }
        (Value::Scalar { v: l, .. }, Value::Vector(r)) => {
            vector_scalar(op, r, l, true, return_bool, ts)
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let set_op = matches!(op, Op::And | Op::Or | Op::Unless);
            let m = Matching::of(b, set_op);
            match op {
                Op::And | Op::Or | Op::Unless => set_operation(op, l, r, &m),
                _ => vector_vector(op, l, r, &m, return_bool, ts)?,
            }
        }
        (l, r) => {
            return query_err(format!(
                "binary expression between {} and {}",
                l.type_name(),
                r.type_name()
            ));
        }
    };
    check_unique(&out)?;
    Ok(Value::Vector(out))
}

fn vector_scalar(op: Op, vec: Vector, s: f64, swap: bool, rb: bool, ts: i64) -> Vector {
    let mut out = Vec::with_capacity(vec.len());
    for mut e in vec {
        let (l, r) = if swap { (s, e.v) } else { (e.v, s) };
        let (mut v, mut keep) = op.apply(l, r);
        if op.is_comparison() && swap {
            v = r;
        }
        if rb {
            v = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            e.v = v;
            e.t = ts;
            if op.drops_name() || rb {
                e.labels.del(METRIC_NAME);
            }
            out.push(e);
        }
    }
    out
}

fn set_operation(op: Op, lhs: Vector, rhs: Vector, m: &Matching) -> Vector {
    match op {
        Op::And => {
            if lhs.is_empty() || rhs.is_empty() {
                return vec![];
            }
            let right: HashSet<Labels> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&m.signature(&s.labels)))
                .collect()
        }
        Op::Or => {
            let left: HashSet<Labels> = lhs.iter().map(|s| m.signature(&s.labels)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&m.signature(&s.labels))),
            );
            out
        }
        _ => {
            let right: HashSet<Labels> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&m.signature(&s.labels)))
                .collect()
        }
    }
}

fn vector_vector(
    op: Op,
    lhs: Vector,
    rhs: Vector,
    m: &Matching,
    rb: bool,
    ts: i64,
) -> Result<Vector, EvalError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(vec![]);
    }
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    // The "one" side goes right; values are swapped back below.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut right: HashMap<Labels, Sample> = HashMap::with_capacity(one.len());
    for rs in one {
        let sig = m.signature(&rs.labels);
        if let Some(dup) = right.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return query_err(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                rs.labels, dup.labels
            ));
        }
        right.insert(sig, rs);
    }
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in many {
        let sig = m.signature(&ls.labels);
        let Some(rs) = right.get(&sig) else {
            continue;
        };
        let (vl, vr) = if one_to_many {
            (rs.v, ls.v)
        } else {
            (ls.v, rs.v)
        };
        let (mut v, keep) = op.apply(vl, vr);
        if rb {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut metric = result_metric(&ls.labels, &rs.labels, op, m);
        if rb {
            metric.del(METRIC_NAME);
        }
        if one_to_one {
            if matched.contains_key(&sig) {
                return query_err(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                );
            }
            matched.insert(sig, HashSet::new());
        } else {
            let set = matched.entry(sig).or_default();
            if !set.insert(metric.clone()) {
                return query_err(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                );
            }
        }
        out.push(Sample {
            labels: metric,
            t: ts,
            v,
        });
    }
    Ok(out)
}

fn result_metric(lhs: &Labels, rhs: &Labels, op: Op, m: &Matching) -> Labels {
    let mut l = lhs.clone();
    if op.drops_name() {
        l.del(METRIC_NAME);
    }
    if matches!(m.card, VectorMatchCardinality::OneToOne) {
        l = if m.on {
            l.keep(&m.names)
        } else {
            l.drop_names(&m.names)
        };
    }
    for name in &m.include {
        l.set(name, rhs.get(name));
    }
    l
}
