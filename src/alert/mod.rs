//! Alerting: Prometheus-compatible rule evaluation.
//!
//! - [`promql`]: an evaluator of PromQL expressions over float samples with
//!   Prometheus 2.42 semantics.
//! - [`rules`]: rule files, loaded unchanged and checked as
//!   `promtool check rules` does.
//! - [`group`]: evaluating a group of rules at one time, recording rules'
//!   results layered over the base storage ([`group::RuleResults`]).
//! - [`state`]: the alert state machine (pending, firing, resolved) and the
//!   `ALERTS` / `ALERTS_FOR_STATE` series.
//! - [`template`]: alert label and annotation templates.
//! - [`status`]: what the running rules look like from outside (the
//!   query API's view).
//! - [`query_api`]: Prometheus' HTTP query API (`/api/v1/query`,
//!   `query_range`, `series`, `labels`, `alerts`, `rules`, …) over that
//!   view, for Grafana and promtool.
//! - [`lint`]: warnings for rules that can never fire against what the
//!   pipeline derives (`weir validate`).
//! - [`unittest`]: `weir test`, promtool's rule unit tests.
//! - [`backtest`]: the rules evaluated on the logs' own time (`--once`,
//!   `weir backtest`).
//! - [`live`]: the rules evaluated on the wall clock inside `weir run`,
//!   over the history of weir's own `/metrics`.
//! - [`notify`]: notification payloads (Alertmanager, webhook, Slack,
//!   DingTalk, WeCom) and their delivery; not yet wired into the shipper.
//!
//! Scheduling groups at their intervals and wiring the notifiers into the
//! running shipper (routing, grouping) come later; nothing in the running
//! shipper uses this yet.

pub mod backtest;
mod compat;
pub mod export;
pub mod group;
pub mod lint;
pub mod live;
pub mod notify;
pub mod promql;
pub mod query_api;
pub mod rules;
pub mod state;
pub mod status;
pub mod template;
pub mod unittest;
