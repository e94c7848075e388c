//! The label names an expression's result can have, from the catalog's
//! label names and what each operation does to them (Prometheus 2.42, as
//! weir's engine evaluates it): `by` keeps only the names given, `without`
//! drops them, a one-to-one binary operation with `on` keeps only the
//! matching names and with `ignoring` drops them, `group_left`/`right`
//! copy names from the other side, `histogram_quantile` drops `le`,
//! `label_replace`/`label_join` add their destination.
//!
//! The answer is an upper bound: a name outside it is never there. A
//! metric the catalog does not know, or has no catalog at all, may have
//! any label ([`LabelSet::Any`]).

use std::collections::BTreeSet;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality};

use super::catalog::Catalog;

/// The label names a result can have, `__name__` aside.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSet {
    /// Any label may be there.
    Any,
    /// At most these.
    Known(BTreeSet<String>),
}

impl LabelSet {
    pub fn empty() -> LabelSet {
        LabelSet::Known(BTreeSet::new())
    }

    pub fn may_have(&self, name: &str) -> bool {
        match self {
            LabelSet::Any => true,
            LabelSet::Known(l) => l.contains(name),
        }
    }

    pub fn union(&self, other: &LabelSet) -> LabelSet {
        match (self, other) {
            (LabelSet::Known(a), LabelSet::Known(b)) => LabelSet::Known(a | b),
            _ => LabelSet::Any,
        }
    }

    fn keep(&self, names: &[String]) -> LabelSet {
        let names = names.iter().cloned();
        match self {
            LabelSet::Any => LabelSet::Known(names.collect()),
            LabelSet::Known(l) => LabelSet::Known(names.filter(|n| l.contains(n)).collect()),
        }
    }

    fn drop(&self, names: &[String]) -> LabelSet {
        match self {
            LabelSet::Any => LabelSet::Any,
            LabelSet::Known(l) => {
                LabelSet::Known(l.iter().filter(|n| !names.contains(n)).cloned().collect())
            }
        }
    }

    fn with(&self, names: &[String]) -> LabelSet {
        self.union(&LabelSet::Known(names.iter().cloned().collect()))
    }

    /// The names, for messages: `{endpoint, method}`.
    pub fn describe(&self) -> String {
        match self {
            LabelSet::Any => "any".to_string(),
            LabelSet::Known(l) => {
                format!("{{{}}}", l.iter().cloned().collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// Whether an expression is a scalar (a number, or a function of numbers).
pub fn is_scalar(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => is_scalar(&p.expr),
        Expr::Unary(u) => is_scalar(&u.expr),
        Expr::Binary(b) => is_scalar(&b.lhs) && is_scalar(&b.rhs),
        Expr::Call(c) => matches!(c.func.name, "scalar" | "time" | "pi"),
        _ => false,
    }
}

/// The labels of a selector's series: the catalog's, or any when the
/// metric is unknown (or there is no catalog).
fn selector_labels(name: Option<&str>, cat: Option<&Catalog>) -> LabelSet {
    match (name, cat) {
        (Some(n), Some(c)) => c.find(n).map_or(LabelSet::Any, |f| f.labels()),
        _ => LabelSet::Any,
    }
}

/// The label names `expr`'s result can have.
pub fn result_labels(expr: &Expr, cat: Option<&Catalog>) -> LabelSet {
    let rec = |e: &Expr| result_labels(e, cat);
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => LabelSet::empty(),
        Expr::VectorSelector(v) => selector_labels(v.name.as_deref(), cat),
        Expr::MatrixSelector(m) => selector_labels(m.vs.name.as_deref(), cat),
        Expr::Paren(p) => rec(&p.expr),
        Expr::Unary(u) => rec(&u.expr),
        Expr::Subquery(s) => rec(&s.expr),
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            let inner = rec(&a.expr);
            // topk, bottomk (and limitk) return the input series whole.
            if matches!(op.as_str(), "topk" | "bottomk" | "limitk" | "limit_ratio") {
                return inner;
            }
            let mut grouped = match &a.modifier {
                None => LabelSet::empty(),
                Some(LabelModifier::Include(l)) => inner.keep(&l.labels),
                Some(LabelModifier::Exclude(l)) => inner.drop(&l.labels),
            };
            if op == "count_values"
                && let Some(p) = &a.param
                && let Expr::StringLiteral(s) = p.as_ref()
            {
                grouped = grouped.with(std::slice::from_ref(&s.val));
            }
            grouped
        }
        Expr::Call(c) => {
            let args = &c.args.args;
            let first_vector = args
                .iter()
                .find(|a| !matches!(a.as_ref(), Expr::NumberLiteral(_) | Expr::StringLiteral(_)));
            match c.func.name {
                "time" | "pi" | "scalar" | "vector" => LabelSet::empty(),
                "absent" | "absent_over_time" => {
                    // The equality matchers of a plain selector, else none.
                    let vs = match args.first().map(|a| a.as_ref()) {
                        Some(Expr::VectorSelector(v)) => Some(v),
                        Some(Expr::MatrixSelector(m)) => Some(&m.vs),
                        _ => None,
                    };
                    let names = vs.into_iter().flat_map(|v| &v.matchers.matchers);
                    LabelSet::Known(
                        names
                            .filter(|m| m.op == MatchOp::Equal && m.name != "__name__")
                            .map(|m| m.name.clone())
                            .collect(),
                    )
                }
                "histogram_quantile" => args
                    .get(1)
                    .map_or(LabelSet::Any, |a| rec(a).drop(&["le".to_string()])),
                "label_replace" | "label_join" => {
                    let inner = args.first().map_or(LabelSet::Any, |a| rec(a));
                    match args.get(1).map(|a| a.as_ref()) {
                        Some(Expr::StringLiteral(s)) => inner.with(std::slice::from_ref(&s.val)),
                        _ => LabelSet::Any,
                    }
                }
                _ => first_vector.map_or(LabelSet::empty(), |a| rec(a)),
            }
        }
        Expr::Binary(b) => {
            let (ls, rs) = (is_scalar(&b.lhs), is_scalar(&b.rhs));
            if ls && rs {
                return LabelSet::empty();
            }
            if ls {
                return rec(&b.rhs);
            }
            if rs {
                return rec(&b.lhs);
            }
            let (l, r) = (rec(&b.lhs), rec(&b.rhs));
            match b.op.to_string().as_str() {
                "or" => return l.union(&r),
                "and" | "unless" => return l,
                _ => {}
            }
            let Some(m) = &b.modifier else {
                return l;
            };
            let matching = |side: &LabelSet| match &m.matching {
                Some(LabelModifier::Include(on)) => side.keep(&on.labels),
                Some(LabelModifier::Exclude(ign)) => side.drop(&ign.labels),
                None => side.clone(),
            };
            match &m.card {
                VectorMatchCardinality::OneToOne => matching(&l),
                VectorMatchCardinality::ManyToOne(include) => l.with(&include.labels),
                VectorMatchCardinality::OneToMany(include) => r.with(&include.labels),
                VectorMatchCardinality::ManyToMany => l,
            }
        }
        Expr::Extension(_) => LabelSet::Any,
    }
}
