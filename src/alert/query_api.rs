//! Prometheus' HTTP query API (`/api/v1/*`) over the running rules'
//! storage and status, so Grafana, promtool and other Prometheus clients
//! can read weir's metrics and alerts.
//!
//! Served, GET and POST (form-encoded), with Prometheus 2.42's JSON shapes,
//! error types and messages: `query`, `query_range`, `series`, `labels`,
//! `label/<name>/values`, `alerts`, `rules` (`type=alert|record`),
//! `status/buildinfo`, and, so that Grafana shows no errors, `metadata`
//! (always `{}`) and `query_exemplars` (always `[]`).
//!
//! Deliberately not served: exemplars, native histograms, query
//! statistics (`stats` is ignored), query timeouts (`timeout` is checked
//! but not enforced: the engine has no cancellation) and `limit`;
//! targets, metadata, TSDB status, admin and remote read/write.
//!
//! Differences one may notice: rules' `query` is the expression as written
//! (Prometheus prints its parsed form); parse error messages are the
//! `promql-parser` crate's, not Prometheus'; `buildinfo` reports version
//! 2.42.0, the Prometheus whose semantics weir follows (Grafana picks the
//! features it uses by this number), and weir's own version as `revision`.
//!
//! Queries run on the blocking thread pool, holding the storage (a read
//! lock of the evaluator) only for one evaluation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{MethodRouter, any, get};
use promql_parser::label::Matcher;

use super::promql::{Engine, Labels, Storage, Value};
use super::state::Alert;
use super::status::{GroupStatus, RuleStatus, RuleStatusKind, RulesView};

#[path = "query_api_params.rs"]
mod params;

pub use params::{ApiError, ErrorType};
use params::{
    ApiResult, J, MAX_TIME_MS, Params, matcher_sets, parse_duration, parse_time, respond, rfc3339,
    sample_value, time_param, timestamp,
};

type View = Arc<dyn RulesView>;

/// Most points per series a range query may return, as Prometheus.
const MAX_POINTS: i128 = 11_000;

/// The query API, routes under `/api/v1/`, reading `view`.
pub fn router(view: Arc<dyn RulesView>) -> Router {
    fn both<H, T>(h: H) -> MethodRouter<View>
    where
        H: axum::handler::Handler<T, View> + Clone,
        T: 'static,
    {
        get(h.clone()).post(h)
    }
    Router::new()
        .route("/api/v1/query", both(query))
        .route("/api/v1/query_range", both(query_range))
        .route("/api/v1/series", both(series))
        .route("/api/v1/labels", both(labels))
        .route("/api/v1/label/{name}/values", both(label_values))
        .route("/api/v1/alerts", both(alerts))
        .route("/api/v1/rules", both(rules))
        .route("/api/v1/status/buildinfo", both(buildinfo))
        .route("/api/v1/metadata", both(metadata))
        .route("/api/v1/query_exemplars", both(exemplars))
        .with_state(view)
}

/// What `/api/v1/*` answers when there are no rules to read: a
/// Prometheus error of type `unavailable` (503), which Grafana shows.
pub fn unavailable_router(why: &'static str) -> Router {
    let h = move || async move { respond(Err(ApiError::new(ErrorType::Unavailable, why))) };
    Router::new()
        .route("/api/v1", any(h))
        .route("/api/v1/{*rest}", any(h))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs `f` over the view's storage on the blocking pool.
async fn with_storage<T, F>(view: View, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Storage) -> T + Send + 'static,
{
    let joined = tokio::task::spawn_blocking(move || {
        let mut f = Some(f);
        let mut out = None;
        view.with_storage(&mut |s| {
            if let Some(f) = f.take() {
                out = Some(f(s));
            }
        });
        out
    })
    .await;
    match joined {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(ApiError::new(
            ErrorType::Internal,
            "the storage was not available",
        )),
        Err(e) => Err(ApiError::new(
            ErrorType::Internal,
            format!("query failed: {e}"),
        )),
    }
}

fn check_timeout(p: &Params) -> Result<(), ApiError> {
    match p.get("timeout") {
        "" => Ok(()),
        t => parse_duration(t)
            .map(|_| ())
            .map_err(|e| ApiError::param("timeout", e)),
    }
}

fn exec_err(e: super::promql::EvalError) -> ApiError {
    ApiError::new(ErrorType::Execution, e.to_string())
}

async fn query(State(view): State<View>, p: Params) -> Response {
    respond(query_inner(view, p).await)
}

async fn query_inner(view: View, p: Params) -> ApiResult {
    let t = time_param(&p, "time", now_ms())?;
    check_timeout(&p)?;
    let expr = super::promql::parse(p.get("query")).map_err(|e| ApiError::param("query", e))?;
    let v = with_storage(view, move |s| Engine::new(s).instant(&expr, t)).await?;
    Ok(query_data(&v.map_err(exec_err)?))
}

async fn query_range(State(view): State<View>, p: Params) -> Response {
    respond(query_range_inner(view, p).await)
}

async fn query_range_inner(view: View, p: Params) -> ApiResult {
    let start = parse_time(p.get("start")).map_err(|e| ApiError::param("start", e))?;
    let end = parse_time(p.get("end")).map_err(|e| ApiError::param("end", e))?;
    if end < start {
        return Err(ApiError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_ns = parse_duration(p.get("step")).map_err(|e| ApiError::param("step", e))?;
    let step_ms = (step_ns / 1_000_000) as i64;
    if step_ns <= 0 || step_ms <= 0 {
        return Err(ApiError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end as i128 - start as i128) * 1_000_000 / step_ns > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    check_timeout(&p)?;
    let expr = super::promql::parse(p.get("query")).map_err(ApiError::bad_data)?;
    if let Some(e) = super::promql::engine::range_type_error(&expr) {
        return Err(ApiError::bad_data(e));
    }
    let m = with_storage(view, move |s| {
        Engine::new(s).range(&expr, start, end, step_ms)
    })
    .await?;
    Ok(query_data(&Value::Matrix(m.map_err(exec_err)?)))
}

/// `{"resultType":…,"result":…}`.
fn query_data(v: &Value) -> J {
    let (kind, result) = match v {
        Value::Scalar { t, v } => (
            "scalar",
            J::Arr(vec![
                timestamp(*t),
                J::Str(super::promql::format::format_f(*v)),
            ]),
        ),
        Value::String { t, v } => ("string", J::Arr(vec![timestamp(*t), J::str(v)])),
        Value::Vector(vec) => (
            "vector",
            J::Arr(
                vec.iter()
                    .map(|s| {
                        J::obj([
                            ("metric", labels_json(&s.labels)),
                            ("value", J::Arr(vec![timestamp(s.t), sample_value(s.v)])),
                        ])
                    })
                    .collect(),
            ),
        ),
        Value::Matrix(m) => (
            "matrix",
            J::Arr(
                m.iter()
                    .map(|s| {
                        let points = s
                            .samples
                            .iter()
                            .map(|(t, v)| J::Arr(vec![timestamp(*t), sample_value(*v)]))
                            .collect();
                        J::obj([
                            ("metric", labels_json(&s.labels)),
                            ("values", J::Arr(points)),
                        ])
                    })
                    .collect(),
            ),
        ),
    };
    J::obj([("resultType", J::str(kind)), ("result", result)])
}

fn labels_json(l: &Labels) -> J {
    J::strings(l.iter())
}

fn pairs_json(pairs: &[(String, String)]) -> J {
    J::strings(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The label sets of the series matching any of `sets` in `[start, end]`,
/// sorted; with no sets, every series.
async fn select_labels(
    view: View,
    sets: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
) -> Result<BTreeSet<Labels>, ApiError> {
    with_storage(view, move |s| {
        let mut out = BTreeSet::new();
        let all = [Vec::new()];
        let sets = if sets.is_empty() { &all[..] } else { &sets[..] };
        for ms in sets {
            out.extend(s.select(ms, start, end).into_iter().map(|s| s.labels));
        }
        out
    })
    .await
}

/// The `start`/`end` of the metadata queries: from the oldest sample to
/// Prometheus' largest time by default.
fn span(view: &View, p: &Params) -> Result<(i64, i64), ApiError> {
    let start = match p.get("start") {
        "" => view.oldest_ms(),
        _ => time_param(p, "start", 0)?,
    };
    let end = time_param(p, "end", MAX_TIME_MS)?;
    Ok((start, end))
}

async fn series(State(view): State<View>, p: Params) -> Response {
    respond(series_inner(view, p).await)
}

async fn series_inner(view: View, p: Params) -> ApiResult {
    let matches = p.all("match[]");
    if matches.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = span(&view, &p)?;
    let sets = matcher_sets(&matches).map_err(|e| ApiError::param("match[]", e))?;
    let found = select_labels(view, sets, start, end).await?;
    Ok(J::Arr(found.iter().map(labels_json).collect()))
}

async fn labels(State(view): State<View>, p: Params) -> Response {
    respond(labels_inner(view, p).await)
}

async fn labels_inner(view: View, p: Params) -> ApiResult {
    let (start, end) = span(&view, &p)?;
    let sets = matcher_sets(&p.all("match[]")).map_err(ApiError::bad_data)?;
    let found = select_labels(view, sets, start, end).await?;
    let names: BTreeSet<&str> = found
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k))
        .collect();
    Ok(J::Arr(names.into_iter().map(J::str).collect()))
}

async fn label_values(State(view): State<View>, Path(name): Path<String>, p: Params) -> Response {
    respond(label_values_inner(view, name, p).await)
}

fn is_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn label_values_inner(view: View, name: String, p: Params) -> ApiResult {
    if !is_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (start, end) = span(&view, &p)?;
    let sets = matcher_sets(&p.all("match[]")).map_err(ApiError::bad_data)?;
    let found = select_labels(view, sets, start, end).await?;
    let values: BTreeSet<&str> = found
        .iter()
        .map(|l| l.get(&name))
        .filter(|v| !v.is_empty())
        .collect();
    Ok(J::Arr(values.into_iter().map(J::str).collect()))
}

fn alert_json(a: &Alert) -> J {
    let mut fields = vec![
        ("labels", labels_json(&a.labels)),
        ("annotations", pairs_json(&a.annotations)),
        ("state", J::Str(a.state.to_string())),
        ("activeAt", rfc3339(Some(a.active_at))),
    ];
    if let Some(t) = a.keep_firing_since {
        fields.push(("keepFiringSince", rfc3339(Some(t))));
    }
    fields.push((
        "value",
        J::Str(super::promql::format::format_float_e(a.value)),
    ));
    J::obj(fields)
}

async fn alerts(State(view): State<View>) -> Response {
    let groups = view.groups();
    let all = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| match &r.kind {
            RuleStatusKind::Alerting { alerts, .. } => Some(alerts),
            RuleStatusKind::Recording => None,
        })
        .flatten()
        .map(alert_json)
        .collect();
    respond(Ok(J::obj([("alerts", J::Arr(all))])))
}

async fn rules(State(view): State<View>, p: Params) -> Response {
    let typ = p.get("type").to_lowercase();
    if !matches!(typ.as_str(), "" | "alert" | "record") {
        return respond(Err(ApiError::param(
            "type",
            format!("not supported value {typ:?}"),
        )));
    }
    let (want_alerts, want_records) = (typ != "record", typ != "alert");
    let groups = view
        .groups()
        .iter()
        .map(|g| group_json(g, want_alerts, want_records))
        .collect();
    respond(Ok(J::obj([("groups", J::Arr(groups))])))
}

fn group_json(g: &GroupStatus, want_alerts: bool, want_records: bool) -> J {
    let rules = g
        .rules
        .iter()
        .filter(|r| match r.kind {
            RuleStatusKind::Alerting { .. } => want_alerts,
            RuleStatusKind::Recording => want_records,
        })
        .map(rule_json)
        .collect();
    J::obj([
        ("name", J::str(&g.name)),
        ("file", J::str(&g.file)),
        ("rules", J::Arr(rules)),
        ("interval", J::num(g.interval_ms as f64 / 1000.0)),
        ("limit", J::int(g.limit as i64)),
        ("evaluationTime", J::num(g.evaluation_seconds)),
        ("lastEvaluation", rfc3339(g.last_evaluation_ms)),
    ])
}

/// One rule, with Prometheus' fields in its order (`lastError` only when
/// there is one; a recording rule's `labels` only when it has some).
fn rule_json(r: &RuleStatus) -> J {
    let mut f: Vec<(&str, J)> = Vec::new();
    let last_error = r.last_error.as_deref().filter(|e| !e.is_empty());
    match &r.kind {
        RuleStatusKind::Alerting {
            for_ms,
            keep_firing_for_ms,
            annotations,
            state,
            alerts,
        } => {
            f.push(("state", J::Str(state.to_string())));
            f.push(("name", J::str(&r.name)));
            f.push(("query", J::str(&r.query)));
            f.push(("duration", J::num(*for_ms as f64 / 1000.0)));
            f.push(("keepFiringFor", J::num(*keep_firing_for_ms as f64 / 1000.0)));
            f.push(("labels", pairs_json(&r.labels)));
            f.push(("annotations", pairs_json(annotations)));
            f.push(("alerts", J::Arr(alerts.iter().map(alert_json).collect())));
        }
        RuleStatusKind::Recording => {
            f.push(("name", J::str(&r.name)));
            f.push(("query", J::str(&r.query)));
            if !r.labels.is_empty() {
                f.push(("labels", pairs_json(&r.labels)));
            }
        }
    }
    f.push(("health", J::str(r.health.word())));
    if let Some(e) = last_error {
        f.push(("lastError", J::str(e)));
    }
    f.push(("evaluationTime", J::num(r.evaluation_seconds)));
    f.push(("lastEvaluation", rfc3339(r.last_evaluation_ms)));
    let kind = match r.kind {
        RuleStatusKind::Alerting { .. } => "alerting",
        RuleStatusKind::Recording => "recording",
    };
    f.push(("type", J::str(kind)));
    J::obj(f)
}

async fn buildinfo() -> Response {
    respond(Ok(J::obj([
        ("version", J::str("2.42.0")),
        (
            "revision",
            J::str(concat!("weir-", env!("CARGO_PKG_VERSION"))),
        ),
        ("branch", J::str("weir")),
        ("buildUser", J::str("unknown")),
        ("buildDate", J::str("unknown")),
        ("goVersion", J::str("none (weir, Rust)")),
    ])))
}

async fn metadata() -> Response {
    respond(Ok(J::Obj(Vec::new())))
}

async fn exemplars() -> Response {
    respond(Ok(J::Arr(Vec::new())))
}

#[cfg(test)]
#[path = "query_api_tests.rs"]
mod tests;
