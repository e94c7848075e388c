//! weir-workload: deterministic synthetic logs in the format of the Feynman app
//! (the seed's FastAPI + LangGraph tutoring service), and the exact metrics
//! weir's `pipelines/feynman.yaml` should derive from them. weir's fixtures
//! (`weir generate`, `fixtures/`), its benchmarks and its end-to-end tests use it;
//! it is a separate crate so that the weir library does not ship it.
//!
//! [`Workload`] writes the physical lines that service would print: one JSON object
//! per line in the shape of its `StructuredFormatter` (Python
//! `json.dumps(..., ensure_ascii=False)`, so `", "` and `": "` separators and raw
//! non-ASCII text), with request, tool, LLM, workflow, SSE and external-API events,
//! multi-line Python tracebacks escaped onto one line, and — when
//! [`WorkloadOptions::malformed`] is set — uvicorn plain-text lines and truncated JSON.
//! Requests, users, sessions and SSE streams are correlated, timestamps only move
//! forward, and now and then an "incident" degrades one upstream service for a few
//! minutes, so error-rate and latency alerts have something to fire on.
//!
//! [`Workload::track_truth`] makes it also tally the metrics `pipelines/feynman.yaml`
//! should derive from the lines it writes ([`Truth`]), without changing them.
//!
//! What it deliberately does not do: read the wall clock, spawn threads, allocate
//! per line, or depend on anything beyond `std` (`serde_json` and `regex` only in
//! tests) — weir included, so it carries its own JSON string escaper. It does not
//! read `pipelines/feynman.yaml` (the truth follows a hand copy of its rules) and
//! does not model weir itself. It is not a statistical model of a real service and
//! not a fuzzer: distributions are merely plausible, and the same seed always yields
//! byte-identical output.
//!
//! Here is what to log and when; `data` holds the fixed vocabulary and traceback
//! text, `format` the JSON and timestamp writing, `rng` the random numbers, and
//! `truth` the metrics tally.

mod data;
mod format;
mod rng;
mod truth;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Write};

use data::*;
use format::{Stamp, head, kv_exception, kv_f64, kv_null, kv_raw, kv_str, kv_u64, tail};
use rng::{Rng, Uuid};
pub use truth::Truth;

/// Options for the synthetic workload.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    pub seed: u64,
    /// Unix time of the first record, in microseconds.
    pub start_unix_micros: i64,
    /// Emit uvicorn plain-text lines and truncated JSON lines (about 1% and 0.5%).
    pub malformed: bool,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            seed: 42,
            // 2026-11-25T06:00:00Z
            start_unix_micros: 1_795_586_400_000_000,
            malformed: true,
        }
    }
}

// ---------------------------------------------------------------------------------
// The generator.

struct User {
    id: String,
    ip: String,
    /// Index into [`USER_AGENTS`]; `None` when the client sent no `User-Agent`.
    ua: Option<usize>,
    session: Uuid,
}

/// An in-flight chat request; events logged while it runs carry its ids.
#[derive(Clone, Copy)]
struct Req {
    id: Uuid,
    session: Uuid,
    user: usize,
    path: usize,
}

/// An open SSE stream. Like the seed's `StreamingMonitor`, SSE lines carry only the
/// session id.
#[derive(Clone, Copy)]
struct Stream {
    session: Uuid,
    start: i64,
}

const N_USERS: usize = 600;
const N_INFLIGHT: usize = 8;
const MAX_STREAMS: usize = 24;
const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;

#[derive(Clone, Copy)]
enum Kind {
    Api,
    Tool,
    Llm,
    Node,
    SseConnect,
    SseMessage,
    SseDisconnect,
    External,
    Plain,
}

const KINDS: [(u32, Kind); 9] = [
    (200, Kind::Api),
    (130, Kind::Tool),
    (125, Kind::Llm),
    (115, Kind::Node),
    (40, Kind::SseConnect),
    (280, Kind::SseMessage),
    (40, Kind::SseDisconnect),
    (90, Kind::External),
    (40, Kind::Plain),
];

/// A deterministic generator of the seed application's log lines.
pub struct Workload {
    rng: Rng,
    malformed: bool,
    now: i64,
    stamp: Stamp,
    users: Vec<User>,
    inflight: Vec<Req>,
    streams: Vec<Stream>,
    /// uvicorn lines queued by a simulated restart.
    pending: VecDeque<String>,
    pid: u32,
    /// Index into [`SERVICES`] of the service an incident degrades.
    incident_service: usize,
    incident_until: i64,
    next_incident: i64,
    /// Scratch for formatted text (messages, traceback last lines).
    text: String,
    /// Buffer of [`Workload::write_lines`].
    buf: Vec<u8>,
    /// The metrics the lines so far should yield, once [`Workload::track_truth`] was
    /// called. Taken out while a line that will be truncated is written.
    truth: Option<Box<Truth>>,
    /// The time of the next record when the caller sets it
    /// ([`Workload::next_line_at`]) instead of the generator's own clock.
    at: Option<i64>,
}

impl Workload {
    /// A generator at `opts.start_unix_micros`; when `opts.malformed` is set, the first
    /// four lines are uvicorn's startup banner.
    pub fn new(opts: WorkloadOptions) -> Self {
        let mut rng = Rng(opts.seed);
        let users = (0..N_USERS)
            .map(|_| {
                let id = if rng.chance(0.08) {
                    "anonymous".to_string()
                } else {
                    format!("user_{}", 10_000 + rng.below(90_000))
                };
                let ip = if rng.chance(0.3) {
                    format!("172.18.0.{}", 2 + rng.below(6))
                } else {
                    const NETS: [u8; 10] = [36, 58, 101, 112, 117, 120, 183, 223, 114, 59];
                    let a = rng.pick(&NETS);
                    format!(
                        "{a}.{}.{}.{}",
                        rng.below(256),
                        rng.below(256),
                        1 + rng.below(254)
                    )
                };
                let ua = if rng.chance(0.003) {
                    None
                } else {
                    // Browsers dominate; the three API clients at the end are rarer.
                    Some(if rng.chance(0.9) {
                        rng.index(7)
                    } else {
                        7 + rng.index(3)
                    })
                };
                User {
                    id,
                    ip,
                    ua,
                    session: rng.uuid(),
                }
            })
            .collect();
        let start = opts.start_unix_micros;
        let next_incident = start + 2 * HOUR + rng.below(4 * HOUR as u64) as i64;
        let pid = 1 + rng.below(64) as u32;
        let mut w = Workload {
            rng,
            malformed: opts.malformed,
            now: start,
            stamp: Stamp::new(),
            users,
            inflight: Vec::with_capacity(N_INFLIGHT),
            streams: Vec::with_capacity(MAX_STREAMS),
            pending: VecDeque::new(),
            pid,
            incident_service: OPENAI,
            incident_until: start,
            next_incident,
            text: String::with_capacity(512),
            buf: Vec::new(),
            truth: None,
            at: None,
        };
        for _ in 0..N_INFLIGHT {
            let r = w.new_req();
            w.inflight.push(r);
        }
        if w.malformed {
            w.queue_startup();
        }
        w
    }

    /// Appends exactly one physical line, terminated by '\n', to `out`.
    pub fn next_line(&mut self, out: &mut Vec<u8>) {
        self.advance();
        if let Some(l) = self.pending.pop_front() {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
            return;
        }
        if self.malformed {
            let r = self.rng.unit();
            if r < 0.01 {
                self.uvicorn(out);
                return;
            }
            if r < 0.015 {
                let start = out.len();
                // Not a JSON object once cut: it yields no metrics.
                let truth = self.truth.take();
                self.json(out);
                self.truth = truth;
                // Cut strictly before the closing brace, at a char boundary.
                let body = out.len() - 1 - start;
                let mut cut = 1 + self.rng.index(body - 1);
                while cut > 1 && (out[start + cut] & 0xC0) == 0x80 {
                    cut -= 1;
                }
                out.truncate(start + cut);
                out.push(b'\n');
                return;
            }
        }
        self.json(out);
    }

    /// Like [`Workload::next_line`], but the record is dated `unix_micros` (or
    /// the previous record's time, if that is later) instead of by the
    /// generator's own clock: for live generation, where the caller's clock
    /// paces the lines. The random draws are the same as `next_line`'s.
    pub fn next_line_at(&mut self, unix_micros: i64, out: &mut Vec<u8>) {
        self.at = Some(unix_micros);
        self.next_line(out);
    }

    /// Writes `n` lines to `w` (buffer internally; returns bytes written).
    ///
    /// # Errors
    ///
    /// Whatever `w` returns from `write_all` or `flush`.
    pub fn write_lines<W: Write>(&mut self, n: u64, mut w: W) -> io::Result<u64> {
        const FLUSH_AT: usize = 256 * 1024;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(FLUSH_AT + 64 * 1024);
        let mut written = 0u64;
        for _ in 0..n {
            self.next_line(&mut buf);
            if buf.len() >= FLUSH_AT {
                w.write_all(&buf)?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        w.write_all(&buf)?;
        written += buf.len() as u64;
        buf.clear();
        w.flush()?;
        self.buf = buf;
        Ok(written)
    }

    /// Starts keeping the truth of the metrics `pipelines/feynman.yaml` derives from
    /// the lines generated from now on (a no-op if already keeping it). Generation
    /// is unchanged: the same bytes, the same random draws.
    pub fn track_truth(&mut self) {
        if self.truth.is_none() {
            self.truth = Some(Box::new(Truth::new()));
        }
    }

    /// The truth so far (`None` unless [`Workload::track_truth`] was called).
    pub fn truth(&self) -> Option<&Truth> {
        self.truth.as_deref()
    }

    /// Moves the clock: bursts of 0–20 ms inside a request, else pauses up to 0.6 s
    /// (mean ≈ 97 ms, so 2.5 M lines span almost three days), or to the time
    /// [`Workload::next_line_at`] was given. Starts incidents.
    fn advance(&mut self) {
        let step = if self.rng.chance(0.7) {
            self.rng.below(20_000)
        } else {
            self.rng.below(600_000)
        };
        self.now = match self.at.take() {
            Some(t) => t.max(self.now),
            None => self.now + step as i64,
        };
        if self.now >= self.next_incident {
            self.incident_service = self.rng.weighted(&[
                (3, OPENAI),
                (2, ZHIPU),
                (1, WIKIPEDIA),
                (2, TAVILY),
                (1, ARXIV),
                (1, YOUTUBE),
            ]);
            self.incident_until =
                self.now + 10 * MINUTE + self.rng.below(15 * MINUTE as u64) as i64;
            self.next_incident =
                self.incident_until + 4 * HOUR + self.rng.below(6 * HOUR as u64) as i64;
        }
    }

    fn degraded(&self, service: usize) -> bool {
        self.now < self.incident_until && self.incident_service == service
    }

    fn llm_degraded(&self) -> bool {
        self.degraded(OPENAI) || self.degraded(ZHIPU)
    }

    fn new_req(&mut self) -> Req {
        // Skewed towards low indices: a few users are much busier than the rest.
        let u = self.rng.unit();
        let user = ((u * u) * N_USERS as f64) as usize;
        if self.rng.chance(0.05) {
            self.users[user].session = self.rng.uuid();
        }
        let path = self.rng.weighted(&[(40, 0usize), (45, 1), (15, 2)]);
        Req {
            id: self.rng.uuid(),
            session: self.users[user].session,
            user,
            path,
        }
    }

    fn some_req(&mut self) -> Req {
        self.inflight[self.rng.index(N_INFLIGHT)]
    }

    /// The request context keys: `request_id`, `session_id`, `user_id`.
    fn ctx(&self, out: &mut Vec<u8>, req: &Req) {
        kv_raw(out, "request_id", &req.id);
        kv_raw(out, "session_id", &req.session);
        kv_str(out, "user_id", &self.users[req.user].id);
    }

    fn json(&mut self, out: &mut Vec<u8>) {
        let ts = self.stamp.format(self.now);
        match self.rng.weighted(&KINDS) {
            Kind::Api => self.api(out, &ts),
            Kind::Tool => self.tool(out, &ts),
            Kind::Llm => self.llm(out, &ts),
            Kind::Node => self.node(out, &ts),
            Kind::SseConnect => self.sse_connect(out, &ts),
            Kind::SseMessage => self.sse_message(out, &ts),
            Kind::SseDisconnect => self.sse_disconnect(out, &ts),
            Kind::External => self.external(out, &ts),
            Kind::Plain => self.plain(out, &ts),
        }
    }

    fn api(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        if self.rng.chance(0.2) {
            return self.api_infra(out, ts);
        }
        // A chat request completes; another one takes its place.
        let slot = self.rng.index(N_INFLIGHT);
        let req = self.inflight[slot];
        self.inflight[slot] = self.new_req();
        let degraded = self.llm_degraded();
        let slow = if degraded { 2.6 } else { 1.0 };
        if self.rng.chance(if degraded { 0.05 } else { 0.012 }) {
            return self.api_error(out, ts, req, slow);
        }
        let (method, path, _, median, sigma) = CHAT_PATHS[req.path];
        let table = if degraded {
            &CHAT_STATUS_DEGRADED[..]
        } else {
            &CHAT_STATUS[..]
        };
        let status = self.rng.weighted(table);
        let ms = if (400..500).contains(&status) {
            self.rng.lognormal(15.0, 0.5)
        } else {
            self.rng.lognormal(median, sigma) * slow
        };
        let ms = clamp_ms(ms, &mut self.rng);
        // The middleware knows the request, not the session or user (as in the seed).
        head(out, ts, "INFO", &SITE_API_OK, "API请求处理完成");
        kv_raw(out, "request_id", &req.id);
        kv_str(out, "event", "api_request");
        kv_str(out, "method", method);
        kv_str(out, "path", path);
        kv_u64(out, "status_code", u64::from(status));
        kv_f64(out, "duration_ms", ms);
        let user = &self.users[req.user];
        match user.ua {
            Some(i) => kv_str(out, "user_agent", USER_AGENTS[i]),
            None => kv_null(out, "user_agent"),
        }
        kv_str(out, "ip", &user.ip);
        tail(out, &SITE_API_OK);
        if let Some(t) = &mut self.truth {
            t.api_request(method, path, status, ms);
        }
    }

    /// Probes, scrapes and stray browser requests: no session, no user.
    fn api_infra(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        let (path, ua, ip, status, median) = self.rng.weighted(&[
            (
                70,
                ("/health", "kube-probe/1.31", "10.244.0.1", 200u16, 6.0),
            ),
            (
                25,
                ("/metrics", "Prometheus/2.42.0", "10.244.1.12", 200, 14.0),
            ),
            (5, ("/favicon.ico", USER_AGENTS[0], "172.18.0.3", 404, 5.5)),
        ]);
        let ms = self.rng.lognormal(median, 0.35);
        let ms = clamp_ms(ms, &mut self.rng);
        let id = self.rng.uuid();
        head(out, ts, "INFO", &SITE_API_OK, "API请求处理完成");
        kv_raw(out, "request_id", &id);
        kv_str(out, "event", "api_request");
        kv_str(out, "method", "GET");
        kv_str(out, "path", path);
        kv_u64(out, "status_code", u64::from(status));
        kv_f64(out, "duration_ms", ms);
        kv_str(out, "user_agent", ua);
        kv_str(out, "ip", ip);
        tail(out, &SITE_API_OK);
        if let Some(t) = &mut self.truth {
            t.api_request("GET", path, status, ms);
        }
    }

    /// An exception escaped the route: the middleware logs `api_error` instead.
    fn api_error(&mut self, out: &mut Vec<u8>, ts: &[u8; 32], req: Req, slow: f64) {
        let (last, error) = self.rng.weighted(&API_ERRORS);
        let (method, path, _, median, sigma) = CHAT_PATHS[req.path];
        let ms = self.rng.lognormal(median, sigma) * slow;
        let ms = clamp_ms(ms, &mut self.rng);
        let with_tb = self.rng.chance(0.85);
        head(out, ts, "ERROR", &SITE_API_ERR, "API请求处理异常");
        self.ctx(out, &req);
        kv_str(out, "event", "api_error");
        kv_str(out, "method", method);
        kv_str(out, "path", path);
        kv_str(out, "error", error);
        kv_f64(out, "duration_ms", ms);
        if with_tb {
            kv_exception(out, &[TB_HEAD, TB_API, last]);
        }
        tail(out, &SITE_API_ERR);
        if let Some(t) = &mut self.truth {
            t.api_error(method, path);
        }
    }

    fn tool(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        let tool = &TOOLS[self.rng.weighted_by(&TOOLS, |t| t.weight)];
        let degraded = tool.service.is_some_and(|s| self.degraded(s));
        let req = self.some_req();
        let failed = self.rng.chance(if degraded { 0.5 } else { tool.err_p });
        let mut ms = self.rng.lognormal(tool.median_ms, tool.sigma);
        if degraded {
            ms *= 3.0;
        }
        if !failed {
            head(out, ts, "INFO", &SITE_TOOL_OK, "工具调用完成");
            self.ctx(out, &req);
            kv_str(out, "event", "tool_call");
            kv_str(out, "tool_name", tool.name);
            kv_str(out, "status", "success");
            kv_f64(out, "duration_ms", ms);
            tail(out, &SITE_TOOL_OK);
            if let Some(t) = &mut self.truth {
                t.tool_call(tool.name, "success", ms, None);
            }
            return;
        }
        let kind = self.rng.weighted(tool.errors);
        self.text.clear();
        let frames = match kind {
            ToolErr::Timeout => {
                ms = 10_000.0 + self.rng.unit() * 40.0;
                let _ = write!(
                    self.text,
                    "TimeoutError: tool '{}' timed out after 10.0s",
                    tool.name
                );
                TB_TOOL_TIMEOUT
            }
            ToolErr::Http => {
                let code =
                    self.rng
                        .weighted(&[(3, 503u16), (2, 502), (2, 500), (2, 429), (1, 404)]);
                let url = SERVICES[tool.service.unwrap_or(TAVILY)].url;
                let class = if code < 500 {
                    "Client error"
                } else {
                    "Server error"
                };
                let _ = write!(
                    self.text,
                    "httpx.HTTPStatusError: {class} '{code} {}' for url '{url}'\n\
                     For more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/{code}",
                    status_phrase(code),
                );
                TB_TOOL_HTTP
            }
            ToolErr::Value => {
                let _ = write!(self.text, "ValueError: {}", tool.value_error);
                TB_TOOL_VALUE
            }
            ToolErr::ZeroDivision => {
                self.text.push_str("ZeroDivisionError: division by zero");
                TB_TOOL_VALUE
            }
        };
        // `str(e)`: the last line after the qualified type name, up to any newline.
        let first = self.text.split('\n').next().unwrap_or("");
        let error = first.split_once(": ").map_or(first, |(_, m)| m);
        let with_tb = self.rng.chance(0.6);
        head(out, ts, "ERROR", &SITE_TOOL_ERR, "工具调用失败");
        self.ctx(out, &req);
        kv_str(out, "event", "tool_call");
        kv_str(out, "tool_name", tool.name);
        kv_str(out, "status", "error");
        kv_f64(out, "duration_ms", ms);
        kv_str(out, "error_type", kind.type_name());
        kv_str(out, "error", error);
        if with_tb {
            kv_exception(out, &[TB_HEAD, TB_TOOL, frames, &self.text]);
        }
        tail(out, &SITE_TOOL_ERR);
        if let Some(t) = &mut self.truth {
            t.tool_call(tool.name, "error", ms, Some(kind.type_name()));
        }
    }

    fn llm(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        let (model, provider, _, base, per_token) = MODELS[self.rng.weighted_by(&MODELS, |m| m.2)];
        let req = self.some_req();
        let prompt = self.rng.lognormal(1100.0, 0.6).clamp(40.0, 32_000.0) as u64;
        let completion = self.rng.lognormal(260.0, 0.7).clamp(1.0, 4096.0) as u64;
        let service = if provider == "openai" { OPENAI } else { ZHIPU };
        let slow = if self.degraded(service) { 2.5 } else { 1.0 };
        let ms = (base + completion as f64 * per_token) * self.rng.lognormal(1.0, 0.25) * slow;
        head(out, ts, "INFO", &SITE_LLM, "LLM call completed");
        self.ctx(out, &req);
        kv_str(out, "event", "llm_call");
        kv_str(out, "model", model);
        kv_str(out, "provider", provider);
        kv_u64(out, "prompt_tokens", prompt);
        kv_u64(out, "completion_tokens", completion);
        kv_f64(out, "duration_ms", ms);
        tail(out, &SITE_LLM);
        if let Some(t) = &mut self.truth {
            let date = std::str::from_utf8(&ts[..10]).expect("ASCII timestamp");
            t.llm_call(date, model, Some(provider), prompt, completion);
        }
    }

    fn node(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        let ni = self.rng.weighted_by(&NODES, |n| n.1);
        let (name, _, median, sigma) = NODES[ni];
        let req = self.some_req();
        let degraded = self.llm_degraded();
        let mut ms = self.rng.lognormal(median, sigma);
        if degraded {
            ms *= 2.5;
        }
        let topic = *self.rng.pick(&TOPICS);
        if !self.rng.chance(if degraded { 0.12 } else { 0.01 }) {
            let memory = self.rng.below(21);
            let questions = 1 + self.rng.below(5);
            head(out, ts, "INFO", &SITE_NODE_OK, "工作流节点执行完成");
            self.ctx(out, &req);
            kv_str(out, "event", "workflow_node");
            kv_str(out, "node_name", name);
            kv_str(out, "status", "success");
            kv_f64(out, "duration_ms", ms);
            kv_str(out, "topic", topic);
            kv_u64(out, "memory_count", memory);
            if name == "question" {
                kv_u64(out, "questions_count", questions);
            }
            tail(out, &SITE_NODE_OK);
            if let Some(t) = &mut self.truth {
                t.workflow_node(name, "success", ms);
            }
            return;
        }
        let (last, error) = self.rng.weighted(&NODE_ERRORS);
        self.text.clear();
        let _ = writeln!(
            self.text,
            "  File \"/app/agent/nodes.py\", line {}, in {name}_node",
            [47, 93, 141][ni]
        );
        head(out, ts, "ERROR", &SITE_NODE_ERR, "工作流节点执行失败");
        self.ctx(out, &req);
        kv_str(out, "event", "workflow_node");
        kv_str(out, "node_name", name);
        kv_str(out, "status", "error");
        kv_f64(out, "duration_ms", ms);
        kv_str(out, "topic", topic);
        kv_str(out, "error", error);
        kv_exception(
            out,
            &[TB_HEAD, TB_NODE_HEAD, &self.text, TB_NODE_TAIL, last],
        );
        tail(out, &SITE_NODE_ERR);
        if let Some(t) = &mut self.truth {
            t.workflow_node(name, "error", ms);
        }
    }

    fn sse_connect(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        if self.streams.len() >= MAX_STREAMS {
            return self.sse_message(out, ts);
        }
        let req = self.some_req();
        self.streams.push(Stream {
            session: req.session,
            start: self.now,
        });
        head(out, ts, "INFO", &SITE_SSE_START, "用户会话开始");
        kv_raw(out, "session_id", &req.session);
        kv_str(out, "event", "sse_connect");
        tail(out, &SITE_SSE_START);
        if let Some(t) = &mut self.truth {
            t.sse_connect();
        }
    }

    fn sse_message(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        if self.streams.is_empty() {
            return self.sse_connect(out, ts);
        }
        let s = self.streams[self.rng.index(self.streams.len())];
        head(out, ts, "DEBUG", &SITE_SSE_MSG, "SSE message sent");
        kv_raw(out, "session_id", &s.session);
        kv_str(out, "event", "sse_message");
        tail(out, &SITE_SSE_MSG);
        if let Some(t) = &mut self.truth {
            t.sse_message(std::str::from_utf8(&s.session).expect("ASCII uuid"));
        }
    }

    fn sse_disconnect(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        if self.streams.is_empty() {
            return self.sse_connect(out, ts);
        }
        let i = self.rng.index(self.streams.len());
        let s = self.streams.swap_remove(i);
        let reason = self.rng.weighted(&SSE_REASONS);
        let level = if matches!(reason, "timeout" | "error") {
            "WARNING"
        } else {
            "INFO"
        };
        let secs = (self.now - s.start) as f64 / 1e6 + self.rng.unit() * 1e-6;
        head(out, ts, level, &SITE_SSE_END, "用户会话结束");
        kv_raw(out, "session_id", &s.session);
        kv_str(out, "event", "sse_disconnect");
        kv_str(out, "reason", reason);
        kv_f64(out, "duration_s", secs);
        tail(out, &SITE_SSE_END);
        if let Some(t) = &mut self.truth {
            t.sse_disconnect(reason, secs);
        }
    }

    fn external(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        let si = self.rng.weighted_by(&SERVICES, |s| s.weight);
        let svc = &SERVICES[si];
        let degraded = self.degraded(si);
        let req = self.some_req();
        let mut ms = self.rng.lognormal(svc.median_ms, 0.5);
        if degraded {
            ms *= 3.0;
        }
        if !self.rng.chance(if degraded { 0.7 } else { svc.fail_p }) {
            head(out, ts, "INFO", &SITE_EXT_OK, "external API call completed");
            self.ctx(out, &req);
            kv_str(out, "event", "external_api");
            kv_str(out, "service", svc.name);
            kv_str(out, "method", svc.method);
            kv_u64(out, "status_code", 200);
            kv_f64(out, "duration_ms", ms);
            tail(out, &SITE_EXT_OK);
            if let Some(t) = &mut self.truth {
                t.external_api(svc.name, Some(200), ms, None);
            }
            return;
        }
        self.text.clear();
        let status = if self.rng.chance(0.35) {
            ms = 30_000.0 + self.rng.unit() * 50.0;
            self.text.push_str("httpx.ReadTimeout: timed out");
            None
        } else {
            let code = self
                .rng
                .weighted(&[(2, 429u16), (3, 500), (2, 502), (4, 503), (1, 504)]);
            let class = if code < 500 {
                "Client error"
            } else {
                "Server error"
            };
            let _ = write!(
                self.text,
                "httpx.HTTPStatusError: {class} '{code} {}' for url '{}'",
                status_phrase(code),
                svc.url
            );
            Some(code)
        };
        let level = if self.rng.chance(0.2) {
            "ERROR"
        } else {
            "WARNING"
        };
        let with_tb = level == "ERROR" && self.rng.chance(0.5);
        head(out, ts, level, &SITE_EXT_ERR, "外部API调用失败");
        self.ctx(out, &req);
        kv_str(out, "event", "external_api");
        kv_str(out, "service", svc.name);
        kv_str(out, "method", svc.method);
        kv_str(out, "url", svc.url);
        match status {
            Some(code) => kv_u64(out, "status_code", u64::from(code)),
            None => kv_null(out, "status_code"),
        }
        kv_f64(out, "duration_ms", ms);
        // `f"{type(e).__name__}: {e}"`
        let error = self.text.trim_start_matches("httpx.");
        kv_str(out, "error", error);
        if with_tb {
            kv_exception(out, &[TB_HEAD, TB_EXT, &self.text]);
        }
        tail(out, &SITE_EXT_ERR);
        if let Some(t) = &mut self.truth {
            t.external_api(svc.name, status, ms, Some(error));
        }
    }

    /// Ordinary `logger.debug/info/warning` calls without an `event` field.
    fn plain(&mut self, out: &mut Vec<u8>, ts: &[u8; 32]) {
        let req = self.some_req();
        self.text.clear();
        let which = self.rng.weighted(&[
            (30, 0u8),
            (10, 1),
            (20, 2),
            (10, 3),
            (5, 4),
            (10, 5),
            (3, 6),
            (12, 7),
        ]);
        let (level, site, with_ctx) = match which {
            0 => {
                let n = self.rng.below(12);
                let _ = write!(self.text, "检索到 {n} 条相关记忆");
                ("DEBUG", &SITE_MEMORY, true)
            }
            1 => {
                let n = 10 + self.rng.below(10);
                let _ = write!(self.text, "short-term memory trimmed to {n} items");
                ("DEBUG", &SITE_MEMORY_TRIM, true)
            }
            2 => {
                let n = 1 + self.rng.below(5);
                let topic = self.rng.pick(&TOPICS);
                let _ = write!(self.text, "题目队列已生成，共 {n} 道题，主题：{topic}");
                ("INFO", &SITE_GRAPH, true)
            }
            3 => {
                let tool = self.rng.pick(&TOOLS[..2]).name;
                let _ = write!(
                    self.text,
                    "Tool \"{tool}\" returned empty result, falling back to knowledge_base"
                );
                ("WARNING", &SITE_TOOL_WARN, true)
            }
            4 => {
                let n = 20_000 + self.rng.below(80_000);
                let _ = write!(self.text, "会话 token 用量偏高: {n} tokens");
                ("WARNING", &SITE_LLM_WARN, true)
            }
            5 => {
                let s = 0.4 + self.rng.unit() * 1.6;
                let _ = write!(
                    self.text,
                    "Retrying request to /chat/completions in {s:.6} seconds"
                );
                ("INFO", &SITE_OPENAI_RETRY, false)
            }
            6 => {
                let n = 200 + self.rng.below(3000);
                let _ = write!(self.text, "🚀 知识库缓存预热完成，耗时 {n} ms");
                ("INFO", &SITE_CACHE, false)
            }
            _ => {
                self.text
                    .push_str("客户端断开连接，停止推送\t(stream closed by peer)");
                ("WARNING", &SITE_SSE_WARN, true)
            }
        };
        head(out, ts, level, site, &self.text);
        if with_ctx {
            self.ctx(out, &req);
        }
        tail(out, site);
    }

    fn uvicorn(&mut self, out: &mut Vec<u8>) {
        if self.rng.chance(0.001) {
            self.queue_restart();
            if let Some(l) = self.pending.pop_front() {
                out.extend_from_slice(l.as_bytes());
                out.push(b'\n');
            }
            return;
        }
        if self.rng.chance(0.01) {
            out.extend_from_slice(b"WARNING:  Invalid HTTP request received.\n");
            return;
        }
        let port = 30_000 + self.rng.below(35_000);
        let (ip, method, path, status) = if self.rng.chance(0.2) {
            ("10.244.0.1", "GET", "/health", 200)
        } else {
            let req = self.some_req();
            let (method, path, ..) = CHAT_PATHS[req.path];
            let status = self.rng.weighted(&CHAT_STATUS);
            (self.users[req.user].ip.as_str(), method, path, status)
        };
        let _ = writeln!(
            out,
            "INFO:     {ip}:{port} - \"{method} {path} HTTP/1.1\" {status} {}",
            status_phrase(status)
        );
    }

    fn queue_startup(&mut self) {
        let pid = self.pid;
        self.pending.extend([
            format!("INFO:     Started server process [{pid}]"),
            "INFO:     Waiting for application startup.".to_string(),
            "INFO:     Application startup complete.".to_string(),
            "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)".to_string(),
        ]);
    }

    fn queue_restart(&mut self) {
        let pid = self.pid;
        self.pending.extend([
            "INFO:     Shutting down".to_string(),
            "INFO:     Waiting for application shutdown.".to_string(),
            "INFO:     Application shutdown complete.".to_string(),
            format!("INFO:     Finished server process [{pid}]"),
        ]);
        self.pid = 1 + self.rng.below(64) as u32;
        self.queue_startup();
    }
}

/// Keeps request durations in 5–8000 ms; anything slower hits the 8 s proxy timeout.
fn clamp_ms(ms: f64, rng: &mut Rng) -> f64 {
    if ms < 5.0 {
        5.0 + ms * 0.1
    } else if ms > 8000.0 {
        7990.0 + rng.unit() * 10.0
    } else {
        ms
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn generate(opts: WorkloadOptions, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let written = Workload::new(opts).write_lines(n, &mut out).unwrap();
        assert_eq!(written, out.len() as u64);
        out
    }

    fn lines(bytes: &[u8]) -> Vec<&str> {
        let text = std::str::from_utf8(bytes).expect("output is UTF-8");
        assert!(text.ends_with('\n'));
        text[..text.len() - 1].split('\n').collect()
    }

    fn clean(seed: u64) -> WorkloadOptions {
        WorkloadOptions {
            seed,
            malformed: false,
            ..WorkloadOptions::default()
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = generate(WorkloadOptions::default(), 20_000);
        let b = generate(WorkloadOptions::default(), 20_000);
        assert!(a == b, "same seed must give identical output");
        let c = generate(
            WorkloadOptions {
                seed: 43,
                ..WorkloadOptions::default()
            },
            20_000,
        );
        assert!(a != c, "different seeds must differ");
        // next_line and write_lines agree, one line per call.
        let mut w = Workload::new(WorkloadOptions::default());
        let mut d = Vec::new();
        for _ in 0..20_000 {
            let before = d.len();
            w.next_line(&mut d);
            assert_eq!(d.iter().skip(before).filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(d.last(), Some(&b'\n'));
        }
        assert!(a == d);
    }

    #[test]
    fn clean_lines_are_formatter_objects() {
        let out = generate(clean(7), 50_000);
        let required = [
            "timestamp",
            "level",
            "logger",
            "message",
            "module",
            "function",
            "line",
        ];
        let mut events = std::collections::BTreeMap::<String, usize>::new();
        let mut tracebacks = 0;
        let mut task_names = 0;
        let all = lines(&out);
        assert_eq!(all.len(), 50_000);
        for line in &all {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let obj = v.as_object().expect("object");
            for k in required {
                assert!(obj.contains_key(k), "missing {k}: {line}");
            }
            // Keys in the formatter's order.
            let pos: Vec<usize> = required
                .iter()
                .map(|k| line.find(&format!("\"{k}\": ")).unwrap())
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]), "key order: {line}");
            assert!(line.starts_with("{\"timestamp\": \""));
            let ts = obj["timestamp"].as_str().unwrap();
            assert_eq!(ts.len(), 32, "{ts}");
            assert!(ts.ends_with("+00:00"), "{ts}");
            assert_eq!(&ts[19..20], ".");
            assert!(ts[20..26].bytes().all(|b| b.is_ascii_digit()), "{ts}");
            let level = obj["level"].as_str().unwrap();
            assert!(["DEBUG", "INFO", "WARNING", "ERROR"].contains(&level));
            assert!(obj["line"].is_u64());
            if let Some(t) = obj.get("taskName") {
                assert!(t.is_null());
                assert!(line.ends_with(", \"taskName\": null}"));
                task_names += 1;
            }
            if let Some(e) = obj.get("event") {
                *events.entry(e.as_str().unwrap().to_string()).or_default() += 1;
            }
            if let Some(e) = obj.get("exception") {
                let e = e.as_str().unwrap();
                assert!(e.starts_with("Traceback (most recent call last):\n"));
                assert!(e.contains('\n') && !e.ends_with('\n'));
                assert_eq!(level, "ERROR");
                tracebacks += 1;
            }
            if let Some(d) = obj.get("duration_ms") {
                assert!(d.is_f64(), "{line}");
            }
            if obj.get("event").and_then(Value::as_str) == Some("api_request") {
                let d = obj["duration_ms"].as_f64().unwrap();
                assert!((5.0..=8000.0).contains(&d), "{d}");
                assert!(obj["status_code"].is_u64());
            }
        }
        for e in [
            "api_request",
            "api_error",
            "tool_call",
            "llm_call",
            "workflow_node",
            "sse_connect",
            "sse_message",
            "sse_disconnect",
            "external_api",
        ] {
            assert!(
                events.get(e).copied().unwrap_or(0) > 0,
                "no {e}: {events:?}"
            );
        }
        assert!(tracebacks > 20, "{tracebacks}");
        assert!(task_names > all.len() * 9 / 10, "{task_names}");
        // Chinese text is raw, and nothing needs \u escapes.
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("\"message\": \"工具调用完成\""));
        assert!(text.contains("用户会话开始"));
        assert!(text.contains("API请求处理完成"));
        assert!(!text.contains("\\u"));
    }

    #[test]
    fn malformed_lines_appear_at_low_rates() {
        let out = generate(WorkloadOptions::default(), 100_000);
        let all = lines(&out);
        let (mut uvicorn, mut broken) = (0, 0);
        for line in &all {
            if line.starts_with("INFO:     ") || line.starts_with("WARNING:  ") {
                uvicorn += 1;
            } else if serde_json::from_str::<Value>(line).is_err() {
                assert!(line.starts_with('{'), "{line}");
                broken += 1;
            }
        }
        assert!(all[0].starts_with("INFO:     Started server process ["));
        assert!(
            all.iter()
                .any(|l| l.contains("Uvicorn running on http://0.0.0.0:8000"))
        );
        assert!(all.iter().any(|l| l.contains(" HTTP/1.1\" 200 OK")));
        assert!((700..1400).contains(&uvicorn), "{uvicorn}");
        assert!((300..700).contains(&broken), "{broken}");
    }

    #[test]
    fn average_line_length_in_range() {
        let out = generate(WorkloadOptions::default(), 100_000);
        let avg = out.len() as f64 / 100_000.0;
        assert!((350.0..=450.0).contains(&avg), "average line {avg} bytes");
    }

    #[test]
    fn timestamps_never_go_back_and_start_where_asked() {
        let out = generate(clean(3), 50_000);
        let mut prev = String::new();
        for (i, line) in lines(&out).into_iter().enumerate() {
            let v: Value = serde_json::from_str(line).unwrap();
            let ts = v["timestamp"].as_str().unwrap().to_string();
            if i == 0 {
                assert!(ts.starts_with("2026-11-25T06:00:00."), "{ts}");
            }
            // Same width and offset: lexical order is time order.
            assert!(ts >= prev, "{prev} then {ts}");
            prev = ts;
        }
    }

    #[test]
    fn sse_streams_pair_up() {
        let out = generate(clean(11), 50_000);
        let mut open = std::collections::BTreeMap::<String, i64>::new();
        let (mut connects, mut disconnects) = (0i64, 0i64);
        for line in lines(&out) {
            let v: Value = serde_json::from_str(line).unwrap();
            let session = v
                .get("session_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match v.get("event").and_then(Value::as_str) {
                Some("sse_connect") => {
                    connects += 1;
                    *open.entry(session).or_default() += 1;
                }
                Some("sse_message") => assert!(open.get(&session).copied().unwrap_or(0) > 0),
                Some("sse_disconnect") => {
                    disconnects += 1;
                    let n = open
                        .get_mut(&session)
                        .expect("disconnect of an open stream");
                    assert!(*n > 0);
                    *n -= 1;
                    assert!(v["duration_s"].as_f64().unwrap() >= 0.0);
                }
                _ => {}
            }
        }
        assert!(connects - disconnects <= MAX_STREAMS as i64);
        assert!(disconnects > 100);
    }

    #[test]
    fn next_line_at_dates_records_by_the_callers_clock() {
        let opts = WorkloadOptions {
            malformed: false,
            ..Default::default()
        };
        let mut w = Workload::new(opts);
        // 2026-12-01T10:00:00Z, then a step back that must not go backwards.
        let t0 = 1_796_119_200_000_000;
        let mut out = Vec::new();
        w.next_line_at(t0, &mut out);
        w.next_line_at(t0 + 1_500_000, &mut out);
        w.next_line_at(t0 + 1_000_000, &mut out);
        let stamps: Vec<String> = lines(&out)
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["timestamp"].to_string())
            .collect();
        assert_eq!(
            stamps,
            [
                "\"2026-12-01T10:00:00.000000+00:00\"",
                "\"2026-12-01T10:00:01.500000+00:00\"",
                "\"2026-12-01T10:00:01.500000+00:00\"",
            ]
        );
        // Without it, the generator's own clock moves on from there.
        let mut more = Vec::new();
        w.next_line(&mut more);
        let v: Value = serde_json::from_str(lines(&more)[0]).unwrap();
        assert!(v["timestamp"].as_str().unwrap() >= "2026-12-01T10:00:01.500000+00:00");
    }
}
