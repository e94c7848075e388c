//! The truth of the metrics `pipelines/feynman.yaml` derives from these logs.
//!
//! While [`super::Workload`] writes lines, a [`Truth`] (when asked for with
//! [`super::Workload::track_truth`]) tallies what the `metrics` sink's rules and
//! `costs:` block must make of them, so a test can run weir over the generated
//! lines and compare its exposition with [`Truth::write_exposition`], value for
//! value (f64 `==`).
//!
//! The tally follows the pipeline as written, not the generator's intentions:
//! labels are the fields' values rendered as text (`null` or a missing field →
//! `""`), histogram observations are the numbers exactly as printed in the line
//! times the rule's `scale`, and only lines that are complete JSON objects count
//! (the generator withholds truncated lines; uvicorn's text lines never get here).
//! It is kept by hand, one method per kind of event, so a change to either the
//! generator or `feynman.yaml` must be mirrored here.
//!
//! It does not model weir itself: no `keep_days` expiry, no configurable budget
//! (`DAILY_COST_LIMIT_USD` unset means 100), and no HELP/TYPE lines.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// Prometheus' default histogram buckets (`le`); `+Inf` follows.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics sink's `max_series`, for families without their own.
const MAX_SERIES: usize = 10_000;
/// `max_series` of `sse_messages_total`.
const SSE_MESSAGES_MAX_SERIES: usize = 1000;
/// The label value of every label of a family's overflow series.
const OVERFLOW: &str = "__overflow__";

/// `daily_budget_usd` (`${DAILY_COST_LIMIT_USD:-100}`).
const DAILY_BUDGET_USD: f64 = 100.0;

/// The cost table: model, USD per 1K prompt tokens, per 1K completion tokens, provider.
const PRICES: [(&str, f64, f64, &str); 4] = [
    ("gpt-4o", 0.005, 0.015, "openai"),
    ("gpt-4", 0.03, 0.06, "openai"),
    ("gpt-3.5-turbo", 0.001, 0.002, "openai"),
    ("glm-4", 0.001, 0.001, "zhipu"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Counters and gauges: one value per series.
    Scalar,
    Histogram,
}

#[derive(Debug, Clone)]
enum Value {
    Scalar(f64),
    Histogram {
        /// Cumulative: `buckets[i]` counts observations `<= BUCKETS[i]`.
        buckets: [u64; BUCKETS.len()],
        count: u64,
        sum: f64,
    },
}

#[derive(Debug, Clone)]
struct Family {
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    max_series: usize,
    /// Keyed by the label values, each followed by `SEP`; sorted, so the exposition
    /// is deterministic.
    series: BTreeMap<String, Value>,
}

/// Ends each label value in a series key (never part of a generated value).
const SEP: char = '\0';

// Indices into `Truth::families`, in exposition order (the rules' order, then costs).
const REQUESTS: usize = 0;
const REQUEST_SECONDS: usize = 1;
const TOOL_CALLS: usize = 2;
const TOOL_SECONDS: usize = 3;
const TOOL_ERRORS: usize = 4;
const NODE_RUNS: usize = 5;
const NODE_SECONDS: usize = 6;
const SSE_ACTIVE: usize = 7;
const SSE_MESSAGES: usize = 8;
const SSE_DISCONNECTS: usize = 9;
const SSE_SECONDS: usize = 10;
const EXT_REQUESTS: usize = 11;
const EXT_SECONDS: usize = 12;
const EXT_ERRORS: usize = 13;
const LLM_TOKENS: usize = 14;
const LLM_COSTS: usize = 15;
const LLM_DAILY_COSTS: usize = 16;
const LLM_DAILY_MODEL_COSTS: usize = 17;

const FAMILIES: [(&str, Kind, &[&str]); 18] = [
    (
        "fastapi_requests_total",
        Kind::Scalar,
        &["method", "endpoint", "status_code"],
    ),
    (
        "fastapi_request_duration_seconds",
        Kind::Histogram,
        &["method", "endpoint"],
    ),
    (
        "agent_tool_calls_total",
        Kind::Scalar,
        &["tool_name", "status"],
    ),
    (
        "agent_tool_call_duration_seconds",
        Kind::Histogram,
        &["tool_name"],
    ),
    (
        "agent_tool_errors_total",
        Kind::Scalar,
        &["tool_name", "error_type"],
    ),
    (
        "langgraph_workflow_executions_total",
        Kind::Scalar,
        &["node_name", "status"],
    ),
    (
        "langgraph_workflow_duration_seconds",
        Kind::Histogram,
        &["node_name"],
    ),
    ("sse_connections_active", Kind::Scalar, &[]),
    ("sse_messages_total", Kind::Scalar, &["session_id"]),
    ("sse_disconnects_total", Kind::Scalar, &["reason"]),
    ("sse_connection_duration_seconds", Kind::Histogram, &[]),
    (
        "external_api_requests_total",
        Kind::Scalar,
        &["service", "status_code"],
    ),
    (
        "external_api_request_duration_seconds",
        Kind::Histogram,
        &["service"],
    ),
    (
        "external_api_errors_total",
        Kind::Scalar,
        &["service", "error_type"],
    ),
    ("llm_tokens_used_total", Kind::Scalar, &["model", "type"]),
    ("llm_costs_total_usd", Kind::Scalar, &["model", "provider"]),
    ("llm_daily_costs_usd", Kind::Scalar, &["date"]),
    (
        "llm_daily_model_costs_usd",
        Kind::Scalar,
        &["date", "model"],
    ),
];

/// The samples the `metrics` sink of `pipelines/feynman.yaml` should expose for
/// the lines generated so far.
#[derive(Debug, Clone)]
pub struct Truth {
    families: Vec<Family>,
    /// Whether any `llm_call` was seen (`llm_daily_budget_usd` exists).
    llm_seen: bool,
    /// Scratch for series keys.
    key: String,
}

impl Default for Truth {
    fn default() -> Self {
        Self::new()
    }
}

impl Truth {
    /// No samples yet.
    pub fn new() -> Self {
        let families = FAMILIES
            .iter()
            .enumerate()
            .map(|(i, &(name, kind, labels))| Family {
                name,
                kind,
                labels,
                max_series: if i == SSE_MESSAGES {
                    SSE_MESSAGES_MAX_SERIES
                } else {
                    MAX_SERIES
                },
                series: BTreeMap::new(),
            })
            .collect();
        Truth {
            families,
            llm_seen: false,
            key: String::with_capacity(128),
        }
    }

    /// The series of `fam` with these label values, created if new, or the overflow
    /// series when the family is full.
    fn series(&mut self, fam: usize, values: &[&str]) -> &mut Value {
        let f = &mut self.families[fam];
        debug_assert_eq!(values.len(), f.labels.len());
        self.key.clear();
        for v in values {
            debug_assert!(!v.contains(SEP));
            self.key.push_str(v);
            self.key.push(SEP);
        }
        if !f.series.contains_key(self.key.as_str()) {
            let overflow = overflow_key(values.len());
            let own = f.series.len() - usize::from(f.series.contains_key(&overflow));
            if own >= f.max_series {
                self.key = overflow;
            }
            if !f.series.contains_key(self.key.as_str()) {
                let empty = match f.kind {
                    Kind::Scalar => Value::Scalar(0.0),
                    Kind::Histogram => Value::Histogram {
                        buckets: [0; BUCKETS.len()],
                        count: 0,
                        sum: 0.0,
                    },
                };
                f.series.insert(self.key.clone(), empty);
            }
        }
        f.series
            .get_mut(self.key.as_str())
            .expect("the series exists")
    }

    /// Adds `v` to a counter or gauge.
    fn add(&mut self, fam: usize, values: &[&str], v: f64) {
        match self.series(fam, values) {
            Value::Scalar(x) => *x += v,
            Value::Histogram { .. } => unreachable!("add on a histogram"),
        }
    }

    fn observe(&mut self, fam: usize, values: &[&str], v: f64) {
        match self.series(fam, values) {
            Value::Histogram {
                buckets,
                count,
                sum,
            } => {
                for (b, le) in buckets.iter_mut().zip(BUCKETS) {
                    if v <= le {
                        *b += 1;
                    }
                }
                *count += 1;
                *sum += v;
            }
            Value::Scalar(_) => unreachable!("observe on a counter"),
        }
    }

    /// `event: api_request`.
    pub(super) fn api_request(&mut self, method: &str, path: &str, status_code: u16, ms: f64) {
        let mut buf = [0u8; 5];
        let code = render_u16(status_code, &mut buf);
        self.add(REQUESTS, &[method, path, code], 1.0);
        self.observe(REQUEST_SECONDS, &[method, path], ms * 0.001);
    }

    /// `event: api_error` (no `status_code` field; the rule says `"500"`).
    pub(super) fn api_error(&mut self, method: &str, path: &str) {
        self.add(REQUESTS, &[method, path, "500"], 1.0);
    }

    /// `event: tool_call`; `error_type` is the field (present only on errors).
    pub(super) fn tool_call(
        &mut self,
        tool_name: &str,
        status: &str,
        ms: f64,
        error_type: Option<&str>,
    ) {
        self.add(TOOL_CALLS, &[tool_name, status], 1.0);
        match status {
            "success" => self.observe(TOOL_SECONDS, &[tool_name], ms * 0.001),
            "error" => self.add(TOOL_ERRORS, &[tool_name, error_type.unwrap_or("")], 1.0),
            _ => {}
        }
    }

    /// `event: workflow_node`.
    pub(super) fn workflow_node(&mut self, node_name: &str, status: &str, ms: f64) {
        self.add(NODE_RUNS, &[node_name, status], 1.0);
        if status == "success" {
            self.observe(NODE_SECONDS, &[node_name], ms * 0.001);
        }
    }

    /// `event: sse_connect`.
    pub(super) fn sse_connect(&mut self) {
        self.add(SSE_ACTIVE, &[], 1.0);
    }

    /// `event: sse_message`.
    pub(super) fn sse_message(&mut self, session_id: &str) {
        self.add(SSE_MESSAGES, &[session_id], 1.0);
    }

    /// `event: sse_disconnect` (`duration_s` has no `scale`).
    pub(super) fn sse_disconnect(&mut self, reason: &str, duration_s: f64) {
        self.add(SSE_ACTIVE, &[], -1.0);
        self.add(SSE_DISCONNECTS, &[reason], 1.0);
        self.observe(SSE_SECONDS, &[], duration_s);
    }

    /// `event: external_api`; `status_code` is `None` when the field is `null`,
    /// `error` is the field when present.
    pub(super) fn external_api(
        &mut self,
        service: &str,
        status_code: Option<u16>,
        ms: f64,
        error: Option<&str>,
    ) {
        let mut buf = [0u8; 5];
        let code = status_code.map_or("", |c| render_u16(c, &mut buf));
        self.add(EXT_REQUESTS, &[service, code], 1.0);
        self.observe(EXT_SECONDS, &[service], ms * 0.001);
        if let Some(e) = error {
            self.add(EXT_ERRORS, &[service, error_type(e)], 1.0);
        }
    }

    /// `event: llm_call`, the `costs:` block; `date` is the UTC day of `timestamp`.
    pub(super) fn llm_call(
        &mut self,
        date: &str,
        model: &str,
        provider: Option<&str>,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) {
        let p = prompt_tokens as f64;
        let c = completion_tokens as f64;
        self.add(LLM_TOKENS, &[model, "prompt"], p);
        self.add(LLM_TOKENS, &[model, "completion"], c);
        let (cost, provider) = match PRICES.iter().find(|e| e.0 == model) {
            Some(&(_, price_prompt, price_completion, provider)) => (
                (p / 1000.0) * price_prompt + (c / 1000.0) * price_completion,
                provider,
            ),
            None => (0.0, provider.unwrap_or("unknown")),
        };
        self.add(LLM_COSTS, &[model, provider], cost);
        self.add(LLM_DAILY_COSTS, &[date], cost);
        self.add(LLM_DAILY_MODEL_COSTS, &[date, model], cost);
        self.llm_seen = true;
    }

    /// The families that have samples, with their number of series (a histogram's
    /// series is one label set, not its `_bucket`/`_sum`/`_count` lines), in
    /// exposition order.
    pub fn series_counts(&self) -> Vec<(&'static str, usize)> {
        let mut out: Vec<_> = self
            .families
            .iter()
            .filter(|f| !f.series.is_empty())
            .map(|f| (f.name, f.series.len()))
            .collect();
        let daily = self.families[LLM_DAILY_COSTS].series.len();
        if daily > 0 {
            out.push(("llm_daily_budget_remaining_usd", daily));
        }
        if self.llm_seen {
            out.push(("llm_daily_budget_usd", 1));
        }
        out
    }

    /// The value of a counter or gauge sample, `labels` in the family's label order.
    pub fn value(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let f = self.families.iter().find(|f| f.name == name)?;
        let mut key = String::new();
        for v in labels {
            key.push_str(v);
            key.push(SEP);
        }
        match f.series.get(&key)? {
            Value::Scalar(x) => Some(*x),
            Value::Histogram { .. } => None,
        }
    }

    /// Writes every expected sample, one per line, in the Prometheus text format
    /// (`name{label="value",…} value`, no HELP/TYPE lines), values with Rust's `{}`
    /// for f64 (shortest round-trip), label values escaped (`\\` `\"` `\n`).
    ///
    /// Families come in the rules' order, then the cost families; series sorted by
    /// their label values; a histogram's buckets, then `_sum` and `_count`.
    ///
    /// # Errors
    ///
    /// Whatever `w` returns.
    pub fn write_exposition<W: Write>(&self, w: W) -> io::Result<()> {
        let mut w = io::BufWriter::new(w);
        for f in &self.families {
            for (key, value) in &f.series {
                match value {
                    Value::Scalar(v) => {
                        sample(&mut w, f.name, "", f.labels, key, None, *v)?;
                    }
                    Value::Histogram {
                        buckets,
                        count,
                        sum,
                    } => {
                        for (n, le) in buckets.iter().zip(BUCKETS) {
                            sample(
                                &mut w,
                                f.name,
                                "_bucket",
                                f.labels,
                                key,
                                Some(le),
                                *n as f64,
                            )?;
                        }
                        let inf = f64::INFINITY;
                        sample(
                            &mut w,
                            f.name,
                            "_bucket",
                            f.labels,
                            key,
                            Some(inf),
                            *count as f64,
                        )?;
                        sample(&mut w, f.name, "_sum", f.labels, key, None, *sum)?;
                        sample(&mut w, f.name, "_count", f.labels, key, None, *count as f64)?;
                    }
                }
            }
            if f.name == FAMILIES[LLM_DAILY_COSTS].0 {
                for (key, value) in &f.series {
                    let Value::Scalar(spent) = value else {
                        unreachable!("daily costs are a gauge")
                    };
                    let name = "llm_daily_budget_remaining_usd";
                    sample(
                        &mut w,
                        name,
                        "",
                        f.labels,
                        key,
                        None,
                        DAILY_BUDGET_USD - spent,
                    )?;
                }
            }
        }
        if self.llm_seen {
            writeln!(w, "llm_daily_budget_usd {DAILY_BUDGET_USD}")?;
        }
        w.flush()
    }
}

/// The overflow series' key: every label value `__overflow__`.
fn overflow_key(labels: usize) -> String {
    let mut key = String::new();
    for _ in 0..labels {
        key.push_str(OVERFLOW);
        key.push(SEP);
    }
    key
}

/// `n` as a JSON integer prints.
fn render_u16(n: u16, buf: &mut [u8; 5]) -> &str {
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

/// The first group of `^([A-Za-z_][A-Za-z0-9_.]*)` on `error`, `""` when it does not
/// match (no generated error starts otherwise).
fn error_type(error: &str) -> &str {
    let b = error.as_bytes();
    if !b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        return "";
    }
    let end = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'))
        .unwrap_or(b.len());
    &error[..end]
}

/// One exposition line: `name{labels…,le="…"} value`.
fn sample<W: Write>(
    w: &mut W,
    name: &str,
    suffix: &str,
    labels: &[&str],
    key: &str,
    le: Option<f64>,
    value: f64,
) -> io::Result<()> {
    w.write_all(name.as_bytes())?;
    w.write_all(suffix.as_bytes())?;
    if !labels.is_empty() || le.is_some() {
        w.write_all(b"{")?;
        let mut first = true;
        for (label, v) in labels.iter().zip(key.split_terminator(SEP)) {
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            w.write_all(label.as_bytes())?;
            w.write_all(b"=\"")?;
            escape_label(w, v)?;
            w.write_all(b"\"")?;
        }
        if let Some(le) = le {
            if !first {
                w.write_all(b",")?;
            }
            if le.is_infinite() {
                w.write_all(b"le=\"+Inf\"")?;
            } else {
                write!(w, "le=\"{le}\"")?;
            }
        }
        w.write_all(b"}")?;
    }
    writeln!(w, " {value}")
}

fn escape_label<W: Write>(w: &mut W, v: &str) -> io::Result<()> {
    let mut start = 0;
    for (i, c) in v.bytes().enumerate() {
        let rep: &[u8] = match c {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        w.write_all(&v.as_bytes()[start..i])?;
        w.write_all(rep)?;
        start = i + 1;
    }
    w.write_all(&v.as_bytes()[start..])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value as Json;

    use super::*;
    use crate::{Workload, WorkloadOptions};

    fn exposition(t: &Truth) -> String {
        let mut out = Vec::new();
        t.write_exposition(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// (metric name with suffix, label pairs) → value.
    type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

    /// Reads the exposition back, unescaping label values.
    fn parse(text: &str) -> Samples {
        let mut out = Samples::new();
        for line in text.lines() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let (name, mut rest) = series.split_once('{').unwrap_or((series, ""));
            let mut labels = Vec::new();
            while let Some((label, after)) = rest.split_once("=\"") {
                let mut v = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().unwrap() {
                        (_, '\\') => match chars.next().unwrap().1 {
                            'n' => v.push('\n'),
                            c => v.push(c),
                        },
                        (i, '"') => break i,
                        (_, c) => v.push(c),
                    }
                };
                labels.push((label.trim_start_matches(',').to_string(), v));
                rest = &after[end + 1..];
            }
            assert!(rest.is_empty() || rest == "}", "{line}");
            let prev = out.insert((name.to_string(), labels), value);
            assert!(prev.is_none(), "duplicate sample: {line}");
        }
        out
    }

    fn generate(opts: WorkloadOptions, n: u64) -> (Vec<u8>, Truth) {
        let mut w = Workload::new(opts);
        w.track_truth();
        let mut out = Vec::new();
        w.write_lines(n, &mut out).unwrap();
        (out, w.truth().unwrap().clone())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tiny_tally_by_hand() {
        let mut t = Truth::new();
        assert_eq!(exposition(&t), "", "no events, no series");
        t.api_request("GET", "/health", 200, 6.0);
        t.api_request("GET", "/health", 200, 30.0);
        t.api_error("POST", "/chat");
        t.tool_call("calculator", "error", 2.0, Some("ValueError"));
        t.sse_connect();
        t.sse_connect();
        t.sse_disconnect("completed", 3.5);
        t.external_api("arxiv", None, 30_010.5, Some("ReadTimeout: timed out"));
        t.llm_call("2026-11-25", "gpt-4o", Some("openai"), 1000, 2000);
        t.llm_call("2026-11-25", "glm-4-flash", Some("zhipu"), 10, 20);
        let want = "\
fastapi_requests_total{method=\"GET\",endpoint=\"/health\",status_code=\"200\"} 2
fastapi_requests_total{method=\"POST\",endpoint=\"/chat\",status_code=\"500\"} 1
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.005\"} 0
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.01\"} 1
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.025\"} 1
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.05\"} 2
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.1\"} 2
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.25\"} 2
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.5\"} 2
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"1\"} 2
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"2.5\"} 2
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"5\"} 2
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"10\"} 2
fastapi_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"+Inf\"} 2
fastapi_request_duration_seconds_sum{method=\"GET\",endpoint=\"/health\"} 0.036
fastapi_request_duration_seconds_count{method=\"GET\",endpoint=\"/health\"} 2
agent_tool_calls_total{tool_name=\"calculator\",status=\"error\"} 1
agent_tool_errors_total{tool_name=\"calculator\",error_type=\"ValueError\"} 1
sse_connections_active 1
sse_disconnects_total{reason=\"completed\"} 1
sse_connection_duration_seconds_bucket{le=\"0.005\"} 0
sse_connection_duration_seconds_bucket{le=\"0.01\"} 0
sse_connection_duration_seconds_bucket{le=\"0.025\"} 0
sse_connection_duration_seconds_bucket{le=\"0.05\"} 0
sse_connection_duration_seconds_bucket{le=\"0.1\"} 0
sse_connection_duration_seconds_bucket{le=\"0.25\"} 0
sse_connection_duration_seconds_bucket{le=\"0.5\"} 0
sse_connection_duration_seconds_bucket{le=\"1\"} 0
sse_connection_duration_seconds_bucket{le=\"2.5\"} 0
sse_connection_duration_seconds_bucket{le=\"5\"} 1
sse_connection_duration_seconds_bucket{le=\"10\"} 1
sse_connection_duration_seconds_bucket{le=\"+Inf\"} 1
sse_connection_duration_seconds_sum 3.5
sse_connection_duration_seconds_count 1
external_api_requests_total{service=\"arxiv\",status_code=\"\"} 1
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"0.005\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"0.01\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"0.025\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"0.05\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"0.1\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"0.25\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"0.5\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"1\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"2.5\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"5\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"10\"} 0
external_api_request_duration_seconds_bucket{service=\"arxiv\",le=\"+Inf\"} 1
external_api_request_duration_seconds_sum{service=\"arxiv\"} 30.0105
external_api_request_duration_seconds_count{service=\"arxiv\"} 1
external_api_errors_total{service=\"arxiv\",error_type=\"ReadTimeout\"} 1
llm_tokens_used_total{model=\"glm-4-flash\",type=\"completion\"} 20
llm_tokens_used_total{model=\"glm-4-flash\",type=\"prompt\"} 10
llm_tokens_used_total{model=\"gpt-4o\",type=\"completion\"} 2000
llm_tokens_used_total{model=\"gpt-4o\",type=\"prompt\"} 1000
llm_costs_total_usd{model=\"glm-4-flash\",provider=\"zhipu\"} 0
llm_costs_total_usd{model=\"gpt-4o\",provider=\"openai\"} 0.034999999999999996
llm_daily_costs_usd{date=\"2026-11-25\"} 0.034999999999999996
llm_daily_budget_remaining_usd{date=\"2026-11-25\"} 99.965
llm_daily_model_costs_usd{date=\"2026-11-25\",model=\"glm-4-flash\"} 0
llm_daily_model_costs_usd{date=\"2026-11-25\",model=\"gpt-4o\"} 0.034999999999999996
llm_daily_budget_usd 100
";
        // 0.005 + 0.03 is not 0.035 in f64; 100 - it rounds back to 99.965.
        assert_eq!(exposition(&t), want);
        assert_eq!(
            t.value("fastapi_requests_total", &["GET", "/health", "200"]),
            Some(2.0)
        );
        assert_eq!(t.value("sse_connections_active", &[]), Some(1.0));
        // Unknown models cost nothing and take the event's provider, or "unknown".
        t.llm_call("2026-11-26", "claude", None, 5, 5);
        assert_eq!(
            t.value("llm_costs_total_usd", &["claude", "unknown"]),
            Some(0.0)
        );
        assert_eq!(t.value("llm_daily_costs_usd", &["2026-11-26"]), Some(0.0));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut t = Truth::new();
        t.sse_disconnect("a\"b\\c\nd", 1.0);
        let text = exposition(&t);
        assert!(
            text.contains("sse_disconnects_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        let back = parse(&text);
        let key = (
            "sse_disconnects_total".to_string(),
            pairs(&[("reason", "a\"b\\c\nd")]),
        );
        assert_eq!(back.get(&key), Some(&1.0));
    }

    #[test]
    fn sse_sessions_past_max_series_overflow() {
        let mut t = Truth::new();
        for i in 0..1000 {
            t.sse_message(&format!("s{i}"));
        }
        assert_eq!(t.value("sse_messages_total", &[OVERFLOW]), None);
        t.sse_message("new-1");
        t.sse_message("new-2");
        t.sse_message("s0"); // already has its series
        t.sse_message("new-1");
        assert_eq!(t.value("sse_messages_total", &["new-1"]), None);
        assert_eq!(t.value("sse_messages_total", &[OVERFLOW]), Some(3.0));
        assert_eq!(t.value("sse_messages_total", &["s0"]), Some(2.0));
        assert_eq!(t.series_counts(), vec![("sse_messages_total", 1001)]);
        // Other families keep the sink's bound of 10000.
        for i in 0..10_001 {
            t.sse_disconnect(&format!("r{i}"), 0.0);
        }
        assert_eq!(t.value("sse_disconnects_total", &["r9999"]), Some(1.0));
        assert_eq!(t.value("sse_disconnects_total", &[OVERFLOW]), Some(1.0));
    }

    #[test]
    fn error_type_is_the_leading_identifier() {
        assert_eq!(error_type("ReadTimeout: timed out"), "ReadTimeout");
        assert_eq!(
            error_type("HTTPStatusError: Server error '503 Service Unavailable'"),
            "HTTPStatusError"
        );
        assert_eq!(error_type("httpx.ReadTimeout: x"), "httpx.ReadTimeout");
        assert_eq!(error_type("_x9: y"), "_x9");
        assert_eq!(error_type("9lives"), "");
        assert_eq!(error_type(""), "");
    }

    #[test]
    fn truth_is_deterministic_and_leaves_the_bytes_alone() {
        let (a, ta) = generate(WorkloadOptions::default(), 20_000);
        let (b, tb) = generate(WorkloadOptions::default(), 20_000);
        assert!(a == b);
        assert_eq!(exposition(&ta), exposition(&tb));
        let mut plain = Vec::new();
        let mut w = Workload::new(WorkloadOptions::default());
        assert!(w.truth().is_none());
        w.write_lines(20_000, &mut plain).unwrap();
        assert!(a == plain, "tracking the truth must not change the lines");
    }

    #[test]
    fn truth_of_10k_lines_has_every_family() {
        let (_, t) = generate(WorkloadOptions::default(), 10_000);
        let counts: BTreeMap<_, _> = t.series_counts().into_iter().collect();
        for name in FAMILIES
            .iter()
            .map(|f| f.0)
            .chain(["llm_daily_budget_remaining_usd", "llm_daily_budget_usd"])
        {
            assert!(
                counts.get(name).is_some_and(|&n| n > 0),
                "no {name}: {counts:?}"
            );
        }
        let text = exposition(&t);
        assert!(text.contains(
            "fastapi_requests_total{method=\"GET\",endpoint=\"/health\",status_code=\"200\"} "
        ));
        assert!(text.contains(
            "external_api_errors_total{service=\"openai\",error_type=\"HTTPStatusError\"} "
        ));
        assert!(text.contains("status_code=\"\"} "), "null status codes");
        assert!(text.contains("llm_daily_budget_usd 100\n"));
    }

    /// One rule of `pipelines/feynman.yaml`'s metrics sink, as data.
    struct Rule {
        name: &'static str,
        histogram: bool,
        event: &'static str,
        status: Option<&'static str>,
        needs_error: bool,
        labels: &'static [(&'static str, &'static str)],
        value: Option<(&'static str, f64)>,
    }

    const fn rule(
        name: &'static str,
        event: &'static str,
        labels: &'static [(&'static str, &'static str)],
    ) -> Rule {
        Rule {
            name,
            histogram: false,
            event,
            status: None,
            needs_error: false,
            labels,
            value: None,
        }
    }

    const RULES: &[Rule] = &[
        rule(
            "fastapi_requests_total",
            "api_request",
            &[
                ("method", "method"),
                ("endpoint", "path"),
                ("status_code", "status_code"),
            ],
        ),
        rule(
            "fastapi_requests_total",
            "api_error",
            &[
                ("method", "method"),
                ("endpoint", "path"),
                ("status_code", "=500"),
            ],
        ),
        Rule {
            histogram: true,
            value: Some(("duration_ms", 0.001)),
            ..rule(
                "fastapi_request_duration_seconds",
                "api_request",
                &[("method", "method"), ("endpoint", "path")],
            )
        },
        rule(
            "agent_tool_calls_total",
            "tool_call",
            &[("tool_name", "tool_name"), ("status", "status")],
        ),
        Rule {
            histogram: true,
            status: Some("success"),
            value: Some(("duration_ms", 0.001)),
            ..rule(
                "agent_tool_call_duration_seconds",
                "tool_call",
                &[("tool_name", "tool_name")],
            )
        },
        Rule {
            status: Some("error"),
            ..rule(
                "agent_tool_errors_total",
                "tool_call",
                &[("tool_name", "tool_name"), ("error_type", "error_type")],
            )
        },
        rule(
            "langgraph_workflow_executions_total",
            "workflow_node",
            &[("node_name", "node_name"), ("status", "status")],
        ),
        Rule {
            histogram: true,
            status: Some("success"),
            value: Some(("duration_ms", 0.001)),
            ..rule(
                "langgraph_workflow_duration_seconds",
                "workflow_node",
                &[("node_name", "node_name")],
            )
        },
        rule(
            "sse_messages_total",
            "sse_message",
            &[("session_id", "session_id")],
        ),
        rule(
            "sse_disconnects_total",
            "sse_disconnect",
            &[("reason", "reason")],
        ),
        Rule {
            histogram: true,
            value: Some(("duration_s", 1.0)),
            ..rule("sse_connection_duration_seconds", "sse_disconnect", &[])
        },
        rule(
            "external_api_requests_total",
            "external_api",
            &[("service", "service"), ("status_code", "status_code")],
        ),
        Rule {
            histogram: true,
            value: Some(("duration_ms", 0.001)),
            ..rule(
                "external_api_request_duration_seconds",
                "external_api",
                &[("service", "service")],
            )
        },
        Rule {
            needs_error: true,
            ..rule(
                "external_api_errors_total",
                "external_api",
                &[("service", "service"), ("error_type", "~error")],
            )
        },
    ];

    fn render(v: Option<&Json>) -> String {
        match v {
            None | Some(Json::Null) => String::new(),
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }

    /// The pipeline's metrics recomputed from the lines alone, without the generator.
    /// Numbers are parsed from their text with `str::parse` (serde_json's `as_f64`
    /// without its `float_roundtrip` feature is 1 ULP off for about 10% of them).
    fn recount(bytes: &[u8]) -> Samples {
        let error_re = regex::Regex::new(r"^([A-Za-z_][A-Za-z0-9_.]*)").unwrap();
        let mut out = Samples::new();
        let mut sessions = std::collections::HashSet::new();
        let add = |out: &mut Samples, name: &str, labels: Vec<(String, String)>, v: f64| {
            *out.entry((name.to_string(), labels)).or_insert(0.0) += v;
        };
        let mut gauge: Option<f64> = None;
        let mut daily = BTreeMap::<String, f64>::new();
        for line in std::str::from_utf8(bytes).unwrap().lines() {
            let Ok(Json::Object(o)) = serde_json::from_str::<Json>(line) else {
                continue;
            };
            let raw: BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(line).unwrap();
            let event = o.get("event").and_then(Json::as_str).unwrap_or("");
            match event {
                "sse_connect" => *gauge.get_or_insert(0.0) += 1.0,
                "sse_disconnect" => *gauge.get_or_insert(0.0) -= 1.0,
                "llm_call" => {
                    let model = o["model"].as_str().unwrap();
                    let p = o["prompt_tokens"].as_u64().unwrap() as f64;
                    let c = o["completion_tokens"].as_u64().unwrap() as f64;
                    let l = |t: &str| pairs(&[("model", model), ("type", t)]);
                    add(&mut out, "llm_tokens_used_total", l("prompt"), p);
                    add(&mut out, "llm_tokens_used_total", l("completion"), c);
                    let (cost, provider) = match model {
                        "gpt-4o" => ((p / 1000.0) * 0.005 + (c / 1000.0) * 0.015, "openai"),
                        "gpt-4" => ((p / 1000.0) * 0.03 + (c / 1000.0) * 0.06, "openai"),
                        "gpt-3.5-turbo" => ((p / 1000.0) * 0.001 + (c / 1000.0) * 0.002, "openai"),
                        "glm-4" => ((p / 1000.0) * 0.001 + (c / 1000.0) * 0.001, "zhipu"),
                        _ => (0.0, o["provider"].as_str().unwrap_or("unknown")),
                    };
                    let labels = pairs(&[("model", model), ("provider", provider)]);
                    add(&mut out, "llm_costs_total_usd", labels, cost);
                    let ts = o["timestamp"].as_str().unwrap();
                    assert!(ts.ends_with("+00:00"));
                    *daily.entry(ts[..10].to_string()).or_insert(0.0) += cost;
                    let l = pairs(&[("date", &ts[..10]), ("model", model)]);
                    add(&mut out, "llm_daily_model_costs_usd", l, cost);
                }
                _ => {}
            }
            for r in RULES {
                if r.event != event
                    || r.status
                        .is_some_and(|s| o.get("status").and_then(Json::as_str) != Some(s))
                    || (r.needs_error && !o.contains_key("error"))
                {
                    continue;
                }
                let mut labels: Vec<(String, String)> = r
                    .labels
                    .iter()
                    .map(|&(k, t)| {
                        let v = if let Some(s) = t.strip_prefix('=') {
                            s.to_string()
                        } else if let Some(f) = t.strip_prefix('~') {
                            let e = render(o.get(f));
                            error_re.captures(&e).unwrap()[1].to_string()
                        } else {
                            render(o.get(t))
                        };
                        (k.to_string(), v)
                    })
                    .collect();
                if r.name == "sse_messages_total" {
                    let s = labels[0].1.clone();
                    if !sessions.contains(&s) {
                        if sessions.len() < SSE_MESSAGES_MAX_SERIES {
                            sessions.insert(s);
                        } else {
                            labels[0].1 = OVERFLOW.to_string();
                        }
                    }
                }
                if !r.histogram {
                    add(&mut out, r.name, labels, 1.0);
                    continue;
                }
                let (field, scale) = r.value.unwrap();
                let v = raw[field].get().parse::<f64>().unwrap() * scale;
                for le in BUCKETS {
                    let mut l = labels.clone();
                    l.push(("le".into(), format!("{le}")));
                    let n = f64::from(u8::from(v <= le));
                    add(&mut out, &format!("{}_bucket", r.name), l, n);
                }
                let mut l = labels.clone();
                l.push(("le".into(), "+Inf".into()));
                add(&mut out, &format!("{}_bucket", r.name), l, 1.0);
                add(&mut out, &format!("{}_sum", r.name), labels.clone(), v);
                add(&mut out, &format!("{}_count", r.name), labels, 1.0);
            }
        }
        if let Some(g) = gauge {
            add(&mut out, "sse_connections_active", vec![], g);
        }
        for (date, spent) in &daily {
            let l = pairs(&[("date", date)]);
            add(&mut out, "llm_daily_costs_usd", l.clone(), *spent);
            add(&mut out, "llm_daily_budget_remaining_usd", l, 100.0 - spent);
        }
        if !daily.is_empty() {
            add(&mut out, "llm_daily_budget_usd", vec![], 100.0);
        }
        out
    }

    /// The tally agrees, bit for bit, with a recount from the parsed lines, across
    /// truncated lines, uvicorn lines, null status codes and a day boundary.
    #[test]
    fn truth_matches_a_recount_of_the_lines() {
        for (opts, n) in [
            (WorkloadOptions::default(), 30_000),
            (
                WorkloadOptions {
                    seed: 5,
                    // 2026-11-25T23:50:00Z: the lines cross midnight.
                    start_unix_micros: 1_795_586_400_000_000 + 17 * 3_600_000_000 + 50 * 60_000_000,
                    malformed: true,
                },
                20_000,
            ),
        ] {
            let (bytes, truth) = generate(opts, n);
            let got = parse(&exposition(&truth));
            let want = recount(&bytes);
            for (k, v) in &want {
                assert_eq!(got.get(k), Some(v), "{k:?}");
            }
            for k in got.keys() {
                assert!(want.contains_key(k), "unexpected {k:?}");
            }
        }
        // The second run spans two days.
        let (_, t) = generate(
            WorkloadOptions {
                seed: 5,
                start_unix_micros: 1_795_586_400_000_000 + 17 * 3_600_000_000 + 50 * 60_000_000,
                malformed: true,
            },
            20_000,
        );
        let days = t
            .series_counts()
            .into_iter()
            .find(|f| f.0 == "llm_daily_costs_usd");
        assert_eq!(days, Some(("llm_daily_costs_usd", 2)));
    }
}
