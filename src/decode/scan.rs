//! The fast path for JSON object lines: one pass that validates a line and
//! finds its top-level fields, without serde's machinery.
//!
//! It accepts exactly what `json::decode_object`'s serde_json path accepts
//! (serde_json 1.x, a top-level object whose keys are read as `str` and whose
//! values are kept as raw text), and yields the same byte ranges. Strings are
//! searched 16 bytes at a time (SSE2 on x86-64, where it is always present; a
//! word-at-a-time loop elsewhere) for the bytes that end a run of plain text:
//! `"`, `\` and control characters.
//!
//! It deliberately gives up rather than decide anything hard. A line that is
//! not valid, a key with escapes (which serde_json unescapes into an owned
//! key and checks for surrogates), and values nested deeper than 64 levels
//! all make it answer `false`; the caller then decodes the line with
//! serde_json, which gives the error message or the owned key. So it never
//! needs error messages of its own, and a line it cannot take costs one
//! extra pass over its valid prefix. `tests/json_differential.rs` and
//! `fuzz/` hold it to serde_json's answers.

use crate::event::{Field, Text, Value};

/// Deepest nesting of a value handled here (one bit per level); deeper
/// values go to serde_json, which has no limit for raw values.
const MAX_DEPTH: u32 = 64;

/// Appends the fields of the JSON object `line` to `fields` and returns
/// `true`, or returns `false` with `fields` as it was when the line is not
/// one this fast path takes (see the module's doc).
pub fn index_object(line: &str, fields: &mut Vec<Field>) -> bool {
    let before = fields.len();
    let ok = Scan {
        b: line.as_bytes(),
        i: 0,
    }
    .object(fields)
    .is_some();
    if !ok {
        fields.truncate(before);
    }
    ok
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    /// The top-level object, then nothing but whitespace.
    fn object(&mut self, fields: &mut Vec<Field>) -> Option<()> {
        self.ws();
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            loop {
                self.eat(b'"')?;
                let key_start = self.i;
                if self.string()? {
                    return None; // escaped key: serde_json unescapes it
                }
                let key_end = self.i - 1;
                self.ws();
                self.eat(b':')?;
                self.ws();
                let value_start = self.i;
                self.value()?;
                fields.push(Field {
                    key: Text::Span(key_start as u32, key_end as u32),
                    value: Value::Json(value_start as u32, self.i as u32),
                });
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                    }
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.ws();
        (self.i == self.b.len()).then_some(())
    }

    /// One value starting at `self.i` (whitespace already skipped), nested
    /// arrays and objects included. Iterative: the open containers are bits
    /// of `open` (1 = object), innermost lowest.
    fn value(&mut self) -> Option<()> {
        let mut open: u64 = 0;
        let mut depth = 0u32;
        loop {
            // A value starts here.
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    self.string()?;
                }
                b'n' => self.literal(b"null")?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'-' | b'0'..=b'9' => self.number()?,
                c @ (b'[' | b'{') => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    depth += 1;
                    open = open << 1 | u64::from(c == b'{');
                    self.ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.i += 1;
                        depth -= 1;
                        open >>= 1;
                    } else {
                        if c == b'{' {
                            self.key_colon()?;
                        }
                        continue;
                    }
                }
                _ => return None,
            }
            // A value ended: close what it ends, or go on to the next.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.ws();
                let in_object = open & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        if in_object {
                            self.key_colon()?;
                        }
                        break;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                self.i += 1;
                depth -= 1;
                open >>= 1;
            }
        }
    }

    /// A nested object's key (escapes allowed: serde_json only skips it),
    /// its colon, and the whitespace before the value.
    fn key_colon(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    /// The rest of a string whose opening quote is consumed; leaves `self.i`
    /// past the closing quote. Says whether it held an escape.
    fn string(&mut self) -> Option<bool> {
        let mut escaped = false;
        loop {
            self.i += plain_run(&self.b[self.i..]);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a control character
            }
        }
    }

    /// A number as JSON writes them: `-`? (`0` | [1-9][0-9]*) (`.`[0-9]+)?
    /// ([eE][+-]?[0-9]+)?
    fn number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn some_digits(&mut self) -> Option<()> {
        let from = self.i;
        self.digits();
        (self.i > from).then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// JSON's whitespace, the four bytes serde_json skips.
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }
}

/// Whether a byte ends a run of plain string text.
#[inline]
fn special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// How many bytes at the start of `s` are plain string text.
#[inline]
fn plain_run(s: &[u8]) -> usize {
    // SAFETY: SSE2 is part of x86-64 itself, every x86-64 CPU has it.
    #[cfg(target_arch = "x86_64")]
    let i = unsafe { plain_blocks_sse2(s) };
    #[cfg(not(target_arch = "x86_64"))]
    let i = plain_words(s);
    i + s[i..]
        .iter()
        .position(|&c| special(c))
        .unwrap_or(s.len() - i)
}

/// Plain text in whole 16-byte blocks: returns where the first special byte
/// is, or where the last whole block ends.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn plain_blocks_sse2(s: &[u8]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let control = _mm_set1_epi8(0x1f);
    let mut i = 0;
    while i + 16 <= s.len() {
        // SAFETY: `i + 16 <= s.len()`, so the 16 bytes read are inside `s`;
        // the unaligned load has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(s.as_ptr().add(i).cast::<__m128i>()) };
        let hits = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
            // v <= 0x1f as unsigned bytes: min(v, 0x1f) == v.
            _mm_cmpeq_epi8(_mm_min_epu8(v, control), v),
        );
        let mask = _mm_movemask_epi8(hits);
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    i
}

/// The portable version of [`plain_blocks_sse2`], eight bytes a word.
/// Each test below may also flag bytes above a true hit (a borrow carries
/// upwards), never below one, so the lowest flagged byte is the first hit.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn plain_words(s: &[u8]) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let mut i = 0;
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        let hits = below(w, 0x20)
            | below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1);
        if hits != 0 {
            return i + hits.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Option<Vec<(String, String)>> {
        let mut f = Vec::new();
        index_object(line, &mut f).then(|| {
            f.iter()
                .map(|f| {
                    let (Text::Span(a, b), Value::Json(c, d)) = (&f.key, &f.value) else {
                        panic!("spans only")
                    };
                    (
                        line[*a as usize..*b as usize].to_string(),
                        line[*c as usize..*d as usize].to_string(),
                    )
                })
                .collect()
        })
    }

    #[test]
    fn finds_top_level_fields_as_written() {
        let got = fields(r#" {"a": 1, "b":"x\"y" ,"c":{"d":[1,{"e":null}]},"f":-0.5e+3} "#);
        let want = [
            ("a", "1"),
            ("b", r#""x\"y""#),
            ("c", r#"{"d":[1,{"e":null}]}"#),
            ("f", "-0.5e+3"),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, Some(want));
        assert_eq!(fields("{}"), Some(vec![]));
        assert_eq!(fields(r#"{"a":[]}"#).unwrap()[0].1, "[]");
    }

    #[test]
    fn gives_up_on_what_serde_json_rejects_or_unescapes() {
        for line in [
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a\u0062":1}"#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"[1]"#,
            r#"{"a":{]}"#,
            "",
        ] {
            assert_eq!(fields(line), None, "{line}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(65), "]".repeat(65));
        assert_eq!(fields(&deep), None);
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64));
        assert!(fields(&ok).is_some());
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte_anywhere_in_a_block() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1f] {
                    let mut s = vec![b'a'; len];
                    s.extend_from_slice("é".as_bytes());
                    if at < len {
                        s[at] = special;
                    }
                    let want = if at < len { at } else { s.len() };
                    assert_eq!(plain_run(&s), want, "len {len} at {at}");
                    let words = plain_words(&s);
                    assert!(words <= want && want - words < 8, "len {len} at {at}");
                }
            }
        }
        assert_eq!(plain_run(&[0x20, 0x7f, 0x80, 0xff]), 4);
    }
}
