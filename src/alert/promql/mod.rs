//! A PromQL evaluator for float samples with Prometheus 2.42 semantics.
//!
//! Expressions are parsed by the `promql-parser` crate (3.x grammar, see
//! [`parse`]) and evaluated here by an [`Engine`] over a [`Storage`]:
//!
//! - [`engine`]: instant and range evaluation, selectors (5 m lookback,
//!   staleness, `offset`, `@`), subqueries; what is refused as
//!   [`EvalError::Unsupported`].
//! - [`functions`], `range_functions`: the function library.
//! - `aggregate`, `binary`: aggregation and binary operators.
//! - `quantile`: `histogram_quantile` and φ-quantiles.
//! - [`storage`]: the [`Storage`] trait, [`MemStorage`] and promtool's
//!   expanding series notation.
//! - [`value`]: labels and result values; [`format`]: Go's number and
//!   string formatting, for output promtool users recognise.
//!
//! Not here on purpose: native histograms, query limits and statistics,
//! and everything about rules (files, alert states, templates).
//!
//! Differences between 2.42 and 3.x that matter and that this follows in
//! the 2.42 way: range windows `[t - r, t]` and the lookback `[t - 5m, t]`
//! are closed on the left (3.x: open); `rate` extrapolation as 2.x;
//! `holt_winters` is a function (3.x renamed it
//! `double_exponential_smoothing`, which is refused like every 3.x-only
//! function); `.` in regexes does not match a newline.

mod aggregate;
mod binary;
pub mod engine;
pub mod format;
pub mod functions;
mod quantile;
mod range_functions;
pub mod storage;
pub mod value;

use std::sync::Once;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, Function};

pub use engine::{Engine, EvalError};
pub use format::format_float;
pub use storage::{MemStorage, Storage};
pub use value::{Labels, Matrix, Sample, Series, Value, Vector};

static EXTRA_FUNCTIONS: Once = Once::new();

/// Parses a PromQL expression.
///
/// `promql-parser` 0.11 follows the 3.x grammar, which has no
/// `holt_winters`; it is registered here (once, process-wide) with its 2.42
/// signature so 2.42 expressions parse. Errors are the parser's text.
pub fn parse(expr: &str) -> Result<Expr, String> {
    EXTRA_FUNCTIONS.call_once(|| {
        // Registering cannot fail: the name is not a built-in of 0.11.1.
        let _ = promql_parser::parser::register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
    promql_parser::parser::parse(expr)
}

#[cfg(test)]
mod tests;
