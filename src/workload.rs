//! Deterministic synthetic application logs, for benchmarks and tests.
//!
//! [`Workload`] writes the physical lines the seed's FastAPI + LangGraph tutoring
//! service would print: one JSON object per line in the shape of its
//! `StructuredFormatter` (Python `json.dumps(..., ensure_ascii=False)`, so `", "` and
//! `": "` separators and raw non-ASCII text), with request, tool, LLM, workflow, SSE and
//! external-API events, multi-line Python tracebacks escaped onto one line, and — when
//! [`WorkloadOptions::malformed`] is set — uvicorn plain-text lines and truncated JSON.
//! Requests, users, sessions and SSE streams are correlated, timestamps only move
//! forward, and now and then an "incident" degrades one upstream service for a few
//! minutes, so error-rate and latency alerts have something to fire on.
//!
//! What it deliberately does not do: read the wall clock, spawn threads, allocate per
//! line, or depend on anything beyond `std` (`serde_json` only in tests). It is not a
//! statistical model of a real service and not a fuzzer: distributions are merely
//! plausible, and the same seed always yields byte-identical output.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Write};

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
// Random numbers: splitmix64, good enough for synthetic data and trivially seedable.

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller, one branch).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    fn weighted<T: Copy>(&mut self, table: &[(u32, T)]) -> T {
        let total: u32 = table.iter().map(|e| e.0).sum();
        let mut r = self.below(u64::from(total)) as u32;
        for &(w, v) in table {
            if r < w {
                return v;
            }
            r -= w;
        }
        table[table.len() - 1].1
    }

    /// Index into `items`, drawn by the weights `w` gives.
    fn weighted_by<T>(&mut self, items: &[T], w: impl Fn(&T) -> u32) -> usize {
        let total: u32 = items.iter().map(&w).sum();
        let mut r = self.below(u64::from(total)) as u32;
        for (i, item) in items.iter().enumerate() {
            let wi = w(item);
            if r < wi {
                return i;
            }
            r -= wi;
        }
        items.len() - 1
    }

    fn uuid(&mut self) -> Uuid {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hi = self.next_u64();
        let lo = self.next_u64();
        let hi = (hi & !0xF000) | 0x4000; // version 4
        let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
        let mut out = [0u8; 36];
        let mut nib = 0;
        for (i, slot) in out.iter_mut().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                *slot = b'-';
                continue;
            }
            let v = if nib < 16 {
                hi >> (60 - 4 * nib)
            } else {
                lo >> (60 - 4 * (nib - 16))
            };
            *slot = HEX[(v & 0xF) as usize];
            nib += 1;
        }
        out
    }
}

type Uuid = [u8; 36];

// ---------------------------------------------------------------------------------
// Static vocabulary of the simulated service.

/// A logging call site: what `record.name`, `module`, `funcName`, `lineno` would be.
struct Site {
    logger: &'static str,
    module: &'static str,
    function: &'static str,
    line: u32,
    /// Whether the record carries `taskName` (absent on a few thread-pool sites).
    task: bool,
}

const fn site(
    logger: &'static str,
    module: &'static str,
    function: &'static str,
    line: u32,
) -> Site {
    Site {
        logger,
        module,
        function,
        line,
        task: true,
    }
}

const SITE_API_OK: Site = site("api.middleware.monitoring", "monitoring", "dispatch", 52);
const SITE_API_ERR: Site = site("api.middleware.monitoring", "monitoring", "dispatch", 71);
const SITE_TOOL_OK: Site = site("agent.tools", "tools", "wrapper", 64);
const SITE_TOOL_ERR: Site = site("agent.tools", "tools", "wrapper", 79);
const SITE_LLM: Site = site("core.llm", "llm", "track_token_usage", 118);
const SITE_NODE_OK: Site = site("agent.workflow", "workflow", "trace_node_execution", 61);
const SITE_NODE_ERR: Site = site("agent.workflow", "workflow", "trace_node_execution", 84);
const SITE_SSE_START: Site = site("api.streaming", "streaming", "track_stream_start", 23);
const SITE_SSE_MSG: Site = site("api.streaming", "streaming", "track_stream_message", 29);
const SITE_SSE_END: Site = site("api.streaming", "streaming", "track_stream_end", 38);
const SITE_EXT_OK: Site = site("core.http_client", "http_client", "request", 97);
const SITE_EXT_ERR: Site = site("core.http_client", "http_client", "request", 109);
const SITE_MEMORY: Site = site("agent.memory", "memory", "retrieve", 134);
const SITE_MEMORY_TRIM: Site = Site {
    task: false,
    ..site("agent.memory", "memory", "trim", 158)
};
const SITE_GRAPH: Site = site("agent.graph", "graph", "question_node", 88);
const SITE_TOOL_WARN: Site = site("agent.tools", "tools", "call", 96);
const SITE_LLM_WARN: Site = site("core.llm", "llm", "check_budget", 171);
const SITE_OPENAI_RETRY: Site = Site {
    task: false,
    ..site(
        "openai._base_client",
        "_base_client",
        "_retry_request",
        1047,
    )
};
const SITE_CACHE: Site = Site {
    task: false,
    ..site("core.cache", "cache", "warm_up", 42)
};
const SITE_SSE_WARN: Site = site("api.streaming", "streaming", "event_generator", 57);

/// External services: name, weight, median latency in ms, baseline failure rate, URL.
struct Service {
    name: &'static str,
    weight: u32,
    median_ms: f64,
    fail_p: f64,
    method: &'static str,
    url: &'static str,
}

const OPENAI: usize = 0;
const ZHIPU: usize = 1;
const WIKIPEDIA: usize = 2;
const TAVILY: usize = 3;
const ARXIV: usize = 4;
const YOUTUBE: usize = 5;

const SERVICES: [Service; 6] = [
    Service {
        name: "openai",
        weight: 35,
        median_ms: 1500.0,
        fail_p: 0.012,
        method: "POST",
        url: "https://api.openai.com/v1/chat/completions",
    },
    Service {
        name: "zhipu",
        weight: 25,
        median_ms: 1800.0,
        fail_p: 0.018,
        method: "POST",
        url: "https://open.bigmodel.cn/api/paas/v4/chat/completions",
    },
    Service {
        name: "wikipedia",
        weight: 12,
        median_ms: 260.0,
        fail_p: 0.01,
        method: "GET",
        url: "https://zh.wikipedia.org/w/api.php",
    },
    Service {
        name: "tavily",
        weight: 12,
        median_ms: 900.0,
        fail_p: 0.02,
        method: "POST",
        url: "https://api.tavily.com/search",
    },
    Service {
        name: "arxiv",
        weight: 8,
        median_ms: 700.0,
        fail_p: 0.025,
        method: "GET",
        url: "http://export.arxiv.org/api/query",
    },
    Service {
        name: "youtube",
        weight: 8,
        median_ms: 600.0,
        fail_p: 0.02,
        method: "GET",
        url: "https://www.youtube.com/api/timedtext",
    },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ToolErr {
    Timeout,
    Http,
    Value,
    ZeroDivision,
}

impl ToolErr {
    fn type_name(self) -> &'static str {
        match self {
            ToolErr::Timeout => "TimeoutError",
            ToolErr::Http => "HTTPStatusError",
            ToolErr::Value => "ValueError",
            ToolErr::ZeroDivision => "ZeroDivisionError",
        }
    }
}

struct Tool {
    name: &'static str,
    weight: u32,
    median_ms: f64,
    sigma: f64,
    err_p: f64,
    service: Option<usize>,
    errors: &'static [(u32, ToolErr)],
    /// `str(e)` for a `ValueError` from this tool.
    value_error: &'static str,
}

const NET_ERRORS: &[(u32, ToolErr)] = &[(5, ToolErr::Timeout), (5, ToolErr::Http)];

const TOOLS: [Tool; 9] = [
    Tool {
        name: "web_search",
        weight: 22,
        median_ms: 1200.0,
        sigma: 0.5,
        err_p: 0.03,
        service: Some(TAVILY),
        errors: NET_ERRORS,
        value_error: "",
    },
    Tool {
        name: "wikipedia",
        weight: 16,
        median_ms: 600.0,
        sigma: 0.5,
        err_p: 0.02,
        service: Some(WIKIPEDIA),
        errors: NET_ERRORS,
        value_error: "",
    },
    Tool {
        name: "knowledge_base",
        weight: 18,
        median_ms: 80.0,
        sigma: 0.4,
        err_p: 0.01,
        service: None,
        errors: &[(2, ToolErr::Timeout), (1, ToolErr::Value)],
        value_error: "embedding dimension mismatch: expected 1536, got 1024",
    },
    Tool {
        name: "calculator",
        weight: 10,
        median_ms: 2.5,
        sigma: 0.5,
        err_p: 0.04,
        service: None,
        errors: &[(5, ToolErr::Value), (3, ToolErr::ZeroDivision)],
        value_error: "could not convert string to float: '三分之一加二'",
    },
    Tool {
        name: "arxiv_search",
        weight: 8,
        median_ms: 1500.0,
        sigma: 0.6,
        err_p: 0.03,
        service: Some(ARXIV),
        errors: NET_ERRORS,
        value_error: "",
    },
    Tool {
        name: "code_executor",
        weight: 8,
        median_ms: 300.0,
        sigma: 0.8,
        err_p: 0.04,
        service: None,
        errors: &[
            (4, ToolErr::Timeout),
            (2, ToolErr::Value),
            (1, ToolErr::ZeroDivision),
        ],
        value_error: "invalid literal for int() with base 10: 'x'",
    },
    Tool {
        name: "translation",
        weight: 8,
        median_ms: 900.0,
        sigma: 0.4,
        err_p: 0.015,
        service: Some(ZHIPU),
        errors: NET_ERRORS,
        value_error: "",
    },
    Tool {
        name: "youtube_transcript",
        weight: 5,
        median_ms: 2000.0,
        sigma: 0.6,
        err_p: 0.04,
        service: Some(YOUTUBE),
        errors: &[
            (4, ToolErr::Http),
            (2, ToolErr::Timeout),
            (2, ToolErr::Value),
        ],
        value_error: "该视频没有可用的字幕 (video_id='dQw4w9WgXcQ')",
    },
    Tool {
        name: "image_caption",
        weight: 5,
        median_ms: 2500.0,
        sigma: 0.5,
        err_p: 0.02,
        service: Some(OPENAI),
        errors: NET_ERRORS,
        value_error: "",
    },
];

/// LLM models: name, provider, weight, base latency ms, ms per completion token.
const MODELS: [(&str, &str, u32, f64, f64); 5] = [
    ("gpt-4o", "openai", 45, 450.0, 14.0),
    ("gpt-3.5-turbo", "openai", 20, 300.0, 9.0),
    ("glm-4", "zhipu", 25, 600.0, 22.0),
    ("gpt-4", "openai", 8, 800.0, 38.0),
    ("glm-4-flash", "zhipu", 2, 250.0, 7.0),
];

/// Workflow nodes: name, weight, median ms, sigma.
const NODES: [(&str, u32, f64, f64); 3] = [
    ("understand", 40, 2400.0, 0.5),
    ("question", 40, 3100.0, 0.5),
    ("memorize", 20, 800.0, 0.6),
];

const TOPICS: [&str; 16] = [
    "牛顿第二定律",
    "光合作用",
    "二次函数",
    "Python装饰器",
    "傅里叶变换",
    "量子纠缠",
    "供需关系",
    "递归算法",
    "TCP三次握手",
    "贝叶斯定理",
    "唐诗格律",
    "细胞分裂",
    "binary search",
    "photosynthesis",
    "熵与热力学第二定律",
    "费曼学习法",
];

const USER_AGENTS: [&str; 10] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.53(0x18003531) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (Linux; Android 14; V2307A Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.188 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "python-httpx/0.27.2",
    "curl/8.5.0",
    "PostmanRuntime/7.42.0",
];

/// Paths of session-bearing requests: method, path, weight, median ms, sigma.
const CHAT_PATHS: [(&str, &str, u32, f64, f64); 3] = [
    ("POST", "/chat", 40, 1800.0, 0.55),
    ("POST", "/chat/stream", 45, 350.0, 0.5),
    ("POST", "/memorize", 15, 900.0, 0.5),
];

/// (weight, status) for chat requests, normal and during an LLM incident.
const CHAT_STATUS: [(u32, u16); 7] = [
    (9620, 200),
    (100, 400),
    (50, 404),
    (150, 422),
    (30, 429),
    (40, 500),
    (10, 503),
];
const CHAT_STATUS_DEGRADED: [(u32, u16); 6] = [
    (8300, 200),
    (100, 400),
    (150, 422),
    (250, 429),
    (700, 500),
    (500, 503),
];

/// Final traceback line and `str(e)` of an exception escaping a route.
const API_ERRORS: [(u32, (&str, &str)); 5] = [
    (
        30,
        (
            "IndexError: list index out of range",
            "list index out of range",
        ),
    ),
    (
        25,
        (
            "AttributeError: 'NoneType' object has no attribute 'get'",
            "'NoneType' object has no attribute 'get'",
        ),
    ),
    (
        25,
        (
            "openai.APIConnectionError: Connection error.",
            "Connection error.",
        ),
    ),
    (
        10,
        (
            "redis.exceptions.ConnectionError: Error 111 connecting to redis:6379. Connection refused.",
            "Error 111 connecting to redis:6379. Connection refused.",
        ),
    ),
    (
        10,
        (
            "ValueError: 会话状态无效，请重新开始学习",
            "会话状态无效，请重新开始学习",
        ),
    ),
];

const TB_HEAD: &str = "Traceback (most recent call last):\n";

const TB_API: &str = r#"  File "/app/api/middleware/monitoring.py", line 30, in dispatch
    response = await call_next(request)
               ^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.12/site-packages/starlette/middleware/base.py", line 165, in call_next
    raise app_exc
  File "/usr/local/lib/python3.12/site-packages/starlette/middleware/base.py", line 151, in coro
    await self.app(scope, receive_or_disconnect, send_no_error)
  File "/usr/local/lib/python3.12/site-packages/starlette/routing.py", line 715, in __call__
    await self.middleware_stack(scope, receive, send)
  File "/usr/local/lib/python3.12/site-packages/starlette/routing.py", line 735, in app
    await route.handle(scope, receive, send)
  File "/usr/local/lib/python3.12/site-packages/fastapi/routing.py", line 301, in app
    raw_response = await run_endpoint_function(
                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/app/api/routes/chat.py", line 64, in chat
    state = await graph.ainvoke(inputs, config=config)
            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/app/agent/graph.py", line 112, in run
    return result["question_queue"][0]
           ~~~~~~~~~~~~~~~~~~~~~~~~^^^
"#;

const TB_TOOL: &str = r#"  File "/app/agent/monitoring/tool_tracer.py", line 41, in wrapper
    result = await func(*args, **kwargs) if asyncio.iscoroutinefunction(func) else func(*args, **kwargs)
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/app/agent/tools.py", line 88, in call
    return await asyncio.wait_for(self._run(**kwargs), timeout=self.timeout)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
"#;

const TB_TOOL_TIMEOUT: &str = r#"  File "/usr/local/lib/python3.12/asyncio/tasks.py", line 519, in wait_for
    async with timeouts.timeout(timeout):
  File "/usr/local/lib/python3.12/asyncio/timeouts.py", line 115, in __aexit__
    raise TimeoutError from exc_val
"#;

const TB_TOOL_HTTP: &str = r#"  File "/usr/local/lib/python3.12/asyncio/tasks.py", line 520, in wait_for
    return await fut
           ^^^^^^^^^
  File "/app/agent/tools.py", line 151, in _run
    resp.raise_for_status()
  File "/usr/local/lib/python3.12/site-packages/httpx/_models.py", line 829, in raise_for_status
    raise HTTPStatusError(message, request=request, response=self)
"#;

const TB_TOOL_VALUE: &str = r#"  File "/usr/local/lib/python3.12/asyncio/tasks.py", line 520, in wait_for
    return await fut
           ^^^^^^^^^
  File "/app/agent/tools.py", line 203, in _run
    value = self._evaluate(expression)
            ^^^^^^^^^^^^^^^^^^^^^^^^^^
"#;

const TB_NODE_HEAD: &str = r#"  File "/app/agent/monitoring/workflow_tracer.py", line 52, in trace_node_execution
    result = await func(inputs)
             ^^^^^^^^^^^^^^^^^^
"#;

const TB_NODE_TAIL: &str = r#"    response = await llm.ainvoke(messages, config={"callbacks": [callback]})
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.12/site-packages/langchain_core/language_models/chat_models.py", line 307, in ainvoke
    llm_result = await self.agenerate_prompt(
                 ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.12/site-packages/openai/_base_client.py", line 1634, in _request
    raise self._make_status_error_from_response(err.response) from None
"#;

/// Final traceback line and `str(e)` of a failed workflow node.
const NODE_ERRORS: [(u32, (&str, &str)); 3] = [
    (
        50,
        (
            "openai.RateLimitError: Error code: 429 - {'error': {'message': 'Rate limit reached for gpt-4o in organization org-3kT9 on tokens per min (TPM): Limit 30000, Used 29876, Requested 1532. Please try again in 2.816s.', 'type': 'tokens', 'param': None, 'code': 'rate_limit_exceeded'}}",
            "Error code: 429 - rate_limit_exceeded",
        ),
    ),
    (
        30,
        (
            "openai.APITimeoutError: Request timed out.",
            "Request timed out.",
        ),
    ),
    (
        20,
        (
            "openai.InternalServerError: Error code: 500 - {'error': {'message': 'The server had an error while processing your request. Sorry about that!', 'type': 'server_error'}}",
            "Error code: 500 - server_error",
        ),
    ),
];

const TB_EXT: &str = r#"  File "/app/core/http_client.py", line 101, in request
    resp = await self._client.request(method, url, json=payload, timeout=self.timeout)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.12/site-packages/httpx/_client.py", line 1585, in request
    return await self.send(request, auth=auth, follow_redirects=follow_redirects)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.12/site-packages/httpx/_transports/default.py", line 118, in map_httpcore_exceptions
    raise mapped_exc(message) from exc
"#;

const SSE_REASONS: [(u32, &str); 4] = [
    (75, "completed"),
    (15, "client_closed"),
    (6, "timeout"),
    (4, "error"),
];

fn status_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

// ---------------------------------------------------------------------------------
// JSON writing, the way Python's `json.dumps(obj, ensure_ascii=False)` does it.

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Like Python's `repr(float)` for the magnitudes used here (no exponent form).
fn put_f64(out: &mut Vec<u8>, v: f64) {
    let start = out.len();
    let _ = write!(out, "{v}");
    if v.is_finite() && !out[start..].contains(&b'.') {
        out.extend_from_slice(b".0");
    }
}

fn key(out: &mut Vec<u8>, k: &str) {
    out.extend_from_slice(b", \"");
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\": ");
}

fn kv_str(out: &mut Vec<u8>, k: &str, v: &str) {
    key(out, k);
    out.push(b'"');
    crate::event::write_json_str_body(out, v);
    out.push(b'"');
}

/// `v` must need no escaping (uuids).
fn kv_raw(out: &mut Vec<u8>, k: &str, v: &[u8]) {
    key(out, k);
    out.push(b'"');
    out.extend_from_slice(v);
    out.push(b'"');
}

fn kv_u64(out: &mut Vec<u8>, k: &str, v: u64) {
    key(out, k);
    put_u64(out, v);
}

fn kv_f64(out: &mut Vec<u8>, k: &str, v: f64) {
    key(out, k);
    put_f64(out, v);
}

fn kv_null(out: &mut Vec<u8>, k: &str) {
    key(out, k);
    out.extend_from_slice(b"null");
}

/// `"exception": "<parts concatenated>"`.
fn kv_exception(out: &mut Vec<u8>, parts: &[&str]) {
    key(out, "exception");
    out.push(b'"');
    for p in parts {
        crate::event::write_json_str_body(out, p);
    }
    out.push(b'"');
}

/// The formatter's fixed leading keys, up to and including `line`.
fn head(out: &mut Vec<u8>, ts: &[u8; 32], level: &str, site: &Site, msg: &str) {
    out.extend_from_slice(b"{\"timestamp\": \"");
    out.extend_from_slice(ts);
    out.extend_from_slice(b"\", \"level\": \"");
    out.extend_from_slice(level.as_bytes());
    out.extend_from_slice(b"\", \"logger\": \"");
    out.extend_from_slice(site.logger.as_bytes());
    out.extend_from_slice(b"\", \"message\": \"");
    crate::event::write_json_str_body(out, msg);
    out.extend_from_slice(b"\", \"module\": \"");
    out.extend_from_slice(site.module.as_bytes());
    out.extend_from_slice(b"\", \"function\": \"");
    out.extend_from_slice(site.function.as_bytes());
    out.extend_from_slice(b"\", \"line\": ");
    put_u64(out, u64::from(site.line));
}

fn tail(out: &mut Vec<u8>, site: &Site) {
    if site.task {
        out.extend_from_slice(b", \"taskName\": null");
    }
    out.extend_from_slice(b"}\n");
}

// ---------------------------------------------------------------------------------
// Time.

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn put_digits(buf: &mut [u8], mut v: u64) {
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Formats `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, caching the part up to the seconds.
struct Stamp {
    sec: i64,
    buf: [u8; 32],
}

impl Stamp {
    fn new() -> Self {
        Stamp {
            sec: i64::MIN,
            buf: *b"0000-00-00T00:00:00.000000+00:00",
        }
    }

    fn format(&mut self, micros: i64) -> [u8; 32] {
        let sec = micros.div_euclid(1_000_000);
        if sec != self.sec {
            self.sec = sec;
            let (y, m, d) = civil_from_days(sec.div_euclid(86_400));
            let s = sec.rem_euclid(86_400) as u64;
            let b = &mut self.buf;
            put_digits(&mut b[0..4], y.clamp(0, 9999) as u64);
            put_digits(&mut b[5..7], u64::from(m));
            put_digits(&mut b[8..10], u64::from(d));
            put_digits(&mut b[11..13], s / 3600);
            put_digits(&mut b[14..16], s / 60 % 60);
            put_digits(&mut b[17..19], s % 60);
        }
        put_digits(&mut self.buf[20..26], micros.rem_euclid(1_000_000) as u64);
        self.buf
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
                self.json(out);
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

    /// Moves the clock: bursts of 0–20 ms inside a request, else pauses up to 0.6 s
    /// (mean ≈ 97 ms, so 2.5 M lines span almost three days). Starts incidents.
    fn advance(&mut self) {
        let step = if self.rng.chance(0.7) {
            self.rng.below(20_000)
        } else {
            self.rng.below(600_000)
        };
        self.now += step as i64;
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
        kv_str(out, "error", self.text.trim_start_matches("httpx."));
        if with_tb {
            kv_exception(out, &[TB_HEAD, TB_EXT, &self.text]);
        }
        tail(out, &SITE_EXT_ERR);
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
    fn timestamp_formatting() {
        let mut s = Stamp::new();
        assert_eq!(&s.format(0), b"1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            &s.format(1_795_586_400_000_000),
            b"2026-11-25T06:00:00.000000+00:00"
        );
        // 2028-02-29T23:59:59.999999Z
        assert_eq!(
            &s.format(1_835_481_599_999_999),
            b"2028-02-29T23:59:59.999999+00:00"
        );
        assert_eq!(
            &s.format(1_835_481_600_000_001),
            b"2028-03-01T00:00:00.000001+00:00"
        );
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
    fn escaping_matches_python() {
        let mut out = Vec::new();
        crate::event::write_json_str_body(&mut out, "a\"b\\c\nd\te\u{1}f\u{7f}中文🚀");
        assert_eq!(out, "a\\\"b\\\\c\\nd\\te\\u0001f\u{7f}中文🚀".as_bytes());
        let mut f = Vec::new();
        put_f64(&mut f, 5.0);
        f.push(b' ');
        put_f64(&mut f, 152.341_985_702_514_65);
        assert_eq!(f, b"5.0 152.34198570251465");
    }
}
