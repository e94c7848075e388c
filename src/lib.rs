//! weir: a structured-log shipper.
//!
//! The modules, in the order a line meets them:
//!
//! - [`config`] reads a pipeline file (YAML with positions, `${VAR}`
//!   expansion, located errors) and [`component`] maps each `type` to the
//!   module that checks and starts it.
//! - [`source`] reads lines (file tailing with checkpoints, stdin) and
//!   [`decode`] turns them into [`event`]s; [`ack`] carries each batch's
//!   acknowledgement back to its source.
//! - [`fanout`] moves batches through bounded channels; [`buffer`] holds a
//!   sink's input in memory or on disk; [`topology`] wires and runs the
//!   components, and reloads them.
//! - [`transform`] filters events; [`template`] renders fields into labels
//!   and names.
//! - [`metrics`] derives counters, histograms and LLM costs from events;
//!   [`sink`] delivers events (Loki, Elasticsearch, files, console) over
//!   the shared [`http`] target.
//! - [`alert`] evaluates PromQL (Prometheus 2.42 semantics) for alert
//!   rules; not wired into pipelines yet.
//! - [`dashboards`] writes Grafana dashboards for what a pipeline derives
//!   (`weir dashboards export`).
//! - [`telemetry`] holds weir's own counters, served by [`api`] with the
//!   derived metrics; [`tap`] shows the events leaving a component of a
//!   running weir (`weir tap`), and [`top`] its throughput (`weir top`),
//!   both over that API; [`shutdown`], [`redact`] and [`rlimit`] are small
//!   leaves used throughout; [`progress`] shows how long work goes;
//!   [`commands`] is what the CLI runs, and [`cli_docs`] its shell
//!   completions and man pages.

pub mod ack;
pub mod alert;
pub mod api;
pub mod buffer;
pub mod cli_docs;
pub mod commands;
pub mod component;
pub mod config;
pub mod dashboards;
pub mod decode;
pub mod event;
pub mod fanout;
pub mod http;
pub mod metrics;
pub mod progress;
pub mod redact;
pub mod report;
pub mod rlimit;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod tap;
pub mod telemetry;
pub mod template;
pub mod top;
pub mod topology;
pub mod transform;
