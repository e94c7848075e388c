//! Helpers shared by the integration tests: running the `weir` binary in a
//! scratch directory, talking HTTP to its API, reading what its sinks wrote.
#![allow(dead_code)]

pub mod browser;
pub mod receivers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// The repository root (for pipelines/ and fixtures/).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory with `logs/` and `data/`, and a `weir` command whose
/// environment points the shipped pipelines at them.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }

    /// `weir ARGS` run inside the scratch directory with the env the shipped
    /// pipelines read, and a free API port.
    pub fn weir(&self, args: &[&str]) -> Command {
        let mut c = Command::new(weir_bin());
        c.args(args)
            .current_dir(self.dir.path())
            .env("WEIR_LOGS_DIR", self.path("logs"))
            .env("WEIR_DATA_DIR", self.path("data"))
            .env("WEIR_API_ADDR", "127.0.0.1:0")
            .env("WEIR_LOG", "info")
            .env_remove("RUST_LOG");
        c
    }

    /// Every line the file sink wrote under data/out, in file-name order.
    pub fn output_lines(&self) -> Vec<String> {
        let dir = self.path("data/out");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => return Vec::new(),
        };
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// A running weir whose standard error is collected in the background.
pub struct Running {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        cmd.stderr(Stdio::piped());
        if cmd.get_program() == weir_bin() {
            // stdin and stdout as the caller set them.
        }
        let mut child = cmd.spawn().expect("start weir");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running { child, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until standard error contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        wait_until(timeout, || self.stderr().contains(needle))
            .unwrap_or_else(|| panic!("weir never logged {needle:?}; stderr:\n{}", self.stderr()));
        self.stderr()
    }

    /// The API address weir logged at startup.
    pub fn api_address(&self) -> String {
        let log = self.wait_for_log("serving http://", Duration::from_secs(20));
        let start = log.find("serving http://").unwrap() + "serving http://".len();
        let rest = &log[start..];
        rest[..rest.find('/').unwrap()].to_string()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for exit; returns the exit code.
    pub fn wait(mut self, timeout: Duration) -> (i32, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread drain the pipe.
                std::thread::sleep(Duration::from_millis(50));
                return (status.code().unwrap_or(-1), self.stderr());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "weir did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The longest any one command of a test may take. A command still running
/// then is killed and the test fails showing its standard error, so a
/// command that waits forever (on a full disk, say, where weir waits for
/// space rather than drop data) costs minutes, not the CI run.
pub const RUN_LIMIT: Duration = Duration::from_secs(240);

/// [`Command::output`] with a deadline.
pub trait OutputWithin {
    /// Like `output()` (standard input from /dev/null, standard output and
    /// error collected), but a child still running after `limit` is killed
    /// and the calling test panics with the command and its standard error.
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output>;
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output> {
        self.stdin(Stdio::null());
        collect_within(self, limit, None)
    }
}

/// Runs `cmd` with `input` on its standard input (written from another
/// thread, so a child that writes much output cannot block on us) and
/// collects its output, within [`RUN_LIMIT`].
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    cmd.stdin(Stdio::piped());
    collect_within(&mut cmd, RUN_LIMIT, Some(input.to_vec())).expect("start weir")
}

fn collect_within(
    cmd: &mut Command,
    limit: Duration,
    input: Option<Vec<u8>>,
) -> std::io::Result<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let writer = input.map(|input| {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || stdin.write_all(&input))
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            let err = String::from_utf8_lossy(&err);
            let tail = &err[err.len().saturating_sub(8000)..];
            panic!(
                "{} {:?} did not finish within {limit:?} and was killed; the end of its standard error:\n{tail}",
                cmd.get_program().to_string_lossy(),
                cmd.get_args().collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(w) = writer {
        // A child that exits without reading all of its input is not an
        // error of the harness: the test looks at what it said.
        let _ = w.join();
    }
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Polls `f` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f().then_some(())
}

/// A minimal HTTP/1.0 GET on loopback: (status, content type, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    try_http_get(addr, path).unwrap_or_else(|| panic!("cannot connect to {addr}"))
}

/// Like [`http_get`], but `None` while nothing listens yet.
pub fn try_http_get(addr: &str, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Some((status, ctype, body.to_string()))
}

/// The value of one sample in a Prometheus text exposition.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

/// Writes a pipeline into the scratch dir and returns its path as a string.
pub fn pipeline(s: &Scratch, name: &str, yaml: &str) -> String {
    s.write(name, yaml).display().to_string()
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}
