//! A sink whose server accepts the connection and never answers: weir must
//! not checkpoint what it never delivered. For Loki, Elasticsearch and
//! remote write, a `--once` replay of 100,000 lines against a hung server is
//! stopped (SIGTERM, so the grace period runs out; or SIGKILL), and a
//! restart against a working receiver must deliver every line.

mod common;
use weir_testkit::es as fake_es;
use weir_testkit::loki as fake_loki;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use weir_testkit::http_server;

const LINES: usize = 100_000;
const GRACE: Duration = Duration::from_secs(5);

/// Accepts connections and holds them open without reading or answering.
struct HungServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HungServer {
    fn start() -> HungServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st) = (Arc::clone(&accepted), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        held.push(c);
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HungServer {
            port,
            accepted,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn write_log(s: &Scratch) {
    let mut f = std::fs::File::create(s.path("logs/app.log")).unwrap();
    let mut text = String::with_capacity(LINES * 100);
    for i in 0..LINES {
        text.push_str(&format!(
            "{{\"timestamp\": \"2026-11-25T06:{:02}:{:02}.{:03}Z\", \"level\": \"INFO\", \"seq\": {i}, \"message\": \"工具调用完成 {i}\"}}\n",
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1000
        ));
    }
    f.write_all(text.as_bytes()).unwrap();
}

/// The pipeline: the log file into one sink, described by `sink`.
fn pipeline_with(s: &Scratch, sink: &str) -> String {
    pipeline(
        s,
        "p.yaml",
        &format!(
            "data_dir: '{data}'
api: {{address: '127.0.0.1:0'}}
grace_period: {grace}s
sources:
  app:
    type: file
    include: ['{logs}/*.log']
    checkpoint_interval: 100ms
    decode: {{codec: json, timestamp: {{field: timestamp}}}}
sinks:
{sink}",
            data = s.path("data").display(),
            logs = s.path("logs").display(),
            grace = GRACE.as_secs(),
        ),
    )
}

fn loki_sink(url: &str) -> String {
    format!(
        "  out:
    type: loki
    inputs: [app]
    endpoint: {url}
    labels: {{app: feynman}}
    request_timeout: 10m
    batch: {{max_bytes: 256KiB, timeout: 200ms}}
    retry: {{initial_backoff: 100ms, max_backoff: 1s}}
"
    )
}

fn es_sink(url: &str) -> String {
    format!(
        "  out:
    type: elasticsearch
    inputs: [app]
    endpoint: {url}
    index: 'feynman-%Y.%m.%d'
    request_timeout: 10m
    batch: {{max_bytes: 256KiB, timeout: 200ms}}
    retry: {{initial_backoff: 100ms, max_backoff: 1s}}
"
    )
}

fn remote_write_sink(url: &str) -> String {
    format!(
        "  out:
    type: metrics
    inputs: [app]
    rules:
      - name: app_lines_total
        type: counter
        help: lines read
    remote_write:
      url: {url}/api/v1/write
      interval: 500ms
      timeout: 10m
"
    )
}

enum Stop {
    /// SIGTERM: weir retries until the grace period ends, then exits 1.
    Term,
    Kill,
}

/// Runs the replay against a hung server and stops it as `stop` says.
fn run_against_hung(s: &Scratch, sink: fn(&str) -> String, stop: Stop) {
    let hung = HungServer::start();
    let p = pipeline_with(s, &sink(&hung.url()));
    let w = Running::start(s.weir(&["run", &p, "--once"]));
    wait_until(Duration::from_secs(60), || {
        hung.accepted.load(Ordering::SeqCst) > 0
    })
    .unwrap_or_else(|| panic!("weir never connected; stderr:\n{}", w.stderr()));
    // Let the source read the whole file and the checkpoint interval pass
    // many times while the request hangs.
    std::thread::sleep(Duration::from_secs(3));
    // What was sent and not delivered shows as the checkpoint's lag.
    let (_, _, exposition) = http_get(&w.api_address(), "/metrics");
    let lag = metric(&exposition, r#"weir_checkpoint_lag_bytes{source="app"}"#).unwrap();
    let read = metric(&exposition, r#"weir_bytes_read_total{source="app"}"#).unwrap();
    assert!(lag > 0.0 && lag <= read, "lag {lag} of {read} bytes read");
    match stop {
        Stop::Term => {
            let asked = Instant::now();
            w.signal(libc::SIGTERM);
            let (code, stderr) = w.wait(GRACE + Duration::from_secs(30));
            let took = asked.elapsed();
            assert_eq!(
                checkpointed(s),
                0,
                "nothing was delivered, so nothing may be checkpointed:\n{stderr}"
            );
            assert_eq!(code, 1, "undelivered lines make the run fail:\n{stderr}");
            assert!(
                took >= GRACE - Duration::from_millis(500),
                "weir gave up before the grace period ended ({took:?}):\n{stderr}"
            );
            assert!(
                took < GRACE + Duration::from_secs(4),
                "weir overran the grace period ({took:?}):\n{stderr}"
            );
            assert!(
                stderr.contains("stay unacknowledged"),
                "the log says what happens to the undelivered lines:\n{stderr}"
            );
        }
        Stop::Kill => {
            w.signal(libc::SIGKILL);
            let _ = w.wait(Duration::from_secs(10));
        }
    }
    assert_eq!(
        checkpointed(s),
        0,
        "nothing was delivered, so nothing may be checkpointed"
    );
}

/// The second run against a working receiver, to its end.
fn replay(s: &Scratch, sink: &str) {
    let p = pipeline_with(s, sink);
    let out = s
        .weir(&["run", &p, "--once"])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn all_seqs(seqs: impl IntoIterator<Item = u64>) {
    let got: BTreeSet<u64> = seqs.into_iter().collect();
    let missing: Vec<u64> = (0..LINES as u64).filter(|i| !got.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of {LINES} lines never arrived (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

fn loki_case(stop: Stop) {
    let s = Scratch::new();
    write_log(&s);
    run_against_hung(&s, loki_sink, stop);
    let loki = fake_loki::FakeLoki::start();
    replay(&s, &loki_sink(&loki.url()));
    all_seqs(loki.streams().values().flatten().map(|e| {
        let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
        v["seq"].as_u64().unwrap()
    }));
}

fn es_case(stop: Stop) {
    let s = Scratch::new();
    write_log(&s);
    run_against_hung(&s, es_sink, stop);
    let es = fake_es::FakeEs::start();
    replay(&s, &es_sink(&es.url()));
    all_seqs(
        es.docs("feynman-2026.11.25")
            .into_iter()
            .map(|(_, doc)| doc["seq"].as_u64().unwrap()),
    );
}

/// A remote write receiver that keeps the last value of each series name.
fn remote_write_receiver() -> (http_server::Server, Arc<Mutex<Option<f64>>>) {
    let last = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&last);
    let handler: http_server::Handler = Arc::new(move |req: &http_server::Request| {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&req.body)
            .expect("snappy block body");
        let wr = weir::metrics::remote_write::WriteRequest::decode(raw.as_slice())
            .expect("a WriteRequest");
        for ts in wr.timeseries {
            let named = ts
                .labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == "app_lines_total");
            if named && let Some(sample) = ts.samples.last() {
                *seen.lock().unwrap() = Some(sample.value);
            }
        }
        http_server::Response::empty(204)
    });
    let opts = http_server::Options {
        name: "fake remote write",
        max_body: 64 << 20,
        deliver_too_large: false,
        lowercase_framing: false,
        malformed: |_| http_server::Response::empty(400),
    };
    (http_server::Server::start(opts, handler), last)
}

fn remote_write_case(stop: Stop) {
    let s = Scratch::new();
    write_log(&s);
    run_against_hung(&s, remote_write_sink, stop);
    let (server, last) = remote_write_receiver();
    replay(&s, &remote_write_sink(&format!("http://{}", server.addr())));
    // Nothing reached a receiver before, so the restart counts every line.
    assert_eq!(*last.lock().unwrap(), Some(LINES as f64));
}

#[test]
fn loki_hung_then_sigterm_loses_nothing() {
    loki_case(Stop::Term);
}

#[test]
fn loki_hung_then_sigkill_loses_nothing() {
    loki_case(Stop::Kill);
}

#[test]
fn elasticsearch_hung_then_sigterm_loses_nothing() {
    es_case(Stop::Term);
}

#[test]
fn elasticsearch_hung_then_sigkill_loses_nothing() {
    es_case(Stop::Kill);
}

#[test]
fn remote_write_hung_then_sigterm_loses_nothing() {
    remote_write_case(Stop::Term);
}

#[test]
fn remote_write_hung_then_sigkill_loses_nothing() {
    remote_write_case(Stop::Kill);
}

/// Without a stop, a `--once` replay waits for a hung sink: it neither
/// exits early nor checkpoints past what was delivered.
#[test]
fn once_waits_for_a_hung_sink_and_checkpoints_nothing_undelivered() {
    let s = Scratch::new();
    write_log(&s);
    let hung = HungServer::start();
    let p = pipeline_with(&s, &loki_sink(&hung.url()));
    let mut w = Running::start(s.weir(&["run", &p, "--once"]));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "weir exited while its only sink had delivered nothing:\n{}",
        w.stderr()
    );
    assert_eq!(checkpointed(&s), 0, "{}", w.stderr());
}

/// The furthest offset the file source checkpointed (0 without a file).
fn checkpointed(s: &Scratch) -> u64 {
    let cp = s.path("data/checkpoints/app.json");
    let Ok(text) = std::fs::read_to_string(&cp) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["offset"].as_u64().unwrap())
        .max()
        .unwrap_or(0)
}

/// SIGTERM while the sink refuses connections: weir keeps retrying within
/// the grace period, so a receiver that comes back in time gets every line
/// and the run ends well.
#[test]
fn sigterm_while_refused_retries_until_the_grace_period() {
    let s = Scratch::new();
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "{{\"timestamp\": \"2026-11-25T06:00:00Z\", \"level\": \"INFO\", \"seq\": {i}}}\n"
        ));
    }
    s.write("logs/app.log", text);
    let loki = fake_loki::FakeLoki::start();
    loki.down_for(Duration::from_secs(4));
    let p = pipeline_with(&s, &loki_sink(&loki.url()));
    let w = Running::start(s.weir(&["run", &p, "--once"]));
    w.wait_for_log("retrying", Duration::from_secs(30));
    let asked = Instant::now();
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(GRACE + Duration::from_secs(30));
    assert_eq!(
        code, 0,
        "the receiver came back within the grace period:\n{stderr}"
    );
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "weir stopped retrying at the signal:\n{stderr}"
    );
    let seqs: BTreeSet<u64> = loki
        .streams()
        .values()
        .flatten()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.line).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), 2000);
}

/// A request that times out is reported as a timeout, not as a server that
/// cannot be reached.
#[test]
fn a_timed_out_request_says_so() {
    let s = Scratch::new();
    s.write(
        "logs/app.log",
        "{\"timestamp\": \"2026-11-25T06:00:00Z\", \"level\": \"INFO\", \"seq\": 1}\n",
    );
    let hung = HungServer::start();
    let sink = loki_sink(&hung.url()).replace("request_timeout: 10m", "request_timeout: 300ms");
    let p = pipeline_with(&s, &sink);
    let w = Running::start(s.weir(&["run", &p, "--once"]));
    let log = w.wait_for_log(
        "did not answer within request_timeout",
        Duration::from_secs(30),
    );
    assert!(!log.contains("cannot reach Loki"), "{log}");
}
