//! The `loki` sink: events pushed to Grafana Loki.
//!
//! Events are grouped into streams by their rendered labels and sent as one
//! `PushRequest` per batch — protobuf in snappy's block format by default,
//! or JSON (optionally gzip) with `encoding: json`. Within a stream, entries
//! go out in timestamp order (`out_of_order: reorder`, the default), in
//! arrival order (`pass`), or ordered with entries older than what the
//! stream already sent dropped and counted (`drop`, for Loki before 2.4).
//!
//! Answers: 2xx acknowledges the batch. 429, 5xx and connection errors are
//! retried by the sink driver (backoff with full jitter, `Retry-After`
//! honoured). 400 means Loki stored the valid entries and names the others:
//! exactly those go to the dead-letter file with Loki's reason, and the batch
//! is acknowledged — it is never resent, which would duplicate what Loki
//! kept. Auth and addressing mistakes (401, 403, 404) are retried, loudly,
//! until the pipeline is fixed.
//!
//! Labels should be few and low-cardinality (`app`, `level`, `logger`):
//! each distinct set is a Loki stream with its own chunks and index entries.
//! Request, session and user IDs belong in the line or in structured
//! metadata (Loki 3), never in labels; `max_streams` guards against a
//! template that explodes.

pub mod config;
pub mod proto;
pub mod rejections;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::dead_letter::DeadLetter;
use super::{BatchConfig, Call, DeliveryError, RetryConfig, Sink};
use crate::component::{CheckCx, Kind, SinkContext, SinkKind, SinkSpec};
use crate::event::Event;
use crate::telemetry::{Counter, CounterFamily, Gauge, Registry};
use crate::template::Template;
pub use config::{BasicAuth, Compression, Encoding, LokiConfig, OutOfOrder, TlsConfig};
use config::{Line, Pairs};
use rejections::{Rejection, Target};

struct Entry {
    ts: i64,
    /// Where its line is in the batch's `text`.
    line: (usize, usize),
    metadata: Vec<(String, String)>,
}

impl Entry {
    fn line<'a>(&self, text: &'a str) -> &'a str {
        &text[self.line.0..self.line.1]
    }
}

struct Stream {
    /// `{a="x", b="y"}`, sorted by name: the stream's identity.
    key: String,
    pairs: Vec<(String, String)>,
    entries: Vec<Entry>,
}

/// A sealed batch: its streams, and what its current attempt sent.
pub struct Batch {
    streams: Vec<Stream>,
    /// Every entry's line, one after the other.
    text: String,
    /// The streams have been ordered and checked against the window.
    prepared: bool,
    /// The attempt's requests: which streams each holds, and its size.
    requests: Vec<(Vec<usize>, usize)>,
}

struct LokiMetrics {
    requests: CounterFamily,
    bytes_raw: Counter,
    bytes_sent: Counter,
    overflow: Counter,
    dropped_out_of_order: Counter,
    batch_entries: Gauge,
}

impl LokiMetrics {
    fn request(&mut self, status: &str) {
        self.requests.add(status, 1);
    }
}

pub struct LokiSink {
    sink: String,
    target: crate::http::Target,
    cfg: LokiConfig,
    labels: Pairs,
    metadata: Pairs,
    line: Line,
    /// The open batch's streams, and where each key is among them.
    pending: Vec<Stream>,
    /// The open batch's lines, one after the other (no string per entry).
    text: String,
    /// The last batch's `text`, cleared, for the next one.
    spare_text: String,
    /// For `line: event`.
    json_buf: Vec<u8>,
    index: HashMap<String, usize>,
    known_streams: HashSet<String>,
    overflow_warned: bool,
    newest_sent: HashMap<String, i64>,
    dead_letter: DeadLetter,
    metrics: LokiMetrics,
    key_buf: String,
    value_buf: String,
}

/// `{a="x", b="y"}` with values escaped as Loki (and Prometheus) expect.
fn label_string(pairs: &[(String, String)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        push_label(&mut s, k, v);
    }
    s.push('}');
    s
}

/// Appends `name="value"`, escaping the value.
fn push_label(s: &mut String, name: &str, value: &str) {
    s.push_str(name);
    s.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
}

impl LokiSink {
    pub fn new(
        cfg: &LokiConfig,
        sink: &str,
        data_dir: &Path,
        registry: &Registry,
    ) -> Result<LokiSink, String> {
        let (mut labels, metadata, line, url) = cfg.compile().map_err(|e| e.message)?;
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let mut headers = Vec::new();
        if let Some(t) = &cfg.tenant_id {
            headers.push(("X-Scope-OrgID".to_string(), t.clone()));
        }
        let auth = crate::http::Auth {
            basic: cfg.auth.clone(),
            bearer_token: cfg.bearer_token.clone(),
            api_key: None,
            headers,
        };
        let target =
            crate::http::Target::new("Loki", url, cfg.request_timeout.0, cfg.tls.as_ref(), auth)?;
        let l = [("sink", sink)];
        let metrics = LokiMetrics {
            requests: CounterFamily::new(
                registry,
                "weir_loki_requests_total",
                "Push requests to Loki, by sink and answer (HTTP status, or error).",
                &l,
                "status",
            ),
            bytes_raw: registry.counter("weir_loki_bytes_total", "Push request bodies, by sink and stage (encoded before compression, sent after).", &[("sink", sink), ("stage", "encoded")]),
            bytes_sent: registry.counter("weir_loki_bytes_total", "Push request bodies, by sink and stage (encoded before compression, sent after).", &[("sink", sink), ("stage", "sent")]),
            overflow: registry.counter("weir_loki_stream_overflow_events_total", "Events sent to the overflow stream because the sink reached max_streams.", &l),
            dropped_out_of_order: registry.counter("weir_loki_out_of_order_dropped_total", "Entries dropped by out_of_order: drop (older than what their stream already sent).", &l),
            batch_entries: registry.gauge("weir_loki_batch_entries", "Entries in the last push request.", &l),
        };
        Ok(LokiSink {
            sink: sink.to_string(),
            target,
            cfg: cfg.clone(),
            labels,
            metadata,
            line,
            pending: Vec::new(),
            text: String::new(),
            spare_text: String::new(),
            json_buf: Vec::new(),
            index: HashMap::new(),
            known_streams: HashSet::new(),
            overflow_warned: false,
            newest_sent: HashMap::new(),
            dead_letter: DeadLetter::new(data_dir, sink, registry),
            metrics,
            key_buf: String::new(),
            value_buf: String::new(),
        })
    }

    pub fn batch_config(&self) -> BatchConfig {
        self.cfg.batch.unwrap_or_default()
    }

    pub fn retry_config(&self) -> RetryConfig {
        self.cfg.retry
    }

    /// The index in `pending` of the stream an event belongs to. The
    /// labels are kept sorted by name, so the key is built in one pass into
    /// a reused buffer; allocation happens only for a stream new to this batch.
    fn stream_of(&mut self, event: &Event) -> usize {
        let mut key = std::mem::take(&mut self.key_buf);
        key.clear();
        key.push('{');
        let mut value = std::mem::take(&mut self.value_buf);
        for (name, t) in &self.labels {
            value.clear();
            t.render(event, &mut value);
            if value.is_empty() {
                continue;
            }
            if key.len() > 1 {
                key.push_str(", ");
            }
            push_label(&mut key, name, &value);
        }
        key.push('}');
        self.value_buf = value;
        let found = self.index.get(key.as_str()).copied();
        let idx = match found {
            Some(i) => i,
            None => {
                let key = if self.known_streams.contains(key.as_str())
                    || self.known_streams.len() < self.cfg.max_streams
                {
                    self.known_streams.insert(key.clone());
                    key.clone()
                } else {
                    self.overflow_key()
                };
                match self.index.get(key.as_str()) {
                    Some(&i) => i,
                    None => {
                        let pairs = rejections::parse_labels(&key).unwrap_or_default();
                        self.pending.push(Stream {
                            key: key.clone(),
                            pairs,
                            entries: Vec::new(),
                        });
                        self.index.insert(key, self.pending.len() - 1);
                        self.pending.len() - 1
                    }
                }
            }
        };
        self.key_buf = key;
        idx
    }

    /// Over `max_streams`: the fixed labels plus a marker, one stream for all.
    fn overflow_key(&mut self) -> String {
        self.metrics.overflow.inc();
        if !self.overflow_warned {
            self.overflow_warned = true;
            tracing::warn!(sink = %self.sink, max_streams = self.cfg.max_streams, "Loki sink reached max_streams; new label sets go to one overflow stream (weir_overflow=\"true\"); move high-cardinality fields out of labels");
        }
        let mut pairs: Vec<(String, String)> = self
            .labels
            .iter()
            .filter_map(|(n, t)| match t {
                Template::Static(v) if !v.is_empty() => Some((n.clone(), v.clone())),
                _ => None,
            })
            .collect();
        pairs.push(("weir_overflow".into(), "true".into()));
        pairs.sort();
        label_string(&pairs)
    }

    /// Orders each stream's entries as `out_of_order` says, once per batch.
    fn prepare(&mut self, streams: &mut [Stream]) {
        for s in streams.iter_mut() {
            match self.cfg.out_of_order {
                OutOfOrder::Pass => {}
                OutOfOrder::Reorder => s.entries.sort_by_key(|e| e.ts),
                OutOfOrder::Drop => {
                    s.entries.sort_by_key(|e| e.ts);
                    if let Some(&newest) = self.newest_sent.get(&s.key) {
                        let before = s.entries.len();
                        s.entries.retain(|e| e.ts >= newest);
                        self.metrics
                            .dropped_out_of_order
                            .add((before - s.entries.len()) as u64);
                    }
                }
            }
        }
    }

    /// The body of a push request holding the streams `which`, and its entry count.
    fn encode_streams(&self, all: &[Stream], text: &str, which: &[usize]) -> (Vec<u8>, usize) {
        let streams: Vec<&Stream> = which
            .iter()
            .map(|&i| &all[i])
            .filter(|s| !s.entries.is_empty())
            .collect();
        let entries = streams.iter().map(|s| s.entries.len()).sum();
        let raw = match self.cfg.encoding {
            Encoding::Protobuf => proto::encode_push(
                &streams
                    .iter()
                    .map(|s| {
                        (
                            s.key.as_str(),
                            s.entries
                                .iter()
                                .map(|e| (e.ts, e.line(text), e.metadata.as_slice())),
                        )
                    })
                    .map(|(k, it)| (k, it.collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
            ),
            Encoding::Json => {
                let streams: Vec<serde_json::Value> = streams
                    .iter()
                    .map(|s| {
                        let stream: serde_json::Map<String, serde_json::Value> = s
                            .pairs
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone().into()))
                            .collect();
                        let values: Vec<serde_json::Value> = s
                            .entries
                            .iter()
                            .map(|e| {
                                let mut v = vec![
                                    serde_json::Value::String(e.ts.to_string()),
                                    e.line(text).into(),
                                ];
                                if !e.metadata.is_empty() {
                                    v.push(serde_json::Value::Object(
                                        e.metadata
                                            .iter()
                                            .map(|(k, v)| (k.clone(), v.clone().into()))
                                            .collect(),
                                    ));
                                }
                                serde_json::Value::Array(v)
                            })
                            .collect();
                        serde_json::json!({"stream": stream, "values": values})
                    })
                    .collect();
                serde_json::to_vec(&serde_json::json!({ "streams": streams }))
                    .expect("JSON to a Vec")
            }
        };
        self.metrics.bytes_raw.add(raw.len() as u64);
        let body = match (self.cfg.encoding, self.cfg.compression) {
            (Encoding::Protobuf, _) => snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy compresses any input"),
            (Encoding::Json, Compression::Gzip) => crate::http::gzip(&raw),
            (Encoding::Json, _) => raw,
        };
        (body, entries)
    }

    /// Dead-letters the entries Loki's out-of-order window would refuse:
    /// older than what their stream already sent, minus the window.
    fn set_aside_too_far_behind(
        &mut self,
        streams: &mut [Stream],
        text: &str,
    ) -> Result<(), DeliveryError> {
        if self.cfg.out_of_order == OutOfOrder::Pass {
            return Ok(());
        }
        let window = self.cfg.out_of_order_window.0.as_nanos() as i64;
        let mut records = Vec::new();
        for stream in streams.iter_mut() {
            let Some(&newest) = self.newest_sent.get(&stream.key) else {
                continue;
            };
            let cutoff = newest.saturating_sub(window);
            let (old, keep): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut stream.entries)
                .into_iter()
                .partition(|e| e.ts < cutoff);
            stream.entries = keep;
            let reason = format!(
                "entry too far behind: older than its stream's newest sent entry ({}) minus out_of_order_window ({:?}); Loki would refuse it",
                jiff::Timestamp::from_nanosecond(i128::from(newest))
                    .map_or_else(|_| newest.to_string(), |t| t.to_string()),
                self.cfg.out_of_order_window.0
            );
            for e in &old {
                records.push(self.dead_letter_record(stream, text, e, 0, &reason));
            }
        }
        if !records.is_empty() {
            self.dead_letter
                .write("too_far_behind", &records)
                .map_err(|e| {
                    DeliveryError::from(format!(
                        "cannot write the dead-letter file {}: {e}",
                        self.dead_letter.path().display()
                    ))
                })?;
            tracing::warn!(sink = %self.sink, entries = records.len(), file = %self.dead_letter.path().display(), "entries too far behind their stream for Loki are in the dead-letter file");
        }
        Ok(())
    }

    /// After a 2xx or 400 for the streams `which`: remember each one's
    /// newest timestamp and drop them from the batch.
    fn settle_streams(&mut self, streams: &mut Vec<Stream>, which: &[usize]) {
        for &i in which {
            let s = &streams[i];
            if let Some(max) = s.entries.iter().map(|e| e.ts).max() {
                let n = self.newest_sent.entry(s.key.clone()).or_insert(max);
                *n = (*n).max(max);
            }
        }
        let mut i = 0;
        streams.retain(|_| {
            i += 1;
            !which.contains(&(i - 1))
        });
    }

    fn settle(&mut self, streams: &mut Vec<Stream>) {
        let all: Vec<usize> = (0..streams.len()).collect();
        self.settle_streams(streams, &all);
    }

    fn dead_letter_record(
        &self,
        s: &Stream,
        text: &str,
        e: &Entry,
        status: u16,
        reason: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let ts = jiff::Timestamp::from_nanosecond(i128::from(e.ts))
            .map_or_else(|_| e.ts.to_string(), |t| t.to_string());
        m.insert("time".into(), ts.into());
        if status != 0 {
            m.insert("status".into(), status.into());
        }
        m.insert("reason".into(), reason.into());
        m.insert(
            "destination".into(),
            self.target.shown_url().to_string().into(),
        );
        m.insert("stream".into(), s.key.clone().into());
        if !e.metadata.is_empty() {
            m.insert(
                "structured_metadata".into(),
                serde_json::Value::Object(
                    e.metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect(),
                ),
            );
        }
        m.insert("line".into(), e.line(text).into());
        m
    }

    /// Dead-letters the entries a 400 names (all of them if it names none
    /// that we can find: then Loki refused the request as a whole).
    fn handle_rejection(
        &mut self,
        streams: &[Stream],
        text: &str,
        body: &str,
        which: &[usize],
    ) -> Result<(), DeliveryError> {
        let rejections = rejections::parse(body);
        let mut by_class: BTreeMap<&'static str, Vec<serde_json::Map<String, serde_json::Value>>> =
            BTreeMap::new();
        let mut matched = 0usize;
        for s in which.iter().map(|&i| &streams[i]) {
            let pairs = rejections::parse_labels(&s.key).unwrap_or_default();
            let for_stream: Vec<&Rejection> =
                rejections.iter().filter(|r| r.stream == pairs).collect();
            for e in &s.entries {
                let hit = for_stream.iter().find(|r| match r.target {
                    Target::At(t) => e.ts == t,
                    Target::OlderThan(t) => e.ts < t,
                    Target::Second(t) => e.ts.div_euclid(1_000_000_000) == t,
                    Target::Length(n) => e.line(text).len() == n,
                    Target::LongerThan(n) => e.line(text).len() > n,
                    Target::Stream => true,
                });
                if let Some(r) = hit {
                    matched += 1;
                    let rec = self.dead_letter_record(s, text, e, 400, &r.reason);
                    by_class.entry(r.class).or_default().push(rec);
                }
            }
        }
        if matched == 0 {
            let reason = body.trim();
            let all: Vec<_> = which
                .iter()
                .map(|&i| &streams[i])
                .flat_map(|s| s.entries.iter().map(move |e| (s, e)))
                .map(|(s, e)| self.dead_letter_record(s, text, e, 400, reason))
                .collect();
            by_class.insert("rejected", all);
        }
        let total: usize = by_class.values().map(Vec::len).sum();
        for (class, records) in &by_class {
            self.dead_letter.write(class, records).map_err(|e| {
                DeliveryError::from(format!(
                    "cannot write the dead-letter file {}: {e}",
                    self.dead_letter.path().display()
                ))
            })?;
        }
        tracing::warn!(sink = %self.sink, entries = total, file = %self.dead_letter.path().display(), reason = %body.lines().next().unwrap_or("").trim(), "Loki refused entries (400); they are in the dead-letter file, the rest of the batch was stored");
        Ok(())
    }

    fn request(&self, body: Vec<u8>) -> reqwest::RequestBuilder {
        match (self.cfg.encoding, self.cfg.compression) {
            (Encoding::Protobuf, _) => self.target.post(body, "application/x-protobuf", None),
            (Encoding::Json, Compression::Gzip) => {
                self.target.post(body, "application/json", Some("gzip"))
            }
            (Encoding::Json, _) => self.target.post(body, "application/json", None),
        }
    }

    /// Applies one request's answer to its streams. `Ok(true)`: they are
    /// settled (stored or dead-lettered); `Ok(false)`: to be retried.
    fn apply_answer(
        &mut self,
        streams: &[Stream],
        lines: &str,
        which: &[usize],
        answer: Answer,
        sent: usize,
        errors: &mut Vec<DeliveryError>,
    ) -> Result<bool, DeliveryError> {
        let (status, after, text) = match answer {
            Err(e) => {
                self.metrics.request("error");
                errors.push(self.target.describe(&e).into());
                return Ok(false);
            }
            Ok(a) => a,
        };
        self.metrics.request(status.as_str());
        if status.is_success() {
            self.metrics.bytes_sent.add(sent as u64);
            return Ok(true);
        }
        match status.as_u16() {
            400 => {
                self.metrics.bytes_sent.add(sent as u64);
                self.handle_rejection(streams, lines, &text, which)?;
                Ok(true)
            }
            413 => {
                // Too large will not get smaller by waiting.
                self.metrics.bytes_sent.add(sent as u64);
                let records: Vec<_> = which
                    .iter()
                    .map(|&i| &streams[i])
                    .flat_map(|s| s.entries.iter().map(move |e| (s, e)))
                    .map(|(s, e)| self.dead_letter_record(s, lines, e, 413, text.trim()))
                    .collect();
                self.dead_letter
                    .write("request_too_large", &records)
                    .map_err(|e| {
                        DeliveryError::from(format!("cannot write the dead-letter file: {e}"))
                    })?;
                tracing::error!(sink = %self.sink, "Loki refused the request as too large (413); lower batch.max_bytes. The batch is in the dead-letter file");
                Ok(true)
            }
            401 | 403 | 404 | 405 => {
                errors.push(DeliveryError {
                    message: format!("Loki answered {status} for {}: {} — check `endpoint`, `tenant_id` and credentials", self.target.shown_url(), text.trim()),
                    retry_after: after,
                });
                Ok(false)
            }
            _ => {
                errors.push(DeliveryError {
                    message: format!("Loki answered {status}: {}", text.trim()),
                    retry_after: after,
                });
                Ok(false)
            }
        }
    }
}

/// What a push request came back with: status, Retry-After, body.
type Answer = crate::http::Reply;

/// Splits stream indices into at most `k` groups of similar size.
fn partition(streams: &[(usize, usize)], k: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); k.max(1)];
    let mut sorted = streams.to_vec();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.1));
    for (i, n) in sorted {
        let g = groups.iter_mut().min_by_key(|g| g.0).expect("k >= 1");
        g.0 += n;
        g.1.push(i);
    }
    groups
        .into_iter()
        .map(|g| g.1)
        .filter(|g| !g.is_empty())
        .collect()
}

impl Sink for LokiSink {
    type Batch = Batch;
    /// Each request's answer, in the order of `Batch::requests` (none if
    /// its task failed).
    type Reply = Result<Vec<Option<Answer>>, DeliveryError>;

    fn encode(&mut self, event: &Event) -> usize {
        let idx = self.stream_of(event);
        let start = self.text.len();
        match &self.line {
            Line::Original => self.text.push_str(event.line()),
            Line::Event => {
                self.json_buf.clear();
                event.write_json(&mut self.json_buf);
                self.text
                    .push_str(std::str::from_utf8(&self.json_buf).unwrap_or_default());
            }
            Line::Template(t) => t.render(event, &mut self.text),
        }
        let line = (start, self.text.len());
        let mut metadata = Vec::new();
        for (name, t) in &self.metadata {
            let mut v = String::new();
            t.render(event, &mut v);
            if !v.is_empty() {
                metadata.push((name.clone(), v));
            }
        }
        let size = (line.1 - line.0)
            + metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 16;
        self.pending[idx].entries.push(Entry {
            ts: event.time,
            line,
            metadata,
        });
        size
    }

    fn seal(&mut self) -> Batch {
        self.index.clear();
        let text = std::mem::replace(&mut self.text, std::mem::take(&mut self.spare_text));
        Batch {
            streams: std::mem::take(&mut self.pending),
            text,
            prepared: false,
            requests: Vec::new(),
        }
    }

    fn send(&mut self, b: &mut Batch) -> Call<Self::Reply> {
        if !b.prepared {
            if let Err(e) = self.set_aside_too_far_behind(&mut b.streams, &b.text) {
                return super::done(Err(e));
            }
            self.prepare(&mut b.streams);
            b.prepared = true;
        }
        let live: Vec<(usize, usize)> = b
            .streams
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.entries.is_empty())
            .map(|(i, s)| (i, s.entries.len()))
            .collect();
        // Each stream goes whole into one request, so its order holds.
        b.requests.clear();
        let mut calls = tokio::task::JoinSet::new();
        let mut entries = 0;
        for (i, group) in partition(&live, self.cfg.concurrency)
            .into_iter()
            .enumerate()
        {
            let (body, n) = self.encode_streams(&b.streams, &b.text, &group);
            entries += n;
            b.requests.push((group, body.len()));
            let req = self.request(body);
            calls.spawn(async move { (i, crate::http::send(req).await) });
        }
        if !calls.is_empty() {
            self.metrics.batch_entries.set(entries as i64);
        }
        let n = b.requests.len();
        Box::pin(async move {
            let mut answers: Vec<Option<Answer>> = (0..n).map(|_| None).collect();
            while let Some(joined) = calls.join_next().await {
                if let Ok((i, answer)) = joined {
                    answers[i] = Some(answer);
                }
            }
            Ok(answers)
        })
    }

    fn answer(&mut self, b: &mut Batch, reply: Self::Reply) -> Result<(), DeliveryError> {
        let answers = reply?;
        let mut done = Vec::new();
        let mut errors = Vec::new();
        let requests = std::mem::take(&mut b.requests);
        for ((group, sent), answer) in requests.iter().zip(answers) {
            let Some(answer) = answer else {
                errors.push(DeliveryError::from(
                    "a push request task failed".to_string(),
                ));
                continue;
            };
            if self.apply_answer(&b.streams, &b.text, group, answer, *sent, &mut errors)? {
                done.extend(group.iter().copied());
            }
        }
        self.settle_streams(&mut b.streams, &done);
        match errors.into_iter().max_by_key(|e| e.retry_after) {
            None => {
                self.settle(&mut b.streams);
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    fn recycle(&mut self, mut b: Batch) {
        // A burst (one big batch) must not pin its buffer for the whole run.
        if b.text.capacity() <= 8 << 20 {
            b.text.clear();
            self.spare_text = b.text;
        }
    }

    fn give_up(&mut self, b: &mut Batch, reason: &str) -> bool {
        let records: Vec<_> = b
            .streams
            .iter()
            .flat_map(|s| s.entries.iter().map(move |e| (s, e)))
            .map(|(s, e)| self.dead_letter_record(s, &b.text, e, 0, reason))
            .collect();
        match self.dead_letter.write("retry_exhausted", &records) {
            Ok(()) => {
                self.settle(&mut b.streams);
                true
            }
            Err(e) => {
                tracing::error!(sink = %self.sink, error = %e, "cannot write the dead-letter file");
                false
            }
        }
    }
}

/// The `loki` sink kind.
pub const KIND: SinkKind = Kind {
    name: "loki",
    check,
};

#[derive(Debug)]
struct Spec {
    cfg: LokiConfig,
}

impl SinkSpec for Spec {
    fn start(&self, cx: SinkContext) -> Result<tokio::task::JoinHandle<()>, String> {
        let sink = LokiSink::new(&self.cfg, &cx.name, &cx.data_dir, &cx.registry)?;
        let (batch, retry) = (sink.batch_config(), sink.retry_config());
        Ok(super::spawn(cx, sink, batch, retry))
    }

    fn loki(&self) -> Option<&LokiConfig> {
        Some(&self.cfg)
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<std::sync::Arc<dyn SinkSpec>> {
    let cfg: LokiConfig = cx.typed()?;
    if let Err(e) = cfg.check() {
        cx.report(e);
        return None;
    }
    Some(std::sync::Arc::new(Spec { cfg }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    impl LokiSink {
        /// The request the whole pending batch would make.
        fn encode_request(&mut self) -> (Vec<u8>, usize) {
            let mut streams = std::mem::take(&mut self.pending);
            let text = std::mem::take(&mut self.text);
            self.index.clear();
            self.prepare(&mut streams);
            let all: Vec<usize> = (0..streams.len()).collect();
            let request = self.encode_streams(&streams, &text, &all);
            // As if Loki stored it.
            self.settle(&mut streams);
            request
        }
    }

    #[test]
    fn partition_balances_streams_without_splitting_them() {
        let groups = partition(&[(0, 100), (1, 10), (2, 60), (3, 50)], 2);
        assert_eq!(groups, vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(partition(&[(0, 5)], 4), vec![vec![0]]);
    }

    fn sink(yaml: &str) -> LokiSink {
        let cfg: LokiConfig = crate::config::node::Node::parse(yaml)
            .unwrap()
            .deserialize()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        LokiSink::new(&cfg, "loki", dir.path(), &Registry::default()).unwrap()
    }

    fn ev(line: &str, ts: i64) -> Event {
        crate::decode::json::decode_object(line.into(), ts).unwrap()
    }

    #[test]
    fn streams_by_rendered_labels_sorted_in_time() {
        let mut s = sink(
            "endpoint: http://127.0.0.1:1\nlabels: {app: feynman, level: '{{ level }}'}\nstructured_metadata: {request_id: '{{ request_id }}'}\n",
        );
        s.encode(&ev(r#"{"level":"INFO","n":2}"#, 20));
        s.encode(&ev(r#"{"level":"ERROR","request_id":"r1"}"#, 5));
        s.encode(&ev(r#"{"level":"INFO","n":1}"#, 10));
        s.encode(&ev(r#"{"n":3}"#, 30));
        let (body, n) = s.encode_request();
        assert_eq!(n, 4);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = proto::PushRequest::decode(raw.as_slice()).unwrap();
        let keys: Vec<&str> = req.streams.iter().map(|s| s.labels.as_str()).collect();
        assert_eq!(
            keys,
            [
                r#"{app="feynman", level="INFO"}"#,
                r#"{app="feynman", level="ERROR"}"#,
                r#"{app="feynman"}"#
            ]
        );
        let info: Vec<i64> = req.streams[0]
            .entries
            .iter()
            .map(|e| e.timestamp.as_ref().unwrap().nanos as i64)
            .collect();
        assert_eq!(info, [10, 20]);
        assert_eq!(req.streams[0].entries[0].line, r#"{"level":"INFO","n":1}"#);
        assert_eq!(
            req.streams[1].entries[0].structured_metadata,
            vec![proto::LabelPairAdapter {
                name: "request_id".into(),
                value: "r1".into()
            }]
        );
    }

    #[test]
    fn json_encoding_with_string_timestamps() {
        let mut s = sink(
            "endpoint: http://127.0.0.1:1\nlabels: {app: a}\nencoding: json\nline: '{{ level }}: {{ msg }}'\n",
        );
        s.encode(&ev(
            r#"{"level":"INFO","msg":"hi"}"#,
            1_700_000_000_000_000_000,
        ));
        let (body, _) = s.encode_request();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"streams":[{"stream":{"app":"a"},"values":[["1700000000000000000","INFO: hi"]]}]})
        );
    }

    /// Every entry's line, in stream order, as the push request holds them.
    fn pushed_lines(s: &mut LokiSink) -> Vec<String> {
        let (body, _) = s.encode_request();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = proto::PushRequest::decode(raw.as_slice()).unwrap();
        req.streams
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| e.line.clone()))
            .collect()
    }

    #[test]
    fn lines_of_one_batch_share_a_buffer_and_come_out_whole() {
        let mut s = sink("endpoint: http://127.0.0.1:1\nlabels: {app: a}\nline: event\n");
        s.encode(&ev(r#"{"msg":"héllo","n":1}"#, 1));
        let mut e = ev(r#"{"n":2}"#, 2);
        e.insert("extra", serde_json::json!("x"));
        s.encode(&e);
        assert_eq!(
            pushed_lines(&mut s),
            [r#"{"msg":"héllo","n":1}"#, r#"{"n":2,"extra":"x"}"#]
        );
        let mut s =
            sink("endpoint: http://127.0.0.1:1\nlabels: {app: a}\nline: '{{ n }}: {{ msg }}'\n");
        s.encode(&ev(r#"{"msg":"a","n":1}"#, 1));
        s.encode(&ev(r#"{"n":2}"#, 2));
        s.encode(&ev(r#"{"msg":"c","n":3}"#, 3));
        assert_eq!(pushed_lines(&mut s), ["1: a", "2: ", "3: c"]);
        // A sealed batch keeps its lines while the next one is encoded.
        let mut s = sink("endpoint: http://127.0.0.1:1\nlabels: {app: a}\n");
        s.encode(&ev(r#"{"n":1}"#, 1));
        let sealed = s.seal();
        s.encode(&ev(r#"{"n":22}"#, 2));
        let first = &sealed.streams[0].entries[0];
        assert_eq!(first.line(&sealed.text), r#"{"n":1}"#);
        assert_eq!(pushed_lines(&mut s), [r#"{"n":22}"#]);
    }

    #[test]
    fn too_many_streams_go_to_one_overflow_stream() {
        let mut s = sink(
            "endpoint: http://127.0.0.1:1\nlabels: {app: a, id: '{{ id }}'}\nmax_streams: 2\n",
        );
        for i in 0..5 {
            s.encode(&ev(&format!(r#"{{"id":"{i}"}}"#), i));
        }
        let keys: Vec<&str> = s.pending.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                r#"{app="a", id="0"}"#,
                r#"{app="a", id="1"}"#,
                r#"{app="a", weir_overflow="true"}"#
            ]
        );
        assert_eq!(s.pending[2].entries.len(), 3);
        assert_eq!(s.metrics.overflow.get(), 3);
    }

    #[test]
    fn out_of_order_drop_keeps_only_newer_than_sent() {
        let mut s = sink("endpoint: http://127.0.0.1:1\nlabels: {app: a}\nout_of_order: drop\n");
        s.encode(&ev("{}", 100));
        s.encode_request();
        s.encode(&ev("{}", 50));
        s.encode(&ev("{}", 150));
        let (_, n) = s.encode_request();
        assert_eq!(n, 1);
        assert_eq!(s.metrics.dropped_out_of_order.get(), 1);
    }

    #[test]
    fn config_mistakes() {
        let bad = |y: &str| {
            let cfg: LokiConfig = crate::config::node::Node::parse(y)
                .unwrap()
                .deserialize()
                .unwrap();
            cfg.check().unwrap_err()
        };
        assert_eq!(
            bad("endpoint: localhost:3100\nlabels: {app: a}\n").path,
            ["endpoint"]
        );
        assert_eq!(bad("endpoint: http://x\nlabels: {}\n").path, ["labels"]);
        assert_eq!(
            bad("endpoint: http://x\nlabels: {level: '{{ level }}'}\n").path,
            ["labels"]
        );
        assert_eq!(
            bad("endpoint: http://x\nlabels: {app: a, 1x: b}\n").path,
            ["labels", "1x"]
        );
        assert_eq!(
            bad("endpoint: http://x\nlabels: {app: a}\nline: raw\n").path,
            ["line"]
        );
        assert_eq!(
            bad("endpoint: http://x\nlabels: {app: a}\ncompression: gzip\n").path,
            ["compression"]
        );
    }
}
