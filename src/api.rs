//! The HTTP API: `GET /metrics` (Prometheus text format), `GET /health`
//! (the process is up), `GET /ready` (the pipeline is running and not
//! stopping), `POST /-/reload`, Prometheus' query API under `/api/v1/`
//! ([`crate::alert::query_api`]) when there are rules to read, the live
//! page at `GET /` ([`page`]), the plan's summary at `GET /api/summary`
//! ([`summary`]) and `GET /tap` ([`crate::tap::http`]). Nothing here but
//! the reload changes the pipeline.
//!
//! The API must never starve the pipeline of file descriptors, whatever
//! clients do: at most [`Limits::max_connections`] connections are open at
//! once (further ones wait in the kernel's listen backlog, holding no
//! descriptor of weir's), and a connection whose request headers — or, when
//! kept alive, whose next request — do not arrive within
//! [`Limits::header_read_timeout`] is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub mod page;
pub mod summary;

use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Gauge, Registry};

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
pub struct ApiState {
    pub registry: Registry,
    pub ready: Arc<AtomicBool>,
    /// Where `POST /-/reload` asks the running pipeline to reload.
    pub reloads: Option<tokio::sync::mpsc::Sender<crate::topology::ReloadRequest>>,
    /// The running rules the query API (`/api/v1/*`) reads; without them
    /// those endpoints answer an `unavailable` error.
    pub rules: Option<Arc<dyn crate::alert::status::RulesView>>,
    /// What `GET /tap` streams from.
    pub taps: crate::tap::Taps,
}

/// `POST /-/reload` (or PUT, as Prometheus takes both): re-reads the
/// pipeline file and applies it. 200 with what changed; 500 with the
/// errors when the file is invalid (the running pipeline stays).
async fn reload(State(s): State<ApiState>) -> impl IntoResponse {
    let Some(tx) = s.reloads else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available\n".to_string(),
        );
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let req = crate::topology::ReloadRequest { reply: Some(reply) };
    if tx.send(req).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is stopping\n".to_string(),
        );
    }
    match answer.await {
        Ok(Ok(summary)) => (StatusCode::OK, format!("reloaded: {summary}\n")),
        Ok(Err(errors)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload the pipeline; it keeps running as it was:\n{errors}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is stopping\n".to_string(),
        ),
    }
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    let mut body = String::with_capacity(4096);
    s.registry.render(&mut body);
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body)
}

async fn health() -> impl IntoResponse {
    "ok\n"
}

async fn ready(State(s): State<ApiState>) -> impl IntoResponse {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Answer of `/api/v1/*` when no rules are running.
const NO_RULES: &str = "no alerting section is configured: weir serves the Prometheus query API (/api/v1/) only for its alert rules and the series they read";

pub fn router(state: ApiState) -> Router {
    let query_api = match &state.rules {
        Some(view) => crate::alert::query_api::router(view.clone()),
        None => crate::alert::query_api::unavailable_router(NO_RULES),
    };
    let summary = summary::router(state.rules.clone(), NO_RULES);
    let taps = crate::tap::http::router(state.taps.clone());
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/-/reload", axum::routing::post(reload).put(reload))
        .with_state(state)
        .merge(query_api)
        .merge(summary)
        .merge(page::router())
        .merge(taps)
}

/// How much of weir one API client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// The time a connection has to send its request headers, and, once
    /// kept alive, the next request.
    pub header_read_timeout: Duration,
}

impl Limits {
    /// The configured limits, with the connections bounded by the
    /// open-file limit (see [`crate::rlimit::api_budget`]).
    pub fn new(cfg: &crate::config::ApiConfig, open_files: Option<u64>) -> Limits {
        let max_connections = crate::rlimit::api_budget(cfg.max_connections, open_files);
        if max_connections < cfg.max_connections {
            tracing::warn!(
                configured = cfg.max_connections,
                open_file_limit = open_files,
                "api.max_connections is more than a quarter of the open-file limit; serving {max_connections} API connections at most so that the sources keep descriptors for their files (raise the limit, e.g. LimitNOFILE= in the systemd unit or ulimit -n, to allow more)"
            );
        }
        Limits {
            max_connections,
            header_read_timeout: cfg.header_read_timeout.0,
        }
    }
}

#[derive(Clone)]
struct ApiMetrics {
    open: Gauge,
    limit_reached: Counter,
    timed_out: Counter,
}

impl ApiMetrics {
    fn new(r: &Registry, limits: &Limits) -> ApiMetrics {
        r.gauge(
            "weir_api_max_connections",
            "API connections served at once (api.max_connections, bounded by the open-file limit).",
            &[],
        )
        .set(limits.max_connections as i64);
        ApiMetrics {
            open: r.gauge("weir_api_connections_open", "API connections open now.", &[]),
            limit_reached: r.counter(
                "weir_api_connection_limit_reached_total",
                "Times the API had max_connections open, so new connections waited in the listen backlog.",
                &[],
            ),
            timed_out: r.counter(
                "weir_api_connections_timed_out_total",
                "API connections closed because request headers (or the next request on a kept-alive connection) did not arrive within header_read_timeout.",
                &[],
            ),
        }
    }
}

/// How often the same warning about API clients may be logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Serves until `stop` fires, within `limits`.
pub async fn serve(listener: TcpListener, state: ApiState, limits: Limits, stop: Shutdown) {
    let metrics = ApiMetrics::new(&state.registry, &limits);
    let app = router(state);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut conns = tokio::task::JoinSet::new();
    let (mut limit_warned, mut accept_warned): (Option<Instant>, Option<Instant>) = (None, None);
    let due = |last: &mut Option<Instant>| {
        let due = last.is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    };
    loop {
        while conns.try_join_next().is_some() {}
        // A permit first, then accept: at the limit nothing is accepted,
        // and new connections wait in the kernel's backlog.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics.limit_reached.inc();
                if due(&mut limit_warned) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "the API has max_connections connections open; new ones wait until one closes (raise api.max_connections if the clients are legitimate)"
                    );
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = stop.wait() => break,
                }
            }
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or a connection
                    // reset before it was accepted: wait a little rather
                    // than spin.
                    if due(&mut accept_warned) {
                        tracing::warn!(error = %e, "the API cannot accept a connection; trying again");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = stop.wait() => break,
                    }
                }
            },
            _ = stop.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let (stop, metrics) = (stop.clone(), metrics.clone());
        metrics.open.add(1);
        conns.spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.wait() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r
                && e.is_timeout()
            {
                metrics.timed_out.inc();
            }
            metrics.open.add(-1);
        });
    }
    // No new connections; those in flight finish their request, briefly.
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}
