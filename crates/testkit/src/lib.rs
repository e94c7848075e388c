//! What weir's tests talk to instead of real servers that cannot run here:
//! a small HTTP/1.1 server on 127.0.0.1 ([`http_server`]) and, on top of
//! it, a fake Loki ([`loki`]: protobuf + snappy and JSON pushes, Loki's
//! validation and its answers) and a fake Elasticsearch ([`es`]: `_bulk`
//! with ES 8's parsing, ids, data streams, dynamic mapping and per-item
//! errors); and a small SMTP server ([`smtp`]: plain, STARTTLS and
//! implicit TLS with a CA made at test time, AUTH PLAIN/LOGIN, injected
//! 4xx/5xx answers) with [`mail`] to read back what it received.
//!
//! The fakes implement what weir sends and what its tests observe — not a
//! log store: no queries, no search, no retention. Everything listens on
//! loopback only, on a free port, and stops when dropped.

pub mod es;
pub mod http_server;
pub mod loki;
pub mod mail;
pub mod smtp;
