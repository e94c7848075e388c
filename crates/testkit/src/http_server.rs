//! The HTTP/1.1 server under the protocol fakes (`loki.rs`, `es.rs`): std
//! only, on `127.0.0.1` and a free port, a thread per connection,
//! keep-alive, `Content-Length` or chunked request bodies, `Expect:
//! 100-continue`. Tests control outages with [`Server::down_for`]: the
//! listening socket is closed (new connections are refused), open
//! connections are cut, and the same port is bound again afterwards. The
//! server stops, and frees its port, when dropped.
//!
//! The fakes build on it; a test may use it directly for a receiver of its
//! own (remote write, a chat webhook).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest request line or header line, and most header bytes.
const MAX_HEAD: u64 = 1 << 20;

/// Answers one request. Runs on the connection's thread; may block (a slow
/// answer). When the server went down meanwhile, the answer is not sent.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// How a fake's server behaves on the wire.
pub struct Options {
    /// The fake's name, e.g. `fake loki`: in thread names (`fake-loki-accept`)
    /// and messages.
    pub name: &'static str,
    /// The largest request body accepted.
    pub max_body: usize,
    /// A body over `max_body`: when true the request is handed to the
    /// handler unread, with [`Request::too_large`] set, and the connection
    /// is closed after the answer; when false it is a malformed request.
    pub deliver_too_large: bool,
    /// Write the framing headers in lower case (`content-length`,
    /// `connection`, as Netty does) rather than Go's `Content-Length`,
    /// `Connection`.
    pub lowercase_framing: bool,
    /// The answer to a request that cannot be parsed, given the error; the
    /// connection is closed after it.
    pub malformed: fn(&io::Error) -> Response,
}

pub struct Request {
    pub method: String,
    /// As received: path and query.
    pub target: String,
    /// Path part, not decoded.
    pub path: String,
    /// Query part, not decoded (empty when none).
    pub query: String,
    /// The query's parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was over `Options::max_body` and not read (see
    /// `Options::deliver_too_large`).
    pub too_large: bool,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The last query parameter of that name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn keep_alive(&self) -> bool {
        let conn = self
            .header("connection")
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        if self.version == "HTTP/1.0" {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        }
    }
}

pub struct Response {
    pub status: u16,
    /// Written in order, before the framing headers.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this answer.
    pub close: bool,
}

impl Response {
    /// No headers, no body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }
}

/// The server. Stops (and frees its port) when dropped.
pub struct Server {
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

struct Inner {
    opts: Options,
    handler: Handler,
    port: u16,
    shutdown: AtomicBool,
    is_down: AtomicBool,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    down: Mutex<Down>,
    down_cv: Condvar,
}

#[derive(Default)]
struct Down {
    until: Option<Instant>,
    requested: u64,
    closed: u64,
}

impl Server {
    /// Listens on 127.0.0.1 and a free port.
    pub fn start(opts: Options, handler: Handler) -> Server {
        let name = opts.name;
        let listener = TcpListener::bind("127.0.0.1:0").expect("fake server: bind");
        listener
            .set_nonblocking(true)
            .expect("fake server: nonblocking");
        let port = listener.local_addr().expect("fake server: address").port();
        let inner = Arc::new(Inner {
            opts,
            handler,
            port,
            shutdown: AtomicBool::new(false),
            is_down: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            down: Mutex::new(Down::default()),
            down_cv: Condvar::new(),
        });
        let s = Arc::clone(&inner);
        let acceptor = thread::Builder::new()
            .name(format!("{}-accept", name.replace(' ', "-")))
            .spawn(move || accept_loop(s, listener))
            .expect("fake server: thread");
        Server {
            inner,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.inner.port)
    }

    /// Refuses connections for `d`: the listening socket is closed (new
    /// connections are refused), open connections are cut (a request being
    /// answered gets no answer), and after `d` the same port is bound
    /// again. Returns once the socket is closed. Called again during an
    /// outage, it extends it.
    pub fn down_for(&self, d: Duration) {
        let sh = &self.inner;
        sh.is_down.store(true, Ordering::SeqCst);
        let mut g = lock(&sh.down);
        let until = Instant::now() + d;
        g.until = Some(g.until.map_or(until, |u| u.max(until)));
        g.requested += 1;
        let ticket = g.requested;
        while g.closed < ticket && !sh.shutdown.load(Ordering::SeqCst) {
            g = sh
                .down_cv
                .wait_timeout(g, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(g);
        sh.cut_connections();
    }

    /// Whether the server is in an outage.
    pub fn is_down(&self) -> bool {
        self.inner.is_down.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.down_cv.notify_all();
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        self.inner.cut_connections();
    }
}

impl Inner {
    fn cut_connections(&self) {
        let conns: Vec<TcpStream> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for c in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn stopped(&self) -> bool {
        self.is_down.load(Ordering::SeqCst) || self.shutdown.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Accepting, outages

fn accept_loop(sh: Arc<Inner>, listener: TcpListener) {
    let mut listener = Some(listener);
    loop {
        if sh.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let (until, requested) = {
            let g = lock(&sh.down);
            (g.until, g.requested)
        };
        if let Some(until) = until {
            drop(listener.take());
            sh.cut_connections();
            lock(&sh.down).closed = requested;
            sh.down_cv.notify_all();
            let now = Instant::now();
            if now < until {
                thread::sleep((until - now).min(Duration::from_millis(5)));
                continue;
            }
            let Some(l) = bind_again(&sh) else { return };
            let mut g = lock(&sh.down);
            if g.until.is_some_and(|u| u <= Instant::now()) {
                g.until = None;
                sh.is_down.store(false, Ordering::SeqCst);
                listener = Some(l);
            }
            continue;
        }
        let Some(l) = listener.as_ref() else { return };
        match l.accept() {
            Ok((stream, _)) => {
                if sh.is_down.load(Ordering::SeqCst) {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = stream.set_nonblocking(false);
                let id = sh.next_conn.fetch_add(1, Ordering::SeqCst);
                if let Ok(c) = stream.try_clone() {
                    lock(&sh.conns).insert(id, c);
                }
                let s = Arc::clone(&sh);
                let spawned = thread::Builder::new()
                    .name(format!("{}-conn", sh.opts.name.replace(' ', "-")))
                    .spawn(move || serve_connection(s, stream, id));
                if spawned.is_err() {
                    lock(&sh.conns).remove(&id);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2))
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Binds the same port again (std sets SO_REUSEADDR), retrying for a while.
fn bind_again(sh: &Inner) -> Option<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if sh.shutdown.load(Ordering::SeqCst) {
            return None;
        }
        match TcpListener::bind(("127.0.0.1", sh.port)) {
            Ok(l) => {
                l.set_nonblocking(true).ok()?;
                return Some(l);
            }
            Err(e) if Instant::now() >= deadline => {
                eprintln!(
                    "{}: cannot bind 127.0.0.1:{} again: {e}",
                    sh.opts.name, sh.port
                );
                return None;
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1

fn serve_connection(sh: Arc<Inner>, stream: TcpStream, id: u64) {
    let _ = stream.set_nodelay(true);
    // Go's and Netty's idle timeouts, roughly.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(read_half) = stream.try_clone() else {
        lock(&sh.conns).remove(&id);
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        if sh.stopped() {
            break;
        }
        let req = match read_request(&mut reader, &mut writer, &sh.opts) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let mut resp = (sh.opts.malformed)(&e);
                    resp.close = true;
                    let _ = write_response(&mut writer, &resp, "GET", &sh.opts);
                }
                break;
            }
        };
        if sh.is_down.load(Ordering::SeqCst) {
            break;
        }
        let mut resp = (sh.handler)(&req);
        if sh.stopped() {
            break;
        }
        if req.too_large || !req.keep_alive() {
            resp.close = true;
        }
        let close = resp.close;
        if write_response(&mut writer, &resp, &req.method, &sh.opts).is_err() || close {
            break;
        }
    }
    lock(&sh.conns).remove(&id);
    let _ = writer.shutdown(Shutdown::Both);
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn read_line(r: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let n = r.by_ref().take(MAX_HEAD).read_until(b'\n', buf)?;
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(n)
}

/// One request off the connection; `None` at end of stream.
fn read_request(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    opts: &Options,
) -> io::Result<Option<Request>> {
    let mut line = Vec::new();
    // Tolerate empty lines before the request line (RFC 9112 §2.2).
    loop {
        if read_line(r, &mut line)? == 0 {
            return Ok(None);
        }
        if !line.is_empty() {
            break;
        }
    }
    let request_line =
        String::from_utf8(line.clone()).map_err(|_| invalid("request line is not UTF-8"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("unsupported HTTP version"));
    }
    let mut headers = Vec::new();
    let mut head_bytes = 0;
    loop {
        let n = read_line(r, &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof in headers",
            ));
        }
        head_bytes += n;
        if head_bytes as u64 > MAX_HEAD {
            return Err(invalid("headers too large"));
        }
        if line.is_empty() {
            break;
        }
        let h = String::from_utf8_lossy(&line).into_owned();
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| invalid("bad header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        params: parse_query(query),
        version: version.to_string(),
        headers,
        body: Vec::new(),
        too_large: false,
    };
    let too_large = || {
        if opts.deliver_too_large {
            Ok(())
        } else {
            Err(invalid("body too large"))
        }
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = match req.header("content-length") {
        Some(v) if !chunked => Some(
            v.parse::<usize>()
                .map_err(|_| invalid("bad Content-Length"))?,
        ),
        _ => None,
    };
    if length.is_some_and(|n| n > opts.max_body) {
        too_large()?;
        req.too_large = true;
        return Ok(Some(req));
    }
    let expects = req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects && (chunked || length.unwrap_or(0) > 0) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if chunked {
        loop {
            read_line(r, &mut line)?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while read_line(r, &mut line)? > 0 && !line.is_empty() {}
                break;
            }
            if req.body.len() + size > opts.max_body {
                too_large()?;
                req.too_large = true;
                return Ok(Some(req));
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..])?;
            read_line(r, &mut line)?;
            if !line.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    } else if let Some(n) = length {
        req.body.resize(n, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

/// Writes `resp`: status line, its headers, `Content-Length` (none for an
/// empty 204), `Connection: close` when closing; no body to a `HEAD`.
fn write_response(
    w: &mut TcpStream,
    resp: &Response,
    method: &str,
    opts: &Options,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    let (length, connection) = if opts.lowercase_framing {
        ("content-length", "connection")
    } else {
        ("Content-Length", "Connection")
    };
    if resp.status != 204 || !resp.body.is_empty() {
        let _ = write!(head, "{length}: {}\r\n", resp.body.len());
    }
    if resp.close {
        let _ = write!(head, "{connection}: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(&resp.body);
    }
    w.write_all(&out)?;
    w.flush()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// `a=1&b=x+y` → `[("a", "1"), ("b", "x y")]`, percent-decoded.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// `%XX` escapes decoded (invalid ones kept as they are), lossily UTF-8.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (
                (b[i + 1] as char).to_digit(16),
                (b[i + 2] as char).to_digit(16),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
