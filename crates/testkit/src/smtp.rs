//! A small SMTP server for tests (RFC 5321, the part a mail client uses):
//! std only, on `127.0.0.1` and a free port, a thread per connection.
//!
//! It speaks the greeting, `EHLO`/`HELO` (advertising `8BITMIME`,
//! `SMTPUTF8`, `AUTH PLAIN LOGIN` when a user is configured, `STARTTLS` in
//! [`Security::StartTls`] mode), `AUTH PLAIN` and `AUTH LOGIN` (with or
//! without an initial response; a wrong user or password is `535`),
//! `MAIL FROM`, `RCPT TO`, `DATA` with dot-unstuffing, `RSET`, `NOOP`,
//! `QUIT`, and `STARTTLS`. In [`Security::Tls`] mode the connection is TLS
//! from the first byte (SMTPS, port 465 style). The certificate is made at
//! start: a fresh CA ([`SmtpServer::ca_pem`], what a client is given as its
//! extra root) and a server certificate for `localhost` and `127.0.0.1`.
//!
//! In `StartTls` mode `AUTH` and `MAIL` are refused with `530` until the
//! client has upgraded, as real submission servers do; with a user
//! configured, `MAIL` is refused with `530` until the client authenticated.
//!
//! Each accepted message is recorded ([`Received`]); [`SmtpServer::fail_next`]
//! makes the next transactions fail with a given reply (`451`, `421` which
//! also closes the connection, `550`, …). The server stops when dropped.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The longest command line accepted (RFC 5321 says 512; AUTH lines may be
/// longer) and the largest message.
const MAX_LINE: usize = 8 * 1024;
const MAX_MESSAGE: usize = 16 << 20;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Clear text only; `STARTTLS` is not offered.
    None,
    /// Clear text until the client sends `STARTTLS` (port 587 style).
    StartTls,
    /// TLS from the first byte (port 465 style).
    Tls,
}

/// Where in a transaction a fault from [`SmtpServer::fail_next`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    /// After the message's final `.` (the message is then not recorded).
    Data,
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    pub security: Security,
    /// The user and password `AUTH` accepts; `None`: no `AUTH` offered.
    pub auth: Option<(String, String)>,
    /// The name in the greeting and the `EHLO` answer.
    pub hostname: String,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        SmtpOptions {
            security: Security::None,
            auth: None,
            hostname: "fake-smtp.test".into(),
        }
    }
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// `MAIL FROM` address, without the angle brackets.
    pub from: String,
    /// The `MAIL FROM` parameters (`BODY=8BITMIME`, `SMTPUTF8`, …).
    pub mail_params: Vec<String>,
    /// `RCPT TO` addresses, in order.
    pub to: Vec<String>,
    /// The message as received, dot-unstuffed, lines ending in CRLF,
    /// without the final `.` line.
    pub data: Vec<u8>,
    /// Whether the connection was TLS when the message was sent.
    pub tls: bool,
    /// The user that authenticated, if any.
    pub auth_user: Option<String>,
    /// The name the client gave in `EHLO`/`HELO`.
    pub helo: String,
}

impl Received {
    /// The raw message as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    faults: Vec<(Stage, u16, String)>,
    /// Transactions that reached the end of `DATA` or a fault.
    transactions: usize,
    auth_failures: usize,
    connections: usize,
}

struct Shared {
    opts: SmtpOptions,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// A running SMTP server; stops when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Starts a server on `127.0.0.1` and a free port.
    pub fn start(opts: SmtpOptions) -> SmtpServer {
        let (ca_pem, tls) = make_tls(&opts.hostname);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            tls: (opts.security != Security::None).then_some(tls),
            opts,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name("fake-smtp-accept".into())
            .spawn(move || accept_loop(sh, listener))
            .expect("spawn accept thread");
        SmtpServer {
            addr,
            ca_pem,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The PEM of the CA that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        lock(&self.shared.state).messages.clone()
    }

    /// Waits until at least `n` messages arrived (or `timeout` passed) and
    /// returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        while st.messages.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.messages.clone()
    }

    /// Answers the next `n` transactions with `code` at the end of `DATA`
    /// (see [`SmtpServer::fail_next_at`]).
    pub fn fail_next(&self, n: usize, code: u16) {
        self.fail_next_at(Stage::Data, n, code);
    }

    /// Answers the next `n` transactions that reach `stage` with `code` and
    /// a standard text; `421` also closes the connection.
    pub fn fail_next_at(&self, stage: Stage, n: usize, code: u16) {
        let text = match code {
            421 => "4.3.2 Service shutting down, try again later",
            450 | 451 => "4.7.1 Temporary failure, please try again later",
            452 => "4.3.1 Insufficient system storage",
            550 => "5.7.1 Message rejected: relaying denied",
            552 => "5.3.4 Message too big",
            554 => "5.6.0 Transaction failed",
            _ => "fault injected by the test",
        };
        let mut st = lock(&self.shared.state);
        for _ in 0..n {
            st.faults.push((stage, code, text.to_string()));
        }
    }

    /// Transactions that got to the end of `DATA` or were failed on purpose.
    pub fn transactions(&self) -> usize {
        lock(&self.shared.state).transactions
    }

    /// `AUTH` attempts refused with `535`.
    pub fn auth_failures(&self) -> usize {
        lock(&self.shared.state).auth_failures
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared.state).connections
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for c in lock(&self.shared.conns).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new CA, and a server certificate it signed for `localhost`,
/// `127.0.0.1` and `hostname`.
fn make_tls(hostname: &str) -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "weir-testkit fake SMTP CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        hostname.to_string(),
    ];
    let mut leaf = CertificateParams::new(names).expect("server params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().expect("server key");
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .expect("server certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate and key");
    (ca_cert.pem(), Arc::new(cfg))
}

fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    while !sh.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                if let Ok(c) = stream.try_clone() {
                    lock(&sh.conns).push(c);
                }
                lock(&sh.state).connections += 1;
                let sh = sh.clone();
                let _ = thread::Builder::new()
                    .name("fake-smtp-conn".into())
                    .spawn(move || {
                        let peer = stream.try_clone();
                        let _ = Session::new(sh, stream).and_then(|mut s| s.run());
                        // Also when the TLS handshake failed.
                        if let Ok(p) = peer {
                            let _ = p.shutdown(Shutdown::Both);
                        }
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The connection, before or after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    /// Only while upgrading.
    Gone,
}

impl Conn {
    fn upgrade(self, cfg: &Arc<rustls::ServerConfig>) -> io::Result<Conn> {
        match self {
            Conn::Plain(tcp) => {
                let sc = rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
                let mut s = rustls::StreamOwned::new(sc, tcp);
                // Finish the handshake now, so that a failure shows here.
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Ok(Conn::Tls(Box::new(s)))
            }
            other => Ok(other),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Gone => Ok(0),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Gone => Ok(()),
        }
    }
}

/// One client's conversation.
struct Session {
    sh: Arc<Shared>,
    conn: Conn,
    buf: Vec<u8>,
    tls: bool,
    helo: Option<String>,
    user: Option<String>,
    from: Option<(String, Vec<String>)>,
    to: Vec<String>,
}

impl Drop for Session {
    /// Closes the connection now: the server keeps a clone of each socket
    /// (to cut them when it stops), so dropping this one would not.
    fn drop(&mut self) {
        match &mut self.conn {
            Conn::Plain(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Conn::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
                let _ = s.sock.shutdown(Shutdown::Both);
            }
            Conn::Gone => {}
        }
    }
}

/// What a command handler wants next.
enum Next {
    Go,
    Close,
}

impl Session {
    fn new(sh: Arc<Shared>, tcp: TcpStream) -> io::Result<Session> {
        let mut conn = Conn::Plain(tcp);
        let mut tls = false;
        if sh.opts.security == Security::Tls {
            conn = conn.upgrade(sh.tls.as_ref().expect("TLS config"))?;
            tls = true;
        }
        Ok(Session {
            sh,
            conn,
            buf: Vec::new(),
            tls,
            helo: None,
            user: None,
            from: None,
            to: Vec::new(),
        })
    }

    fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("{code}{sep}{l}\r\n"));
        }
        self.conn.write_all(out.as_bytes())?;
        self.conn.flush()
    }

    /// One line without its CRLF (or LF); `None` at end of stream.
    fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut l: Vec<u8> = self.buf.drain(..=i).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(Some(l));
            }
            if self.buf.len() > MAX_MESSAGE {
                return Err(io::Error::other("line too long"));
            }
            let mut chunk = [0u8; 4096];
            let n = self.conn.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let greeting = format!(
            "{} ESMTP weir-testkit fake SMTP ready",
            self.sh.opts.hostname
        );
        self.reply(220, &greeting)?;
        while let Some(line) = self.line()? {
            if line.len() > MAX_LINE {
                self.reply(500, "5.5.2 Line too long")?;
                continue;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (verb, arg) = match line.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
                None => (line.trim().to_ascii_uppercase(), String::new()),
            };
            if let Next::Close = self.command(&verb, &arg)? {
                break;
            }
        }
        Ok(())
    }

    fn command(&mut self, verb: &str, arg: &str) -> io::Result<Next> {
        match verb {
            "EHLO" | "HELO" if arg.is_empty() => self.reply(501, "5.5.4 Give your name")?,
            "EHLO" => {
                self.reset();
                self.helo = Some(arg.to_string());
                let mut lines = vec![format!("{} greets {arg}", self.sh.opts.hostname)];
                lines.extend(
                    ["8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES"].map(String::from),
                );
                lines.push(format!("SIZE {MAX_MESSAGE}"));
                let starttls = self.sh.opts.security == Security::StartTls;
                if starttls && !self.tls {
                    lines.push("STARTTLS".into());
                }
                if self.sh.opts.auth.is_some() && (self.tls || !starttls) {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                self.reply(250, &lines.join("\n"))?;
            }
            "HELO" => {
                self.reset();
                self.helo = Some(arg.to_string());
                self.reply(250, &self.sh.opts.hostname.clone())?;
            }
            "STARTTLS" => {
                if self.sh.opts.security != Security::StartTls || self.tls {
                    self.reply(502, "5.5.1 STARTTLS not available")?;
                } else if !self.buf.is_empty() {
                    // RFC 3207: nothing may be pipelined after STARTTLS.
                    self.reply(501, "5.5.2 Data after STARTTLS")?;
                    return Ok(Next::Close);
                } else {
                    self.reply(220, "2.0.0 Ready to start TLS")?;
                    let conn = std::mem::replace(&mut self.conn, Conn::Gone);
                    self.conn = conn.upgrade(self.sh.tls.as_ref().expect("TLS config"))?;
                    self.tls = true;
                    // RFC 3207: forget what was said before the upgrade.
                    self.helo = None;
                    self.user = None;
                    self.reset();
                }
            }
            "AUTH" => self.auth(arg)?,
            "MAIL" => return self.mail(arg),
            "RCPT" => return self.rcpt(arg),
            "DATA" => return self.data(),
            "RSET" => {
                self.reset();
                self.reply(250, "2.0.0 OK")?;
            }
            "NOOP" => self.reply(250, "2.0.0 OK")?,
            "QUIT" => {
                self.reply(221, "2.0.0 Bye")?;
                return Ok(Next::Close);
            }
            _ => self.reply(502, "5.5.2 Command not recognized")?,
        }
        Ok(Next::Go)
    }

    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
    }

    fn must_starttls(&self) -> bool {
        self.sh.opts.security == Security::StartTls && !self.tls
    }

    fn auth(&mut self, arg: &str) -> io::Result<()> {
        let Some((want_user, want_pass)) = self.sh.opts.auth.clone() else {
            return self.reply(502, "5.5.1 AUTH not available");
        };
        if self.must_starttls() {
            return self.reply(530, "5.7.0 Must issue a STARTTLS command first");
        }
        if self.helo.is_none() {
            return self.reply(503, "5.5.1 EHLO first");
        }
        if self.user.is_some() {
            return self.reply(503, "5.5.1 Already authenticated");
        }
        let (mech, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_string())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let creds = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(i) => i,
                    None => match self.challenge("")? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                B64.decode(resp.as_bytes()).ok().and_then(|raw| {
                    let mut parts = raw.split(|&b| b == 0);
                    let _authzid = parts.next()?;
                    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
                    let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
                    Some((user, pass))
                })
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => Some(i),
                    None => self.challenge("Username:")?,
                };
                let Some(user) = user else { return Ok(()) };
                let Some(pass) = self.challenge("Password:")? else {
                    return Ok(());
                };
                let dec = |s: &str| {
                    B64.decode(s.as_bytes())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                };
                dec(&user).zip(dec(&pass))
            }
            _ => return self.reply(504, "5.5.4 Unrecognized authentication type"),
        };
        match creds {
            None => self.reply(501, "5.5.2 Cannot decode the response"),
            Some((u, p)) if u == want_user && p == want_pass => {
                self.user = Some(u);
                self.reply(235, "2.7.0 Authentication successful")
            }
            Some(_) => {
                lock(&self.sh.state).auth_failures += 1;
                self.reply(535, "5.7.8 Authentication credentials invalid")
            }
        }
    }

    /// Sends a `334` challenge and reads the answer; `None` when the client
    /// cancelled (`*`, answered with 501) or hung up.
    fn challenge(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.reply(334, &B64.encode(prompt))?;
        let Some(l) = self.line()? else {
            return Ok(None);
        };
        let l = String::from_utf8_lossy(&l).trim().to_string();
        if l == "*" {
            self.reply(501, "5.0.0 Authentication cancelled")?;
            return Ok(None);
        }
        Ok(Some(l))
    }

    /// A fault for `stage`, if one is queued; counts the transaction.
    fn fault(&self, stage: Stage) -> Option<(u16, String)> {
        let mut st = lock(&self.sh.state);
        let i = st.faults.iter().position(|f| f.0 == stage)?;
        let (_, code, text) = st.faults.remove(i);
        st.transactions += 1;
        Some((code, text))
    }

    /// Answers with a fault; `421` closes the connection.
    fn answer_fault(&mut self, code: u16, text: &str) -> io::Result<Next> {
        self.reply(code, text)?;
        self.reset();
        Ok(if code == 421 { Next::Close } else { Next::Go })
    }

    fn mail(&mut self, arg: &str) -> io::Result<Next> {
        let refuse = if self.must_starttls() {
            Some((530, "5.7.0 Must issue a STARTTLS command first"))
        } else if self.helo.is_none() {
            Some((503, "5.5.1 EHLO first"))
        } else if self.sh.opts.auth.is_some() && self.user.is_none() {
            Some((530, "5.7.0 Authentication required"))
        } else if self.from.is_some() {
            Some((503, "5.5.1 Nested MAIL command"))
        } else {
            None
        };
        if let Some((code, text)) = refuse {
            self.reply(code, text)?;
            return Ok(Next::Go);
        }
        let Some((addr, params)) = path(arg, "FROM:") else {
            self.reply(501, "5.5.4 Syntax: MAIL FROM:<address>")?;
            return Ok(Next::Go);
        };
        if let Some((code, text)) = self.fault(Stage::Mail) {
            return self.answer_fault(code, &text);
        }
        self.from = Some((addr, params));
        self.reply(250, "2.1.0 Sender OK")?;
        Ok(Next::Go)
    }

    fn rcpt(&mut self, arg: &str) -> io::Result<Next> {
        if self.from.is_none() {
            self.reply(503, "5.5.1 MAIL first")?;
            return Ok(Next::Go);
        }
        let Some((addr, _)) = path(arg, "TO:") else {
            self.reply(501, "5.5.4 Syntax: RCPT TO:<address>")?;
            return Ok(Next::Go);
        };
        if addr.is_empty() || !addr.contains('@') {
            self.reply(553, "5.1.3 Bad recipient address syntax")?;
            return Ok(Next::Go);
        }
        if let Some((code, text)) = self.fault(Stage::Rcpt) {
            return self.answer_fault(code, &text);
        }
        self.to.push(addr);
        self.reply(250, "2.1.5 Recipient OK")?;
        Ok(Next::Go)
    }

    fn data(&mut self) -> io::Result<Next> {
        if self.from.is_none() || self.to.is_empty() {
            self.reply(503, "5.5.1 RCPT first")?;
            return Ok(Next::Go);
        }
        self.reply(354, "End data with <CR><LF>.<CR><LF>")?;
        let mut data = Vec::new();
        loop {
            let Some(mut l) = self.line()? else {
                return Ok(Next::Close);
            };
            if l == b"." {
                break;
            }
            if l.first() == Some(&b'.') {
                l.remove(0);
            }
            if data.len() + l.len() > MAX_MESSAGE {
                self.reply(552, "5.3.4 Message too big")?;
                return Ok(Next::Close);
            }
            data.extend_from_slice(&l);
            data.extend_from_slice(b"\r\n");
        }
        if let Some((code, text)) = self.fault(Stage::Data) {
            return self.answer_fault(code, &text);
        }
        let (from, mail_params) = self.from.take().expect("MAIL checked");
        let msg = Received {
            from,
            mail_params,
            to: std::mem::take(&mut self.to),
            data,
            tls: self.tls,
            auth_user: self.user.clone(),
            helo: self.helo.clone().unwrap_or_default(),
        };
        {
            let mut st = lock(&self.sh.state);
            st.messages.push(msg);
            st.transactions += 1;
        }
        self.sh.changed.notify_all();
        self.reply(250, "2.0.0 OK: queued")?;
        Ok(Next::Go)
    }
}

/// `FROM:<a@b> PARAM…` (the prefix compared without case): the address
/// and the parameters.
fn path(arg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let params = rest[end + 1..]
        .split_whitespace()
        .map(String::from)
        .collect();
    Some((rest[..end].to_string(), params))
}
