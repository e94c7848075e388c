//! Alerting: Prometheus-compatible rule evaluation.
//!
//! For now this holds only [`promql`], an evaluator of PromQL expressions
//! over float samples with Prometheus 2.42 semantics. Rule files, the alert
//! state machine, templates and `weir test` build on it later; nothing in
//! the running shipper uses it yet.

pub mod promql;
pub mod template;
