//! Writing one log line the way the app prints it: JSON as Python's
//! `json.dumps(obj, ensure_ascii=False)` writes it (`", "` and `": "` separators, raw
//! non-ASCII, `repr(float)` numbers), the `StructuredFormatter`'s fixed leading and
//! trailing keys, and `datetime.isoformat()` UTC timestamps.

use std::io::Write as _;

use super::data::Site;

// ---------------------------------------------------------------------------------
// JSON writing, the way Python's `json.dumps(obj, ensure_ascii=False)` does it.

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Like Python's `repr(float)` for the magnitudes used here (no exponent form).
pub(super) fn put_f64(out: &mut Vec<u8>, v: f64) {
    let start = out.len();
    let _ = write!(out, "{v}");
    if v.is_finite() && !out[start..].contains(&b'.') {
        out.extend_from_slice(b".0");
    }
}

/// Writes the body of a JSON string as `json.dumps(..., ensure_ascii=False)` does:
/// `"` `\` and control characters (below U+0020) escaped, the rest (DEL and non-ASCII
/// included) raw. The same bytes as weir's `event::write_json_str_body`, kept here
/// so that this crate does not depend on weir.
pub(super) fn put_str_body(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // Fast path: a branch-free scan (vectorizes) finds nothing to escape.
    let special = |c: u8| c < 0x20 || c == b'"' || c == b'\\';
    if !b.iter().fold(false, |acc, &c| acc | special(c)) {
        out.extend_from_slice(b);
        return;
    }
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let rep: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&b[start..i]);
                let hex = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(hex[usize::from(c >> 4)]);
                out.push(hex[usize::from(c & 0xF)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

fn key(out: &mut Vec<u8>, k: &str) {
    out.extend_from_slice(b", \"");
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\": ");
}

pub(super) fn kv_str(out: &mut Vec<u8>, k: &str, v: &str) {
    key(out, k);
    out.push(b'"');
    put_str_body(out, v);
    out.push(b'"');
}

/// `v` must need no escaping (uuids).
pub(super) fn kv_raw(out: &mut Vec<u8>, k: &str, v: &[u8]) {
    key(out, k);
    out.push(b'"');
    out.extend_from_slice(v);
    out.push(b'"');
}

pub(super) fn kv_u64(out: &mut Vec<u8>, k: &str, v: u64) {
    key(out, k);
    put_u64(out, v);
}

pub(super) fn kv_f64(out: &mut Vec<u8>, k: &str, v: f64) {
    key(out, k);
    put_f64(out, v);
}

pub(super) fn kv_null(out: &mut Vec<u8>, k: &str) {
    key(out, k);
    out.extend_from_slice(b"null");
}

/// `"exception": "<parts concatenated>"`.
pub(super) fn kv_exception(out: &mut Vec<u8>, parts: &[&str]) {
    key(out, "exception");
    out.push(b'"');
    for p in parts {
        put_str_body(out, p);
    }
    out.push(b'"');
}

/// The formatter's fixed leading keys, up to and including `line`.
pub(super) fn head(out: &mut Vec<u8>, ts: &[u8; 32], level: &str, site: &Site, msg: &str) {
    out.extend_from_slice(b"{\"timestamp\": \"");
    out.extend_from_slice(ts);
    out.extend_from_slice(b"\", \"level\": \"");
    out.extend_from_slice(level.as_bytes());
    out.extend_from_slice(b"\", \"logger\": \"");
    out.extend_from_slice(site.logger.as_bytes());
    out.extend_from_slice(b"\", \"message\": \"");
    put_str_body(out, msg);
    out.extend_from_slice(b"\", \"module\": \"");
    out.extend_from_slice(site.module.as_bytes());
    out.extend_from_slice(b"\", \"function\": \"");
    out.extend_from_slice(site.function.as_bytes());
    out.extend_from_slice(b"\", \"line\": ");
    put_u64(out, u64::from(site.line));
}

pub(super) fn tail(out: &mut Vec<u8>, site: &Site) {
    if site.task {
        out.extend_from_slice(b", \"taskName\": null");
    }
    out.extend_from_slice(b"}\n");
}

// ---------------------------------------------------------------------------------
// Time.

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn put_digits(buf: &mut [u8], mut v: u64) {
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Formats `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, caching the part up to the seconds.
pub(super) struct Stamp {
    sec: i64,
    buf: [u8; 32],
}

impl Stamp {
    pub(super) fn new() -> Self {
        Stamp {
            sec: i64::MIN,
            buf: *b"0000-00-00T00:00:00.000000+00:00",
        }
    }

    pub(super) fn format(&mut self, micros: i64) -> [u8; 32] {
        let sec = micros.div_euclid(1_000_000);
        if sec != self.sec {
            self.sec = sec;
            let (y, m, d) = civil_from_days(sec.div_euclid(86_400));
            let s = sec.rem_euclid(86_400) as u64;
            let b = &mut self.buf;
            put_digits(&mut b[0..4], y.clamp(0, 9999) as u64);
            put_digits(&mut b[5..7], u64::from(m));
            put_digits(&mut b[8..10], u64::from(d));
            put_digits(&mut b[11..13], s / 3600);
            put_digits(&mut b[14..16], s / 60 % 60);
            put_digits(&mut b[17..19], s % 60);
        }
        put_digits(&mut self.buf[20..26], micros.rem_euclid(1_000_000) as u64);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_formatting() {
        let mut s = Stamp::new();
        assert_eq!(&s.format(0), b"1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            &s.format(1_795_586_400_000_000),
            b"2026-11-25T06:00:00.000000+00:00"
        );
        // 2028-02-29T23:59:59.999999Z
        assert_eq!(
            &s.format(1_835_481_599_999_999),
            b"2028-02-29T23:59:59.999999+00:00"
        );
        assert_eq!(
            &s.format(1_835_481_600_000_001),
            b"2028-03-01T00:00:00.000001+00:00"
        );
    }

    #[test]
    fn escaping_matches_python() {
        let mut out = Vec::new();
        put_str_body(&mut out, "a\"b\\c\nd\te\u{1}f\u{7f}中文🚀");
        assert_eq!(out, "a\\\"b\\\\c\\nd\\te\\u0001f\u{7f}中文🚀".as_bytes());
        let mut f = Vec::new();
        put_f64(&mut f, 5.0);
        f.push(b' ');
        put_f64(&mut f, 152.341_985_702_514_65);
        assert_eq!(f, b"5.0 152.34198570251465");
    }

    /// Every ASCII character alone and between text, and non-ASCII text, escaped
    /// as weir's escaper does it: a control character as serde_json writes it (the
    /// short forms for `\b \f \n \r \t`, `\u00xx` in lower-case hex otherwise),
    /// `"` and `\` with a backslash, everything else (DEL included) raw.
    #[test]
    fn escaping_every_ascii_character() {
        for c in 0u8..=0x7f {
            let ch = char::from(c);
            let expected: String = match c {
                b'"' => "\\\"".into(),
                b'\\' => "\\\\".into(),
                0x08 => "\\b".into(),
                0x0c => "\\f".into(),
                b'\n' => "\\n".into(),
                b'\r' => "\\r".into(),
                b'\t' => "\\t".into(),
                0..=0x1f => format!("\\u{c:04x}"),
                _ => ch.to_string(),
            };
            let mut alone = Vec::new();
            put_str_body(&mut alone, &ch.to_string());
            assert_eq!(alone, expected.as_bytes(), "{c:#04x} alone");
            let mut between = Vec::new();
            put_str_body(&mut between, &format!("é{ch}x{ch}"));
            assert_eq!(
                between,
                format!("é{expected}x{expected}").as_bytes(),
                "{c:#04x} between"
            );
            // serde_json agrees: its string body is the same bytes.
            let json = serde_json::to_string(&format!("é{ch}x{ch}")).unwrap();
            assert_eq!(
                &json.as_bytes()[1..json.len() - 1],
                between,
                "{c:#04x} serde_json"
            );
        }
        let mut out = Vec::new();
        put_str_body(&mut out, "plain text, 中文 and 🚀 need nothing");
        assert_eq!(out, "plain text, 中文 and 🚀 need nothing".as_bytes());
    }
}
