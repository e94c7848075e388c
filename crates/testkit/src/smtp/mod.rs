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

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod session;
mod tls;

use session::Session;

/// The longest command line accepted (RFC 5321 says 512; AUTH lines may be
/// longer) and the largest message.
pub(crate) const MAX_LINE: usize = 8 * 1024;
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

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
pub(crate) struct State {
    pub(crate) messages: Vec<Received>,
    pub(crate) faults: Vec<(Stage, u16, String)>,
    /// Transactions that reached the end of `DATA` or a fault.
    pub(crate) transactions: usize,
    pub(crate) auth_failures: usize,
    pub(crate) connections: usize,
}

pub(crate) struct Shared {
    pub(crate) opts: SmtpOptions,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) state: Mutex<State>,
    pub(crate) changed: Condvar,
    pub(crate) stop: AtomicBool,
    pub(crate) conns: Mutex<Vec<TcpStream>>,
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
        let (ca_pem, tls) = tls::make_tls(&opts.hostname);
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
