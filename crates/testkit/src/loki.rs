//! A fake Grafana Loki for integration tests, faithful to the push protocol
//! of a monolithic Loki **3.x** with its default limits (`auth_enabled`
//! configurable), as described in `shared/docs/protocols.md` §1 and as
//! read in Loki's source (`pkg/loghttp/push`, `pkg/distributor`,
//! `pkg/ingester/stream.go`, `pkg/validation/validate.go`).
//!
//! It is a small HTTP/1.1 server on `std::net::TcpListener` (a thread per
//! connection, keep-alive), so that tests control outages (the listening
//! socket is closed and re-bound on the same port; open connections are
//! cut), slow answers and exact bodies.
//!
//! What it reproduces:
//! - `POST /loki/api/v1/push`: protobuf (`logproto.PushRequest`, snappy
//!   *raw/block* format) unless `Content-Type` is `application/json`;
//!   `Content-Encoding` `gzip` (multi-member) or `deflate` (raw DEFLATE, as
//!   Go's `compress/flate`, not zlib) undone first, `snappy` ignored, any
//!   other value → 400 `Content-Encoding "x" not supported`. A missing
//!   `Content-Type` is a 400 `mime: no media type`, as in Loki (Go's
//!   `mime.ParseMediaType("")` fails) — protocols.md calls protobuf the
//!   default, which holds only for a present but unknown media type.
//! - JSON `{"streams":[{"stream":{…},"values":[["<ns>","line",{meta}]]}]}`:
//!   a timestamp must be a JSON string of decimal nanoseconds (a number →
//!   400).
//! - Label strings parsed as PromQL metric label sets (`"…"`, `'…'` or
//!   `` `…` `` values with Go escapes); a string that does not parse fails
//!   the **whole request** with 400 `couldn't parse labels: …`; labels with
//!   an empty value are dropped (Loki normalises them away). The stream key
//!   is Prometheus' `labels.String()`: sorted, `{a="x", b="y"}`, values
//!   quoted like Go's `strconv.Quote`.
//! - An empty request (no streams) → 422 `error at least one valid stream
//!   is required for ingestion`.
//! - The distributor's validation, per stream (no labels, more than 15
//!   label names not counting `service_name`, name > 1024 or value > 2048
//!   bytes, duplicate name) and per entry (older than now − 168 h, newer
//!   than now + 10 min, line > 256 KB, structured metadata over 64 KB or
//!   over 128 pairs, or present when disallowed), with Loki's messages. The
//!   failures of one request are grouped like Loki's `util.GroupedErrors`:
//!   one message alone is the body; otherwise each distinct message, in
//!   first-seen order, as `N errors like: <message>`, joined with `; `.
//!   Timestamps in these messages are RFC 3339 **without fraction**, as
//!   Loki formats them (`time.RFC3339`).
//! - The tenant's ingestion rate limit (4 MiB/s, burst 6 MiB, token
//!   bucket over line + metadata bytes of the valid entries) → 429
//!   `Ingestion rate limit exceeded for user …`, nothing stored.
//! - The ingester, per stream, in request order: an entry equal (timestamp
//!   and line) to the stream's last accepted one is skipped silently; one
//!   older than the stream's newest accepted timestamp minus the window
//!   (`max_chunk_age / 2` = 1 h; the newest moves forward *within* the
//!   batch) is refused; an accepted entry equal to one stored earlier is
//!   not stored twice (protocols.md: re-sends are deduplicated). Refused
//!   entries give Loki's body, up to 10 lines (`max_returned_stream_errors`)
//!   `entry with timestamp <Go Time.String()> ignored, reason: 'entry too
//!   far behind, entry timestamp is: <RFC 3339>, oldest acceptable
//!   timestamp is: <RFC 3339>',` then `user '<tenant>', total ignored: N
//!   out of M for stream: {…}`. More than 5000 streams per tenant → 429
//!   `Maximum active stream limit exceeded …` for that stream.
//! - How Loki 3.x combines them (`ingester/instance.go` `Push`, the
//!   distributor's `Push`): the ingester answers **only for the last stream
//!   of the request** (errors of earlier streams are lost, although their
//!   refused entries are not stored), and an ingester error replaces the
//!   distributor's validation errors. So a request can get 204 while some
//!   of its entries were refused. `FakeConfig::report_every_stream` instead
//!   joins every message with `\n` (not Loki; for tests that want it).
//! - Valid entries of a request answered 400 are stored. Success is 204
//!   with no body. Error bodies are plain text ending in `\n` (Go's
//!   `http.Error`).
//! - Tenant: `X-Scope-OrgID`, required when `auth_enabled` (401 `no org
//!   id`); with auth disabled every request is tenant `fake` whatever the
//!   header says (Loki's fake auth).
//! - `GET /loki/api/v1/query_range` (selector with `=`/`!=` matchers and
//!   `|=`/`!=` line filters; `start` inclusive, `end` exclusive, ns, Unix
//!   seconds, float seconds or RFC 3339, default the last hour; `limit`
//!   default 100, at most 5000; `direction` default `backward`) →
//!   `{"status":"success","data":{"resultType":"streams","result":[…],"stats":{}}}`;
//!   `GET /ready` → 200 `ready`.
//!
//! What it leaves out: the per-stream rate limit (3 MB/s), line truncation,
//! OTLP, the v0 `/api/prom/push` path, multi-tenant (`a|b`) org ids,
//! `service_name` discovery unless `discover_service_name` is set (Loki 3.x
//! adds it by default; off here so stream keys are what the client sent),
//! `detected_level`, regex matchers and parsers in queries, structured
//! metadata in query results, the exact wording of JSON, protobuf, snappy
//! and PromQL parse errors (the fake's messages are close, not equal), and
//! keeping invalid UTF-8 in lines (Loki keeps the bytes; the fake stores
//! the line lossily converted). Loki dedups against its in-memory head
//! block; the fake against everything stored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;

use crate::http_server;
use crate::http_server::{Request, Response, Server};

/// Loki's push messages (package `logproto`), declared by hand. Fields that
/// are proto `string` are declared `bytes` (same wire type): Go accepts
/// invalid UTF-8 there, prost's `String` would refuse it.
pub mod logproto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(bytes = "vec", tag = "1")]
        pub labels: Vec<u8>,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(bytes = "vec", tag = "2")]
        pub line: Vec<u8>,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(bytes = "vec", tag = "1")]
        pub name: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// google.protobuf.Timestamp
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

pub const PUSH_PATH: &str = "/loki/api/v1/push";
const NS: i128 = 1_000_000_000;
/// Go's zero `time.Time` (0001-01-01), what a missing protobuf timestamp
/// decodes to, in Unix nanoseconds.
const GO_ZERO_TIME_NS: i128 = -62_135_596_800 * NS;
/// Loki 3.x `discover_service_name` default.
const SERVICE_NAME_SOURCES: [&str; 13] = [
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

/// Loki's limits and the fake's departures from them. `Default` is Loki
/// 3.x's defaults (and Loki's behaviour).
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// `auth_enabled`: `X-Scope-OrgID` required (else 401 `no org id`).
    /// When false every request is tenant `fake`.
    pub auth_enabled: bool,
    /// `max_line_size`, bytes; 0 = unlimited. 256 KB.
    pub max_line_size: usize,
    /// `reject_old_samples`.
    pub reject_old_samples: bool,
    /// `reject_old_samples_max_age`: 168 h.
    pub max_age: Duration,
    /// `creation_grace_period`: 10 min into the future.
    pub creation_grace_period: Duration,
    /// The out-of-order window, `max_chunk_age / 2`: 1 h.
    pub window: Duration,
    /// `max_label_names_per_series`: 15 (`service_name` not counted).
    pub max_label_names_per_series: usize,
    /// `max_label_name_length`: 1024.
    pub max_label_name_length: usize,
    /// `max_label_value_length`: 2048.
    pub max_label_value_length: usize,
    /// `allow_structured_metadata`: true.
    pub allow_structured_metadata: bool,
    /// `max_structured_metadata_size`, bytes of names and values: 64 KB.
    pub max_structured_metadata_size: usize,
    /// `max_structured_metadata_entries_count`: 128.
    pub max_structured_metadata_entries_count: usize,
    /// `ingester.max_returned_stream_errors`: 10 (0 = all).
    pub max_returned_stream_errors: usize,
    /// `ingestion_rate_mb` in bytes per second; 0 = no limit. 4 MiB.
    pub ingestion_rate_bytes: u64,
    /// `ingestion_burst_size_mb` in bytes: 6 MiB.
    pub ingestion_burst_bytes: u64,
    /// `max_global_streams_per_user`: 5000; 0 = no limit.
    pub max_streams_per_tenant: usize,
    /// Loki 3.x adds `service_name` to every stream (from `service`, `app`,
    /// … or `unknown_service`). Off by default in the fake.
    pub discover_service_name: bool,
    /// Not Loki: answer for every stream of a request and add the
    /// distributor's errors, joined with `\n` (Loki answers only for the
    /// last stream, and only the ingester's error if there is one).
    pub report_every_stream: bool,
    /// `max_entries_limit_per_query`: 5000.
    pub max_entries_limit_per_query: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            auth_enabled: false,
            max_line_size: 256 * 1024,
            reject_old_samples: true,
            max_age: Duration::from_secs(168 * 3600),
            creation_grace_period: Duration::from_secs(600),
            window: Duration::from_secs(3600),
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            allow_structured_metadata: true,
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries_count: 128,
            max_returned_stream_errors: 10,
            ingestion_rate_bytes: 4 << 20,
            ingestion_burst_bytes: 6 << 20,
            max_streams_per_tenant: 5000,
            discover_service_name: false,
            report_every_stream: false,
            max_entries_limit_per_query: 5000,
        }
    }
}

/// One stored log entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredEntry {
    pub ts_ns: i64,
    pub line: String,
    /// Structured metadata, in the order sent (names normalised as Loki
    /// does: characters outside `[a-zA-Z0-9_]` become `_`).
    pub metadata: Vec<(String, String)>,
}

impl StoredEntry {
    pub fn new(ts_ns: i64, line: &str) -> StoredEntry {
        StoredEntry {
            ts_ns,
            line: line.to_string(),
            metadata: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: &str) -> StoredEntry {
        self.metadata.push((name.to_string(), value.to_string()));
        self
    }
}

/// What the fake saw of one push request and what it answered.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// `X-Scope-OrgID` as sent (the tenant is `fake` when auth is off).
    pub tenant: Option<String>,
    pub authorization: Option<String>,
    /// Every header, as sent.
    pub headers: Vec<(String, String)>,
    /// The body as received (before any decoding).
    pub body: Vec<u8>,
    /// Entries in the decoded request (0 if it did not decode).
    pub entries: usize,
    /// Entries newly stored by this request.
    pub stored: usize,
    /// The body of the answer.
    pub response: String,
}

/// The fake. Stops (and frees its port) when dropped.
pub struct FakeLoki {
    /// `127.0.0.1:PORT`
    pub addr: String,
    shared: Arc<Shared>,
    server: Server,
}

impl FakeLoki {
    /// Loki 3.x defaults, auth disabled, on 127.0.0.1 and a free port.
    pub fn start() -> FakeLoki {
        FakeLoki::with_config(FakeConfig::default())
    }

    pub fn with_config(cfg: FakeConfig) -> FakeLoki {
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let server = Server::start(
            http_server::Options {
                name: "fake loki",
                max_body: MAX_BODY,
                deliver_too_large: false,
                lowercase_framing: false,
                malformed: |e| Response::error(400, &format!("malformed HTTP request: {e}")),
            },
            Arc::new(move |req: &Request| serve(&s, req)),
        );
        FakeLoki {
            addr: server.addr(),
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push_url(&self) -> String {
        format!("{}{PUSH_PATH}", self.url())
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn config(&self) -> &FakeConfig {
        &self.shared.cfg
    }

    /// Refuses connections for `d`: the listening socket is closed (new
    /// connections are refused), open connections are cut, and after `d`
    /// the same port is bound again. Returns once the socket is closed.
    /// Called again during an outage, it extends it.
    pub fn down_for(&self, d: Duration) {
        self.server.down_for(d);
    }

    /// Whether the fake is in an outage.
    pub fn is_down(&self) -> bool {
        self.server.is_down()
    }

    /// The next `n` pushes (that decode) are answered 429 `Ingestion rate
    /// limit exceeded for user …` with `Retry-After: retry_after_secs`, and
    /// nothing of them is stored.
    pub fn too_many_requests(&self, n: usize, retry_after_secs: u64) {
        let mut st = lock(&self.shared.state);
        st.too_many = n;
        st.retry_after = retry_after_secs;
    }

    /// Every `k`-th push (counted from now) is answered 500 and not
    /// stored; 0 turns it off.
    pub fn fail_every(&self, k: usize) {
        let mut st = lock(&self.shared.state);
        st.fail_every = k;
        st.fail_counter = 0;
    }

    /// Delays every answer by `d` (after the push was stored, as when a
    /// client times out on a Loki that did take the data).
    pub fn slow(&self, d: Duration) {
        lock(&self.shared.state).slow = d;
    }

    /// Every tenant's streams, canonical labels → entries in arrival order.
    /// A key present for several tenants gets their entries in tenant order.
    pub fn streams(&self) -> BTreeMap<String, Vec<StoredEntry>> {
        let st = lock(&self.shared.state);
        let mut out: BTreeMap<String, Vec<StoredEntry>> = BTreeMap::new();
        for t in st.tenants.values() {
            for (k, s) in &t.streams {
                if !s.entries.is_empty() {
                    out.entry(k.clone())
                        .or_default()
                        .extend(s.entries.iter().cloned());
                }
            }
        }
        out
    }

    /// One tenant's streams (`fake` when auth is off).
    pub fn tenant_streams(&self, tenant: &str) -> BTreeMap<String, Vec<StoredEntry>> {
        let st = lock(&self.shared.state);
        st.tenants
            .get(tenant)
            .map(|t| {
                t.streams
                    .iter()
                    .filter(|(_, s)| !s.entries.is_empty())
                    .map(|(k, s)| (k.clone(), s.entries.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Entries stored, all tenants.
    pub fn entry_count(&self) -> usize {
        lock(&self.shared.state).stored
    }

    /// Every push request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestInfo> {
        lock(&self.shared.state).requests.clone()
    }

    /// Waits until at least `n` entries are stored; false on timeout.
    pub fn wait_for_entries(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.stored >= n)
    }

    /// Waits until at least `n` push requests were answered; false on
    /// timeout.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.requests.len() >= n)
    }

    fn wait_until(&self, timeout: Duration, f: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            if f(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A snappy-compressed `logproto.PushRequest` of `(labels, entries)`, for
/// tests to send.
pub fn encode_protobuf(streams: &[(&str, &[StoredEntry])]) -> Vec<u8> {
    let req = logproto::PushRequest {
        streams: streams
            .iter()
            .map(|(labels, entries)| logproto::StreamAdapter {
                labels: labels.as_bytes().to_vec(),
                entries: entries
                    .iter()
                    .map(|e| logproto::EntryAdapter {
                        timestamp: Some(logproto::Timestamp {
                            seconds: e.ts_ns.div_euclid(1_000_000_000),
                            nanos: e.ts_ns.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: e.line.as_bytes().to_vec(),
                        structured_metadata: e
                            .metadata
                            .iter()
                            .map(|(n, v)| logproto::LabelPairAdapter {
                                name: n.as_bytes().to_vec(),
                                value: v.as_bytes().to_vec(),
                            })
                            .collect(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

// ---------------------------------------------------------------------------
// Shared state

struct Shared {
    cfg: FakeConfig,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    tenants: BTreeMap<String, Tenant>,
    requests: Vec<RequestInfo>,
    stored: usize,
    too_many: usize,
    retry_after: u64,
    fail_every: usize,
    fail_counter: usize,
    slow: Duration,
}

#[derive(Default)]
struct Tenant {
    streams: BTreeMap<String, Stream>,
    bucket: Option<Bucket>,
}

#[derive(Default)]
struct Stream {
    entries: Vec<StoredEntry>,
    labels: Vec<(String, String)>,
    seen: HashSet<(i128, String)>,
    last_line: Option<(i128, String)>,
    highest: Option<i128>,
}

/// golang.org/x/time/rate: starts full, refills at `rate`, holds `burst`.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn allow(&mut self, n: u64, rate: u64, burst: u64) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst as f64);
        if n as f64 <= self.tokens {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// HTTP

/// Largest request body.
const MAX_BODY: usize = 256 << 20;

/// This fake's answers, on the shared server's [`Response`].
trait LokiAnswers {
    fn no_content() -> Response;
    fn error(status: u16, msg: &str) -> Response;
    fn json(v: &serde_json::Value) -> Response;
}

impl LokiAnswers for Response {
    fn no_content() -> Response {
        Response::empty(204)
    }

    /// Go's `http.Error`: the message and a newline, as plain text.
    fn error(status: u16, msg: &str) -> Response {
        let mut r = Response::empty(status);
        r.headers = vec![
            ("Content-Type".into(), "text/plain; charset=utf-8".into()),
            ("X-Content-Type-Options".into(), "nosniff".into()),
        ];
        r.body = format!("{msg}\n").into_bytes();
        r
    }

    fn json(v: &serde_json::Value) -> Response {
        let mut r = Response::empty(200);
        r.headers = vec![(
            "Content-Type".into(),
            "application/json; charset=UTF-8".into(),
        )];
        r.body = serde_json::to_vec(v).expect("json");
        r
    }
}

/// One request, answered after the configured delay.
fn serve(sh: &Shared, req: &Request) -> Response {
    let resp = route(sh, req);
    let delay = lock(&sh.state).slow;
    if !delay.is_zero() {
        thread::sleep(delay);
    }
    resp
}

fn route(sh: &Shared, req: &Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", PUSH_PATH) => handle_push(sh, req),
        (_, PUSH_PATH) => Response::empty(405),
        ("GET", "/loki/api/v1/query_range") => handle_query(sh, req),
        ("GET", "/ready") => Response::error(200, "ready"),
        _ => Response::error(404, "404 page not found"),
    }
}

// ---------------------------------------------------------------------------
// Push

struct PushEntry {
    ts: i128,
    line: String,
    metadata: Vec<(String, String)>,
}

struct PushStream {
    labels: String,
    entries: Vec<PushEntry>,
}

/// Canonical key, sorted labels, the entries that passed the distributor.
type ValidStream = (String, Vec<(String, String)>, Vec<PushEntry>);

fn handle_push(sh: &Shared, req: &Request) -> Response {
    let mut info = RequestInfo {
        status: 0,
        content_type: req.header("content-type").map(str::to_string),
        content_encoding: req.header("content-encoding").map(str::to_string),
        tenant: req.header("x-scope-orgid").map(str::to_string),
        authorization: req.header("authorization").map(str::to_string),
        headers: req.headers.clone(),
        body: req.body.clone(),
        entries: 0,
        stored: 0,
        response: String::new(),
    };
    let resp = push(sh, req, &mut info);
    info.status = resp.status;
    info.response = String::from_utf8_lossy(&resp.body).into_owned();
    lock(&sh.state).requests.push(info);
    sh.changed.notify_all();
    resp
}

fn push(sh: &Shared, req: &Request, info: &mut RequestInfo) -> Response {
    let cfg = &sh.cfg;
    let tenant = if cfg.auth_enabled {
        match req.header("x-scope-orgid") {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => return Response::error(401, "no org id"),
        }
    } else {
        "fake".to_string()
    };
    {
        let mut st = lock(&sh.state);
        if st.fail_every > 0 {
            st.fail_counter += 1;
            if st.fail_counter.is_multiple_of(st.fail_every) {
                return Response::error(
                    500,
                    "at least 1 live replicas required, could only find 0 - unhealthy instances: 127.0.0.1:9095",
                );
            }
        }
    }

    let streams = match decode_push(req) {
        Ok(s) => s,
        Err(e) => return Response::error(400, &e),
    };
    info.entries = streams.iter().map(|s| s.entries.len()).sum();

    // ParseLokiRequest: every stream's labels must parse, or nothing goes.
    let mut parsed = Vec::with_capacity(streams.len());
    for s in streams {
        let mut labels = match parse_labels(&s.labels) {
            Ok(l) => l,
            Err(e) => return Response::error(400, &format!("couldn't parse labels: {e}")),
        };
        let mut raw = s.labels;
        if cfg.discover_service_name && !labels.iter().any(|(n, _)| n == "service_name") {
            let service = SERVICE_NAME_SOURCES
                .iter()
                .find_map(|src| {
                    labels
                        .iter()
                        .find(|(n, v)| n == src && !v.is_empty())
                        .map(|(_, v)| v.clone())
                })
                .unwrap_or_else(|| "unknown_service".to_string());
            labels.push(("service_name".to_string(), service));
            labels.sort_by(|a, b| a.0.cmp(&b.0));
            raw = labels_string(&labels);
        }
        parsed.push((raw, labels, s.entries));
    }
    if parsed.is_empty() {
        return Response::error(
            422,
            "error at least one valid stream is required for ingestion",
        );
    }

    let mut st = lock(&sh.state);
    if st.too_many > 0 {
        st.too_many -= 1;
        let lines = info.entries;
        let bytes: usize = parsed
            .iter()
            .flat_map(|(_, _, es)| es)
            .map(entry_size)
            .sum();
        let mut r = Response::error(429, &rate_limited(&tenant, cfg, lines, bytes));
        r.headers
            .push(("Retry-After".into(), st.retry_after.to_string()));
        return r;
    }

    // The distributor's validation.
    let now = now_ns();
    let oldest = now - cfg.max_age.as_nanos() as i128;
    let newest = now + cfg.creation_grace_period.as_nanos() as i128;
    let mut errors: Vec<String> = Vec::new();
    let mut valid: Vec<ValidStream> = Vec::new();
    let (mut valid_lines, mut valid_bytes) = (0usize, 0usize);
    for (raw, labels, entries) in parsed {
        if entries.is_empty() {
            continue;
        }
        if let Err(e) = validate_labels(cfg, &raw, &labels) {
            errors.push(e);
            continue;
        }
        let key = labels_string(&labels);
        let mut kept = Vec::with_capacity(entries.len());
        for mut e in entries {
            match validate_entry(cfg, &key, &e, oldest, newest) {
                Err(msg) => errors.push(msg),
                Ok(()) => {
                    for (n, v) in &mut e.metadata {
                        *n = normalize_metadata_name(n);
                        v.retain(|c| c != '\u{FFFD}');
                    }
                    valid_lines += 1;
                    valid_bytes += entry_size(&e);
                    kept.push(e);
                }
            }
        }
        if !kept.is_empty() {
            valid.push((key, labels, kept));
        }
    }
    let validation_error = group_errors(&errors);
    if valid.is_empty() {
        return match validation_error {
            Some(msg) => Response::error(400, &msg),
            None => Response::no_content(),
        };
    }

    let tenant_state = st.tenants.entry(tenant.clone()).or_default();
    if cfg.ingestion_rate_bytes > 0 {
        let bucket = tenant_state.bucket.get_or_insert_with(|| Bucket {
            tokens: cfg.ingestion_burst_bytes as f64,
            last: Instant::now(),
        });
        if !bucket.allow(
            valid_bytes as u64,
            cfg.ingestion_rate_bytes,
            cfg.ingestion_burst_bytes,
        ) {
            return Response::error(429, &rate_limited(&tenant, cfg, valid_lines, valid_bytes));
        }
    }

    // The ingester, stream by stream.
    let mut stored = 0;
    let mut last: Option<(u16, String)> = None;
    let mut all: Vec<(u16, String)> = Vec::new();
    for (key, labels, entries) in valid {
        let r = tenant_state.push_stream(cfg, &tenant, key, labels, entries, &mut stored);
        if cfg.report_every_stream {
            all.extend(r);
        } else {
            last = r;
        }
    }
    st.stored += stored;
    info.stored = stored;
    drop(st);
    sh.changed.notify_all();

    if cfg.report_every_stream {
        if all.is_empty() && validation_error.is_none() {
            return Response::no_content();
        }
        let status = if all.iter().any(|(s, _)| *s == 429) {
            429
        } else {
            400
        };
        let msgs: Vec<String> = validation_error
            .into_iter()
            .chain(all.into_iter().map(|(_, m)| m))
            .collect();
        return Response::error(status, &msgs.join("\n"));
    }
    match (last, validation_error) {
        (Some((status, msg)), _) => Response::error(status, &msg),
        (None, Some(msg)) => Response::error(400, &msg),
        (None, None) => Response::no_content(),
    }
}

fn rate_limited(tenant: &str, cfg: &FakeConfig, lines: usize, bytes: usize) -> String {
    let limit = if cfg.ingestion_rate_bytes > 0 {
        cfg.ingestion_rate_bytes
    } else {
        4 << 20
    };
    format!(
        "Ingestion rate limit exceeded for user {tenant} (limit: {limit} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"
    )
}

/// Loki's `util.EntryTotalSize`: line plus metadata names and values.
fn entry_size(e: &PushEntry) -> usize {
    e.line.len()
        + e.metadata
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>()
}

/// Loki's `util.GroupedErrors.Error()`, in first-seen order.
fn group_errors(errors: &[String]) -> Option<String> {
    if errors.is_empty() {
        return None;
    }
    let mut order: Vec<(&str, usize)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for e in errors {
        match index.get(e.as_str()) {
            Some(&i) => order[i].1 += 1,
            None => {
                index.insert(e, order.len());
                order.push((e, 1));
            }
        }
    }
    let unique = order.len();
    let parts: Vec<String> = order
        .into_iter()
        .map(|(m, n)| {
            if unique > 1 || n > 1 {
                format!("{n} errors like: {m}")
            } else {
                m.to_string()
            }
        })
        .collect();
    Some(parts.join("; "))
}

/// The distributor's `ValidateLabels`; `raw` is the label string as sent.
fn validate_labels(cfg: &FakeConfig, raw: &str, labels: &[(String, String)]) -> Result<(), String> {
    if labels.is_empty() {
        return Err("error at least one label pair is required per stream".into());
    }
    let mut n = labels.len();
    if labels.iter().any(|(name, _)| name == "service_name") {
        n -= 1;
    }
    if n > cfg.max_label_names_per_series {
        return Err(format!(
            "entry for stream '{raw}' has {n} label names; limit {}",
            cfg.max_label_names_per_series
        ));
    }
    let mut last = "";
    for (name, value) in labels {
        if name.len() > cfg.max_label_name_length {
            return Err(format!("stream '{raw}' has label name too long: '{name}'"));
        } else if value.len() > cfg.max_label_value_length {
            return Err(format!(
                "stream '{raw}' has label value too long: '{value}'"
            ));
        } else if name == last {
            return Err(format!("stream '{raw}' has duplicate label name: '{name}'"));
        }
        last = name;
    }
    Ok(())
}

/// The distributor's `ValidateEntry`; `key` is the canonical label string.
fn validate_entry(
    cfg: &FakeConfig,
    key: &str,
    e: &PushEntry,
    oldest: i128,
    newest: i128,
) -> Result<(), String> {
    if cfg.reject_old_samples && e.ts < oldest {
        return Err(format!(
            "entry for stream '{key}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
            rfc3339(e.ts),
            rfc3339(oldest)
        ));
    }
    if e.ts > newest {
        return Err(format!(
            "entry for stream '{key}' has timestamp too new: {}",
            rfc3339(e.ts)
        ));
    }
    if cfg.max_line_size != 0 && e.line.len() > cfg.max_line_size {
        return Err(format!(
            "Max entry size '{}' bytes exceeded for stream '{key}' while adding an entry with length '{}' bytes",
            cfg.max_line_size,
            e.line.len()
        ));
    }
    if !e.metadata.is_empty() {
        if !cfg.allow_structured_metadata {
            return Err(format!(
                "stream '{key}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it."
            ));
        }
        let size: usize = e.metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        let count = e.metadata.len();
        if cfg.max_structured_metadata_size != 0 && size > cfg.max_structured_metadata_size {
            return Err(format!(
                "stream '{key}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.",
                cfg.max_structured_metadata_size
            ));
        }
        if cfg.max_structured_metadata_entries_count != 0
            && count > cfg.max_structured_metadata_entries_count
        {
            return Err(format!(
                "stream '{key}' has too many structured metadata labels: '{count}', limit: '{}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.",
                cfg.max_structured_metadata_entries_count
            ));
        }
    }
    Ok(())
}

/// Prometheus' OTLP `NormalizeLabel`, as the distributor applies it to
/// structured metadata names.
fn normalize_metadata_name(name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.as_bytes()[0].is_ascii_digit() {
        format!("key_{s}")
    } else if s.starts_with('_') && !s.starts_with("__") {
        format!("key{s}")
    } else {
        s
    }
}

impl Tenant {
    /// The ingester's `stream.Push` for one stream of a request: returns
    /// the stream's error, if any.
    fn push_stream(
        &mut self,
        cfg: &FakeConfig,
        tenant: &str,
        key: String,
        labels: Vec<(String, String)>,
        entries: Vec<PushEntry>,
        stored: &mut usize,
    ) -> Option<(u16, String)> {
        if !self.streams.contains_key(&key) {
            if cfg.max_streams_per_tenant > 0 && self.streams.len() >= cfg.max_streams_per_tenant {
                return Some((
                    429,
                    format!(
                        "Maximum active stream limit exceeded when trying to create stream {key}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant}'"
                    ),
                ));
            }
            self.streams.insert(
                key.clone(),
                Stream {
                    labels,
                    ..Stream::default()
                },
            );
        }
        let s = self.streams.get_mut(&key).expect("stream");
        let total = entries.len();
        let window = cfg.window.as_nanos() as i128;

        // validateEntries: against the last line and the newest timestamp,
        // both moving forward with the accepted entries of this batch.
        let mut last_line = s.last_line.clone();
        let mut highest = s.highest;
        let mut refused: Vec<(i128, i128)> = Vec::new();
        let mut accepted = Vec::with_capacity(total);
        for e in entries {
            if last_line
                .as_ref()
                .is_some_and(|(ts, line)| *ts == e.ts && *line == e.line)
            {
                continue;
            }
            if let Some(h) = highest {
                let cutoff = h - window;
                if cutoff > e.ts {
                    refused.push((e.ts, cutoff));
                    continue;
                }
            }
            last_line = Some((e.ts, e.line.clone()));
            highest = Some(highest.map_or(e.ts, |h| h.max(e.ts)));
            accepted.push(e);
        }

        // storeEntries: duplicates are accepted but not stored twice.
        for e in accepted {
            let id = (e.ts, e.line.clone());
            if s.seen.insert(id) {
                s.entries.push(StoredEntry {
                    ts_ns: e.ts.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                    line: e.line.clone(),
                    metadata: e.metadata,
                });
                *stored += 1;
            }
            s.highest = Some(s.highest.map_or(e.ts, |h| h.max(e.ts)));
            s.last_line = Some((e.ts, e.line));
        }

        if refused.is_empty() {
            return None;
        }
        let listed = match cfg.max_returned_stream_errors {
            0 => refused.len(),
            n => n.min(refused.len()),
        };
        let mut msg = String::new();
        for (ts, cutoff) in &refused[..listed] {
            let _ = writeln!(
                msg,
                "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}',",
                go_time_string(*ts),
                rfc3339(*ts),
                rfc3339(*cutoff)
            );
        }
        let _ = write!(
            msg,
            "user '{tenant}', total ignored: {} out of {total} for stream: {key}",
            refused.len()
        );
        Some((400, msg))
    }
}

// ---------------------------------------------------------------------------
// Body decoding

fn decode_push(req: &Request) -> Result<Vec<PushStream>, String> {
    let raw = &req.body;
    let body = match req.header("content-encoding").unwrap_or("") {
        "" | "snappy" => raw.clone(),
        "gzip" => {
            if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
                return Err("gzip: invalid header".into());
            }
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| format!("gzip: {e}"))?;
            out
        }
        "deflate" => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|_| "flate: corrupt input before offset 0".to_string())?;
            out
        }
        other => {
            return Err(format!(
                "Content-Encoding {} not supported",
                go_quote(other)
            ));
        }
    };
    let media = parse_media_type(req.header("content-type").unwrap_or(""))?;
    if media == "application/json" {
        decode_json(&body)
    } else {
        decode_protobuf(&body)
    }
}

/// The media type as Go's `mime.ParseMediaType` returns it, lower-cased.
fn parse_media_type(v: &str) -> Result<String, String> {
    let base = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if base.is_empty() {
        return Err("mime: no media type".into());
    }
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    match base.split_once('/') {
        None => Err("mime: expected slash after first token".into()),
        Some((t, s)) if is_token(t) && is_token(s) => Ok(base),
        Some(_) => Err("mime: expected token after slash".into()),
    }
}

fn decode_protobuf(body: &[u8]) -> Result<Vec<PushStream>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|_| "snappy: corrupt input".to_string())?;
    let req = logproto::PushRequest::decode(&raw[..]).map_err(|e| format!("proto: {e}"))?;
    let mut out = Vec::with_capacity(req.streams.len());
    for s in req.streams {
        let mut entries = Vec::with_capacity(s.entries.len());
        for e in s.entries {
            let ts = match e.timestamp {
                None => GO_ZERO_TIME_NS,
                Some(t) => {
                    if !(0..1_000_000_000).contains(&t.nanos) {
                        return Err(format!(
                            "timestamp: seconds:{} nanos:{}: nanos not in range [0, 1e9)",
                            t.seconds, t.nanos
                        ));
                    }
                    if t.seconds < -62_135_596_800 {
                        return Err(format!(
                            "timestamp: seconds:{} nanos:{}: before 0001-01-01",
                            t.seconds, t.nanos
                        ));
                    }
                    if t.seconds >= 253_402_300_800 {
                        return Err(format!(
                            "timestamp: seconds:{} nanos:{}: after 10000-01-01",
                            t.seconds, t.nanos
                        ));
                    }
                    t.seconds as i128 * NS + t.nanos as i128
                }
            };
            entries.push(PushEntry {
                ts,
                line: String::from_utf8_lossy(&e.line).into_owned(),
                metadata: e
                    .structured_metadata
                    .into_iter()
                    .map(|p| {
                        (
                            String::from_utf8_lossy(&p.name).into_owned(),
                            String::from_utf8_lossy(&p.value).into_owned(),
                        )
                    })
                    .collect(),
            });
        }
        out.push(PushStream {
            labels: String::from_utf8_lossy(&s.labels).into_owned(),
            entries,
        });
    }
    Ok(out)
}

fn decode_json(body: &[u8]) -> Result<Vec<PushStream>, String> {
    use serde_json::Value;
    const PREFIX: &str = "loghttp.PushRequest.Streams: []*loghttp.Stream: ";
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("loghttp.PushRequest: ReadObject: {e}"))?;
    let Value::Object(top) = v else {
        return Err("loghttp.PushRequest: ReadObject: expect { or n".into());
    };
    let streams = match top.get("streams") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("{PREFIX}ReadArray: expect [ or n")),
    };
    let string_of = |v: &Value, what: &str| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            other => Err(format!(
                "{PREFIX}{what}: ReadString: expects \" or n, but found {}",
                first_char(other)
            )),
        }
    };
    let mut out = Vec::with_capacity(streams.len());
    for s in streams {
        let Value::Object(s) = s else {
            if s.is_null() {
                continue;
            }
            return Err(format!(
                "{PREFIX}ReadObject: expect {{ or n, but found {}",
                first_char(s)
            ));
        };
        let mut labels: Vec<(String, String)> = Vec::new();
        match s.get("stream") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    labels.push((k.clone(), string_of(v, "loghttp.Stream.Labels")?));
                }
            }
            Some(other) => {
                return Err(format!(
                    "{PREFIX}loghttp.Stream.Labels: ReadMapCB: expect {{ or n, but found {}",
                    first_char(other)
                ));
            }
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let mut entries = Vec::new();
        match s.get("values") {
            None | Some(Value::Null) => {}
            Some(Value::Array(values)) => {
                for v in values {
                    let Value::Array(parts) = v else {
                        return Err(format!(
                            "{PREFIX}loghttp.Stream.Entries: ReadArrayCB: expect [ or n, but found {}",
                            first_char(v)
                        ));
                    };
                    if parts.len() > 3 {
                        return Err(format!(
                            "{PREFIX}loghttp.Stream.Entries: error reading entry: array must contains 2 values"
                        ));
                    }
                    let ts_text = match parts.first() {
                        Some(t) => string_of(t, "loghttp.Stream.Entries")?,
                        None => String::new(),
                    };
                    let ts = parse_go_int(&ts_text).map_err(|e| {
                        format!(
                            "{PREFIX}loghttp.Stream.Entries: error reading entry timestamp: {e}"
                        )
                    })?;
                    let line = match parts.get(1) {
                        Some(l) => string_of(l, "loghttp.Stream.Entries")?,
                        None => String::new(),
                    };
                    let mut metadata = Vec::new();
                    match parts.get(2) {
                        None | Some(Value::Null) => {}
                        Some(Value::Object(m)) => {
                            for (k, v) in m {
                                metadata.push((k.clone(), string_of(v, "loghttp.Stream.Entries")?));
                            }
                        }
                        Some(other) => {
                            return Err(format!(
                                "{PREFIX}loghttp.Stream.Entries: ReadMapCB: expect {{ or n, but found {}",
                                first_char(other)
                            ));
                        }
                    }
                    entries.push(PushEntry {
                        ts: ts as i128,
                        line,
                        metadata,
                    });
                }
            }
            Some(other) => {
                return Err(format!(
                    "{PREFIX}loghttp.Stream.Entries: ReadArrayCB: expect [ or n, but found {}",
                    first_char(other)
                ));
            }
        }
        out.push(PushStream {
            labels: labels_string(&labels),
            entries,
        });
    }
    Ok(out)
}

fn first_char(v: &serde_json::Value) -> char {
    v.to_string().chars().next().unwrap_or(' ')
}

/// Go's `strconv.ParseInt(s, 10, 64)`, with its error messages.
fn parse_go_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>().map_err(|_| {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )
    })
}

// ---------------------------------------------------------------------------
// Labels and selectors

#[derive(Clone, Copy, PartialEq, Debug)]
enum Op {
    Eq,
    Ne,
    Re,
    Nre,
}

struct Matcher {
    name: String,
    op: Op,
    value: String,
}

/// Parses a stream's label string as Loki does (`syntax.ParseLabels`):
/// sorted by name, empty values dropped, duplicates kept (validation
/// refuses them).
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let (matchers, end) = parse_selector(s, false)?;
    if s[end..].trim() != "" {
        return Err(format!(
            "1:{}: parse error: unexpected character after label set",
            end + 1
        ));
    }
    let mut labels: Vec<(String, String)> = matchers
        .into_iter()
        .filter(|m| !m.value.is_empty())
        .map(|m| (m.name, m.value))
        .collect();
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(labels)
}

/// Prometheus' `labels.String()`: `{a="x", b="y"}`.
pub fn labels_string(labels: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (n, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(n);
        out.push('=');
        out.push_str(&go_quote(v));
    }
    out.push('}');
    out
}

/// `{name op "value", …}`; returns the matchers and the byte offset after
/// `}`. Only `=` unless `ops`.
fn parse_selector(s: &str, ops: bool) -> Result<(Vec<Matcher>, usize), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let err = |i: usize, msg: &str| format!("1:{}: parse error: {msg}", i + 1);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if i >= b.len() || b[i] != b'{' {
        return Err(err(i, "unexpected input, expected \"{\""));
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        skip_ws(&mut i);
        if i < b.len() && b[i] == b'}' {
            i += 1;
            break;
        }
        let start = i;
        if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        }
        if i == start {
            return Err(err(
                i,
                "unexpected character inside braces, expected a label name",
            ));
        }
        let name = s[start..i].to_string();
        skip_ws(&mut i);
        let op = if b[i..].starts_with(b"!=") {
            i += 2;
            Op::Ne
        } else if b[i..].starts_with(b"=~") {
            i += 2;
            Op::Re
        } else if b[i..].starts_with(b"!~") {
            i += 2;
            Op::Nre
        } else if b[i..].starts_with(b"=") {
            i += 1;
            Op::Eq
        } else {
            return Err(err(
                i,
                &format!(
                    "unexpected character in label matching after label name {}",
                    go_quote(&name)
                ),
            ));
        };
        if op != Op::Eq && !ops {
            return Err(err(
                i,
                "unexpected label matching operator in a label set, expected \"=\"",
            ));
        }
        skip_ws(&mut i);
        let value = lex_string(s, &mut i)?;
        out.push(Matcher { name, op, value });
        skip_ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {
                i += 1;
                break;
            }
            _ => {
                return Err(err(
                    i,
                    "unexpected character inside braces, expected \",\" or \"}\"",
                ));
            }
        }
    }
    Ok((out, i))
}

/// A PromQL string literal at `s[*i..]`: `"…"` or `'…'` with Go escapes,
/// or a raw `` `…` ``.
fn lex_string(s: &str, i: &mut usize) -> Result<String, String> {
    let b = s.as_bytes();
    let err = |at: usize, msg: &str| format!("1:{}: parse error: {msg}", at + 1);
    let Some(&q) = b.get(*i) else {
        return Err(err(*i, "unexpected end of input, expected a string"));
    };
    if q != b'"' && q != b'\'' && q != b'`' {
        return Err(err(
            *i,
            "unexpected character in label matching, expected string",
        ));
    }
    let start = *i;
    *i += 1;
    let mut out: Vec<u8> = Vec::new();
    loop {
        let Some(&c) = b.get(*i) else {
            return Err(err(start, "unterminated quoted string"));
        };
        *i += 1;
        if c == q {
            break;
        }
        if q == b'`' {
            out.push(c);
            continue;
        }
        if c == b'\n' {
            return Err(err(start, "unterminated quoted string"));
        }
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = b.get(*i) else {
            return Err(err(start, "unterminated quoted string"));
        };
        *i += 1;
        let hex = |i: &mut usize, n: usize| -> Result<u32, String> {
            let text = s
                .get(*i..*i + n)
                .ok_or_else(|| err(*i, "invalid escape sequence"))?;
            let v =
                u32::from_str_radix(text, 16).map_err(|_| err(*i, "invalid escape sequence"))?;
            *i += n;
            Ok(v)
        };
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'"' | b'\'' if e == q => out.push(e),
            b'x' => out.push(hex(i, 2)? as u8),
            b'0'..=b'7' => {
                let text = s
                    .get(*i - 1..*i + 2)
                    .ok_or_else(|| err(*i, "invalid escape sequence"))?;
                let v =
                    u32::from_str_radix(text, 8).map_err(|_| err(*i, "invalid escape sequence"))?;
                if v > 255 {
                    return Err(err(*i, "invalid escape sequence"));
                }
                *i += 2;
                out.push(v as u8);
            }
            b'u' | b'U' => {
                let v = hex(i, if e == b'u' { 4 } else { 8 })?;
                let c = char::from_u32(v).ok_or_else(|| err(*i, "invalid escape sequence"))?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(err(*i - 2, "unknown escape sequence")),
        }
    }
    String::from_utf8(out).map_err(|_| err(start, "invalid UTF-8 rune"))
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !go_is_print(c) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` for non-ASCII characters:
/// controls, format characters and spaces other than U+0020 are not.
fn go_is_print(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{a0}' | '\u{ad}' | '\u{1680}' | '\u{2000}'..='\u{200f}' | '\u{2028}'..='\u{202f}')
        || matches!(c, '\u{205f}'..='\u{2064}' | '\u{3000}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'))
}

// ---------------------------------------------------------------------------
// Time, as Go prints it

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (date, time of day, nanoseconds) of Unix nanoseconds, UTC.
fn split_time(ns: i128) -> (String, String, u32) {
    let secs = ns.div_euclid(NS) as i64;
    let nanos = ns.rem_euclid(NS) as u32;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60),
        nanos,
    )
}

/// Go's `time.Time.String()` of a UTC time:
/// `2025-01-31 08:00:00.123456789 +0000 UTC` (fraction without trailing
/// zeros, none when zero).
pub fn go_time_string(ns: i128) -> String {
    let (date, time, nanos) = split_time(ns);
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!("{date} {time}{frac} +0000 UTC")
}

/// Go's `Format(time.RFC3339)` of a UTC time: `2025-01-31T08:00:00Z`.
pub fn rfc3339(ns: i128) -> String {
    let (date, time, _) = split_time(ns);
    format!("{date}T{time}Z")
}

/// RFC 3339 with an optional fraction and a `Z` or `±hh:mm` offset.
fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        nanos = format!("{frac:0<9}").parse().ok()?;
    }
    let offset: i64 = match &s[i..] {
        "Z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    Some(secs as i128 * NS + nanos)
}

/// Loki's `parseTimestamp` for query parameters: float seconds, integer
/// seconds (≤ 10 digits) or nanoseconds, or RFC 3339.
fn parse_query_time(v: Option<&str>, default: i128) -> Result<i128, String> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    if v.contains('.')
        && let Ok(f) = v.parse::<f64>()
    {
        return Ok((f * 1e9) as i128);
    }
    match v.parse::<i64>() {
        Ok(n) if v.len() <= 10 => Ok(n as i128 * NS),
        Ok(n) => Ok(n as i128),
        Err(_) => parse_rfc3339(v)
            .ok_or_else(|| format!("cannot parse {} to a valid timestamp", go_quote(v))),
    }
}

// ---------------------------------------------------------------------------
// Query

fn handle_query(sh: &Shared, req: &Request) -> Response {
    let cfg = &sh.cfg;
    let tenant = if cfg.auth_enabled {
        match req.header("x-scope-orgid") {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => return Response::error(401, "no org id"),
        }
    } else {
        "fake".to_string()
    };
    let params: HashMap<String, String> = req.params.iter().cloned().collect();
    let Some(query) = params.get("query") else {
        return Response::error(400, "parse error : syntax error: unexpected $end");
    };
    let now = now_ns();
    let end = match parse_query_time(params.get("end").map(String::as_str), now) {
        Ok(t) => t,
        Err(e) => return Response::error(400, &e),
    };
    let start = match parse_query_time(params.get("start").map(String::as_str), end - 3600 * NS) {
        Ok(t) => t,
        Err(e) => return Response::error(400, &e),
    };
    if end < start {
        return Response::error(
            400,
            "end timestamp must not be before or equal to start time",
        );
    }
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) => l,
        Some(Err(_)) => return Response::error(400, "invalid limit"),
    };
    if limit > cfg.max_entries_limit_per_query {
        return Response::error(
            400,
            &format!(
                "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})",
                cfg.max_entries_limit_per_query
            ),
        );
    }
    let forward = match params.get("direction").map(|d| d.to_ascii_lowercase()) {
        None => false,
        Some(d) if d == "backward" => false,
        Some(d) if d == "forward" => true,
        Some(d) => return Response::error(400, &format!("invalid direction '{d}'")),
    };
    let (matchers, mut i) = match parse_selector(query, true) {
        Ok(r) => r,
        Err(e) => return Response::error(400, &format!("parse error : {e}")),
    };
    if matchers.iter().any(|m| matches!(m.op, Op::Re | Op::Nre)) {
        return Response::error(400, "fake loki: regex matchers are not supported");
    }
    if !matchers
        .iter()
        .any(|m| m.op == Op::Eq && !m.value.is_empty())
    {
        return Response::error(
            400,
            "parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will",
        );
    }
    // Line filters: |= "x", != "x".
    let mut filters: Vec<(bool, String)> = Vec::new();
    loop {
        let rest = &query[i..];
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            break;
        }
        i += rest.len() - trimmed.len();
        let keep = if trimmed.starts_with("|=") {
            true
        } else if trimmed.starts_with("!=") {
            false
        } else {
            return Response::error(
                400,
                "fake loki: only `|=` and `!=` line filters are supported",
            );
        };
        i += 2;
        while query
            .as_bytes()
            .get(i)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            i += 1;
        }
        match lex_string(query, &mut i) {
            Ok(v) => filters.push((keep, v)),
            Err(e) => return Response::error(400, &format!("parse error : {e}")),
        }
    }

    let st = lock(&sh.state);
    let mut hits: Vec<(i128, usize, &str, &Stream, &StoredEntry)> = Vec::new();
    if let Some(t) = st.tenants.get(&tenant) {
        for (n, (key, s)) in t.streams.iter().enumerate() {
            let matches = matchers.iter().all(|m| {
                let v = s
                    .labels
                    .iter()
                    .find(|(k, _)| *k == m.name)
                    .map_or("", |(_, v)| v.as_str());
                (v == m.value) == (m.op == Op::Eq)
            });
            if !matches {
                continue;
            }
            for e in &s.entries {
                let ts = e.ts_ns as i128;
                if ts >= start
                    && ts < end
                    && filters
                        .iter()
                        .all(|(keep, f)| e.line.contains(f.as_str()) == *keep)
                {
                    hits.push((ts, n, key, s, e));
                }
            }
        }
    }
    if forward {
        hits.sort_by_key(|h| (h.0, h.1));
    } else {
        hits.sort_by_key(|h| (std::cmp::Reverse(h.0), h.1));
    }
    hits.truncate(limit);
    let mut grouped: BTreeMap<&str, (&Stream, Vec<serde_json::Value>)> = BTreeMap::new();
    for (_, _, key, s, e) in hits {
        grouped
            .entry(key)
            .or_insert_with(|| (s, Vec::new()))
            .1
            .push(serde_json::json!([e.ts_ns.to_string(), e.line]));
    }
    let result: Vec<serde_json::Value> = grouped
        .into_values()
        .map(|(s, values)| {
            let labels: serde_json::Map<String, serde_json::Value> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    Response::json(&serde_json::json!({
        "status": "success",
        "data": {"resultType": "streams", "result": result, "stats": {}},
    }))
}
