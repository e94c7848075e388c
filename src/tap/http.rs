//! `GET /tap`: the events leaving components, streamed as newline-delimited
//! JSON for as long as the client reads (or until `limit`).
//!
//! Query parameters: `component` (repeatable; none means every source and
//! transform), `rate` (a sample rate: `0.1` or `1/10`), `limit` (events),
//! `filter` (a condition in the `filter` transform's syntax, as YAML or
//! JSON). One line per event, the event as a sink writes it:
//!
//! ```text
//! {"component":"app_logs","at":"2026-12-01T10:00:00.123Z","event":{...}}
//! ```
//!
//! and, when events were dropped because this client fell behind, at most
//! one notice a second: `{"dropped":12,"at":"…"}`.
//!
//! The filter and the sample run here, on an API task, never on the
//! pipeline's threads; the events are encoded as soon as they arrive, so
//! a slow client holds encoded lines — at most [`BODY_CHUNKS`] chunks and
//! [`BODY_BYTES`] bytes, beyond which they are dropped and counted — never
//! the pipeline's batches. This module does not decide what a tap
//! sees (see [`super`]) nor print anything (see [`super::client`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;

use super::{Subscription, Taps};
use crate::event::write_json_str;
use crate::transform::condition::{Condition, ConditionConfig};

/// Encoded chunks (one per tapped batch) that wait for a slow client
/// before further ones are dropped.
pub const BODY_CHUNKS: usize = 64;

/// Encoded bytes that wait for a slow client before further ones are
/// dropped.
pub const BODY_BYTES: usize = 4 << 20;

/// How often a client hears that events were dropped for it, at most.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// The routes of the tap API.
pub fn router(taps: Taps) -> Router {
    Router::new().route("/tap", get(tap)).with_state(taps)
}

/// What one tap asks for.
#[derive(Debug, Clone, Default)]
pub struct TapRequest {
    pub components: Vec<String>,
    /// The share of the (matching) events to show, in (0, 1].
    pub rate: Option<f64>,
    pub limit: Option<u64>,
    /// The condition's text, as given.
    pub filter: Option<String>,
}

impl TapRequest {
    /// The request as a query string (what `weir tap` sends).
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for c in &self.components {
            q.append_pair("component", c);
        }
        if let Some(r) = self.rate {
            q.append_pair("rate", &r.to_string());
        }
        if let Some(l) = self.limit {
            q.append_pair("limit", &l.to_string());
        }
        if let Some(f) = &self.filter {
            q.append_pair("filter", f);
        }
        q.finish()
    }

    /// Reads a query string; `Err` says which parameter is wrong.
    pub fn from_query(query: &str) -> Result<(TapRequest, Option<Condition>), String> {
        let mut req = TapRequest::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "component" => req.components.push(v.into_owned()),
                "rate" => req.rate = Some(parse_rate(&v)?),
                "limit" => {
                    req.limit = Some(
                        v.parse()
                            .map_err(|_| format!("limit: `{v}` is not a number of events"))?,
                    )
                }
                "filter" => req.filter = Some(v.into_owned()),
                other => {
                    return Err(format!(
                        "unknown parameter `{other}`: the tap takes component, rate, limit and filter"
                    ));
                }
            }
        }
        let condition = req.filter.as_deref().map(parse_filter).transpose()?;
        Ok((req, condition))
    }
}

/// A sample rate: `0.1`, `1/10`, `10%`; in (0, 1].
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let bad = || format!("rate: `{s}` is not a sample rate; write 0.1, 1/10 or 10%");
    let r = if let Some((a, b)) = s.split_once('/') {
        let (a, b): (f64, f64) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        a / b
    } else if let Some(p) = s.strip_suffix('%') {
        p.trim().parse::<f64>().map_err(|_| bad())? / 100.0
    } else {
        s.parse().map_err(|_| bad())?
    };
    if r.is_finite() && r > 0.0 && r <= 1.0 {
        Ok(r)
    } else {
        Err(format!(
            "rate: `{s}` is not in (0, 1]: it is the share of the events shown"
        ))
    }
}

/// A condition in the `filter` transform's syntax, written as YAML or JSON
/// (`{field: level, equals: ERROR}`).
pub fn parse_filter(text: &str) -> Result<Condition, String> {
    let node = crate::config::node::Node::parse(text).map_err(|(_, e)| format!("filter: {e}"))?;
    let cfg: ConditionConfig = node.deserialize().map_err(|e| format!("filter: {e}"))?;
    cfg.compile().map_err(|e| {
        if e.path.is_empty() {
            format!("filter: {}", e.message)
        } else {
            format!("filter: {}: {}", e.path.join("."), e.message)
        }
    })
}

async fn tap(State(taps): State<Taps>, RawQuery(query): RawQuery) -> Response {
    let (req, condition) = match TapRequest::from_query(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let sub = match taps.subscribe(&req.components) {
        Ok(s) => s,
        Err(super::SubscribeError::Stopping) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the pipeline is stopping\n",
            )
                .into_response();
        }
        Err(super::SubscribeError::Unknown(e)) => {
            return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response();
        }
    };
    let (tx, rx) = mpsc::channel(BODY_CHUNKS);
    let queued = Arc::new(AtomicUsize::new(0));
    let body = Body {
        tx,
        queued: Arc::clone(&queued),
    };
    tokio::spawn(pump(sub, req, condition, body));
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(Chunks { rx, queued }),
    )
        .into_response()
}

/// The response body: the chunks [`pump`] encodes.
struct Chunks {
    rx: mpsc::Receiver<Bytes>,
    /// Bytes sent to `rx` and not yet taken out.
    queued: Arc<AtomicUsize>,
}

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(b)) = &polled {
            self.queued.fetch_sub(b.len(), Ordering::Relaxed);
        }
        polled.map(|c| c.map(Ok))
    }
}

/// Where [`pump`] puts encoded chunks, within [`BODY_BYTES`].
struct Body {
    tx: mpsc::Sender<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// What became of a chunk.
enum Sent {
    Queued,
    /// The client is behind: the chunk was dropped.
    Full,
    /// The client is gone.
    Closed,
}

impl Body {
    fn send(&self, chunk: Vec<u8>) -> Sent {
        let len = chunk.len();
        if self.queued.load(Ordering::Relaxed) + len > BODY_BYTES {
            return if self.tx.is_closed() {
                Sent::Closed
            } else {
                Sent::Full
            };
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        match self.tx.try_send(Bytes::from(chunk)) {
            Ok(()) => Sent::Queued,
            Err(e) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(_) => Sent::Full,
                    mpsc::error::TrySendError::Closed(_) => Sent::Closed,
                }
            }
        }
    }
}

/// Keeps `rate` of what it is shown, evenly: 1/10 keeps every tenth.
struct Sampler {
    rate: f64,
    credit: f64,
}

impl Sampler {
    fn new(rate: Option<f64>) -> Sampler {
        let rate = rate.unwrap_or(1.0);
        // The first event is shown at once.
        Sampler { rate, credit: 1.0 }
    }

    fn keep(&mut self) -> bool {
        if self.credit >= 1.0 - 1e-9 {
            self.credit -= 1.0;
            self.credit += self.rate;
            true
        } else {
            self.credit += self.rate;
            false
        }
    }
}

fn now_text() -> String {
    let t = jiff::Timestamp::now();
    format!("{:.3}", t)
}

/// Moves one tap's events from the pipeline to its client: filters,
/// samples, encodes, and ends at `limit`, when the client goes away, or
/// when the pipeline stops.
async fn pump(mut sub: Subscription, req: TapRequest, condition: Option<Condition>, body: Body) {
    let mut sample = Sampler::new(req.rate);
    let limit = req.limit.unwrap_or(u64::MAX);
    let (mut shown, mut unsent, mut pending) = (0u64, 0u64, 0u64);
    let mut last_notice: Option<Instant> = None;
    let mut out = Vec::new();
    while shown < limit {
        let tapped = tokio::select! {
            t = sub.rx.recv() => match t {
                Some(t) => t,
                None => break,
            },
            _ = body.tx.closed() => break,
        };
        let at = now_text();
        let mut n = 0u64;
        for e in tapped.events.iter() {
            if shown + n >= limit {
                break;
            }
            if condition.as_ref().is_some_and(|c| !c.matches(e)) || !sample.keep() {
                continue;
            }
            out.extend_from_slice(b"{\"component\":");
            write_json_str(&mut out, &tapped.component);
            out.extend_from_slice(b",\"at\":\"");
            out.extend_from_slice(at.as_bytes());
            out.extend_from_slice(b"\",\"event\":");
            e.write_json(&mut out);
            out.extend_from_slice(b"}\n");
            n += 1;
        }
        drop(tapped);
        if n > 0 {
            match body.send(std::mem::take(&mut out)) {
                Sent::Queued => shown += n,
                Sent::Full => unsent += n,
                Sent::Closed => break,
            }
        }
        pending += sub.take_dropped(std::mem::take(&mut unsent));
        if pending > 0 && last_notice.is_none_or(|t| t.elapsed() >= NOTICE_EVERY) {
            let line = format!("{{\"dropped\":{pending},\"at\":\"{at}\"}}\n");
            if matches!(body.send(line.into_bytes()), Sent::Queued) {
                pending = 0;
                last_notice = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0.1"), Ok(0.1));
        assert_eq!(parse_rate("1/10"), Ok(0.1));
        assert_eq!(parse_rate("25%"), Ok(0.25));
        assert_eq!(parse_rate("1"), Ok(1.0));
        for bad in ["0", "2", "-1", "x", "1/0", "1/x", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tenth_is_every_tenth() {
        let mut s = Sampler::new(Some(0.1));
        let kept: Vec<usize> = (0..30).filter(|_| s.keep()).collect();
        assert_eq!(kept, [0, 10, 20]);
        let mut all = Sampler::new(None);
        assert!((0..5).all(|_| all.keep()));
    }

    #[test]
    fn filters_in_the_filter_transforms_syntax() {
        let ev = |l: &str| crate::decode::json::decode_object(l.into(), 0).unwrap();
        let c = parse_filter("{field: level, equals: ERROR}").unwrap();
        assert!(c.matches(&ev(r#"{"level":"ERROR"}"#)));
        assert!(!c.matches(&ev(r#"{"level":"INFO"}"#)));
        let c = parse_filter(r#"{"field": "status_code", "gte": 500}"#).unwrap();
        assert!(c.matches(&ev(r#"{"status_code":503}"#)));
        let e = parse_filter("level == \"ERROR\"").unwrap_err();
        assert!(e.starts_with("filter: "), "{e}");
        let e = parse_filter("{field: a, matches: '('}").unwrap_err();
        assert!(e.starts_with("filter: matches: invalid regex"), "{e}");
    }

    #[test]
    fn queries_round_trip() {
        let req = TapRequest {
            components: vec!["app logs".into(), "errors".into()],
            rate: Some(0.5),
            limit: Some(3),
            filter: Some("{field: level, equals: ERROR}".into()),
        };
        let (back, cond) = TapRequest::from_query(&req.to_query()).unwrap();
        assert_eq!(back.components, req.components);
        assert_eq!((back.rate, back.limit), (Some(0.5), Some(3)));
        assert!(cond.is_some());
        assert!(TapRequest::from_query("limit=x").is_err());
        assert!(TapRequest::from_query("sample=1").is_err());
    }
}
