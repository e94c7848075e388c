//! Prometheus remote write 1.0: the derived metrics pushed to a receiver
//! such as VictoriaMetrics, Mimir or Prometheus itself.
//!
//! Every `interval` the current value of every series is sent as one
//! `WriteRequest` (protobuf, hand-declared with prost — no build script),
//! compressed with snappy's block format, with the headers the spec
//! requires. Each request carries complete cumulative values, so a failed
//! push is retried (backoff with full jitter, `Retry-After` honoured) with
//! the newest values rather than the ones that failed; 4xx answers (but
//! 429) are not retried. A last push is made when the pipeline's inputs end,
//! so `--once` replays deliver their final values.
//!
//! Lines counted into the metrics are acknowledged to their sources only
//! once a push that includes them has been answered: a receiver that hangs
//! or is down holds the file checkpoints back, and a restart counts those
//! lines again (a counter reset, which `rate()` and `increase()` absorb).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::SharedStore;
use super::store::{Kind, Store, format_value};
use crate::ack::Ack;
use crate::config::units::Dur;
use crate::event::SharedBatch;
use crate::http::{Auth, Backoff, BasicAuth, RetryConfig, Target, TlsConfig};
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Registry};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// e.g. `http://127.0.0.1:8428/api/v1/write`
    pub url: String,
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Extra request headers (e.g. a tenant header).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Labels added to every series (e.g. `instance`, `job`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub bearer_token: Option<String>,
    pub auth: Option<BasicAuth>,
    pub tls: Option<TlsConfig>,
    #[serde(default = "default_retry")]
    pub retry: RetryConfig,
}

fn default_retry() -> RetryConfig {
    RetryConfig {
        initial_backoff: Dur(Duration::from_millis(250)),
        max_backoff: Dur(Duration::from_secs(30)),
        max_duration: None,
    }
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(15))
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

impl RemoteWriteConfig {
    /// (key, message) of the first problem.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !crate::http::is_http_url(&self.url) {
            return Err((
                "url",
                format!(
                    "`{}` is not an http(s) URL, e.g. http://127.0.0.1:8428/api/v1/write",
                    self.url
                ),
            ));
        }
        for k in self.labels.keys() {
            if !super::rules::valid_label_name(k) {
                return Err(("labels", format!("`{k}` is not a Prometheus label name")));
            }
        }
        if self.interval.0.is_zero() {
            return Err(("interval", "the interval must be more than 0".into()));
        }
        Ok(())
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// One series as remote write wants it: `__name__` included, names sorted
/// byte-wise, empty values left out (an empty label is an absent label).
fn series(
    name: &str,
    labels: &[(&str, &str)],
    extra: &BTreeMap<String, String>,
    value: f64,
    ts: i64,
) -> TimeSeries {
    let mut all: Vec<Label> = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| Label {
            name: k.to_string(),
            value: v.to_string(),
        })
        .collect();
    for (k, v) in extra {
        if !all.iter().any(|l| &l.name == k) && !v.is_empty() {
            all.push(Label {
                name: k.clone(),
                value: v.clone(),
            });
        }
    }
    all.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    all.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    TimeSeries {
        labels: all,
        samples: vec![Sample {
            value,
            timestamp: ts,
        }],
    }
}

/// Every series of the store at time `ts` (ms).
pub fn snapshot(store: &Store, extra: &BTreeMap<String, String>, ts: i64) -> WriteRequest {
    let mut out = Vec::new();
    for f in &store.families {
        for s in &f.series {
            let labels: Vec<(&str, &str)> = f
                .label_names
                .iter()
                .map(String::as_str)
                .zip(s.labels.iter().map(|l| &**l))
                .collect();
            match &f.kind {
                Kind::Histogram { buckets } => {
                    let mut cumulative = 0;
                    for (i, n) in s.buckets.iter().enumerate() {
                        cumulative += n;
                        let le = buckets
                            .get(i)
                            .map_or("+Inf".to_string(), |b| format_value(*b));
                        let mut with_le = labels.clone();
                        with_le.push(("le", &le));
                        out.push(series(
                            &format!("{}_bucket", f.name),
                            &with_le,
                            extra,
                            cumulative as f64,
                            ts,
                        ));
                    }
                    out.push(series(
                        &format!("{}_sum", f.name),
                        &labels,
                        extra,
                        s.value,
                        ts,
                    ));
                    out.push(series(
                        &format!("{}_count", f.name),
                        &labels,
                        extra,
                        s.count as f64,
                        ts,
                    ));
                }
                _ => out.push(series(&f.name, &labels, extra, s.value, ts)),
            }
        }
    }
    WriteRequest { timeseries: out }
}

/// The snappy-compressed protobuf body of a request.
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input")
}

/// Acknowledgements of batches that were counted but are not yet in a push
/// the receiver accepted. Each is settled by the first accepted push taken
/// after it was counted; what is still here when weir stops was not
/// delivered, and stays unacknowledged.
#[derive(Clone, Default)]
pub struct AwaitingPush(Arc<Mutex<Awaiting>>);

#[derive(Default)]
struct Awaiting {
    /// Batches counted so far; a push taken now covers every one below.
    counted: u64,
    /// (batch number, events, acknowledgement), oldest first.
    acks: VecDeque<(u64, usize, Ack)>,
}

impl AwaitingPush {
    /// Keeps the acknowledgement of a batch that has just been counted
    /// (never its events).
    pub fn hold(&self, batch: SharedBatch) {
        let SharedBatch { events, ack } = batch;
        let n = events.len();
        drop(events);
        let mut w = self.0.lock().expect("remote write acks lock");
        let seq = w.counted;
        w.counted += 1;
        if let Some(a) = ack {
            w.acks.push_back((seq, n, a));
        }
    }

    /// How many batches a snapshot taken now includes. Call it while
    /// holding the store lock, so no batch is counted in between.
    fn mark(&self) -> u64 {
        self.0.lock().expect("remote write acks lock").counted
    }

    /// A push covering the first `covered` batches was accepted.
    fn settle(&self, covered: u64) {
        let mut w = self.0.lock().expect("remote write acks lock");
        while w.acks.front().is_some_and(|(seq, _, _)| *seq < covered) {
            if let Some((_, _, a)) = w.acks.pop_front() {
                a.delivered();
            }
        }
    }

    /// Lets every waiting batch go undelivered; returns how many events
    /// they held.
    fn abandon(&self) -> usize {
        let mut w = self.0.lock().expect("remote write acks lock");
        w.acks.drain(..).map(|(_, n, _)| n).sum()
    }
}

/// How one push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Accepted,
    /// The receiver refused it for good (4xx other than 429): resending the
    /// same values would get the same answer.
    Refused,
    /// `retry.max_duration` passed; the next push carries the values again.
    Failed,
    /// The grace period after a stop ended first.
    Expired,
}

struct Pusher {
    cfg: RemoteWriteConfig,
    target: Target,
    store: SharedStore,
    awaiting: AwaitingPush,
    shutdown: Shutdown,
    sink: String,
    ok: Counter,
    failed: Counter,
    samples: Counter,
    undelivered: Counter,
}

impl Pusher {
    /// Sends the current values, retrying (always with the newest values)
    /// until the receiver answers, `retry.max_duration` passes, or the grace
    /// period after a stop ends.
    async fn push(&self, backoff: &mut Backoff) -> Pushed {
        backoff.reset();
        let started = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let (req, covered) = {
                let store = self.store.lock().expect("metrics store lock");
                (snapshot(&store, &self.cfg.labels, ts), self.awaiting.mark())
            };
            if req.timeseries.is_empty() {
                // What was counted made no series: nothing to deliver.
                self.awaiting.settle(covered);
                return Pushed::Accepted;
            }
            let n = req.timeseries.len() as u64;
            let request = self
                .target
                .post(encode(&req), "application/x-protobuf", Some("snappy"))
                .header("X-Prometheus-Remote-Write-Version", "0.1.0");
            let answer = tokio::select! {
                a = request.send() => a,
                _ = self.shutdown.expired() => return Pushed::Expired,
            };
            let (error, retry_after) = match answer {
                Ok(resp) if resp.status().is_success() => {
                    self.ok.inc();
                    self.samples.add(n);
                    self.awaiting.settle(covered);
                    return Pushed::Accepted;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let after = crate::http::retry_after(resp.headers());
                    let text = resp.text().await.unwrap_or_default();
                    let error = format!(
                        "remote write to {} answered {status}: {}",
                        self.target.shown_url(),
                        text.trim()
                    );
                    if !(status.is_server_error() || status.as_u16() == 429) {
                        tracing::error!(sink = %self.sink, "{error}; not resending these values");
                        self.failed.inc();
                        self.awaiting.settle(covered);
                        return Pushed::Refused;
                    }
                    (error, after)
                }
                Err(e) => (self.target.describe(&e), None),
            };
            if backoff.exhausted(started.elapsed()) {
                tracing::error!(sink = %self.sink, error = %error, attempt, "remote write gave up after retry.max_duration; the next push carries the values again");
                self.failed.inc();
                return Pushed::Failed;
            }
            let wait = backoff.wait(retry_after);
            tracing::warn!(sink = %self.sink, error = %error, attempt, retry_in = ?wait, "remote write failed; retrying with the newest values");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.expired() => return Pushed::Expired,
            }
        }
    }

    /// The last push, when the pipeline's inputs are done; what it does not
    /// deliver stays unacknowledged.
    async fn last_push(&self, backoff: &mut Backoff) {
        if matches!(self.push(backoff).await, Pushed::Accepted | Pushed::Refused) {
            return;
        }
        let events = self.awaiting.abandon();
        if events > 0 {
            self.undelivered.add(events as u64);
            tracing::error!(sink = %self.sink, events, "remote write did not accept the final values; the events they count stay unacknowledged (file sources read them again after a restart)");
        }
    }
}

/// Starts pushing; send on the returned channel (or drop it) to make a last
/// push and stop. The handle finishes after that last push. Batches held in
/// `awaiting` are acknowledged as pushes that include them are accepted.
pub fn start(
    cfg: RemoteWriteConfig,
    store: SharedStore,
    awaiting: AwaitingPush,
    registry: &Registry,
    sink: &str,
    shutdown: Shutdown,
) -> Result<(oneshot::Sender<()>, tokio::task::JoinHandle<()>), String> {
    let l = |outcome| [("sink", sink), ("outcome", outcome)];
    let pusher = Pusher {
        target: Target::new(
            "the remote write receiver",
            cfg.url.clone(),
            cfg.timeout.0,
            cfg.tls.as_ref(),
            Auth {
                basic: cfg.auth.clone(),
                bearer_token: cfg.bearer_token.clone(),
                api_key: None,
                headers: cfg
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
        )?,
        store,
        awaiting,
        shutdown,
        sink: sink.to_string(),
        ok: registry.counter(
            "weir_remote_write_requests_total",
            "Remote write requests, by sink and outcome.",
            &l("ok"),
        ),
        failed: registry.counter(
            "weir_remote_write_requests_total",
            "Remote write requests, by sink and outcome.",
            &l("failed"),
        ),
        samples: registry.counter(
            "weir_remote_write_samples_total",
            "Samples accepted by the remote write receiver.",
            &[("sink", sink)],
        ),
        undelivered: crate::sink::SinkMetrics::undelivered(registry, sink),
        cfg,
    };
    let (tx, mut rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut backoff = Backoff::new(pusher.cfg.retry);
        let mut tick = tokio::time::interval(pusher.cfg.interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    pusher.push(&mut backoff).await;
                }
                _ = &mut rx => break,
            }
        }
        pusher.last_push(&mut backoff).await;
    });
    Ok((tx, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sorts_labels_and_expands_histograms() {
        let mut st = Store::default();
        let f = st
            .family(
                "lat_seconds",
                "",
                Kind::Histogram { buckets: vec![1.0] },
                &["zone".into(), "app".into()],
                10,
            )
            .unwrap();
        let mut key = String::new();
        let s = st.series(f, &["eu", ""], &mut key);
        st.observe(f, s, 0.5);
        let extra = BTreeMap::from([("instance".to_string(), "weir".to_string())]);
        let req = snapshot(&st, &extra, 1000);
        let names: Vec<String> = req
            .timeseries
            .iter()
            .map(|t| {
                t.labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(
            names,
            [
                "__name__=lat_seconds_bucket,instance=weir,le=1,zone=eu",
                "__name__=lat_seconds_bucket,instance=weir,le=+Inf,zone=eu",
                "__name__=lat_seconds_sum,instance=weir,zone=eu",
                "__name__=lat_seconds_count,instance=weir,zone=eu",
            ]
        );
        // Round trip through snappy and protobuf.
        let body = encode(&req);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(WriteRequest::decode(raw.as_slice()).unwrap(), req);
    }
}
