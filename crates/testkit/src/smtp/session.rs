//! One client's SMTP conversation with the fake server.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::tls::Conn;
use super::{MAX_LINE, MAX_MESSAGE, Received, Security, Shared, Stage, lock};

/// One client's conversation.
pub(crate) struct Session {
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
    pub(crate) fn new(sh: Arc<Shared>, tcp: TcpStream) -> io::Result<Session> {
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

    pub(crate) fn run(&mut self) -> io::Result<()> {
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
