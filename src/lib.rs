//! weir: a structured-log shipper.
//!
//! Lines come in through sources (files, stdin), are decoded into events,
//! pass through transforms, and leave through sinks; weir's own counters are
//! served at `/metrics`. See README.md for the pipeline format.

pub mod ack;
pub mod api;
pub mod commands;
pub mod config;
pub mod decode;
pub mod event;
pub mod http;
pub mod metrics;
pub mod redact;
pub mod rlimit;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod template;
pub mod topology;
pub mod transform;
