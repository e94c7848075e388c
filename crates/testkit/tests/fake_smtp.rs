//! The fake SMTP server (crates/testkit/src/smtp.rs) against a hand-driven
//! client: the replies of RFC 5321's commands, dot-unstuffing, AUTH PLAIN
//! and LOGIN, STARTTLS and implicit TLS with the CA it made, injected
//! faults; and the message reader (mail.rs) on encoded headers and bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::pem::PemObject as _;
use weir_testkit::mail::{Part, decode_qp, decode_words};
use weir_testkit::smtp::{Security, SmtpOptions, SmtpServer, Stage};

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Client {
    r: BufReader<Box<dyn Stream>>,
}

impl Client {
    fn connect(s: &SmtpServer) -> Client {
        let tcp = TcpStream::connect(s.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(Box::new(tcp)),
        }
    }

    fn connect_tls(s: &SmtpServer) -> Client {
        let tcp = TcpStream::connect(s.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(Box::new(tls_over(s, tcp))),
        }
    }

    /// The reply's code and its lines' texts.
    fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(self.r.read_line(&mut l).unwrap() > 0, "connection closed");
            let l = l.trim_end();
            let code: u16 = l[..3].parse().unwrap();
            lines.push(l.get(4..).unwrap_or("").to_string());
            if l.as_bytes().get(3) != Some(&b'-') {
                return (code, lines);
            }
        }
    }

    fn send(&mut self, line: &str) {
        let w = self.r.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        w.flush().unwrap();
    }

    fn cmd(&mut self, line: &str) -> (u16, Vec<String>) {
        self.send(line);
        self.reply()
    }

    fn code(&mut self, line: &str) -> u16 {
        self.cmd(line).0
    }

    /// Whether the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

fn tls_over(s: &SmtpServer, tcp: TcpStream) -> impl Read + Write + use<> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(s.ca_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn server(security: Security, auth: bool) -> SmtpServer {
    SmtpServer::start(SmtpOptions {
        security,
        auth: auth.then(|| ("alerts".to_string(), "s3cret".to_string())),
        ..SmtpOptions::default()
    })
}

/// MAIL, RCPT, DATA with `body` lines; the code after the final dot.
fn transaction(c: &mut Client, body: &[&str]) -> u16 {
    assert_eq!(
        c.code("MAIL FROM:<weir@example.com> BODY=8BITMIME SMTPUTF8"),
        250
    );
    assert_eq!(c.code("RCPT TO:<ops@example.com>"), 250);
    assert_eq!(c.code("DATA"), 354);
    for l in body {
        c.send(l);
    }
    c.cmd(".").0
}

#[test]
fn a_plain_session_records_the_message() {
    let s = server(Security::None, false);
    let mut c = Client::connect(&s);
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.code("MAIL FROM:<a@b.c>"), 503, "EHLO first");
    let (code, ext) = c.cmd("EHLO client.test");
    assert_eq!(code, 250);
    for e in ["8BITMIME", "SMTPUTF8"] {
        assert!(ext.iter().any(|l| l == e), "{ext:?}");
    }
    assert!(
        !ext.iter().any(|l| l.starts_with("AUTH") || l == "STARTTLS"),
        "{ext:?}"
    );
    assert_eq!(c.code("NOOP"), 250);
    assert_eq!(c.code("RCPT TO:<x@y.z>"), 503, "MAIL first");
    assert_eq!(c.code("DATA"), 503);
    assert_eq!(c.code("MAIL FROM:<weir@example.com>"), 250);
    assert_eq!(c.code("MAIL FROM:<weir@example.com>"), 503, "nested MAIL");
    assert_eq!(c.code("RSET"), 250);
    assert_eq!(c.code("RCPT TO:<x@y.z>"), 503, "RSET forgot MAIL");
    let body = ["Subject: hi", "", "..leading dot", ".", "last"];
    // "." alone inside the body is sent stuffed as "..".
    let sent: Vec<&str> = body
        .iter()
        .map(|l| if *l == "." { ".." } else { l })
        .collect();
    assert_eq!(transaction(&mut c, &sent), 250);
    assert_eq!(c.code("QUIT"), 221);
    let m = s.wait_for(1, Duration::from_secs(5));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].from, "weir@example.com");
    assert_eq!(m[0].to, ["ops@example.com"]);
    assert_eq!(m[0].mail_params, ["BODY=8BITMIME", "SMTPUTF8"]);
    assert_eq!(
        m[0].text(),
        "Subject: hi\r\n\r\n.leading dot\r\n.\r\nlast\r\n"
    );
    assert!(!m[0].tls);
    assert_eq!(m[0].auth_user, None);
    assert_eq!(m[0].helo, "client.test");
}

#[test]
fn auth_plain_and_login() {
    let s = server(Security::None, true);
    let mut c = Client::connect(&s);
    c.reply();
    let (_, ext) = c.cmd("EHLO c");
    assert!(ext.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{ext:?}");
    assert_eq!(c.code("MAIL FROM:<a@b.c>"), 530, "authentication required");
    let wrong = B64.encode("\0alerts\0nope");
    assert_eq!(c.code(&format!("AUTH PLAIN {wrong}")), 535);
    assert_eq!(s.auth_failures(), 1);
    let right = B64.encode("\0alerts\0s3cret");
    assert_eq!(c.code("AUTH PLAIN"), 334, "asks for the response");
    assert_eq!(c.code(&right), 235);
    assert_eq!(transaction(&mut c, &["x"]), 250);

    let mut c = Client::connect(&s);
    c.reply();
    c.cmd("EHLO c");
    let (code, prompt) = c.cmd("AUTH LOGIN");
    assert_eq!(
        (code, B64.decode(&prompt[0]).unwrap()),
        (334, b"Username:".to_vec())
    );
    let (code, prompt) = c.cmd(&B64.encode("alerts"));
    assert_eq!(
        (code, B64.decode(&prompt[0]).unwrap()),
        (334, b"Password:".to_vec())
    );
    assert_eq!(c.code(&B64.encode("s3cret")), 235);
    assert_eq!(transaction(&mut c, &["y"]), 250);
    let m = s.wait_for(2, Duration::from_secs(5));
    assert!(m.iter().all(|m| m.auth_user.as_deref() == Some("alerts")));
}

#[test]
fn starttls_upgrades_and_forgets_the_session() {
    let s = server(Security::StartTls, true);
    let tcp = TcpStream::connect(s.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = Client {
        r: BufReader::new(Box::new(tcp.try_clone().unwrap())),
    };
    c.reply();
    let (_, ext) = c.cmd("EHLO c");
    assert!(ext.iter().any(|l| l == "STARTTLS"), "{ext:?}");
    assert!(
        !ext.iter().any(|l| l.starts_with("AUTH")),
        "no AUTH before TLS: {ext:?}"
    );
    assert_eq!(c.code("AUTH PLAIN AGFsZXJ0cwBzM2NyZXQ="), 530);
    assert_eq!(c.code("MAIL FROM:<a@b.c>"), 530);
    assert_eq!(c.code("STARTTLS"), 220);
    let mut c = Client {
        r: BufReader::new(Box::new(tls_over(&s, tcp))),
    };
    assert_eq!(
        c.code("MAIL FROM:<a@b.c>"),
        503,
        "EHLO again after STARTTLS"
    );
    let (_, ext) = c.cmd("EHLO c");
    assert!(ext.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{ext:?}");
    assert!(!ext.iter().any(|l| l == "STARTTLS"), "{ext:?}");
    assert_eq!(
        c.code(&format!("AUTH PLAIN {}", B64.encode("\0alerts\0s3cret"))),
        235
    );
    assert_eq!(transaction(&mut c, &["over TLS"]), 250);
    let m = s.wait_for(1, Duration::from_secs(5));
    assert!(m[0].tls);
}

#[test]
fn implicit_tls_from_the_first_byte() {
    let s = server(Security::Tls, false);
    let mut c = Client::connect_tls(&s);
    assert_eq!(c.reply().0, 220);
    let (_, ext) = c.cmd("EHLO c");
    assert!(!ext.iter().any(|l| l == "STARTTLS"));
    assert_eq!(c.code("STARTTLS"), 502);
    assert_eq!(transaction(&mut c, &["secure"]), 250);
    assert!(s.wait_for(1, Duration::from_secs(5))[0].tls);
    assert!(s.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn faults_answer_the_next_transactions() {
    let s = server(Security::None, false);
    s.fail_next(1, 451);
    s.fail_next(1, 550);
    let mut c = Client::connect(&s);
    c.reply();
    c.cmd("EHLO c");
    assert_eq!(transaction(&mut c, &["one"]), 451);
    assert_eq!(transaction(&mut c, &["two"]), 550);
    assert_eq!(transaction(&mut c, &["three"]), 250);
    assert_eq!(s.transactions(), 3);
    assert_eq!(s.messages().len(), 1, "failed messages are not recorded");

    s.fail_next_at(Stage::Mail, 1, 421);
    let mut c = Client::connect(&s);
    c.reply();
    c.cmd("EHLO c");
    let (code, text) = c.cmd("MAIL FROM:<a@b.c>");
    assert_eq!(code, 421, "{text:?}");
    assert!(c.closed(), "421 closes the connection");

    s.fail_next_at(Stage::Rcpt, 1, 550);
    let mut c = Client::connect(&s);
    c.reply();
    c.cmd("EHLO c");
    assert_eq!(c.code("MAIL FROM:<a@b.c>"), 250);
    assert_eq!(c.code("RCPT TO:<x@y.z>"), 550);
    assert_eq!(s.connections(), 3);
}

#[test]
fn reads_encoded_headers_and_bodies() {
    assert_eq!(decode_words("=?utf-8?b?5L2g5aW9?= world"), "你好 world");
    // Adjacent words join, even when a character is split between them.
    assert_eq!(
        decode_words("=?utf-8?b?5L2g5Q==?=\r\n =?utf-8?b?pb0=?="),
        "你好"
    );
    assert_eq!(
        decode_words("x =?UTF-8?Q?caf=C3=A9_au_lait?= y"),
        "x café au lait y"
    );
    assert_eq!(decode_words("plain =? not a word"), "plain =? not a word");
    assert_eq!(decode_qp(b"a=3Db=\r\nc=E4=BD=A0"), "a=bc你".as_bytes());

    let raw = "Subject: =?utf-8?b?5ZGK6K2m?=\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative;\r\n boundary=\"XX\"\r\n\r\n\
        --XX\r\nContent-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: base64\r\n\r\n5ZGK6K2m\r\n\
        --XX\r\nContent-Type: text/html; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\r\n<b>=E5=91=8A=E8=AD=A6</b>\r\n\
        --XX--\r\n";
    let p = Part::parse(raw.as_bytes());
    assert_eq!(p.header("subject").unwrap(), "告警");
    assert_eq!(p.content_type(), "multipart/alternative");
    assert_eq!(p.find("text/plain").unwrap().text(), "告警");
    assert_eq!(p.find("text/html").unwrap().text(), "<b>告警</b>");
}
