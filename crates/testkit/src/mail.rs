//! Reading back a message the fake SMTP server ([`crate::smtp`]) received,
//! as a mail reader would: headers unfolded and their RFC 2047 encoded
//! words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) decoded, bodies decoded from
//! their `Content-Transfer-Encoding` (base64, quoted-printable, 7bit,
//! 8bit), `multipart/*` split at its boundary. UTF-8 only: the charset
//! label is read but every text is decoded as UTF-8 (what weir sends).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A parsed message or MIME part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Headers in order, names as written, values unfolded (not decoded).
    pub headers: Vec<(String, String)>,
    /// The body still in its transfer encoding.
    pub raw_body: Vec<u8>,
}

impl Part {
    /// Splits `raw` (CRLF or LF lines) into headers and body.
    pub fn parse(raw: &[u8]) -> Part {
        let text = raw;
        let (head, body) = match find(text, b"\r\n\r\n") {
            Some(i) => (&text[..i], &text[i + 4..]),
            None => match find(text, b"\n\n") {
                Some(i) => (&text[..i], &text[i + 2..]),
                None => (text, &[][..]),
            },
        };
        let head = String::from_utf8_lossy(head);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push_str(line);
                }
            } else if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Part {
            headers,
            raw_body: body.to_vec(),
        }
    }

    /// The first header of that name (case-insensitive), unfolded, not
    /// decoded.
    pub fn raw_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first header of that name with its encoded words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw_header(name).map(decode_words)
    }

    /// The media type, lower case (`text/plain`; that when none is given).
    pub fn content_type(&self) -> String {
        self.raw_header("Content-Type")
            .and_then(|v| v.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".into())
    }

    /// A parameter of `Content-Type` (`boundary`, `charset`), unquoted.
    pub fn content_type_param(&self, name: &str) -> Option<String> {
        let v = self.raw_header("Content-Type")?;
        v.split(';').skip(1).find_map(|p| {
            let (k, val) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| val.trim().trim_matches('"').to_string())
        })
    }

    /// The body decoded from its transfer encoding.
    pub fn body(&self) -> Vec<u8> {
        let cte = self
            .raw_header("Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .trim()
            .to_ascii_lowercase();
        match cte.as_str() {
            "base64" => {
                let clean: Vec<u8> = self
                    .raw_body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                B64.decode(clean).expect("valid base64 body")
            }
            "quoted-printable" => decode_qp(&self.raw_body),
            _ => self.raw_body.clone(),
        }
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body()).expect("a UTF-8 body")
    }

    /// The parts of a `multipart/*` body (empty otherwise).
    pub fn parts(&self) -> Vec<Part> {
        let Some(b) = self
            .content_type()
            .starts_with("multipart/")
            .then(|| self.content_type_param("boundary"))
            .flatten()
        else {
            return Vec::new();
        };
        let body = String::from_utf8_lossy(&self.raw_body).replace("\r\n", "\n");
        let delim = format!("--{b}");
        let mut out = Vec::new();
        for chunk in body.split(&delim).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            let chunk = chunk.strip_prefix('\n').unwrap_or(chunk);
            let chunk = chunk.strip_suffix('\n').unwrap_or(chunk);
            out.push(Part::parse(chunk.as_bytes()));
        }
        out
    }

    /// The first part (this one, or one nested) of media type `ty`.
    pub fn find(&self, ty: &str) -> Option<Part> {
        if self.content_type() == ty {
            return Some(self.clone());
        }
        self.parts().iter().find_map(|p| p.find(ty))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Quoted-printable (RFC 2045): `=XX`, soft line breaks `=` at line ends.
pub fn decode_qp(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'=' {
            if raw[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if raw[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// A header value with its RFC 2047 encoded words decoded; whitespace
/// between two adjacent encoded words is dropped, and their bytes are
/// joined before decoding (a character may be split across words).
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut gap = String::new();
    let mut rest = value;
    loop {
        let Some(start) = rest.find("=?") else {
            flush(&mut out, &mut pending);
            out.push_str(&gap);
            out.push_str(rest);
            return out;
        };
        let (before, word) = rest.split_at(start);
        match encoded_word(word) {
            Some((bytes, len)) => {
                if before.trim().is_empty() && !pending.is_empty() {
                    // Only whitespace between two encoded words: dropped.
                } else {
                    flush(&mut out, &mut pending);
                    out.push_str(&gap);
                    out.push_str(before);
                }
                gap.clear();
                pending.extend(bytes);
                rest = &word[len..];
                // Whitespace after a word is kept only if no word follows.
                let ws = rest.len() - rest.trim_start().len();
                gap.push_str(&rest[..ws]);
                rest = &rest[ws..];
            }
            None => {
                flush(&mut out, &mut pending);
                out.push_str(&gap);
                gap.clear();
                out.push_str(before);
                out.push_str("=?");
                rest = &word[2..];
            }
        }
    }
}

fn flush(out: &mut String, pending: &mut Vec<u8>) {
    if !pending.is_empty() {
        out.push_str(&String::from_utf8_lossy(pending));
        pending.clear();
    }
}

/// `=?charset?B|Q?text?=` at the start of `s`: its bytes and its length.
fn encoded_word(s: &str) -> Option<(Vec<u8>, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (_charset, r) = inner.split_once('?')?;
    let (enc, r) = r.split_once('?')?;
    let end = r.find("?=")?;
    let text = &r[..end];
    if text.contains(char::is_whitespace) {
        return None;
    }
    let len = 2 + (inner.len() - r.len()) + end + 2;
    let bytes = match enc {
        "B" | "b" => B64.decode(text).ok()?,
        "Q" | "q" => decode_qp(text.replace('_', " ").as_bytes()),
        _ => return None,
    };
    Some((bytes, len))
}
