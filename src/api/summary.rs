//! `GET /api/summary`: the seed plan's analytics summary (section 5.2,
//! `/analytics/summary`) as JSON, computed by weir's PromQL engine over the
//! same history the alert rules read (see [`crate::alert::live`]).
//!
//! ```json
//! {"time": 1796137885.262,
//!  "system_health": {"rps": 12.5, "avg_latency_ms": 840.1, "success_rate": 0.996, "status": "healthy"},
//!  "business_metrics": {"conversations_1h": 8123,
//!                       "tool_usage_top5": [{"tool_name": "web_search", "calls": 2211, "success_rate": 0.97}, …]},
//!  "cost_metrics": {"date": "2026-11-25", "daily_token_cost": 81.2, "daily_budget_usd": 100,
//!                   "llm_cost_1h": 40.1, "cost_per_conversation": 0.0049},
//!  "since_start": {"requests": …, "conversations": …, "tool_calls": …, "llm_cost_usd": …, "cost_per_conversation": …},
//!  "definitions": {"rps": "sum(rate(fastapi_requests_total[5m]))", …},
//!  "thresholds": {"healthy_success_rate": 0.95}}
//! ```
//!
//! Definitions and windows (the PromQL of each figure is in [`queries`] and
//! in the answer's `definitions`):
//!
//! - `rps`, `avg_latency_ms`, `success_rate`: over the last **5 minutes**,
//!   the window of the plan's rules. The plan's `avg(histogram)` is not a
//!   mean; the mean latency is `rate(_sum) / rate(_count)`. Success means a
//!   status code other than 5xx, as the plan writes it, summed over all
//!   endpoints (the plan's query leaves one ratio per series).
//! - `status`: `healthy` when `success_rate > 0.95` (the plan's threshold),
//!   `degraded` otherwise, `unknown` when there was no request in the window
//!   (the ratio is then undefined, and a service without traffic is neither).
//! - `tool_usage_top5`: the five tools with the most calls in the last
//!   **hour** (`increase`, ties by name), each with its share of `success`.
//! - A conversation is one chat request, `POST /chat` or `/chat/stream`
//!   (`fastapi_requests_total{endpoint=~"/chat|/chat/stream"}`); weir has
//!   no per-day count of them, so `conversations_1h` and
//!   `cost_per_conversation` (`increase` of `llm_costs_total_usd` over
//!   `increase` of conversations) are over the last **hour**.
//! - `daily_token_cost` is `llm_daily_costs_usd` of its newest `date`: the
//!   day (in `costs.timezone`, of the events' own time) the cost counters
//!   booked last, which is what the `DailyCostExceeded` rule reads;
//!   `daily_budget_usd` is `llm_daily_budget_usd` (`costs.daily_budget_usd`,
//!   `DAILY_COST_LIMIT_USD` in pipelines/feynman.yaml).
//! - `since_start`: the counters' values themselves, i.e. everything since
//!   weir started: exact, where the windowed figures are `rate`/`increase`
//!   estimates (with Prometheus' extrapolation).
//!
//! A figure without data is `null`. `?time=` (Unix seconds or RFC 3339)
//! evaluates at that time instead of now, as the query API's `time` does,
//! so a client can repeat the page's numbers exactly.
//!
//! What it deliberately does not do: the plan's `user_satisfaction` (no log
//! event carries it) and a per-day conversation count (no counter has
//! one); no caching (each request evaluates its queries, one read lock of
//! the rules' storage each); no history of its own. Without an
//! `alerting:` section there is no history to read and it answers 503, as
//! `/api/v1/*` does.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql_parser::parser::Expr;
use serde_json::{Value as Json, json};

use crate::alert::promql::{Engine, EvalError, Storage, Value, Vector};
use crate::alert::status::RulesView;

/// The PromQL behind each figure.
pub mod queries {
    /// Requests per second over 5 m.
    pub const RPS: &str = "sum(rate(fastapi_requests_total[5m]))";
    /// Mean request latency in seconds over 5 m (× 1000 for `avg_latency_ms`).
    pub const AVG_LATENCY_SECONDS: &str = "sum(rate(fastapi_request_duration_seconds_sum[5m])) / sum(rate(fastapi_request_duration_seconds_count[5m]))";
    /// Share of non-5xx responses over 5 m (0 when every one was a 5xx).
    pub const SUCCESS_RATE: &str = r#"(sum(rate(fastapi_requests_total{status_code!~"5.."}[5m])) or 0 * sum(rate(fastapi_requests_total[5m]))) / sum(rate(fastapi_requests_total[5m]))"#;
    /// Calls per tool in the last hour (the top five are kept).
    pub const TOOL_CALLS_1H: &str = "sum by (tool_name) (increase(agent_tool_calls_total[1h]))";
    /// Share of successful calls per tool in the last hour.
    pub const TOOL_SUCCESS_1H: &str = r#"(sum by (tool_name) (increase(agent_tool_calls_total{status="success"}[1h])) or 0 * sum by (tool_name) (increase(agent_tool_calls_total[1h]))) / sum by (tool_name) (increase(agent_tool_calls_total[1h]))"#;
    /// Chat requests (conversations) in the last hour.
    pub const CONVERSATIONS_1H: &str =
        r#"sum(increase(fastapi_requests_total{endpoint=~"/chat|/chat/stream"}[1h]))"#;
    /// LLM cost in USD in the last hour.
    pub const LLM_COST_1H: &str = "sum(increase(llm_costs_total_usd[1h]))";
    /// Cost booked to each day; the newest date is used.
    pub const DAILY_COST: &str = "llm_daily_costs_usd";
    /// The configured daily budget.
    pub const DAILY_BUDGET: &str = "llm_daily_budget_usd";
    /// Since weir started: requests.
    pub const REQUESTS: &str = "sum(fastapi_requests_total)";
    /// Since weir started: chat requests.
    pub const CONVERSATIONS: &str =
        r#"sum(fastapi_requests_total{endpoint=~"/chat|/chat/stream"})"#;
    /// Since weir started: tool calls.
    pub const TOOL_CALLS: &str = "sum(agent_tool_calls_total)";
    /// Since weir started: LLM cost in USD.
    pub const LLM_COST: &str = "sum(llm_costs_total_usd)";
}

/// `status` is `healthy` above this success rate (the plan's `> 0.95`).
pub const HEALTHY_SUCCESS_RATE: f64 = 0.95;

/// How many tools `tool_usage_top5` lists.
const TOP_TOOLS: usize = 5;

/// The service's state as the summary judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Healthy,
    Degraded,
    /// No request in the window.
    Unknown,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unknown => "unknown",
        }
    }

    fn judge(success_rate: Option<f64>) -> Status {
        match success_rate {
            None => Status::Unknown,
            Some(r) if r > HEALTHY_SUCCESS_RATE => Status::Healthy,
            Some(_) => Status::Degraded,
        }
    }
}

/// One tool of `tool_usage_top5`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUsage {
    pub tool_name: String,
    pub calls: f64,
    pub success_rate: Option<f64>,
}

/// The summary at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub time_ms: i64,
    pub rps: Option<f64>,
    pub avg_latency_ms: Option<f64>,
    pub success_rate: Option<f64>,
    pub status: Status,
    pub conversations_1h: Option<f64>,
    pub tool_usage_top5: Vec<ToolUsage>,
    /// The newest day with booked cost, and that cost.
    pub daily: Option<(String, f64)>,
    pub daily_budget_usd: Option<f64>,
    pub llm_cost_1h: Option<f64>,
    pub cost_per_conversation: Option<f64>,
    pub requests: Option<f64>,
    pub conversations: Option<f64>,
    pub tool_calls: Option<f64>,
    pub llm_cost_usd: Option<f64>,
    pub cost_per_conversation_since_start: Option<f64>,
}

/// A finite value, or `None`.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// `a / b` when both are there and `b > 0`.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => finite(a / b),
        _ => None,
    }
}

/// Evaluates the summary at `t_ms`; `run` evaluates one instant query.
pub fn summarize(
    t_ms: i64,
    run: &mut dyn FnMut(&Expr, i64) -> Result<Value, EvalError>,
) -> Result<Summary, String> {
    let mut vector = |q: &str| -> Result<Vector, String> {
        let expr = crate::alert::promql::parse(q).map_err(|e| format!("{q}: {e}"))?;
        match run(&expr, t_ms).map_err(|e| format!("{q}: {e}"))? {
            Value::Vector(v) => Ok(v),
            Value::Scalar { t, v } => Ok(vec![crate::alert::promql::Sample {
                labels: Default::default(),
                t,
                v,
            }]),
            other => Err(format!("{q}: a {} instead of a vector", other.type_name())),
        }
    };
    let mut one = |q: &str| -> Result<Option<f64>, String> {
        Ok(vector(q)?.first().and_then(|s| finite(s.v)))
    };
    let rps = one(queries::RPS)?;
    let avg_latency_ms = one(queries::AVG_LATENCY_SECONDS)?.map(|s| s * 1000.0);
    let success_rate = one(queries::SUCCESS_RATE)?;
    let conversations_1h = one(queries::CONVERSATIONS_1H)?;
    let llm_cost_1h = one(queries::LLM_COST_1H)?;
    let daily_budget_usd = one(queries::DAILY_BUDGET)?;
    let requests = one(queries::REQUESTS)?;
    let conversations = one(queries::CONVERSATIONS)?;
    let tool_calls = one(queries::TOOL_CALLS)?;
    let llm_cost_usd = one(queries::LLM_COST)?;

    let success: Vec<(String, f64)> = vector(queries::TOOL_SUCCESS_1H)?
        .into_iter()
        .map(|s| (s.labels.get("tool_name").to_string(), s.v))
        .collect();
    let mut tools: Vec<ToolUsage> = vector(queries::TOOL_CALLS_1H)?
        .into_iter()
        .filter(|s| s.v.is_finite())
        .map(|s| {
            let name = s.labels.get("tool_name").to_string();
            let success_rate = success
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| finite(*v));
            ToolUsage {
                tool_name: name,
                calls: s.v,
                success_rate,
            }
        })
        .collect();
    tools.sort_by(|a, b| {
        b.calls
            .total_cmp(&a.calls)
            .then_with(|| a.tool_name.cmp(&b.tool_name))
    });
    tools.truncate(TOP_TOOLS);

    let daily = vector(queries::DAILY_COST)?
        .into_iter()
        .filter(|s| s.v.is_finite())
        .map(|s| (s.labels.get("date").to_string(), s.v))
        .max_by(|a, b| a.0.cmp(&b.0));

    Ok(Summary {
        time_ms: t_ms,
        rps,
        avg_latency_ms,
        success_rate,
        status: Status::judge(success_rate),
        conversations_1h,
        tool_usage_top5: tools,
        daily,
        daily_budget_usd,
        llm_cost_1h,
        cost_per_conversation: ratio(llm_cost_1h, conversations_1h),
        requests,
        conversations,
        tool_calls,
        llm_cost_usd,
        cost_per_conversation_since_start: ratio(llm_cost_usd, conversations),
    })
}

/// [`summarize`] over one storage (tests, back-tests).
pub fn summarize_storage(storage: &dyn Storage, t_ms: i64) -> Result<Summary, String> {
    let engine = Engine::new(storage);
    summarize(t_ms, &mut |e, t| engine.instant(e, t))
}

impl Summary {
    /// The JSON answer of `GET /api/summary`.
    pub fn to_json(&self) -> Json {
        let (date, daily_cost) = match &self.daily {
            Some((d, v)) => (Json::from(d.as_str()), Json::from(*v)),
            None => (Json::Null, Json::Null),
        };
        let tools: Vec<Json> = self
            .tool_usage_top5
            .iter()
            .map(|t| {
                json!({
                    "tool_name": t.tool_name,
                    "calls": t.calls,
                    "success_rate": t.success_rate,
                })
            })
            .collect();
        json!({
            "time": self.time_ms as f64 / 1000.0,
            "system_health": {
                "rps": self.rps,
                "avg_latency_ms": self.avg_latency_ms,
                "success_rate": self.success_rate,
                "status": self.status.word(),
            },
            "business_metrics": {
                "conversations_1h": self.conversations_1h,
                "tool_usage_top5": tools,
            },
            "cost_metrics": {
                "date": date,
                "daily_token_cost": daily_cost,
                "daily_budget_usd": self.daily_budget_usd,
                "llm_cost_1h": self.llm_cost_1h,
                "cost_per_conversation": self.cost_per_conversation,
            },
            "since_start": {
                "requests": self.requests,
                "conversations": self.conversations,
                "tool_calls": self.tool_calls,
                "llm_cost_usd": self.llm_cost_usd,
                "cost_per_conversation": self.cost_per_conversation_since_start,
            },
            "definitions": definitions(),
            "thresholds": {"healthy_success_rate": HEALTHY_SUCCESS_RATE},
        })
    }
}

/// Each figure's PromQL, as the answer lists it.
fn definitions() -> Json {
    use queries::*;
    json!({
        "rps": RPS,
        "avg_latency_ms": format!("1000 * ({AVG_LATENCY_SECONDS})"),
        "success_rate": SUCCESS_RATE,
        "status": format!("healthy if success_rate > {HEALTHY_SUCCESS_RATE}, degraded otherwise, unknown without requests"),
        "conversations_1h": CONVERSATIONS_1H,
        "tool_usage_top5": format!("topk({TOP_TOOLS}, {TOOL_CALLS_1H}), success_rate: {TOOL_SUCCESS_1H}"),
        "daily_token_cost": format!("{DAILY_COST} of the newest date"),
        "daily_budget_usd": DAILY_BUDGET,
        "llm_cost_1h": LLM_COST_1H,
        "cost_per_conversation": "llm_cost_1h / conversations_1h",
        "since_start": {
            "requests": REQUESTS,
            "conversations": CONVERSATIONS,
            "tool_calls": TOOL_CALLS,
            "llm_cost_usd": LLM_COST,
            "cost_per_conversation": "llm_cost_usd / conversations",
        },
    })
}

type View = Arc<dyn RulesView>;

#[derive(Clone)]
struct RouteState {
    rules: Option<View>,
    unavailable: &'static str,
}

/// `GET /api/summary` over `rules`; without them it answers 503 with
/// `unavailable` as the reason.
pub fn router(rules: Option<View>, unavailable: &'static str) -> Router {
    Router::new()
        .route("/api/summary", get(handler))
        .with_state(RouteState { rules, unavailable })
}

fn error(status: StatusCode, kind: &str, msg: &str) -> Response {
    let body = json!({"status": "error", "errorType": kind, "error": msg});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Unix seconds (as the query API reads them: to the millisecond) or RFC 3339.
fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = s.parse::<f64>() {
        if !t.is_finite() {
            return None;
        }
        let whole = t.trunc();
        let frac = ((t - whole) * 1000.0).round();
        return Some(
            (whole as i64)
                .saturating_mul(1000)
                .saturating_add(frac as i64),
        );
    }
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

async fn handler(State(st): State<RouteState>, uri: Uri) -> Response {
    let Some(view) = st.rules else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            st.unavailable,
        );
    };
    let query = uri.query().unwrap_or("");
    let time = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "time")
        .map(|(_, v)| v.into_owned());
    let t_ms = match time.as_deref() {
        None | Some("") => crate::alert::live::now_ms(),
        Some(s) => match parse_time(s) {
            Some(t) => t,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_data",
                    &format!("invalid parameter \"time\": cannot parse {s:?} to a valid timestamp"),
                );
            }
        },
    };
    let joined = tokio::task::spawn_blocking(move || {
        // One read lock of the rules' storage per query, as the query API.
        summarize(t_ms, &mut |expr, t| {
            let mut out = None;
            view.with_storage(&mut |s| out = Some(Engine::new(s).instant(expr, t)));
            out.unwrap_or_else(|| Err(EvalError::Query("the storage was not available".into())))
        })
    })
    .await;
    match joined {
        Ok(Ok(summary)) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            summary.to_json().to_string(),
        )
            .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "execution", &e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("summary failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::promql::MemStorage;

    const STEP: i64 = 15_000;

    /// 61 samples, one every 15 s, at 0 … 15 min; evaluated at 15 min.
    const T: i64 = 60 * STEP;

    fn load(s: &mut MemStorage, series: &str, per_step: f64) {
        s.load(series, &format!("0+{per_step}x60"), STEP).unwrap();
    }

    /// Known input: counters growing linearly, so every `rate` over a
    /// window fully covered by samples is exact.
    fn storage() -> MemStorage {
        let mut s = MemStorage::new();
        // Per 15 s step: 30 + 12 + 12 successful requests, 6 failed ones
        // (48 of them conversations).
        let req = |e: &str, c: &str| {
            format!(r#"fastapi_requests_total{{method="POST", endpoint="{e}", status_code="{c}"}}"#)
        };
        load(&mut s, &req("/chat", "200"), 30.0);
        load(&mut s, &req("/chat/stream", "200"), 12.0);
        load(&mut s, &req("/health", "200"), 12.0);
        load(&mut s, &req("/chat", "500"), 6.0);
        // Latency: 60 requests per step measured, 45 s of total latency per step.
        let lat = r#"fastapi_request_duration_seconds_sum{method="POST", endpoint="/chat"}"#;
        load(&mut s, lat, 45.0);
        let cnt = r#"fastapi_request_duration_seconds_count{method="POST", endpoint="/chat"}"#;
        load(&mut s, cnt, 60.0);
        let tool = |n: &str, st: &str| {
            format!(r#"agent_tool_calls_total{{tool_name="{n}", status="{st}"}}"#)
        };
        for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            load(&mut s, &tool(name, "success"), (10 - i) as f64);
        }
        load(&mut s, &tool("a", "error"), 2.0);
        // "g" only fails: its success rate is 0, not missing; with 20
        // calls per step it is the top tool.
        load(&mut s, &tool("g", "error"), 20.0);
        let cost = |m: &str| format!(r#"llm_costs_total_usd{{model="{m}", provider="openai"}}"#);
        load(&mut s, &cost("gpt-4o"), 0.5);
        load(&mut s, &cost("gpt-4"), 0.25);
        s.load(r#"llm_daily_costs_usd{date="2026-11-24"}"#, "7x60", STEP)
            .unwrap();
        s.load(
            r#"llm_daily_costs_usd{date="2026-11-25"}"#,
            "0+0.75x60",
            STEP,
        )
        .unwrap();
        s.load("llm_daily_budget_usd", "100x60", STEP).unwrap();
        s
    }

    fn close(got: Option<f64>, want: f64) {
        let got = got.expect("a value");
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "got {got}, want {want}"
        );
    }

    #[test]
    fn figures_equal_the_known_input() {
        let s = summarize_storage(&storage(), T).unwrap();
        // 60 requests per 15 s step.
        close(s.rps, 4.0);
        // 45 s / 60 requests = 0.75 s.
        close(s.avg_latency_ms, 750.0);
        close(s.success_rate, 0.9);
        assert_eq!(s.status, Status::Degraded);
        // The last hour holds all 15 minutes (the counters start at 0, so
        // `increase` does not extrapolate): 60 steps of 48 conversations.
        close(s.conversations_1h, 60.0 * 48.0);
        close(s.llm_cost_1h, 60.0 * 0.75);
        close(s.cost_per_conversation, 0.75 / 48.0);
        let names: Vec<&str> = s
            .tool_usage_top5
            .iter()
            .map(|t| t.tool_name.as_str())
            .collect();
        assert_eq!(names, ["g", "a", "b", "c", "d"]);
        close(Some(s.tool_usage_top5[0].calls), 60.0 * 20.0);
        assert_eq!(s.tool_usage_top5[0].success_rate, Some(0.0));
        close(Some(s.tool_usage_top5[1].calls), 60.0 * 12.0);
        close(s.tool_usage_top5[1].success_rate, 10.0 / 12.0);
        close(s.tool_usage_top5[2].success_rate, 1.0);
        assert_eq!(s.daily, Some(("2026-11-25".to_string(), 45.0)));
        assert_eq!(s.daily_budget_usd, Some(100.0));
        // Since start: the counters' own values.
        close(s.requests, 60.0 * 60.0);
        close(s.conversations, 60.0 * 48.0);
        close(
            s.tool_calls,
            60.0 * (10.0 + 9.0 + 8.0 + 7.0 + 6.0 + 5.0 + 2.0 + 20.0),
        );
        close(s.llm_cost_usd, 45.0);
        close(s.cost_per_conversation_since_start, 45.0 / 2880.0);
    }

    #[test]
    fn healthy_above_the_threshold_and_unknown_without_traffic() {
        let mut st = MemStorage::new();
        load(
            &mut st,
            r#"fastapi_requests_total{endpoint="/chat", status_code="200"}"#,
            99.0,
        );
        load(
            &mut st,
            r#"fastapi_requests_total{endpoint="/chat", status_code="503"}"#,
            1.0,
        );
        let s = summarize_storage(&st, T).unwrap();
        close(s.success_rate, 0.99);
        assert_eq!(s.status, Status::Healthy);

        // Only 5xx: 0, not missing.
        let mut st = MemStorage::new();
        load(
            &mut st,
            r#"fastapi_requests_total{endpoint="/chat", status_code="500"}"#,
            1.0,
        );
        let s = summarize_storage(&st, T).unwrap();
        assert_eq!(s.success_rate, Some(0.0));
        assert_eq!(s.status, Status::Degraded);

        // Flat counters: no request in the window.
        let mut st = MemStorage::new();
        st.load(
            r#"fastapi_requests_total{endpoint="/chat", status_code="200"}"#,
            "5x60",
            STEP,
        )
        .unwrap();
        let s = summarize_storage(&st, T).unwrap();
        assert_eq!(s.rps, Some(0.0));
        assert_eq!(s.success_rate, None);
        assert_eq!(s.status, Status::Unknown);
        assert_eq!(s.avg_latency_ms, None);
        assert_eq!(s.cost_per_conversation, None);
        assert!(s.tool_usage_top5.is_empty());

        // Nothing at all.
        let s = summarize_storage(&MemStorage::new(), T).unwrap();
        assert_eq!(s.rps, None);
        assert_eq!(s.daily, None);
        let j = s.to_json();
        assert_eq!(j["system_health"]["status"], "unknown");
        assert!(j["system_health"]["rps"].is_null());
    }

    #[test]
    fn the_json_has_the_plans_shape_and_definitions() {
        let j = summarize_storage(&storage(), T).unwrap().to_json();
        assert_eq!(j["time"], 900.0);
        assert_eq!(j["system_health"]["status"], "degraded");
        assert_eq!(j["system_health"]["rps"], 4.0);
        assert_eq!(
            j["business_metrics"]["tool_usage_top5"][0]["tool_name"],
            "g"
        );
        assert_eq!(j["cost_metrics"]["date"], "2026-11-25");
        assert_eq!(j["cost_metrics"]["daily_budget_usd"], 100.0);
        assert_eq!(j["definitions"]["rps"], queries::RPS);
        assert_eq!(j["thresholds"]["healthy_success_rate"], 0.95);
    }

    #[test]
    fn every_query_parses() {
        use queries::*;
        for q in [
            RPS,
            AVG_LATENCY_SECONDS,
            SUCCESS_RATE,
            TOOL_CALLS_1H,
            TOOL_SUCCESS_1H,
            CONVERSATIONS_1H,
            LLM_COST_1H,
            DAILY_COST,
            DAILY_BUDGET,
            REQUESTS,
            CONVERSATIONS,
            TOOL_CALLS,
            LLM_COST,
        ] {
            crate::alert::promql::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }

    #[test]
    fn time_parses_as_the_query_api_reads_it() {
        assert_eq!(parse_time("1796137885.262"), Some(1_796_137_885_262));
        assert_eq!(parse_time("1.0006"), Some(1001));
        assert_eq!(parse_time("2026-12-01T00:00:00Z"), Some(1_796_083_200_000));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_time("NaN"), None);
    }
}
