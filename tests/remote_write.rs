//! Remote write against a receiver that pushes back: a 429 with
//! `Retry-After: 3` is waited out, a five-second outage is retried through,
//! and the newest values are delivered in the end.

mod common;
use weir_testkit::http_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use prost::Message;

const LINES: usize = 3000;

#[derive(Default)]
struct Seen {
    /// When each request arrived.
    at: Vec<Instant>,
    last_value: Option<f64>,
}

#[test]
fn waits_out_429_and_an_outage_then_delivers() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = Arc::clone(&seen);
    let handler: http_server::Handler = Arc::new(move |req: &http_server::Request| {
        let n = {
            let mut s = state.lock().unwrap();
            s.at.push(Instant::now());
            s.at.len()
        };
        match n {
            1 => {
                let mut r = http_server::Response::empty(429);
                r.headers.push(("Retry-After".into(), "3".into()));
                r
            }
            2 => {
                // The test takes the server down meanwhile: no answer.
                std::thread::sleep(Duration::from_millis(800));
                http_server::Response::empty(204)
            }
            _ => {
                let raw = snap::raw::Decoder::new().decompress_vec(&req.body).unwrap();
                let wr = weir::metrics::remote_write::WriteRequest::decode(raw.as_slice()).unwrap();
                for ts in wr.timeseries {
                    if ts
                        .labels
                        .iter()
                        .any(|l| l.name == "__name__" && l.value == "app_lines_total")
                    {
                        state.lock().unwrap().last_value = ts.samples.last().map(|s| s.value);
                    }
                }
                http_server::Response::empty(204)
            }
        }
    });
    let server = http_server::Server::start(
        http_server::Options {
            name: "fake remote write",
            max_body: 64 << 20,
            deliver_too_large: false,
            lowercase_framing: false,
            malformed: |_| http_server::Response::empty(400),
        },
        handler,
    );

    let s = Scratch::new();
    let text: String = (0..LINES)
        .map(|i| format!("{{\"level\": \"INFO\", \"seq\": {i}}}\n"))
        .collect();
    s.write("logs/app.log", text);
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "data_dir: '{data}'
api: {{enabled: false}}
sources:
  app: {{type: file, include: ['{logs}/*.log'], decode: {{codec: json}}}}
sinks:
  m:
    type: metrics
    inputs: [app]
    rules: [{{name: app_lines_total, type: counter}}]
    remote_write:
      url: http://{addr}/api/v1/write
      interval: 1h
      retry: {{initial_backoff: 200ms, max_backoff: 1s}}
",
            data = s.path("data").display(),
            logs = s.path("logs").display(),
            addr = server.addr(),
        ),
    );
    let w = Running::start(s.weir(&["run", &p, "--once"]));
    wait_until(Duration::from_secs(60), || {
        seen.lock().unwrap().at.len() >= 2
    })
    .unwrap_or_else(|| panic!("no second request; stderr:\n{}", w.stderr()));
    server.down_for(Duration::from_secs(5));
    let (code, stderr) = w.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");

    let s = seen.lock().unwrap();
    assert!(s.at.len() >= 3, "{stderr}");
    let after_429 = s.at[1] - s.at[0];
    assert!(
        after_429 >= Duration::from_millis(2900),
        "the retry came {after_429:?} after a 429 with Retry-After: 3"
    );
    let after_outage = s.at[2] - s.at[1];
    assert!(
        after_outage >= Duration::from_millis(4500),
        "{after_outage:?}"
    );
    assert!(
        stderr.contains("cannot reach"),
        "refused connections were retried:\n{stderr}"
    );
    assert_eq!(s.last_value, Some(LINES as f64), "{stderr}");
}
