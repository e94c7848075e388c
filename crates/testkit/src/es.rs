//! A fake Elasticsearch for integration tests, faithful to the bulk protocol
//! of a single-node Elasticsearch **8.x** (it reports 8.13.0) with its
//! built-in index templates, as described in `shared/docs/protocols.md` §2
//! and as read in Elasticsearch's source (`BulkRequestParser`,
//! `TransportBulkAction`, `MetadataCreateIndexService`, `DocumentParser`,
//! the `logs@*` template resources).
//!
//! It is a small HTTP/1.1 server on `std::net::TcpListener` (a thread per
//! connection, keep-alive, `Content-Length` or chunked request bodies), so
//! that tests control outages (the listening socket is closed and re-bound
//! on the same port; open connections are cut), slow answers and exact
//! bodies. Every answer carries `X-elastic-product: Elasticsearch`, as the
//! official clients check.
//!
//! What it reproduces:
//! - `POST|PUT /_bulk` and `/<index>/_bulk`, under `EsConfig::path_prefix`
//!   (a proxy's prefix: paths outside it get a proxy's plain 404). Query
//!   parameters are checked (`request [/_bulk] contains unrecognized
//!   parameter: [x]`); `refresh` values too; `filter_path` is applied to the
//!   answer; `pipeline` and `_none` work like ES with no pipelines defined.
//! - Order of checks as in ES: authentication (401 `security_exception`,
//!   with ES's `WWW-Authenticate` headers), route (400 `no handler found for
//!   uri`, 405 `Incorrect HTTP method`), `Content-Type` (406 unless
//!   `application/x-ndjson` or `application/json`, `charset=utf-8` and the
//!   `vnd.elasticsearch+…; compatible-with=7|8` forms allowed), an empty body
//!   (400 `parse_exception` `request body is required`), `Content-Length`
//!   over `http.max_content_length` (413, empty body, connection closed).
//!   `Content-Encoding: gzip|deflate` bodies are inflated (other codings
//!   pass through, as Netty does, and then fail to parse).
//! - `BulkRequestParser`: lines split on `\n`; trailing bytes after the last
//!   `\n` → 400 `The bulk request must be terminated by a newline [\n]`
//!   (backslash-n, as ES writes it); whitespace-only lines skipped; the
//!   action/metadata errors of ES (`Malformed action/metadata line [N], …`,
//!   `Action/metadata line [N] contains an unknown parameter [x]`, JSON
//!   syntax → `x_content_parse_exception`). Like ES 8, an unknown action is
//!   accepted and its item ignored, and keys after the action's object,
//!   data after the line's object and a missing final `}` pass;
//!   `EsConfig::strict_action_lines` gives ES 9's 400s instead. An action
//!   line with no source line after it at the very end is silently dropped
//!   (ES does the same);
//!   `\r` before `\n` trimmed from sources; then `BulkRequest.validate()`
//!   (`action_request_validation_exception`: `no requests added`, `index is
//!   missing`, `id is missing` for delete, `_id` over 512 bytes).
//! - Items, in request order, keyed by op type (`{"index":{"op_type":
//!   "create"}}` answers as `create`): `index` upserts (`created` 201 /
//!   `updated` 200, `_version`, `_seq_no`, `_primary_term`, `_shards`);
//!   `create` on an existing `_id` → 409 `version_conflict_engine_exception`;
//!   `delete` (`deleted` 200 / `not_found` 404; on a missing index 404
//!   `index_not_found_exception`); `update` → 400 (not supported by the
//!   fake). Missing `_id` → a 20-character ES-like id. Empty `_id` → 400.
//!   Auto-created indices are validated (`invalid_index_name_exception` with
//!   ES's messages and order of checks).
//! - Data streams: a name matching `EsConfig::data_stream_patterns`
//!   (default ES 8's built-in `logs-*-*`, `metrics-*-*`, `synthetics-*-*`)
//!   is a data stream with backing index `.ds-<name>-<yyyy.MM.dd>-000001`,
//!   which items and hits report as `_index`. Only `create` (`index` or
//!   `delete` → 400 `only write ops with an op_type of create are allowed in
//!   data streams`); `@timestamp` is required (`[1:N] failed to parse: data
//!   stream timestamp field [@timestamp] is missing`), must be one value and
//!   a date (`strict_date_optional_time||epoch_millis`).
//! - Dynamic mapping per index (per data stream), by dotted path, dots in
//!   field names expanded like ES: first value decides (`long`, `float`,
//!   `boolean`, `object`; strings `text` — or `date` by date detection — in
//!   plain indices and `keyword` in data streams, whose template turns date
//!   detection off); later values are coerced as ES does (numeric strings
//!   into numbers, `""` as null, `"true"`/`"false"` into booleans, anything
//!   scalar into strings) or refused with `document_parsing_exception`
//!   `[1:C] failed to parse field [f] of type [t] in document with id 'x'.
//!   Preview of field's value: 'v'` and a `caused_by`; objects vs scalars
//!   (`object mapping for [a] tried to parse field [a] as object, but found
//!   a concrete value`, `Could not dynamically add mapping for field [a.b]
//!   …`). Mapping updates of a refused document are not kept. Like ES 8.13's
//!   `logs@settings`, data streams have `ignore_malformed` (a scalar that
//!   does not fit is kept in `_source`, not refused; objects still are) and
//!   ignore dynamic fields beyond the limit — `EsConfig::
//!   ignore_malformed_in_data_streams` turns the first off. Also ES's
//!   per-document rules: metadata fields (`_id`, `_index`, …) inside a
//!   document, duplicate keys (strict duplicate detection), empty or
//!   ambiguous (`a.`) field names, extra data after the object, non-object
//!   documents, `index.mapping.total_fields.limit` (1000; `text` counts two
//!   fields with its `.keyword`).
//! - Whole-request errors in ES's shape `{"error":{"root_cause":[…],"type",
//!   "reason"},"status":N}`; controlled 429 `es_rejected_execution_exception`,
//!   503 `cluster_block_exception`, 401/403 `security_exception`, 500, and
//!   502/504 as a proxy's HTML.
//! - Tests read what was stored through the fake's own API (`docs`,
//!   `doc_count`, `mapping`: comma lists and `*` wildcards over indices and
//!   data streams), not through `_search`, which weir never sends.
//!   `GET|HEAD /` → cluster info (`version.number`), `HEAD /<index>`.
//!   Responses are gzipped when the client sends `Accept-Encoding: gzip`
//!   (ES's `http.compression`, on without TLS).
//!
//! What it leaves out: `update` and scripted writes, `version`/`if_seq_no`
//! concurrency control (accepted, ignored), routing, ingest pipelines (so
//! `logs@default-pipeline`, which in real ES 8 *fills in* a missing
//! `@timestamp` of `logs-*-*` documents, is off unless
//! `EsConfig::fill_missing_timestamp`), `constant_keyword` checks of
//! `data_stream.*`, ECS dynamic templates beyond strings-as-keyword,
//! date-math index names (`<logs-{now/d}>`), the `yyyy/MM/dd` dynamic date
//! formats, `index.mapping.depth.limit`, nested/flattened types, shards and
//! replicas (one shard, `_shards.total` 2 like a default index on one node),
//! SMILE/CBOR bodies, TLS, `_security/api_key`. Index and data stream
//! creation APIs are absent: indices come from auto-creation only.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::http_server;
use crate::http_server::{Request, Response, Server, percent_decode};

// ---------------------------------------------------------------------------
// Public API

/// How the fake behaves; `EsConfig::default()` is a stock single-node ES 8.
#[derive(Clone, Debug)]
pub struct EsConfig {
    /// A reverse proxy's path prefix, e.g. `/es` (no trailing slash); only
    /// paths under it are routed, with it stripped. Default "".
    pub path_prefix: String,
    /// Names matching one of these globs are data streams. Default ES 8's
    /// built-in templates: `logs-*-*`, `metrics-*-*`, `synthetics-*-*`.
    pub data_stream_patterns: Vec<String>,
    /// Accepted credentials; empty = security off (no `Authorization`
    /// needed, any sent is ignored, like ES with security disabled).
    pub credentials: Vec<Credential>,
    /// ES 8.9+ `logs@settings`: `index.mapping.ignore_malformed: true` for
    /// data streams (a scalar value that does not fit its field's type is
    /// not indexed but the document is stored). Default true.
    pub ignore_malformed_in_data_streams: bool,
    /// Emulate ES 8's `logs@default-pipeline`, which sets a missing
    /// `@timestamp` to the ingest time. Default false: protocols.md says a
    /// data stream document without `@timestamp` is refused.
    pub fill_missing_timestamp: bool,
    /// Refuse action lines ES 8 lets pass — an unknown action (ES 8 ignores
    /// the item), keys after the action's object, data after the line's
    /// object, a missing final `}` — with ES 9's 400s. Default false (ES 8).
    pub strict_action_lines: bool,
    /// `index.mapping.total_fields.limit` (plain indices; data streams
    /// ignore dynamic fields beyond it). Default 1000.
    pub total_fields_limit: usize,
    /// `http.max_content_length`; larger requests get 413. Default 100 MiB.
    pub max_content_length: usize,
    /// Gzip answers when the client accepts gzip. Default true.
    pub compress_responses: bool,
    /// `version.number` of `GET /`. Default "8.13.0".
    pub version: String,
}

impl Default for EsConfig {
    fn default() -> EsConfig {
        EsConfig {
            path_prefix: String::new(),
            data_stream_patterns: vec![
                "logs-*-*".into(),
                "metrics-*-*".into(),
                "synthetics-*-*".into(),
            ],
            credentials: Vec::new(),
            ignore_malformed_in_data_streams: true,
            fill_missing_timestamp: false,
            strict_action_lines: false,
            total_fields_limit: 1000,
            max_content_length: 100 << 20,
            compress_responses: true,
            version: "8.13.0".into(),
        }
    }
}

/// One accepted credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Basic base64(user:password)`
    Basic { user: String, password: String },
    /// `Authorization: ApiKey base64(id:key)` (the `encoded` field of
    /// `POST /_security/api_key`)
    ApiKey { id: String, key: String },
    /// `Authorization: Bearer <token>`
    Bearer(String),
}

impl Credential {
    pub fn basic(user: &str, password: &str) -> Credential {
        Credential::Basic {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn api_key(id: &str, key: &str) -> Credential {
        Credential::ApiKey {
            id: id.into(),
            key: key.into(),
        }
    }

    pub fn bearer(token: &str) -> Credential {
        Credential::Bearer(token.into())
    }

    /// The `Authorization` header value a client sends for it.
    pub fn header(&self) -> String {
        match self {
            Credential::Basic { user, password } => {
                format!(
                    "Basic {}",
                    base64_encode(format!("{user}:{password}").as_bytes())
                )
            }
            Credential::ApiKey { id, key } => {
                format!("ApiKey {}", base64_encode(format!("{id}:{key}").as_bytes()))
            }
            Credential::Bearer(t) => format!("Bearer {t}"),
        }
    }
}

/// What the fake saw and answered, per request routed to the bulk handler
/// (including those refused as a whole).
#[derive(Clone, Debug)]
pub struct BulkRequestInfo {
    pub method: String,
    /// The request target as received (prefix and query included).
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub authorization: Option<String>,
    /// Body bytes on the wire, and after `Content-Encoding` was undone.
    pub wire_bytes: usize,
    pub body_bytes: usize,
    /// Actions parsed (0 when the request failed as a whole).
    pub actions: usize,
    /// Per item, in request order: `(op type, _index as answered, status)`.
    pub items: Vec<(String, String, u16)>,
    /// The same items with their `_id` and `error.type`.
    pub item_details: Vec<ItemInfo>,
    /// The answer's `errors`: some item has an `error`.
    pub errors: bool,
    /// The answer's body as sent (after `filter_path`, before gzip).
    pub response: String,
}

impl BulkRequestInfo {
    /// The item statuses, in order.
    pub fn item_statuses(&self) -> Vec<u16> {
        self.items.iter().map(|i| i.2).collect()
    }
}

/// One item of a bulk answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemInfo {
    /// The key it was answered under: `index`, `create`, `delete`, `update`.
    pub op: String,
    /// `_index` as answered (a data stream's backing index on success).
    pub index: String,
    /// `_id` as answered (`None` when ES answers `null`).
    pub id: Option<String>,
    pub status: u16,
    /// `error.type`, when the item failed.
    pub error_type: Option<String>,
}

/// Every HTTP request, whatever its path.
#[derive(Clone, Debug)]
pub struct HttpRequestInfo {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub authorization: Option<String>,
}

/// The fake. Stops (and frees its port) when dropped.
pub struct FakeEs {
    /// `127.0.0.1:PORT`
    pub addr: String,
    shared: Arc<Shared>,
    server: Server,
}

impl FakeEs {
    /// ES 8 defaults, security off, on 127.0.0.1 and a free port.
    pub fn start() -> FakeEs {
        FakeEs::with_config(EsConfig::default())
    }

    pub fn with_config(mut cfg: EsConfig) -> FakeEs {
        while cfg.path_prefix.ends_with('/') {
            cfg.path_prefix.pop();
        }
        if !cfg.path_prefix.is_empty() && !cfg.path_prefix.starts_with('/') {
            cfg.path_prefix.insert(0, '/');
        }
        let max_body = cfg.max_content_length;
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            rng: RandomState::new(),
            seq: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let server = Server::start(
            http_server::Options {
                name: "fake es",
                max_body,
                deliver_too_large: true,
                lowercase_framing: true,
                malformed: |e| {
                    Response::text(400, "text/plain", &format!("malformed HTTP request: {e}"))
                },
            },
            Arc::new(move |req: &Request| serve(&s, req)),
        );
        FakeEs {
            addr: server.addr(),
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT` + `path_prefix`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.cfg.path_prefix)
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn config(&self) -> &EsConfig {
        &self.shared.cfg
    }

    /// Refuses connections for `d`: the listening socket is closed (new
    /// connections are refused), open connections are cut (a request being
    /// answered gets no answer, though its writes are kept), and after `d`
    /// the same port is bound again. Returns once the socket is closed.
    /// Called again during an outage, it extends it.
    pub fn down_for(&self, d: Duration) {
        self.server.down_for(d);
    }

    /// Whether the fake is in an outage.
    pub fn is_down(&self) -> bool {
        self.server.is_down()
    }

    /// The next `n` bulk requests (that pass authentication) are answered
    /// `status` as a whole and nothing of them is stored: 429
    /// `es_rejected_execution_exception`, 503 `cluster_block_exception`,
    /// 401/403 `security_exception`, 502/504 a proxy's HTML page, other
    /// statuses an ES error of type `exception`.
    pub fn reject_requests(&self, n: usize, status: u16) {
        let mut st = lock(&self.shared.state);
        st.reject_requests = n;
        st.reject_status = status;
    }

    /// In each of the next `n_times` bulk requests that reach item
    /// processing, items number k, 2k, 3k… (1-based, counted within the
    /// request) get a per-item 429 `es_rejected_execution_exception` and are
    /// not stored; the other items are processed normally. 0 turns it off.
    pub fn reject_items(&self, every_kth: usize, n_times: usize) {
        let mut st = lock(&self.shared.state);
        st.reject_items_every = every_kth;
        st.reject_items_left = n_times;
    }

    /// From now on, a document whose field `field` (dotted path) holds a
    /// string is refused with 400 `document_parsing_exception` as if the
    /// field were mapped `long` (in every index, ignore_malformed or not).
    pub fn conflict_field(&self, field: &str) {
        lock(&self.shared.state)
            .conflict_fields
            .insert(field.to_string());
    }

    pub fn clear_conflict_fields(&self) {
        lock(&self.shared.state).conflict_fields.clear();
    }

    /// Delays every answer by `d`, after the request was processed (writes
    /// are kept, as when a client times out on an ES that did the work).
    pub fn slow(&self, d: Duration) {
        lock(&self.shared.state).slow = d;
    }

    /// The documents of an index or data stream (by its name or its
    /// backing index's), `(_id, _source)` in insertion order.
    pub fn docs(&self, index_or_stream: &str) -> Vec<(String, Value)> {
        let st = lock(&self.shared.state);
        st.find(index_or_stream)
            .map(|ix| {
                ix.docs
                    .iter()
                    .map(|d| (d.id.clone(), d.source.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The raw `_source` texts, as sent.
    pub fn raw_docs(&self, index_or_stream: &str) -> Vec<(String, String)> {
        let st = lock(&self.shared.state);
        st.find(index_or_stream)
            .map(|ix| {
                ix.docs
                    .iter()
                    .map(|d| (d.id.clone(), d.raw.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Documents in every index or data stream matching `target` (a name, a
    /// `*` pattern, or a comma list of them); 0 when none matches.
    pub fn doc_count(&self, target: &str) -> usize {
        let st = lock(&self.shared.state);
        resolve(&st, target, true)
            .map(|v| v.iter().map(|ix| ix.docs.len()).sum())
            .unwrap_or(0)
    }

    /// Names of the plain indices and data streams (not backing indices),
    /// sorted.
    pub fn indices(&self) -> Vec<String> {
        lock(&self.shared.state).indices.keys().cloned().collect()
    }

    pub fn data_streams(&self) -> Vec<String> {
        let st = lock(&self.shared.state);
        st.indices
            .values()
            .filter(|i| i.data_stream)
            .map(|i| i.name.clone())
            .collect()
    }

    /// The dynamic mapping the fake keeps: dotted path → ES type name.
    pub fn mapping(&self, index_or_stream: &str) -> BTreeMap<String, String> {
        let st = lock(&self.shared.state);
        st.find(index_or_stream)
            .map(|ix| {
                ix.mapping
                    .iter()
                    .map(|(k, v)| (k.clone(), v.name().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every bulk request so far, in arrival order.
    pub fn requests(&self) -> Vec<BulkRequestInfo> {
        lock(&self.shared.state).requests.clone()
    }

    /// Every HTTP request so far, in arrival order.
    pub fn http_requests(&self) -> Vec<HttpRequestInfo> {
        lock(&self.shared.state).http.clone()
    }

    /// Waits until `target` holds at least `n` documents; false on timeout.
    pub fn wait_for_docs(&self, target: &str, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| {
            resolve(st, target, true)
                .map(|v| v.iter().map(|ix| ix.docs.len()).sum::<usize>())
                .unwrap_or(0)
                >= n
        })
    }

    /// Waits until at least `n` bulk requests were answered; false on
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

/// Standard base64 with padding (for `Authorization` headers).
pub fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Gzips `data` (for tests sending `Content-Encoding: gzip`).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

// ---------------------------------------------------------------------------
// State

struct Shared {
    cfg: EsConfig,
    state: Mutex<State>,
    changed: Condvar,
    rng: RandomState,
    seq: AtomicU64,
}

impl Shared {
    fn random(&self) -> u64 {
        let mut h = self.rng.build_hasher();
        h.write_u64(self.seq.fetch_add(1, Ordering::Relaxed));
        h.write_u128(now_ns());
        h.finish()
    }

    /// An ES-like auto-generated id: 20 URL-safe base64 characters (time,
    /// sequence, randomness).
    fn new_id(&self) -> String {
        let millis = (now_ns() / 1_000_000) as u64;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let r = self.random();
        let mut b = Vec::with_capacity(15);
        b.extend_from_slice(&millis.to_be_bytes()[2..]);
        b.extend_from_slice(&seq.to_be_bytes()[5..]);
        b.extend_from_slice(&r.to_be_bytes()[2..]);
        base64_encode(&b).replace('+', "-").replace('/', "_")
    }

    fn new_uuid(&self) -> String {
        let mut b = self.random().to_be_bytes().to_vec();
        b.extend_from_slice(&self.random().to_be_bytes());
        base64_encode(&b)
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_string()
    }
}

#[derive(Default)]
struct State {
    /// By index or data stream name.
    indices: BTreeMap<String, Idx>,
    reject_requests: usize,
    reject_status: u16,
    reject_items_every: usize,
    reject_items_left: usize,
    conflict_fields: BTreeSet<String>,
    slow: Duration,
    requests: Vec<BulkRequestInfo>,
    http: Vec<HttpRequestInfo>,
}

impl State {
    fn find(&self, name: &str) -> Option<&Idx> {
        self.indices
            .get(name)
            .or_else(|| self.indices.values().find(|i| i.concrete == name))
    }
}

struct Idx {
    /// Index or data stream name.
    name: String,
    data_stream: bool,
    /// The index documents live in: the name, or the backing index.
    concrete: String,
    uuid: String,
    docs: Vec<Doc>,
    pos: HashMap<String, usize>,
    /// Last version per id, deleted ones included (ES keeps tombstones).
    versions: HashMap<String, u64>,
    next_seq_no: u64,
    mapping: BTreeMap<String, FType>,
}

impl Idx {
    fn reindex_positions(&mut self) {
        self.pos = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
    }

    fn field_count(&self) -> usize {
        self.mapping.values().map(|t| t.weight()).sum()
    }
}

struct Doc {
    id: String,
    raw: String,
    source: Value,
    version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FType {
    Object,
    Text,
    Keyword,
    Long,
    Float,
    Boolean,
    Date,
}

impl FType {
    fn name(self) -> &'static str {
        match self {
            FType::Object => "object",
            FType::Text => "text",
            FType::Keyword => "keyword",
            FType::Long => "long",
            FType::Float => "float",
            FType::Boolean => "boolean",
            FType::Date => "date",
        }
    }

    /// Fields it counts for `total_fields.limit` (`text` has `.keyword`).
    fn weight(self) -> usize {
        if self == FType::Text { 2 } else { 1 }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// HTTP

/// This fake's answers, on the shared server's [`Response`].
trait EsAnswers {
    fn json(status: u16, body: String) -> Response;
    fn text(status: u16, ctype: &str, body: &str) -> Response;
    fn es_error(status: u16, e: &EsErr) -> Response;
    fn simple_error(status: u16, msg: &str) -> Response;
}

impl EsAnswers for Response {
    fn json(status: u16, body: String) -> Response {
        Response::text(status, "application/json", &body)
    }

    fn text(status: u16, ctype: &str, body: &str) -> Response {
        let mut r = Response::empty(status);
        r.headers = vec![("content-type".into(), ctype.into())];
        r.body = body.as_bytes().to_vec();
        r
    }

    /// `{"error":{"root_cause":[…],…},"status":N}`
    fn es_error(status: u16, e: &EsErr) -> Response {
        Response::json(status, e.whole(status))
    }

    /// `RestResponse.createSimpleErrorResponse`: `{"error":"…","status":N}`
    fn simple_error(status: u16, msg: &str) -> Response {
        Response::json(
            status,
            Obj::new().s("error", msg).n("status", status).build(),
        )
    }
}

/// One request: answered (413 when over `http.max_content_length`),
/// recorded, delayed as configured, gzipped when the client accepts it.
fn serve(sh: &Shared, req: &Request) -> Response {
    let mut resp = if req.too_large {
        let mut r = Response::empty(413);
        r.close = true;
        if req.path.ends_with("/_bulk") {
            record_bulk(sh, req, &r, 0, 0, Vec::new());
        }
        r
    } else {
        handle(sh, req)
    };
    {
        let mut st = lock(&sh.state);
        st.http.push(HttpRequestInfo {
            method: req.method.clone(),
            path: req.target.clone(),
            status: resp.status,
            authorization: req.header("authorization").map(str::to_string),
        });
    }
    sh.changed.notify_all();
    let delay = lock(&sh.state).slow;
    if !delay.is_zero() {
        thread::sleep(delay);
    }
    let gz = sh.cfg.compress_responses
        && !resp.body.is_empty()
        && req.header("accept-encoding").is_some_and(|v| {
            v.split(',').any(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("gzip")
            })
        });
    if gz {
        resp.body = gzip(&resp.body);
        resp.headers
            .push(("content-encoding".into(), "gzip".into()));
    }
    // As the official clients check; written first.
    resp.headers
        .insert(0, ("X-elastic-product".into(), "Elasticsearch".into()));
    resp
}

// ---------------------------------------------------------------------------
// Routing, authentication

fn handle(sh: &Shared, req: &Request) -> Response {
    let prefix = sh.cfg.path_prefix.as_str();
    let rest = match req.path.strip_prefix(prefix) {
        Some(r) if r.is_empty() || r.starts_with('/') => {
            if r.is_empty() {
                "/"
            } else {
                r
            }
        }
        _ => {
            return Response::text(
                404,
                "text/plain",
                &format!("404 page not found (outside {prefix})\n"),
            );
        }
    };
    // ES sees the path the proxy forwards (prefix stripped), query kept.
    let uri = match req.target.split_once('?') {
        Some((_, q)) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is_bulk = segs.last() == Some(&"_bulk") && segs.len() <= 2;

    if let Err(resp) = authenticate(sh, req, &uri) {
        if is_bulk {
            record_bulk(sh, req, &resp, 0, 0, Vec::new());
        }
        return resp;
    }

    let m = req.method.as_str();
    let bad_method = |allowed: &str| {
        Response::simple_error(
            405,
            &format!(
                "Incorrect HTTP method for uri [{uri}] and method [{m}], allowed: [{allowed}]"
            ),
        )
    };
    match segs.as_slice() {
        [] => match m {
            "GET" | "HEAD" => Response::json(200, cluster_info(sh)),
            _ => bad_method("HEAD, GET"),
        },
        ["_bulk"] | [_, "_bulk"] => {
            if m != "POST" && m != "PUT" {
                let resp = bad_method("POST, PUT");
                record_bulk(sh, req, &resp, 0, 0, Vec::new());
                return resp;
            }
            let default_index = if segs.len() == 2 {
                Some(segs[0].to_string())
            } else {
                None
            };
            bulk(sh, req, rest, default_index)
        }
        [target] if !target.starts_with('_') && m == "HEAD" => {
            let st = lock(&sh.state);
            match resolve(&st, target, false) {
                Ok(v) if !v.is_empty() => Response::empty(200),
                _ => Response::empty(404),
            }
        }
        _ => Response::simple_error(
            400,
            &format!("no handler found for uri [{uri}] and method [{m}]"),
        ),
    }
}

fn cluster_info(sh: &Shared) -> String {
    let version = Obj::new()
        .s("number", &sh.cfg.version)
        .s("build_flavor", "default")
        .s("build_type", "docker")
        .s("build_hash", "09df99393193b2c53d92899662a8b8b3c55b45cd")
        .s("build_date", "2024-03-22T03:35:46.757803203Z")
        .n("build_snapshot", false)
        .s("lucene_version", "9.10.0")
        .s("minimum_wire_compatibility_version", "7.17.0")
        .s("minimum_index_compatibility_version", "7.0.0");
    Obj::new()
        .s("name", "fake-es")
        .s("cluster_name", "fake-es")
        .s("cluster_uuid", "fAkEeLaStIcSeArCh0000w")
        .raw("version", version.build())
        .s("tagline", "You Know, for Search")
        .build()
}

fn authenticate(sh: &Shared, req: &Request, uri: &str) -> Result<(), Response> {
    let creds = &sh.cfg.credentials;
    if creds.is_empty() {
        return Ok(());
    }
    let challenge = [
        r#"Basic realm="security", charset="UTF-8""#,
        r#"Bearer realm="security""#,
        "ApiKey",
    ];
    let fail = |reason: String| {
        let header = Obj::new().raw(
            "WWW-Authenticate",
            json_array(challenge.iter().map(|c| jstr(c))),
        );
        let e = EsErr::new("security_exception", &reason).extra("header", header.build());
        let mut resp = Response::es_error(401, &e);
        for c in challenge {
            resp.headers.push(("WWW-Authenticate".into(), c.into()));
        }
        Err(resp)
    };
    let Some(auth) = req.header("authorization") else {
        return fail(format!(
            "missing authentication credentials for REST request [{uri}]"
        ));
    };
    let auth = auth.trim();
    let (scheme, value) = auth.split_once(' ').unwrap_or((auth, ""));
    let value = value.trim();
    let generic = "unable to authenticate with provided credentials and anonymous access is not allowed for this request";
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(value).and_then(|b| String::from_utf8(b).ok());
        let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return fail(generic.to_string());
        };
        let ok = creds.iter().any(
            |c| matches!(c, Credential::Basic { user: u, password: p } if u == user && p == pass),
        );
        if ok {
            return Ok(());
        }
        return fail(format!(
            "unable to authenticate user [{user}] for REST request [{uri}]"
        ));
    }
    if scheme.eq_ignore_ascii_case("apikey") {
        let decoded = base64_decode(value).and_then(|b| String::from_utf8(b).ok());
        if let Some((id, key)) = decoded.as_deref().and_then(|d| d.split_once(':'))
            && creds
                .iter()
                .any(|c| matches!(c, Credential::ApiKey { id: i, key: k } if i == id && k == key))
        {
            return Ok(());
        }
        return fail(generic.to_string());
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        if creds
            .iter()
            .any(|c| matches!(c, Credential::Bearer(t) if t == value))
        {
            return Ok(());
        }
        return fail(generic.to_string());
    }
    fail(format!(
        "missing authentication credentials for REST request [{uri}]"
    ))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Errors and JSON output

/// An ES exception: `{"type","reason",…extra,"caused_by"}`.
#[derive(Clone, Debug)]
struct EsErr {
    typ: String,
    reason: String,
    extra: Vec<(String, String)>,
    caused_by: Option<Box<EsErr>>,
}

impl EsErr {
    fn new(typ: &str, reason: &str) -> EsErr {
        EsErr {
            typ: typ.into(),
            reason: reason.into(),
            extra: Vec::new(),
            caused_by: None,
        }
    }

    fn illegal(reason: &str) -> EsErr {
        EsErr::new("illegal_argument_exception", reason)
    }

    fn extra(mut self, k: &str, raw_json: String) -> EsErr {
        self.extra.push((k.into(), raw_json));
        self
    }

    fn caused_by(mut self, c: EsErr) -> EsErr {
        self.caused_by = Some(Box::new(c));
        self
    }

    fn obj(&self, with_cause: bool) -> Obj {
        let mut o = Obj::new().s("type", &self.typ).s("reason", &self.reason);
        for (k, v) in &self.extra {
            o = o.raw(k, v.clone());
        }
        if with_cause && let Some(c) = &self.caused_by {
            o = o.raw("caused_by", c.obj(true).build());
        }
        o
    }

    fn json(&self) -> String {
        self.obj(true).build()
    }

    /// The whole-request body: `{"error":{"root_cause":[…],…},"status":N}`.
    fn whole(&self, status: u16) -> String {
        let mut err = Obj::new().raw("root_cause", format!("[{}]", self.obj(false).build()));
        for (k, v) in self.obj(true).0 {
            err = err.raw(&k, v);
        }
        Obj::new()
            .raw("error", err.build())
            .n("status", status)
            .build()
    }
}

/// A JSON object with keys in insertion order (serde_json's map sorts).
struct Obj(Vec<(String, String)>);

impl Obj {
    fn new() -> Obj {
        Obj(Vec::new())
    }

    fn s(mut self, k: &str, v: &str) -> Obj {
        self.0.push((k.into(), jstr(v)));
        self
    }

    fn opt_s(mut self, k: &str, v: Option<&str>) -> Obj {
        self.0
            .push((k.into(), v.map_or_else(|| "null".to_string(), jstr)));
        self
    }

    fn n(mut self, k: &str, v: impl std::fmt::Display) -> Obj {
        self.0.push((k.into(), v.to_string()));
        self
    }

    fn raw(mut self, k: &str, v: String) -> Obj {
        self.0.push((k.into(), v));
        self
    }

    fn build(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&jstr(k));
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }
}

fn jstr(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

fn json_array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

fn shards_json(total: usize, successful: usize) -> String {
    Obj::new()
        .n("total", total)
        .n("successful", successful)
        .n("failed", 0)
        .build()
}

/// ES's `filter_path`: comma-separated dotted paths, `*` within a name, `**`
/// for any depth; arrays are transparent; empty objects and arrays drop.
fn filter_path(v: &Value, spec: &str) -> Value {
    let pats: Vec<Vec<&str>> = spec
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split('.').collect())
        .collect();
    let refs: Vec<&[&str]> = pats.iter().map(Vec::as_slice).collect();
    filter_value(v, &refs).unwrap_or_else(|| Value::Object(serde_json::Map::new()))
}

fn filter_value(v: &Value, pats: &[&[&str]]) -> Option<Value> {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, child) in map {
                let mut next: Vec<&[&str]> = Vec::new();
                let mut whole = false;
                for p in pats {
                    if p[0] == "**" {
                        next.push(p);
                        if p.len() == 1 {
                            whole = true;
                        } else if glob(p[1], k) {
                            if p.len() == 2 {
                                whole = true
                            } else {
                                next.push(&p[2..])
                            }
                        }
                    } else if glob(p[0], k) {
                        if p.len() == 1 {
                            whole = true
                        } else {
                            next.push(&p[1..])
                        }
                    }
                }
                if whole {
                    out.insert(k.clone(), child.clone());
                } else if !next.is_empty()
                    && let Some(f) = filter_value(child, &next)
                {
                    out.insert(k.clone(), f);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let out: Vec<Value> = items.iter().filter_map(|i| filter_value(i, pats)).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => None,
    }
}

/// ES's `Regex.simpleMatch`: `*` matches any run, including an empty one.
fn glob(pattern: &str, s: &str) -> bool {
    let p = pattern.as_bytes();
    let t = s.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

// ---------------------------------------------------------------------------
// Bulk

const BULK_PARAMS: &[&str] = &[
    "pipeline",
    "routing",
    "timeout",
    "refresh",
    "wait_for_active_shards",
    "_source",
    "_source_includes",
    "_source_excludes",
    "require_alias",
    "require_data_stream",
    "list_executed_pipelines",
    "include_source_on_error",
    "filter_path",
    "pretty",
    "human",
    "error_trace",
    "format",
];

fn record_bulk(
    sh: &Shared,
    req: &Request,
    resp: &Response,
    body_bytes: usize,
    actions: usize,
    items: Vec<ItemInfo>,
) {
    let info = BulkRequestInfo {
        method: req.method.clone(),
        path: req.target.clone(),
        status: resp.status,
        content_type: req.header("content-type").map(str::to_string),
        content_encoding: req.header("content-encoding").map(str::to_string),
        authorization: req.header("authorization").map(str::to_string),
        wire_bytes: req.body.len(),
        body_bytes,
        actions,
        errors: items.iter().any(|i| i.error_type.is_some()),
        items: items
            .iter()
            .map(|i| (i.op.clone(), i.index.clone(), i.status))
            .collect(),
        item_details: items,
        response: String::from_utf8_lossy(&resp.body).into_owned(),
    };
    lock(&sh.state).requests.push(info);
    sh.changed.notify_all();
}

/// `Content-Type` → whether ES accepts it for a bulk body.
fn bulk_media_type_ok(ct: &str) -> bool {
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let vendor = match essence.as_str() {
        "application/json" | "application/x-ndjson" => false,
        "application/vnd.elasticsearch+json" | "application/vnd.elasticsearch+x-ndjson" => true,
        _ => return false,
    };
    let mut compat = false;
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            if p.trim().is_empty() {
                continue;
            }
            return false;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "charset" if v.eq_ignore_ascii_case("utf-8") => {}
            "compatible-with" if vendor && (v == "7" || v == "8") => compat = true,
            _ => return false,
        }
    }
    !vendor || compat
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Index,
    Create,
    Delete,
    Update,
    /// An action ES 8 accepts and ignores.
    Unknown,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Index => "index",
            Op::Create => "create",
            Op::Delete => "delete",
            Op::Update => "update",
            Op::Unknown => "unknown",
        }
    }
}

struct BulkItem {
    op: Op,
    index: Option<String>,
    id: Option<String>,
    pipeline: Option<String>,
    source: Vec<u8>,
}

fn bulk(sh: &Shared, req: &Request, rest: &str, default_index: Option<String>) -> Response {
    let started = Instant::now();
    let finish = |resp: Response, body_bytes: usize, actions: usize, items: Vec<ItemInfo>| {
        record_bulk(sh, req, &resp, body_bytes, actions, items);
        resp
    };
    // Query parameters.
    for (k, v) in &req.params {
        if !BULK_PARAMS.contains(&k.as_str()) {
            let e = EsErr::illegal(&format!(
                "request [{rest}] contains unrecognized parameter: [{k}]"
            ));
            return finish(Response::es_error(400, &e), 0, 0, Vec::new());
        }
        if k == "refresh" && !["", "true", "false", "wait_for"].contains(&v.as_str()) {
            let e = EsErr::illegal(&format!("Unknown value for refresh: [{v}]."));
            return finish(Response::es_error(400, &e), 0, 0, Vec::new());
        }
    }
    // Content type, then body presence.
    if !req.body.is_empty() {
        let resp = match req.header("content-type") {
            None => Some(Response::simple_error(
                406,
                "Content-Type header is missing",
            )),
            Some(ct) if !bulk_media_type_ok(ct) => Some(Response::simple_error(
                406,
                &format!("Content-Type header [{ct}] is not supported"),
            )),
            _ => None,
        };
        if let Some(resp) = resp {
            return finish(resp, 0, 0, Vec::new());
        }
    } else {
        let e = EsErr::new("parse_exception", "request body is required");
        return finish(Response::es_error(400, &e), 0, 0, Vec::new());
    }
    // Controlled whole-request rejection.
    {
        let mut st = lock(&sh.state);
        if st.reject_requests > 0 {
            st.reject_requests -= 1;
            let status = st.reject_status;
            drop(st);
            return finish(whole_rejection(status), 0, 0, Vec::new());
        }
    }
    // Content-Encoding.
    let body = match decode_body(req) {
        Ok(b) => b,
        Err(msg) => {
            let e = EsErr::new("parse_exception", &msg);
            return finish(Response::es_error(400, &e), 0, 0, Vec::new());
        }
    };
    let body_bytes = body.len();
    let items = match parse_bulk(&body, default_index.as_deref(), sh.cfg.strict_action_lines) {
        Ok(items) => items,
        Err(e) => return finish(Response::es_error(400, &e), body_bytes, 0, Vec::new()),
    };
    if let Some(e) = validate_bulk(&items) {
        return finish(
            Response::es_error(400, &e),
            body_bytes,
            items.len(),
            Vec::new(),
        );
    }
    let default_pipeline = req.param("pipeline").map(str::to_string);

    let mut st = lock(&sh.state);
    let reject_every = if st.reject_items_left > 0 && st.reject_items_every > 0 {
        st.reject_items_left -= 1;
        st.reject_items_every
    } else {
        0
    };
    let mut out_items = Vec::with_capacity(items.len());
    let mut summary = Vec::with_capacity(items.len());
    for (pos, item) in items.iter().enumerate() {
        let rejected = reject_every > 0 && (pos + 1) % reject_every == 0;
        let pipeline = item.pipeline.clone().or_else(|| default_pipeline.clone());
        let out = process_item(sh, &mut st, item, pipeline.as_deref(), rejected);
        out_items.push(format!("{{{}:{}}}", jstr(out.info.op.as_str()), out.body));
        summary.push(out.info);
    }
    drop(st);
    sh.changed.notify_all();
    let errors = summary.iter().any(|s| s.error_type.is_some());
    let took = started.elapsed().as_millis();
    let mut body = Obj::new()
        .n("took", took)
        .n("errors", errors)
        .raw("items", json_array(out_items))
        .build();
    if let Some(fp) = req.param("filter_path") {
        let v: Value = serde_json::from_str(&body).expect("own json");
        body = filter_path(&v, fp).to_string();
    }
    finish(Response::json(200, body), body_bytes, items.len(), summary)
}

fn whole_rejection(status: u16) -> Response {
    match status {
        429 => Response::es_error(
            429,
            &EsErr::new(
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation [coordinating_and_primary_bytes=107374182, \
                 replica_bytes=0, all_bytes=107374182, coordinating_operation_bytes=3214, \
                 max_coordinating_and_primary_bytes=107374182]",
            ),
        ),
        503 => Response::es_error(
            503,
            &EsErr::new(
                "cluster_block_exception",
                "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
            ),
        ),
        401 => Response::es_error(
            401,
            &EsErr::new(
                "security_exception",
                "unable to authenticate user [elastic] for REST request [/_bulk]",
            ),
        ),
        403 => Response::es_error(
            403,
            &EsErr::new(
                "security_exception",
                "action [indices:data/write/bulk] is unauthorized for user [weir] with effective roles [viewer], \
                 this action is granted by the cluster privileges [all]",
            ),
        ),
        502 | 504 => Response::text(
            status,
            "text/html",
            &format!(
                "<html>\r\n<head><title>{status} {r}</title></head>\r\n<body>\r\n<center><h1>{status} {r}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                r = http_server::reason(status)
            ),
        ),
        413 => Response::empty(413),
        _ => Response::es_error(
            status,
            &EsErr::new("exception", "fake es: injected failure"),
        ),
    }
}

fn decode_body(req: &Request) -> Result<Vec<u8>, String> {
    let Some(enc) = req.header("content-encoding") else {
        return Ok(req.body.clone());
    };
    let mut out = Vec::new();
    match enc.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&req.body[..])
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| format!("failed to decompress gzip request body: {e}")),
        "deflate" | "x-deflate" => flate2::read::ZlibDecoder::new(&req.body[..])
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| format!("failed to decompress deflate request body: {e}")),
        // Netty's decompressor passes other codings through.
        _ => Ok(req.body.clone()),
    }
}

fn token_name(first: u8) -> &'static str {
    match first {
        b'{' => "START_OBJECT",
        b'[' => "START_ARRAY",
        b'"' => "VALUE_STRING",
        b't' | b'f' => "VALUE_BOOLEAN",
        b'n' => "VALUE_NULL",
        b'-' | b'0'..=b'9' => "VALUE_NUMBER",
        b'}' => "END_OBJECT",
        b']' => "END_ARRAY",
        _ => "VALUE_EMBEDDED_OBJECT",
    }
}

fn node_token(n: &Node) -> &'static str {
    match n {
        Node::Obj(_) => "START_OBJECT",
        Node::Arr(_) => "START_ARRAY",
        Node::Str(_) => "VALUE_STRING",
        Node::Num(_) => "VALUE_NUMBER",
        Node::Bool(_) => "VALUE_BOOLEAN",
        Node::Null => "VALUE_NULL",
    }
}

fn syntax_error(slice: &[u8], e: &serde_json::Error) -> EsErr {
    let col = char_column(slice, e.column().saturating_sub(1));
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    EsErr::new(
        "x_content_parse_exception",
        &format!("[{}:{}] {msg}", e.line().max(1), col),
    )
}

/// 1-based character column of byte offset `off` in a one-line `slice`.
fn char_column(slice: &[u8], off: usize) -> usize {
    let off = off.min(slice.len());
    String::from_utf8_lossy(&slice[..off]).chars().count() + 1
}

/// `BulkRequestParser.parse`, non-incremental.
/// `strict`: ES 9's refusal of unknown actions, extra keys, trailing data
/// and a missing closing brace on action lines; ES 8 lets them pass (since
/// 8.16 with a deprecation warning) and ignores an unknown action's item.
fn parse_bulk(
    data: &[u8],
    default_index: Option<&str>,
    strict: bool,
) -> Result<Vec<BulkItem>, EsErr> {
    let newline_error = || EsErr::illegal("The bulk request must be terminated by a newline [\\n]");
    let find = |from: usize| {
        data[from..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| p + from)
    };
    let mut items = Vec::new();
    let mut from = 0;
    let mut line = 0usize;
    loop {
        let Some(next) = find(from) else {
            if from != data.len() {
                return Err(newline_error());
            }
            break;
        };
        line += 1;
        let slice = &data[from..next];
        from = next + 1;
        let Some(first) = slice.iter().copied().find(|b| !b.is_ascii_whitespace()) else {
            continue;
        };
        if first != b'{' {
            if let Err(e) = first_value_end(slice) {
                return Err(syntax_error(slice, &e));
            }
            return Err(EsErr::illegal(&format!(
                "Malformed action/metadata line [{line}], expected START_OBJECT but found [{}]",
                token_name(first)
            )));
        }
        let patched: Vec<u8>;
        let (text, end) = match first_value_end(slice) {
            Ok(end) => (slice, end),
            // ES 8 never reads the action line's final `}`.
            Err(e) if !strict && e.is_eof() => {
                patched = [slice, b"}"].concat();
                match first_value_end(&patched) {
                    Ok(end) => (&patched[..], end),
                    Err(_) => return Err(syntax_error(slice, &e)),
                }
            }
            Err(e) => return Err(syntax_error(slice, &e)),
        };
        let node = match Scanner::new(&text[..end]).parse() {
            Ok(n) => n,
            Err((off, msg)) => {
                return Err(EsErr::new(
                    "x_content_parse_exception",
                    &format!("[1:{}] {msg}", char_column(slice, off)),
                ));
            }
        };
        let Node::Obj(members) = node else {
            unreachable!("starts with an object")
        };
        let Some(action) = members.first() else {
            return Err(EsErr::illegal(&format!(
                "Malformed action/metadata line [{line}], expected FIELD_NAME but found [END_OBJECT]"
            )));
        };
        let mut op = match action.key.as_str() {
            "index" => Op::Index,
            "create" => Op::Create,
            "delete" => Op::Delete,
            "update" => Op::Update,
            _ if !strict => Op::Unknown,
            other => {
                return Err(EsErr::illegal(&format!(
                    "Malformed action/metadata line [{line}], expected field [create], [delete], [index] or [update] but found [{other}]"
                )));
            }
        };
        let mut index = default_index.map(str::to_string);
        let mut id = None;
        let mut pipeline = None;
        match &action.val {
            Node::Obj(params) => {
                for p in params {
                    let text = match &p.val {
                        Node::Str(s) => s.clone(),
                        Node::Num(n) => n.clone(),
                        Node::Bool(b) => b.to_string(),
                        Node::Null => continue,
                        Node::Obj(_) if p.key == "dynamic_templates" || p.key == "_source" => {
                            continue;
                        }
                        other => {
                            return Err(EsErr::illegal(&format!(
                                "Malformed action/metadata line [{line}], expected a simple value for field [{}] but found [{}]",
                                p.key,
                                node_token(other)
                            )));
                        }
                    };
                    match p.key.as_str() {
                        "_index" => index = Some(text),
                        "_id" => id = Some(text),
                        "pipeline" => pipeline = Some(text),
                        "op_type" => {
                            if op == Op::Index {
                                op = match text.as_str() {
                                    "create" => Op::Create,
                                    "index" => Op::Index,
                                    _ => {
                                        return Err(EsErr::illegal(&format!(
                                            "opType must be 'create' or 'index', found: [{text}]"
                                        )));
                                    }
                                };
                            }
                        }
                        "routing"
                        | "version"
                        | "version_type"
                        | "if_seq_no"
                        | "if_primary_term"
                        | "retry_on_conflict"
                        | "require_alias"
                        | "require_data_stream"
                        | "list_executed_pipelines"
                        | "_source" => {}
                        _ => {
                            return Err(EsErr::illegal(&format!(
                                "Action/metadata line [{line}] contains an unknown parameter [{}]",
                                p.key
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(EsErr::illegal(&format!(
                    "Malformed action/metadata line [{line}], expected START_OBJECT or END_OBJECT but found [{}]",
                    node_token(other)
                )));
            }
        }
        if strict && members.len() > 1 {
            return Err(EsErr::illegal(&format!(
                "Malformed action/metadata line [{line}], expected END_OBJECT but found [FIELD_NAME]"
            )));
        }
        if strict && !text[end..].iter().all(u8::is_ascii_whitespace) {
            return Err(EsErr::illegal(&format!(
                "Malformed action/metadata line [{line}], unexpected data after the closing brace"
            )));
        }
        if op == Op::Delete {
            items.push(BulkItem {
                op,
                index,
                id,
                pipeline,
                source: Vec::new(),
            });
            continue;
        }
        let Some(next) = find(from) else {
            if from != data.len() {
                return Err(newline_error());
            }
            // ES drops a trailing action that has no source line.
            break;
        };
        line += 1;
        let mut source = &data[from..next];
        if source.last() == Some(&b'\r') {
            source = &source[..source.len() - 1];
        }
        from = next + 1;
        if op == Op::Unknown {
            continue;
        }
        items.push(BulkItem {
            op,
            index,
            id,
            pipeline,
            source: source.to_vec(),
        });
    }
    Ok(items)
}

/// `BulkRequest.validate()`: every failure, numbered, in one exception.
fn validate_bulk(items: &[BulkItem]) -> Option<EsErr> {
    let mut errors = Vec::new();
    if items.is_empty() {
        errors.push("no requests added".to_string());
    }
    for it in items {
        if it.index.is_none() {
            errors.push("index is missing".into());
        }
        match (&it.id, it.op) {
            (None, Op::Delete | Op::Update) => errors.push("id is missing".into()),
            (Some(id), Op::Delete | Op::Update) if id.is_empty() => {
                errors.push("id is missing".into())
            }
            _ => {}
        }
        if let Some(id) = &it.id
            && id.len() > 512
        {
            errors.push(format!(
                "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
                id.len()
            ));
        }
    }
    if errors.is_empty() {
        return None;
    }
    let mut reason = String::from("Validation Failed: ");
    for (i, e) in errors.iter().enumerate() {
        let _ = write!(reason, "{}: {e};", i + 1);
    }
    Some(EsErr::new("action_request_validation_exception", &reason))
}

struct ItemOut {
    info: ItemInfo,
    body: String,
}

fn item_error(op: Op, index: &str, id: Option<&str>, status: u16, e: &EsErr) -> ItemOut {
    let body = Obj::new()
        .s("_index", index)
        .opt_s("_id", id)
        .n("status", status)
        .raw("error", e.json())
        .build();
    let info = ItemInfo {
        op: op.name().into(),
        index: index.into(),
        id: id.map(str::to_string),
        status,
        error_type: Some(e.typ.clone()),
    };
    ItemOut { info, body }
}

fn shard_error(e: EsErr, ix: &Idx) -> EsErr {
    e.extra("index_uuid", jstr(&ix.uuid))
        .extra("shard", jstr("0"))
        .extra("index", jstr(&ix.concrete))
}

fn item_ok(
    op: Op,
    ix: &Idx,
    id: &str,
    version: u64,
    result: &str,
    seq_no: u64,
    status: u16,
) -> ItemOut {
    let body = Obj::new()
        .s("_index", &ix.concrete)
        .s("_id", id)
        .n("_version", version)
        .s("result", result)
        .raw("_shards", shards_json(2, 1))
        .n("_seq_no", seq_no)
        .n("_primary_term", 1)
        .n("status", status)
        .build();
    let info = ItemInfo {
        op: op.name().into(),
        index: ix.concrete.clone(),
        id: Some(id.into()),
        status,
        error_type: None,
    };
    ItemOut { info, body }
}

fn process_item(
    sh: &Shared,
    st: &mut State,
    item: &BulkItem,
    pipeline: Option<&str>,
    rejected: bool,
) -> ItemOut {
    let name = item.index.as_deref().expect("validated");
    let op = item.op;
    let given_id = item.id.as_deref();
    if let Some(p) = pipeline
        && p != "_none"
    {
        let e = EsErr::illegal(&format!("pipeline with id [{p}] does not exist"));
        return item_error(op, name, given_id, 400, &e);
    }
    let key = if st.indices.contains_key(name) {
        Some(name.to_string())
    } else {
        st.indices
            .values()
            .find(|i| i.concrete == name)
            .map(|i| i.name.clone())
    };
    let key = match key {
        Some(k) => k,
        None => {
            if op == Op::Delete {
                let e = EsErr::new(
                    "index_not_found_exception",
                    &format!("no such index [{name}]"),
                )
                .extra("resource.type", jstr("index_expression"))
                .extra("resource.id", jstr(name))
                .extra("index_uuid", jstr("_na_"))
                .extra("index", jstr(name));
                return item_error(op, name, given_id, 404, &e);
            }
            let ds = sh.cfg.data_stream_patterns.iter().any(|p| glob(p, name));
            if let Err(e) = validate_name(name, ds) {
                return item_error(op, name, given_id, 400, &e);
            }
            st.indices.insert(name.to_string(), new_index(sh, name, ds));
            name.to_string()
        }
    };
    let conflict_fields = st.conflict_fields.clone();
    let ix = st.indices.get_mut(&key).expect("present");
    if ix.data_stream && op != Op::Create {
        let e =
            EsErr::illegal("only write ops with an op_type of create are allowed in data streams");
        return item_error(op, name, given_id, 400, &e);
    }
    let id = match given_id {
        Some(id) => id.to_string(),
        None => sh.new_id(),
    };
    if rejected {
        let e = EsErr::new(
            "es_rejected_execution_exception",
            "rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, \
             all_bytes=0, primary_operation_bytes=1024, max_coordinating_and_primary_bytes=107374182]",
        );
        return item_error(op, &ix.concrete, Some(&id), 429, &e);
    }
    if id.is_empty() {
        let e = EsErr::illegal("if _id is specified it must not be empty");
        return item_error(op, &ix.concrete, Some(&id), 400, &e);
    }
    match op {
        Op::Delete => {
            let seq_no = ix.next_seq_no;
            ix.next_seq_no += 1;
            let version = ix.versions.get(&id).copied().unwrap_or(0) + 1;
            if let Some(p) = ix.pos.get(&id).copied() {
                ix.docs.remove(p);
                ix.reindex_positions();
                ix.versions.insert(id.clone(), version);
                item_ok(op, ix, &id, version, "deleted", seq_no, 200)
            } else {
                item_ok(op, ix, &id, 1, "not_found", seq_no, 404)
            }
        }
        Op::Update | Op::Unknown => {
            let e = EsErr::illegal("fake es: the update action is not supported");
            item_error(op, &ix.concrete, Some(&id), 400, &e)
        }
        Op::Index | Op::Create => {
            if op == Op::Create
                && let Some(p) = ix.pos.get(&id)
            {
                let e = EsErr::new(
                    "version_conflict_engine_exception",
                    &format!(
                        "[{id}]: version conflict, document already exists (current version [{}])",
                        ix.docs[*p].version
                    ),
                );
                let e = shard_error(e, ix);
                return item_error(op, &ix.concrete, Some(&id), 409, &e);
            }
            let parsed = parse_document(&sh.cfg, ix, &item.source, &id, &conflict_fields);
            let (raw, source, mapping) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    let e = shard_error(e, ix);
                    return item_error(op, &ix.concrete, Some(&id), 400, &e);
                }
            };
            ix.mapping = mapping;
            let seq_no = ix.next_seq_no;
            ix.next_seq_no += 1;
            let version = ix.versions.get(&id).copied().unwrap_or(0) + 1;
            ix.versions.insert(id.clone(), version);
            let doc = Doc {
                id: id.clone(),
                raw,
                source,
                version,
            };
            if let Some(p) = ix.pos.get(&id).copied() {
                ix.docs[p] = doc;
                item_ok(op, ix, &id, version, "updated", seq_no, 200)
            } else {
                ix.pos.insert(id.clone(), ix.docs.len());
                ix.docs.push(doc);
                item_ok(op, ix, &id, version, "created", seq_no, 201)
            }
        }
    }
}

fn new_index(sh: &Shared, name: &str, ds: bool) -> Idx {
    let mut mapping = BTreeMap::new();
    let concrete = if ds {
        mapping.insert("@timestamp".to_string(), FType::Date);
        mapping.insert("data_stream".to_string(), FType::Object);
        for f in ["type", "dataset", "namespace"] {
            mapping.insert(format!("data_stream.{f}"), FType::Keyword);
        }
        let (y, m, d) = civil_from_days((now_ns() / 86_400_000_000_000) as i64);
        format!(".ds-{name}-{y:04}.{m:02}.{d:02}-000001")
    } else {
        name.to_string()
    };
    Idx {
        name: name.to_string(),
        data_stream: ds,
        concrete,
        uuid: sh.new_uuid(),
        docs: Vec::new(),
        pos: HashMap::new(),
        versions: HashMap::new(),
        next_seq_no: 0,
        mapping,
    }
}

/// `MetadataCreateIndexService.validateIndexName` (or, for data streams,
/// `validateDataStreamName`'s wording), in ES's order of checks.
fn validate_name(name: &str, ds: bool) -> Result<(), EsErr> {
    let fail = |desc: &str| {
        if ds {
            Err(EsErr::illegal(&format!("data_stream [{name}] {desc}")))
        } else {
            Err(EsErr::new(
                "invalid_index_name_exception",
                &format!("Invalid index name [{name}], {desc}"),
            )
            .extra("index_uuid", jstr("_na_"))
            .extra("index", jstr(name)))
        }
    };
    const BAD: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ','];
    if name.contains(BAD) {
        return fail(r#"must not contain the following characters [ , ", *, \, <, |, ,, >, /, ?]"#);
    }
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.contains('#') {
        return fail("must not contain '#'");
    }
    if name.contains(':') {
        return fail("must not contain ':'");
    }
    if name.starts_with(['_', '-', '+']) {
        return fail("must not start with '_', '-', or '+'");
    }
    if name.len() > 255 {
        return fail(&format!("index name is too long, ({} > 255)", name.len()));
    }
    if name == "." || name == ".." {
        return fail("must not be '.' or '..'");
    }
    if name.to_lowercase() != name {
        return fail("must be lowercase");
    }
    if ds && name.starts_with(".ds-") {
        return fail("must not start with '.ds-'");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Documents: JSON with positions, dynamic mapping

/// A JSON value with the byte offsets Jackson would report.
#[derive(Debug)]
enum Node {
    Obj(Vec<Member>),
    Arr(Vec<(usize, Node)>),
    Str(String),
    Num(String),
    Bool(bool),
    Null,
}

#[derive(Debug)]
struct Member {
    key: String,
    key_off: usize,
    val_off: usize,
    val: Node,
}

/// Parses JSON already known to be valid (serde_json checked it), keeping
/// member order and offsets, and refusing duplicate keys like Jackson's
/// `STRICT_DUPLICATE_DETECTION`, which ES turns on.
struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn new(s: &'a [u8]) -> Scanner<'a> {
        Scanner { s, i: 0 }
    }

    fn parse(mut self) -> Result<Node, (usize, String)> {
        self.ws();
        self.value()
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Node, (usize, String)> {
        let Some(&c) = self.s.get(self.i) else {
            return Err((self.i, "unexpected end of input".into()));
        };
        match c {
            b'{' => {
                self.i += 1;
                let mut members: Vec<Member> = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Node::Obj(members));
                    }
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                        self.ws();
                    }
                    let key_off = self.i;
                    let key = self.string()?;
                    if members.iter().any(|m| m.key == key) {
                        return Err((key_off, format!("Duplicate field '{key}'")));
                    }
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err((self.i, "expected ':'".into()));
                    }
                    self.i += 1;
                    self.ws();
                    let val_off = self.i;
                    let val = self.value()?;
                    members.push(Member {
                        key,
                        key_off,
                        val_off,
                        val,
                    });
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Node::Arr(items));
                        }
                        Some(b',') => {
                            self.i += 1;
                            self.ws();
                        }
                        _ => {}
                    }
                    if self.s.get(self.i) == Some(&b']') {
                        continue;
                    }
                    let off = self.i;
                    items.push((off, self.value()?));
                }
            }
            b'"' => Ok(Node::Str(self.string()?)),
            b't' => {
                self.i += 4;
                Ok(Node::Bool(true))
            }
            b'f' => {
                self.i += 5;
                Ok(Node::Bool(false))
            }
            b'n' => {
                self.i += 4;
                Ok(Node::Null)
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                if start == self.i {
                    return Err((start, format!("unexpected character '{}'", c as char)));
                }
                Ok(Node::Num(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
        }
    }

    fn string(&mut self) -> Result<String, (usize, String)> {
        let start = self.i;
        if self.s.get(self.i) != Some(&b'"') {
            return Err((self.i, "expected a string".into()));
        }
        self.i += 1;
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return serde_json::from_slice::<String>(&self.s[start..self.i])
                        .map_err(|e| (start, e.to_string()));
                }
                _ => self.i += 1,
            }
        }
        Err((start, "unterminated string".into()))
    }
}

/// Where the first JSON value of `slice` ends (byte offset), or serde's
/// syntax error.
fn first_value_end(slice: &[u8]) -> Result<usize, serde_json::Error> {
    let mut it = serde_json::Deserializer::from_slice(slice).into_iter::<serde::de::IgnoredAny>();
    match it.next() {
        Some(Ok(_)) => Ok(it.byte_offset()),
        Some(Err(e)) => Err(e),
        None => Err(serde_json::from_slice::<Value>(b"").expect_err("empty")),
    }
}

/// Java's `Map.toString()`-like preview of a value.
fn preview(n: &Node) -> String {
    match n {
        Node::Obj(ms) => {
            let inner: Vec<String> = ms
                .iter()
                .map(|m| format!("{}={}", m.key, preview(&m.val)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Node::Arr(items) => {
            let inner: Vec<String> = items.iter().map(|(_, v)| preview(v)).collect();
            format!("[{}]", inner.join(", "))
        }
        Node::Str(s) => s.clone(),
        Node::Num(n) => n.clone(),
        Node::Bool(b) => b.to_string(),
        Node::Null => "null".into(),
    }
}

const METADATA_FIELDS: &[&str] = &[
    "_id",
    "_index",
    "_source",
    "_routing",
    "_version",
    "_seq_no",
    "_primary_term",
    "_ignored",
    "_field_names",
    "_nested_path",
    "_tier",
    "_data_stream_timestamp",
    "_tsid",
];

/// Parses a document as ES 8's `DocumentParser` would against the index's
/// mapping; returns `(raw source, value, updated mapping)`.
fn parse_document(
    cfg: &EsConfig,
    ix: &Idx,
    bytes: &[u8],
    id: &str,
    conflict_fields: &BTreeSet<String>,
) -> Result<(String, Value, BTreeMap<String, FType>), EsErr> {
    let dpe = |msg: String| EsErr::new("document_parsing_exception", &msg);
    if bytes.is_empty() {
        return Err(dpe("[0:0] failed to parse, document is empty".into()));
    }
    let Some(first_off) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Err(dpe(
            "[1:1] Malformed content, must start with an object".into()
        ));
    };
    let col = |off: usize| char_column(bytes, off);
    let end = match first_value_end(bytes) {
        Ok(end) => end,
        Err(e) => {
            let cause = syntax_error(bytes, &e);
            let reason = cause.reason.clone();
            let msg = reason.split_once("] ").map_or(reason.as_str(), |(_, m)| m);
            return Err(dpe(format!(
                "[1:{}] failed to parse: {msg}",
                col(e.column().saturating_sub(1))
            ))
            .caused_by(cause));
        }
    };
    if bytes[first_off] != b'{' {
        return Err(dpe(format!(
            "[1:{}] Malformed content, must start with an object",
            col(first_off)
        )));
    }
    if let Some(extra) = bytes[end..].iter().position(|b| !b.is_ascii_whitespace()) {
        let token = token_name(bytes[end + extra]);
        let msg = format!("Malformed content, found extra data after parsing: {token}");
        return Err(
            dpe(format!("[1:{}] failed to parse: {msg}", col(end + extra)))
                .caused_by(EsErr::illegal(&msg)),
        );
    }
    let node = Scanner::new(&bytes[..end]).parse().map_err(|(off, msg)| {
        dpe(format!("[1:{}] {msg}", col(off))).caused_by(EsErr::new(
            "json_parse_exception",
            &format!("{msg} at [1:{}]", col(off)),
        ))
    })?;
    let Node::Obj(members) = &node else {
        unreachable!("starts with an object")
    };

    let ds = ix.data_stream;
    let mut w = Walk {
        bytes,
        id,
        mapping: ix.mapping.clone(),
        conflict_fields,
        ds,
        ignore_malformed: ds && cfg.ignore_malformed_in_data_streams,
        date_detection: !ds,
        string_type: if ds { FType::Keyword } else { FType::Text },
        limit: cfg.total_fields_limit,
        field_count: ix.field_count(),
        new_fields: 0,
        timestamps: 0,
    };
    w.object("", members)?;
    let mut raw = String::from_utf8(bytes.to_vec()).expect("serde checked UTF-8");
    if ds && w.timestamps == 0 {
        if cfg.fill_missing_timestamp {
            let ts = rfc3339_millis(now_ns());
            let inner = raw
                .trim_start()
                .strip_prefix('{')
                .expect("object")
                .to_string();
            let sep = if members.is_empty() { "" } else { "," };
            raw = format!("{{\"@timestamp\":{}{sep}{inner}", jstr(&ts));
        } else {
            let msg = "data stream timestamp field [@timestamp] is missing";
            return Err(dpe(format!(
                "[1:{}] failed to parse: {msg}",
                col(end.saturating_sub(1))
            ))
            .caused_by(EsErr::illegal(msg)));
        }
    }
    if !ds && w.field_count > w.limit {
        let msg = format!(
            "Limit of total fields [{}] has been exceeded while adding new fields [{}]",
            w.limit, w.new_fields
        );
        return Err(dpe(format!(
            "[1:{}] failed to parse: {msg}",
            col(end.saturating_sub(1))
        ))
        .caused_by(EsErr::illegal(&msg)));
    }
    let source: Value = serde_json::from_str(&raw).expect("valid JSON");
    Ok((raw, source, w.mapping))
}

struct Walk<'a> {
    bytes: &'a [u8],
    id: &'a str,
    mapping: BTreeMap<String, FType>,
    conflict_fields: &'a BTreeSet<String>,
    ds: bool,
    ignore_malformed: bool,
    date_detection: bool,
    string_type: FType,
    limit: usize,
    field_count: usize,
    new_fields: usize,
    timestamps: usize,
}

impl Walk<'_> {
    fn loc(&self, off: usize) -> String {
        format!("[1:{}]", char_column(self.bytes, off))
    }

    fn err(&self, off: usize, msg: &str) -> EsErr {
        EsErr::new(
            "document_parsing_exception",
            &format!("{} {msg}", self.loc(off)),
        )
    }

    fn field_error(&self, off: usize, path: &str, t: FType, node: &Node, cause: EsErr) -> EsErr {
        self.err(
            off,
            &format!(
                "failed to parse field [{path}] of type [{}] in document with id '{}'. Preview of field's value: '{}'",
                t.name(),
                self.id,
                preview(node)
            ),
        )
        .caused_by(cause)
    }

    /// Adds a dynamic mapping; false when a data stream ignores it (beyond
    /// the field limit).
    fn add(&mut self, path: &str, t: FType) -> bool {
        if self.ds && self.field_count + t.weight() > self.limit {
            return false;
        }
        self.mapping.insert(path.to_string(), t);
        self.field_count += t.weight();
        self.new_fields += t.weight();
        true
    }

    fn object(&mut self, prefix: &str, members: &[Member]) -> Result<(), EsErr> {
        for m in members {
            let key = m.key.as_str();
            if prefix.is_empty() && METADATA_FIELDS.contains(&key) {
                return Err(self.err(
                    m.key_off,
                    &format!(
                        "Field [{key}] is a metadata field and cannot be added inside a document. Use the index API request parameters."
                    ),
                ));
            }
            if key.trim().is_empty() {
                let msg = if key.is_empty() {
                    "field name cannot be an empty string".to_string()
                } else {
                    format!("field name cannot contain only whitespace: ['{key}']")
                };
                return Err(self.err(m.key_off, &msg));
            }
            if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
                return Err(self.err(
                    m.key_off,
                    &format!("object field starting or ending with a [.] makes object resolution ambiguous: [{key}]"),
                ));
            }
            let segs: Vec<&str> = key.split('.').collect();
            let mut path = prefix.to_string();
            for seg in &segs[..segs.len() - 1] {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(seg);
                match self.mapping.get(&path) {
                    Some(FType::Object) => {}
                    Some(t) => {
                        let full = if prefix.is_empty() {
                            key.to_string()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        return Err(self.err(
                            m.key_off,
                            &format!(
                                "Could not dynamically add mapping for field [{full}]. Existing mapping for [{path}] must be of type object but found [{}].",
                                t.name()
                            ),
                        ));
                    }
                    None => {
                        if !self.add(&path, FType::Object) {
                            return Ok(());
                        }
                    }
                }
            }
            let leaf = segs[segs.len() - 1];
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(leaf);
            self.value(&path, leaf, &m.val, m.val_off)?;
        }
        Ok(())
    }

    fn value(&mut self, path: &str, leaf: &str, node: &Node, off: usize) -> Result<(), EsErr> {
        match node {
            Node::Null => Ok(()),
            Node::Arr(items) => {
                for (o, item) in items {
                    self.value(path, leaf, item, *o)?;
                }
                Ok(())
            }
            Node::Obj(members) => match self.mapping.get(path).copied() {
                Some(FType::Object) => self.object(path, members),
                None => {
                    if self.add(path, FType::Object) {
                        self.object(path, members)
                    } else {
                        Ok(())
                    }
                }
                Some(t) => {
                    let cause = EsErr::new(
                        "illegal_state_exception",
                        &format!(
                            "Can't get text on a START_OBJECT at {}",
                            &self.loc(off)[1..].trim_end_matches(']')
                        ),
                    );
                    Err(self.field_error(off, path, t, node, cause))
                }
            },
            scalar => {
                if self.conflict_fields.contains(path)
                    && let Node::Str(s) = scalar
                {
                    let cause = EsErr::new(
                        "number_format_exception",
                        &format!("For input string: \"{s}\""),
                    );
                    return Err(self.field_error(off, path, FType::Long, node, cause));
                }
                let is_timestamp = self.ds && path == "@timestamp";
                match self.mapping.get(path).copied() {
                    Some(FType::Object) => Err(self.err(
                        off,
                        &format!(
                            "object mapping for [{path}] tried to parse field [{leaf}] as object, but found a concrete value"
                        ),
                    )),
                    Some(t) => match check_value(t, scalar) {
                        Ok(()) => {
                            if is_timestamp {
                                self.timestamps += 1;
                                if self.timestamps > 1 {
                                    let msg = "data stream timestamp field [@timestamp] encountered multiple values";
                                    return Err(self
                                        .err(off, &format!("failed to parse: {msg}"))
                                        .caused_by(EsErr::illegal(msg)));
                                }
                            }
                            Ok(())
                        }
                        Err(_) if self.ignore_malformed && !is_timestamp => Ok(()),
                        Err(cause) => Err(self.field_error(off, path, t, node, cause)),
                    },
                    None => {
                        let t = match scalar {
                            Node::Str(s) if self.date_detection && is_strict_date_optional_time(s) => FType::Date,
                            Node::Str(_) => self.string_type,
                            Node::Num(n) if n.contains(['.', 'e', 'E']) || n.parse::<i64>().is_err() => FType::Float,
                            Node::Num(_) => FType::Long,
                            Node::Bool(_) => FType::Boolean,
                            _ => unreachable!("scalar"),
                        };
                        self.add(path, t);
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Whether a scalar fits a field of type `t`, with ES's coercions; the
/// `caused_by` of the refusal otherwise.
fn check_value(t: FType, n: &Node) -> Result<(), EsErr> {
    let numeric_text = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
            && s.parse::<f64>().is_ok_and(f64::is_finite)
    };
    let long_range = |f: f64| (-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&f);
    match t {
        FType::Text | FType::Keyword => Ok(()),
        FType::Long | FType::Float => match n {
            Node::Num(raw) => {
                if t == FType::Long {
                    let ok = if raw.contains(['.', 'e', 'E']) {
                        raw.parse::<f64>().is_ok_and(long_range)
                    } else {
                        raw.parse::<i64>().is_ok()
                    };
                    if !ok {
                        return Err(EsErr::illegal(&format!("Value [{raw}] is out of range for a long")));
                    }
                } else if !raw.parse::<f32>().is_ok_and(f32::is_finite) {
                    return Err(EsErr::illegal(&format!("[float] supports only finite values, but got [{raw}]")));
                }
                Ok(())
            }
            Node::Str(s) if s.is_empty() => Ok(()),
            Node::Str(s) if numeric_text(s) => {
                let f: f64 = s.parse().expect("numeric");
                if t == FType::Long && !long_range(f) {
                    return Err(EsErr::illegal(&format!("Value [{s}] is out of range for a long")));
                }
                Ok(())
            }
            Node::Str(s) => Err(EsErr::new("number_format_exception", &format!("For input string: \"{s}\""))),
            Node::Bool(b) => Err(EsErr::illegal(&format!(
                "Current token (VALUE_{}) not numeric, can not use numeric value accessors",
                if *b { "TRUE" } else { "FALSE" }
            ))),
            _ => Ok(()),
        },
        FType::Boolean => match n {
            Node::Bool(_) => Ok(()),
            Node::Str(s) if s == "true" || s == "false" || s.is_empty() => Ok(()),
            other => Err(EsErr::illegal(&format!(
                "Failed to parse value [{}] as only [true] or [false] are allowed.",
                preview(other)
            ))),
        },
        FType::Date => match n {
            Node::Num(_) => Ok(()),
            Node::Str(s) if is_strict_date_optional_time(s) || is_epoch_millis(s) => Ok(()),
            other => Err(EsErr::illegal(&format!(
                "failed to parse date field [{}] with format [strict_date_optional_time||epoch_millis]",
                preview(other)
            ))
            .caused_by(EsErr::new(
                "date_time_parse_exception",
                "Failed to parse with all enclosed parsers",
            ))),
        },
        FType::Object => Ok(()),
    }
}

fn is_epoch_millis(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// ES's `strict_date_optional_time`: `yyyy[-MM[-dd]]` then optionally
/// `THH[:mm[:ss[.f{1,9}]]]` and a zone `Z`, `±HH`, `±HHmm` or `±HH:mm`.
fn is_strict_date_optional_time(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize, n: usize| -> Option<u32> {
        let slice = b.get(*i..*i + n)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *i += n;
        Some(
            slice
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    };
    let Some(year) = digits(&mut i, 4) else {
        return false;
    };
    let (mut month, mut day) = (1, 1);
    if b.get(i) == Some(&b'-') {
        i += 1;
        let Some(m) = digits(&mut i, 2) else {
            return false;
        };
        month = m;
        if b.get(i) == Some(&b'-') {
            i += 1;
            let Some(d) = digits(&mut i, 2) else {
                return false;
            };
            day = d;
        }
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    if b[i] != b'T' {
        return false;
    }
    i += 1;
    let Some(h) = digits(&mut i, 2) else {
        return false;
    };
    if h > 23 {
        return false;
    }
    if b.get(i) == Some(&b':') {
        i += 1;
        let Some(mi) = digits(&mut i, 2) else {
            return false;
        };
        if mi > 59 {
            return false;
        }
        if b.get(i) == Some(&b':') {
            i += 1;
            let Some(sec) = digits(&mut i, 2) else {
                return false;
            };
            if sec > 59 {
                return false;
            }
            if matches!(b.get(i), Some(b'.' | b',')) {
                i += 1;
                let start = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                if i == start || i - start > 9 {
                    return false;
                }
            }
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i += 1;
            let Some(zh) = digits(&mut i, 2) else {
                return false;
            };
            if zh > 18 {
                return false;
            }
            if b.get(i) == Some(&b':') {
                i += 1;
            }
            if i < b.len() {
                let Some(zm) = digits(&mut i, 2) else {
                    return false;
                };
                if zm > 59 {
                    return false;
                }
            }
            i == b.len()
        }
        _ => false,
    }
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn rfc3339_millis(ns: u128) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let millis = (ns / 1_000_000) % 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------
// Resolving index names, wildcards and data streams

/// Resolves a comma list of names and `*` patterns to indices. Concrete
/// names that do not exist are an `index_not_found_exception` unless
/// `lenient`.
fn resolve<'a>(st: &'a State, target: &str, lenient: bool) -> Result<Vec<&'a Idx>, EsErr> {
    let mut out: Vec<&Idx> = Vec::new();
    let exprs: Vec<&str> = if target.is_empty() || target == "_all" {
        vec!["*"]
    } else {
        target
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect()
    };
    for expr in exprs {
        if expr.starts_with('-') && expr.len() > 1 {
            let pat = &expr[1..];
            out.retain(|ix| !glob(pat, &ix.name) && !glob(pat, &ix.concrete));
            continue;
        }
        if expr.contains('*') {
            for ix in st.indices.values() {
                let hit = (!ix.name.starts_with('.') || expr.starts_with('.'))
                    && glob(expr, &ix.name)
                    || expr.starts_with('.') && glob(expr, &ix.concrete);
                if hit && !out.iter().any(|o| o.name == ix.name) {
                    out.push(ix);
                }
            }
        } else {
            match st.find(expr) {
                Some(ix) => {
                    if !out.iter().any(|o| o.name == ix.name) {
                        out.push(ix);
                    }
                }
                None if lenient => {}
                None => {
                    return Err(EsErr::new(
                        "index_not_found_exception",
                        &format!("no such index [{expr}]"),
                    )
                    .extra("resource.type", jstr("index_or_alias"))
                    .extra("resource.id", jstr(expr))
                    .extra("index_uuid", jstr("_na_"))
                    .extra("index", jstr(expr)));
                }
            }
        }
    }
    Ok(out)
}
