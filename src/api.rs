//! The HTTP API: `GET /metrics` (Prometheus text format), `GET /health`
//! (the process is up) and `GET /ready` (the pipeline is running and not
//! stopping). Nothing here changes the pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
use crate::telemetry::Registry;

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
pub struct ApiState {
    pub registry: Registry,
    pub ready: Arc<AtomicBool>,
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

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
}

/// Serves until `stop` fires.
pub async fn serve(listener: TcpListener, state: ApiState, stop: Shutdown) {
    let r = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.wait().await })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "the API server stopped");
    }
}
