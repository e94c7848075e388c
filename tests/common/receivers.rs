//! Receivers for notification tests: a recording HTTP receiver and the
//! real Alertmanager (Debian's `prometheus-alertmanager`, which
//! scripts/test.sh installs) on 127.0.0.1 and a free port.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_testkit::http_server::{self, Request, Response};

pub type Seen = Arc<Mutex<Vec<Request>>>;

/// A receiver that records every request and answers with `answer(n, req)`
/// (`n` counts requests from 0).
pub fn receiver(
    answer: impl Fn(usize, &Request) -> Response + Send + Sync + 'static,
) -> (http_server::Server, Seen) {
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let handler = Arc::new(move |req: &Request| {
        let mut s = s.lock().unwrap();
        let n = s.len();
        s.push(Request {
            method: req.method.clone(),
            target: req.target.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            params: req.params.clone(),
            version: req.version.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
            too_large: req.too_large,
        });
        drop(s);
        answer(n, req)
    });
    let server = http_server::Server::start(
        http_server::Options {
            name: "fake notifier",
            max_body: 1 << 20,
            deliver_too_large: false,
            lowercase_framing: false,
            malformed: |_| Response::empty(400),
        },
        handler,
    );
    (server, seen)
}

pub fn json_answer(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        close: false,
    }
}

/// The installed Alertmanager (scripts/test.sh installs Debian's package).
pub fn need_alertmanager() -> String {
    let p = "/usr/bin/prometheus-alertmanager";
    assert!(
        std::path::Path::new(p).exists(),
        "`prometheus-alertmanager` is not installed: run scripts/test.sh, which installs the Debian packages the tests need"
    );
    p.to_string()
}

/// A child process killed when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Alertmanager with a do-nothing receiver, stopped when dropped.
pub struct Alertmanager {
    pub addr: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub fn start() -> Alertmanager {
        let bin = need_alertmanager();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(
            &cfg,
            "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Child(
            std::process::Command::new(bin)
                .args([
                    &format!("--config.file={}", cfg.display()),
                    &format!("--storage.path={}", dir.path().join("data").display()),
                    &format!("--web.listen-address={addr}"),
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let am = Alertmanager {
            addr,
            _child: child,
            _dir: dir,
        };
        let started = Instant::now();
        while am.alerts("x").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Alertmanager did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    /// The alerts it holds named `name` (`None` while it does not answer).
    pub fn alerts(&self, name: &str) -> Option<Vec<serde_json::Value>> {
        let (status, _, body) = super::try_http_get(&self.addr, "/api/v2/alerts")?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(
            v.as_array()?
                .iter()
                .filter(|a| a["labels"]["alertname"] == name)
                .cloned()
                .collect(),
        )
    }
}
