//! The `elasticsearch` sink: events indexed through the `_bulk` API
//! (Elasticsearch 7/8, OpenSearch, and engines that speak it behind a path
//! prefix).
//!
//! Each batch is one NDJSON bulk body (gzip-compressed by default): an
//! action line and the document for every event. Documents are the decoded
//! event with `@timestamp` set from the event time (and `data_stream.*` in
//! data-stream mode). Every document is sent with `create`, which both
//! indices and data streams accept and which never overwrites. With
//! `id: fingerprint` (the default) a document read
//! from a file gets an `_id` made of the file's fingerprint and the line's
//! offset, so a batch resent after a crash or a
//! lost answer cannot index it twice: Elasticsearch answers 409 and that
//! counts as delivered.
//!
//! Whole-request failures (connection errors, 429, 5xx) are retried by the
//! sink driver. Per-item failures: 429 and 5xx items are resent alone;
//! other 4xx items (`document_parsing_exception`, …) go to the dead-letter
//! file with Elasticsearch's `error.type` and `reason`. A batch is
//! acknowledged when each of its documents is indexed or dead-lettered.

use std::collections::BTreeMap;
use std::path::Path;

mod bulk;
pub mod config;

use super::dead_letter::DeadLetter;
use super::{BatchConfig, Call, DeliveryError, RetryConfig, Sink};
use crate::component::{CheckCx, Kind, SinkContext, SinkKind, SinkSpec};
use crate::event::Event;
use crate::telemetry::{Counter, CounterFamily, Gauge, Registry};
use crate::template::{Template, TemplateConfig};
use bulk::{Bulk, Id};
pub use config::{DataStreamConfig, ElasticsearchConfig, EsCompression, Mode};
use config::{IdRule, default_ns, generic, logs};

struct EsMetrics {
    outcomes: CounterFamily,
    bytes_raw: Counter,
    bytes_sent: Counter,
    batch_docs: Gauge,
}

impl EsMetrics {
    fn outcome(&mut self, what: &str, n: u64) {
        if n > 0 {
            self.outcomes.add(what, n);
        }
    }
}

pub struct ElasticsearchSink {
    sink: String,
    cfg: ElasticsearchConfig,
    target: crate::http::Target,
    id_rule: IdRule,
    index_has_fields: Option<Template>,
    index_cache: Option<(i64, String)>,
    /// In data-stream mode: the stream's name, and the `data_stream`
    /// fields that end each document (`,"data_stream":{…}}`).
    stream: Option<(String, String)>,
    /// The batch being built.
    bulk: Bulk,
    /// The last batch delivered, cleared, for the next one.
    spare: Option<Bulk>,
    /// The last second formatted for `@timestamp`.
    ts_cache: Option<(i64, [u8; 19])>,
    /// For rendering templated ids.
    scratch: String,
    dead_letter: DeadLetter,
    metrics: EsMetrics,
}

impl ElasticsearchSink {
    pub fn new(
        cfg: &ElasticsearchConfig,
        sink: &str,
        data_dir: &Path,
        registry: &Registry,
    ) -> Result<Self, String> {
        cfg.check().map_err(|e| e.message)?;
        let mut url = format!("{}/_bulk", cfg.endpoint.trim_end_matches('/'));
        if let Some(p) = &cfg.pipeline {
            url.push_str(&format!("?pipeline={p}"));
        }
        let index_has_fields = (cfg.mode == Mode::Index && cfg.index.contains("{{"))
            .then(|| Template::compile(&TemplateConfig::Template(cfg.index.clone())).ok())
            .flatten();
        let l = [("sink", sink)];
        Ok(ElasticsearchSink {
            sink: sink.to_string(),
            target: crate::http::Target::new(
                "Elasticsearch",
                url,
                cfg.request_timeout.0,
                cfg.tls.as_ref(),
                crate::http::Auth {
                    basic: cfg.auth.clone(),
                    bearer_token: cfg.bearer_token.clone(),
                    api_key: cfg.api_key.clone(),
                    headers: Vec::new(),
                },
            )?,
            id_rule: cfg.id_rule().map_err(|e| e.message)?,
            index_has_fields,
            index_cache: None,
            stream: (cfg.mode == Mode::DataStream).then(|| {
                let ds = cfg.data_stream.clone().unwrap_or(DataStreamConfig {
                    r#type: logs(),
                    dataset: generic(),
                    namespace: default_ns(),
                });
                let (t, d, n) = (ds.r#type, ds.dataset, ds.namespace);
                let fields = format!(
                    ",\"data_stream\":{{\"type\":\"{t}\",\"dataset\":\"{d}\",\"namespace\":\"{n}\"}}}}"
                );
                (format!("{t}-{d}-{n}"), fields)
            }),
            bulk: Bulk::new(cfg.compression == EsCompression::Gzip),
            spare: None,
            ts_cache: None,
            scratch: String::new(),
            dead_letter: DeadLetter::new(data_dir, sink, registry),
            metrics: EsMetrics {
                outcomes: CounterFamily::new(
                    registry,
                    "weir_elasticsearch_documents_total",
                    "Documents sent, by sink and outcome (indexed, conflict_existing, retried, dead_lettered).",
                    &[("sink", sink)],
                    "outcome",
                ),
                bytes_raw: registry.counter(
                    "weir_elasticsearch_bytes_total",
                    "Bulk request bodies, by sink and stage (encoded, sent after compression).",
                    &[("sink", sink), ("stage", "encoded")],
                ),
                bytes_sent: registry.counter(
                    "weir_elasticsearch_bytes_total",
                    "Bulk request bodies, by sink and stage (encoded, sent after compression).",
                    &[("sink", sink), ("stage", "sent")],
                ),
                batch_docs: registry.gauge(
                    "weir_elasticsearch_batch_documents",
                    "Documents in the last bulk request.",
                    &l,
                ),
            },
            cfg: cfg.clone(),
        })
    }

    pub fn batch_config(&self) -> BatchConfig {
        self.cfg.batch.unwrap_or_default()
    }

    pub fn retry_config(&self) -> RetryConfig {
        self.cfg.retry
    }

    /// The number, in this batch, of the index `event` goes to.
    fn index_slot(&mut self, event: &Event) -> usize {
        if let Some((name, _)) = &self.stream {
            return self.bulk.index_slot(name);
        }
        let ts = || {
            jiff::Timestamp::from_nanosecond(i128::from(event.time))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .to_zoned(jiff::tz::TimeZone::UTC)
        };
        if let Some(t) = &self.index_has_fields {
            let mut raw = String::new();
            t.render(event, &mut raw);
            let name = jiff::fmt::strtime::format(&raw, &ts())
                .unwrap_or(raw)
                .to_lowercase();
            return self.bulk.index_slot(&name);
        }
        // One name per UTC hour at most: cache by hour.
        let hour = event.time.div_euclid(3_600_000_000_000);
        if self.index_cache.as_ref().is_none_or(|(h, _)| *h != hour) {
            let name = jiff::fmt::strtime::format(&self.cfg.index, &ts())
                .unwrap_or_else(|_| self.cfg.index.clone());
            self.index_cache = Some((hour, name));
        }
        let (_, name) = self.index_cache.as_ref().expect("set above");
        self.bulk.index_slot(name)
    }

    /// Writes the document: the event, renamed as configured, with
    /// `@timestamp` first (and `data_stream` last in data-stream mode).
    fn write_document(&mut self, event: &Event) {
        // In index mode a `data_stream` field is the event's own, kept as it is.
        let touches = event.get("@timestamp").is_some()
            || (self.cfg.mode == Mode::DataStream && event.get("data_stream").is_some())
            || self.cfg.renames.keys().any(|k| event.get(k).is_some());
        let cfg = &self.cfg;
        let ts_cache = &mut self.ts_cache;
        let buf = self.bulk.buf();
        buf.extend_from_slice(b"{\"@timestamp\":\"");
        bulk::write_timestamp(buf, event.time, ts_cache);
        buf.push(b'"');
        let brace = buf.len();
        if !touches {
            event.write_json(buf);
        } else {
            let mut e = event.clone();
            for (from, to) in &cfg.renames {
                let value = e.get(from).map(|v| match v {
                    crate::event::FieldRef::Json(raw) => {
                        serde_json::from_str(raw).unwrap_or(serde_json::Value::Null)
                    }
                    crate::event::FieldRef::Text(t) => serde_json::Value::String(t.to_string()),
                    crate::event::FieldRef::Owned(v) => v.clone(),
                });
                if let Some(v) = value {
                    e.remove(from);
                    e.insert(to, v);
                }
            }
            e.remove("@timestamp");
            if cfg.mode == Mode::DataStream {
                e.remove("data_stream");
            }
            e.write_json(buf);
        }
        // The event's own `{` becomes the comma after `@timestamp`, unless
        // it has no field at all.
        let empty = buf[brace..]
            .iter()
            .skip(1)
            .all(|b| b.is_ascii_whitespace() || *b == b'}');
        if empty {
            buf.truncate(brace);
            buf.push(b'}');
        } else if buf.get(brace) == Some(&b'{') {
            buf[brace] = b',';
        }
        if let Some((_, fields)) = &self.stream {
            buf.pop();
            buf.extend_from_slice(fields.as_bytes());
        }
    }

    fn dead_letter_record(
        &self,
        bulk: &Bulk,
        i: usize,
        status: u64,
        kind: &str,
        reason: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if status != 0 {
            m.insert("status".into(), status.into());
        }
        m.insert("error_type".into(), kind.into());
        m.insert("reason".into(), reason.into());
        m.insert(
            "destination".into(),
            self.target.shown_url().to_string().into(),
        );
        m.insert("index".into(), bulk.index(i).into());
        if let Some(id) = bulk.id(i) {
            m.insert("id".into(), id.into());
        }
        let source = bulk.document(i);
        m.insert(
            "document".into(),
            serde_json::from_str(source).unwrap_or(serde_json::Value::String(source.to_string())),
        );
        m
    }

    fn dead_letter_all(
        &mut self,
        bulk: &mut Bulk,
        class: &str,
        status: u64,
        reason: &str,
    ) -> Result<(), DeliveryError> {
        let records: Vec<_> = (0..bulk.len())
            .map(|i| self.dead_letter_record(bulk, i, status, class, reason))
            .collect();
        self.dead_letter
            .write(class, &records)
            .map_err(|e| DeliveryError::from(format!("cannot write the dead-letter file: {e}")))?;
        self.metrics.outcome("dead_lettered", records.len() as u64);
        bulk.clear();
        Ok(())
    }

    /// Applies a bulk answer: keeps the items to resend, dead-letters the
    /// refused ones. Returns how many are left to resend.
    fn apply_items(
        &mut self,
        bulk: &mut Bulk,
        answer: &serde_json::Value,
    ) -> Result<usize, DeliveryError> {
        let Some(items) = answer["items"].as_array() else {
            return Err(DeliveryError::from(
                "the bulk answer has no `items`".to_string(),
            ));
        };
        if items.len() != bulk.len() {
            return Err(DeliveryError::from(format!(
                "the bulk answer has {} items for {} documents",
                items.len(),
                bulk.len()
            )));
        }
        let mut keep = vec![false; items.len()];
        let mut refused: BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>> =
            BTreeMap::new();
        let (mut indexed, mut existing) = (0u64, 0u64);
        for (i, item) in items.iter().enumerate() {
            let result = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or_default();
            let status = result["status"].as_u64().unwrap_or(0);
            let kind = result["error"]["type"].as_str().unwrap_or("").to_string();
            match status {
                200..=299 => indexed += 1,
                409 if bulk.has_id(i) && kind == "version_conflict_engine_exception" => {
                    existing += 1
                }
                429 | 500..=599 => keep[i] = true,
                _ => {
                    let reason = result["error"]["reason"].as_str().unwrap_or("").to_string();
                    let class = if kind.is_empty() {
                        format!("status_{status}")
                    } else {
                        kind.clone()
                    };
                    let rec = self.dead_letter_record(bulk, i, status, &kind, &reason);
                    refused.entry(class).or_default().push(rec);
                }
            }
        }
        self.metrics.outcome("indexed", indexed);
        self.metrics.outcome("conflict_existing", existing);
        let retried = keep.iter().filter(|k| **k).count();
        self.metrics.outcome("retried", retried as u64);
        let mut dead = 0;
        for (class, records) in &refused {
            dead += records.len();
            self.dead_letter.write(class, records).map_err(|e| {
                DeliveryError::from(format!("cannot write the dead-letter file: {e}"))
            })?;
        }
        self.metrics.outcome("dead_lettered", dead as u64);
        if dead > 0 {
            tracing::warn!(sink = %self.sink, documents = dead, file = %self.dead_letter.path().display(), types = ?refused.keys().collect::<Vec<_>>(), "Elasticsearch refused documents; they are in the dead-letter file");
        }
        bulk.retain(|i| keep[i]);
        Ok(bulk.len())
    }
}

impl Sink for ElasticsearchSink {
    type Batch = Bulk;
    /// The answer and the bytes sent; None: the batch was empty.
    type Reply = Option<(crate::http::Reply, usize)>;

    fn encode(&mut self, event: &Event) -> usize {
        let index = self.index_slot(event);
        let id = match &self.id_rule {
            IdRule::None => Id::None,
            IdRule::Fingerprint => match event.origin {
                Some(o) => Id::Fingerprint {
                    file: o.file,
                    offset: o.offset,
                },
                None => Id::None,
            },
            IdRule::Template(t) => {
                self.scratch.clear();
                t.render(event, &mut self.scratch);
                if self.scratch.is_empty() {
                    Id::None
                } else {
                    Id::Text(&self.scratch)
                }
            }
        };
        let has_id = !matches!(id, Id::None);
        let op = if has_id || self.cfg.mode == Mode::DataStream {
            "create"
        } else {
            "index"
        };
        self.bulk.begin_action(op, index, id);
        self.write_document(event);
        self.bulk.end(index, has_id)
    }

    fn seal(&mut self) -> Bulk {
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Bulk::new(self.cfg.compression == EsCompression::Gzip));
        std::mem::replace(&mut self.bulk, next)
    }

    fn send(&mut self, bulk: &mut Bulk) -> Call<Self::Reply> {
        if bulk.is_empty() {
            return super::done(None);
        }
        self.metrics.bytes_raw.add(bulk.body().len() as u64);
        self.metrics.batch_docs.set(bulk.len() as i64);
        let encoding = (self.cfg.compression == EsCompression::Gzip).then_some("gzip");
        let body = bulk.request_body().to_vec();
        let sent = body.len();
        let req = self.target.post(body, "application/x-ndjson", encoding);
        Box::pin(async move { Some((crate::http::send(req).await, sent)) })
    }

    fn answer(&mut self, bulk: &mut Bulk, reply: Self::Reply) -> Result<(), DeliveryError> {
        let Some((reply, sent)) = reply else {
            return Ok(());
        };
        let (status, after, text) =
            reply.map_err(|e| DeliveryError::from(self.target.describe(&e)))?;
        self.metrics.bytes_sent.add(sent as u64);
        match status.as_u16() {
            200..=299 => {
                // Most answers say `"errors": false`: read only that, skipping
                // the items without building them.
                #[derive(serde::Deserialize)]
                struct Head {
                    errors: bool,
                }
                if let Ok(Head { errors: false }) = serde_json::from_str::<Head>(&text) {
                    self.metrics.outcome("indexed", bulk.len() as u64);
                    bulk.clear();
                    return Ok(());
                }
                let answer: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| DeliveryError::from(format!("unreadable bulk answer ({e})")))?;
                match self.apply_items(bulk, &answer)? {
                    0 => Ok(()),
                    left => Err(DeliveryError {
                        message: format!(
                            "{left} documents rejected with 429 or 5xx; resending only those"
                        ),
                        retry_after: after,
                    }),
                }
            }
            400 => {
                // The body as a whole was refused (malformed NDJSON): nothing was indexed.
                let reason = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["reason"].as_str().map(str::to_string))
                    .unwrap_or(text);
                tracing::error!(sink = %self.sink, %reason, "Elasticsearch refused the bulk request; the batch is in the dead-letter file");
                self.dead_letter_all(bulk, "request_rejected", 400, &reason)
            }
            413 => {
                tracing::error!(sink = %self.sink, "bulk request over http.max_content_length (413); lower batch.max_bytes. The batch is in the dead-letter file");
                self.dead_letter_all(bulk, "request_too_large", 413, text.trim())
            }
            _ => Err(DeliveryError {
                message: format!(
                    "Elasticsearch answered {status}: {}",
                    text.chars().take(300).collect::<String>()
                ),
                retry_after: after,
            }),
        }
    }

    fn give_up(&mut self, bulk: &mut Bulk, reason: &str) -> bool {
        self.dead_letter_all(bulk, "retry_exhausted", 0, reason)
            .is_ok()
    }

    fn recycle(&mut self, mut bulk: Bulk) {
        bulk.clear();
        self.spare = Some(bulk);
    }
}

/// The `elasticsearch` sink kind.
pub const KIND: SinkKind = Kind {
    name: "elasticsearch",
    check,
};

#[derive(Debug)]
struct Spec {
    cfg: ElasticsearchConfig,
}

impl SinkSpec for Spec {
    fn start(&self, cx: SinkContext) -> Result<tokio::task::JoinHandle<()>, String> {
        let sink = ElasticsearchSink::new(&self.cfg, &cx.name, &cx.data_dir, &cx.registry)?;
        let (batch, retry) = (sink.batch_config(), sink.retry_config());
        Ok(super::spawn(cx, sink, batch, retry))
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<std::sync::Arc<dyn SinkSpec>> {
    let cfg: ElasticsearchConfig = cx.typed()?;
    if let Err(e) = cfg.check() {
        cx.report(e);
        return None;
    }
    for (key, message) in cfg.warnings() {
        cx.warn(&[key], message);
    }
    Some(std::sync::Arc::new(Spec { cfg }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(yaml: &str) -> ElasticsearchSink {
        let cfg: ElasticsearchConfig = crate::config::node::Node::parse(yaml)
            .unwrap()
            .deserialize()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        ElasticsearchSink::new(&cfg, "es", dir.path(), &Registry::default()).unwrap()
    }

    fn ev(line: &str, ts: i64) -> Event {
        crate::decode::json::decode_object(line.into(), ts).unwrap()
    }

    #[test]
    fn index_mode_actions_ids_and_documents() {
        let mut s = sink("endpoint: http://127.0.0.1:1/prefix\nindex: logs-feynman-%Y.%m.%d\n");
        let mut e = ev(
            r#"{"level":"INFO","nested":{"a":[1]}}"#,
            1_738_310_400_123_000_000,
        );
        e.origin = Some(crate::event::Origin {
            file: 0xab,
            offset: 42,
        });
        s.encode(&e);
        s.encode(&ev(r#"{"n":1}"#, 0));
        assert_eq!(s.target.shown_url(), "http://127.0.0.1:1/prefix/_bulk");
        assert_eq!(
            s.bulk.action(0),
            r#"{"create":{"_index":"logs-feynman-2025.01.31","_id":"00000000000000ab-42"}}"#
        );
        assert_eq!(
            s.bulk.document(0),
            r#"{"@timestamp":"2025-01-31T08:00:00.123Z","level":"INFO","nested":{"a":[1]}}"#
        );
        assert_eq!(
            s.bulk.action(1),
            r#"{"index":{"_index":"logs-feynman-1970.01.01"}}"#
        );
    }

    #[test]
    fn data_streams_create_with_timestamp_and_renames() {
        let mut s = sink(
            "endpoint: http://x\nmode: data_stream\ndata_stream: {dataset: feynman}\nrenames: {level: log.level}\nid: none\n",
        );
        s.encode(&ev(r#"{"level":"ERROR","@timestamp":"old"}"#, 0));
        assert_eq!(
            s.bulk.action(0),
            r#"{"create":{"_index":"logs-feynman-default"}}"#
        );
        let doc: serde_json::Value = serde_json::from_str(s.bulk.document(0)).unwrap();
        assert_eq!(doc["@timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(doc["log.level"], "ERROR");
        assert!(doc.get("level").is_none());
        assert_eq!(doc["data_stream"]["dataset"], "feynman");
    }

    #[test]
    fn config_mistakes() {
        let bad = |y: &str| {
            let cfg: ElasticsearchConfig = crate::config::node::Node::parse(y)
                .unwrap()
                .deserialize()
                .unwrap();
            cfg.check().unwrap_err().path.join(".")
        };
        assert_eq!(bad("endpoint: es:9200\n"), "endpoint");
        assert_eq!(bad("endpoint: http://x\nindex: Logs-%Y\n"), "index");
        assert_eq!(bad("endpoint: http://x\nindex: 'a b'\n"), "index");
        assert_eq!(bad("endpoint: http://x\nindex: _x\n"), "index");
        assert_eq!(
            bad("endpoint: http://x\nmode: data_stream\ndata_stream: {dataset: My-App}\n"),
            "data_stream"
        );
        assert_eq!(bad("endpoint: http://x\nid: random\n"), "id");
        assert_eq!(config::strip_specs("logs-%Y.%m.%d-{{ app }}"), "logs-..-");
    }
}
