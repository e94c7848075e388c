//! The disk buffer's bytes: how a batch of events becomes one record, and
//! how records are framed in a segment file so that a torn or damaged one
//! is found and stepped over.
//!
//! A segment file starts with [`SEGMENT_MAGIC`] (which names the format's
//! version). Each record is a 12-byte
//! header — [`RECORD_MAGIC`], the payload length, and a CRC-32 of the
//! length and payload together — followed by the payload: the batch's
//! events, each with its line, its fields as spans into the line (or owned
//! values), its time and where it was read. Reading one back gives the very
//! same events, without decoding any JSON again.
//!
//! A header whose magic, length or checksum does not hold marks damage:
//! [`next`] then skips to the next place where a whole, valid record
//! starts, and says how many bytes it stepped over. This module does no
//! I/O.

use crate::event::{Event, Field, Origin, Text, Value};

/// The first bytes of every segment file (and its format version).
pub const SEGMENT_MAGIC: &[u8; 8] = b"WEIRBUF1";
/// The first bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"WRec";
/// Magic, payload length, checksum.
pub const HEADER: usize = 12;
/// No batch is this large; a length beyond it is damage.
const MAX_PAYLOAD: usize = 1 << 30;

/// Appends one framed record holding `events` to `out`.
pub fn encode(events: &[Event], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&[0; 8]);
    put_u32(out, events.len() as u32);
    for e in events {
        encode_event(e, out);
    }
    let len = (out.len() - start - HEADER) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(&out[start + 4..start + 8], &out[start + HEADER..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

fn encode_event(e: &Event, out: &mut Vec<u8>) {
    let (line, fields, verbatim) = e.raw_parts();
    out.extend_from_slice(&e.time.to_le_bytes());
    let flags = u8::from(verbatim) | u8::from(e.timed) << 1 | u8::from(e.origin.is_some()) << 2;
    out.push(flags);
    if let Some(o) = e.origin {
        out.extend_from_slice(&o.file.to_le_bytes());
        out.extend_from_slice(&o.offset.to_le_bytes());
    }
    put_bytes(out, line.as_bytes());
    put_var(out, fields.len() as u32);
    for f in fields {
        match &f.key {
            Text::Span(a, b) => put_span(out, 0, *a, *b),
            Text::Owned(s) => {
                out.push(1);
                put_bytes(out, s.as_bytes());
            }
        }
        match &f.value {
            Value::Json(a, b) => put_span(out, 0, *a, *b),
            Value::Text(Text::Span(a, b)) => put_span(out, 1, *a, *b),
            Value::Text(Text::Owned(s)) => {
                out.push(2);
                put_bytes(out, s.as_bytes());
            }
            Value::Owned(v) => {
                out.push(3);
                let json = serde_json::to_vec(v).expect("a JSON value serializes");
                put_bytes(out, &json);
            }
        }
    }
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

/// A LEB128 varint: spans and lengths are mostly one or two bytes.
fn put_var(out: &mut Vec<u8>, mut n: u32) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_var(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_span(out: &mut Vec<u8>, tag: u8, a: u32, b: u32) {
    out.push(tag);
    put_var(out, a);
    // The end as a length: smaller.
    put_var(out, b.saturating_sub(a));
}

/// What the bytes at the front of a buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A whole, valid record: the payload is `payload`, the record `len` bytes.
    Record { payload: (usize, usize), len: usize },
    /// The front is the start of a record whose end is not there yet.
    Partial,
    /// Damage: skip this many bytes to reach the next record, or the end.
    Damaged(usize),
    /// Nothing left.
    Empty,
}

/// Looks at the front of `buf`. `complete` says no more bytes will follow
/// (a finished segment), so a record cut short there is damage.
pub fn next(buf: &[u8], complete: bool) -> Next {
    if buf.is_empty() {
        return Next::Empty;
    }
    match check(buf) {
        Check::Valid(len) => Next::Record {
            payload: (HEADER, len),
            len,
        },
        Check::Short if !complete => Next::Partial,
        Check::Short | Check::Bad => Next::Damaged(resync(buf, complete)),
    }
}

enum Check {
    Valid(usize),
    Short,
    Bad,
}

fn check(buf: &[u8]) -> Check {
    let magic_len = buf.len().min(4);
    if buf[..magic_len] != RECORD_MAGIC[..magic_len] {
        return Check::Bad;
    }
    if buf.len() < HEADER {
        return Check::Short;
    }
    let len = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Check::Bad;
    }
    if buf.len() < HEADER + len {
        return Check::Short;
    }
    let crc = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if checksum(&buf[4..8], &buf[HEADER..HEADER + len]) != crc {
        return Check::Bad;
    }
    Check::Valid(HEADER + len)
}

/// How many bytes from the (damaged) front of `buf` to the next position
/// where a valid record, or one that may still be completed, starts.
fn resync(buf: &[u8], complete: bool) -> usize {
    let mut from = 1;
    while let Some(i) = memchr::memmem::find(&buf[from..], &RECORD_MAGIC) {
        let at = from + i;
        match check(&buf[at..]) {
            Check::Valid(_) => return at,
            Check::Short if !complete => return at,
            _ => from = at + 1,
        }
    }
    if complete {
        buf.len()
    } else {
        // The magic may begin in the last three bytes.
        buf.len().saturating_sub(3).max(1)
    }
}

/// How many events a valid record's payload holds.
pub fn count(payload: &[u8]) -> usize {
    payload.get(..4).map_or(0, |b| {
        u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
    })
}

/// The events of a valid record's payload. An error means the record
/// passed its checksum yet does not decode: written by another version, or
/// damaged in a way the checksum could not see.
pub fn decode(payload: &[u8]) -> Result<Vec<Event>, String> {
    let mut r = Reader { buf: payload };
    let n = r.u32()? as usize;
    let mut events = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        events.push(r.event()?);
    }
    Ok(events)
}

/// The smallest event time in a valid record's payload.
pub fn oldest_time(payload: &[u8]) -> Option<i64> {
    decode(payload).ok()?.iter().map(|e| e.time).min()
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("record ends early".into());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn var(&mut self) -> Result<u32, String> {
        let mut n: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.u8()?;
            n |= u32::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("a number longer than it can be".into())
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.var()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "text that is not UTF-8".to_string())
    }

    fn span(&mut self) -> Result<(u32, u32), String> {
        let a = self.var()?;
        let len = self.var()?;
        Ok((a, a.checked_add(len).ok_or("a span past the end")?))
    }

    fn event(&mut self) -> Result<Event, String> {
        let time = self.u64()? as i64;
        let flags = self.u8()?;
        let origin = if flags & 4 != 0 {
            Some(Origin {
                file: self.u64()?,
                offset: self.u64()?,
            })
        } else {
            None
        };
        let line = self.string()?;
        let n = self.var()? as usize;
        let mut fields = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let key = match self.u8()? {
                0 => {
                    let (a, b) = self.span()?;
                    Text::Span(a, b)
                }
                1 => Text::Owned(self.string()?.into()),
                t => return Err(format!("unknown key tag {t}")),
            };
            let value = match self.u8()? {
                0 => {
                    let (a, b) = self.span()?;
                    Value::Json(a, b)
                }
                1 => {
                    let (a, b) = self.span()?;
                    Value::Text(Text::Span(a, b))
                }
                2 => Value::Text(Text::Owned(self.string()?.into())),
                3 => {
                    let n = self.var()? as usize;
                    let v = serde_json::from_slice(self.take(n)?).map_err(|e| e.to_string())?;
                    Value::Owned(v)
                }
                t => return Err(format!("unknown value tag {t}")),
            };
            fields.push(Field { key, value });
        }
        let mut e = Event::from_raw_parts(line, fields, flags & 1 != 0, time)?;
        e.timed = flags & 2 != 0;
        e.origin = origin;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        let mut a = crate::decode::json::decode_object(
            r#"{"level":"ERROR","msg":"用户会话开始","n":3,"o":{"x":[1]}}"#.into(),
            1_700_000_000_000_000_000,
        )
        .unwrap();
        a.timed = true;
        a.origin = Some(Origin {
            file: 0xfeed,
            offset: 77,
        });
        let mut b = Event::from_text("plain \"text\" line".into(), 5);
        b.insert("added", serde_json::json!({"k": [1, "two", null]}));
        vec![a, b]
    }

    fn json(e: &Event) -> String {
        let mut out = Vec::new();
        e.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_record_reads_back_as_the_same_events() {
        let mut buf = SEGMENT_MAGIC.to_vec();
        encode(&events(), &mut buf);
        let body = &buf[SEGMENT_MAGIC.len()..];
        let Next::Record { payload, len } = next(body, true) else {
            panic!("a valid record")
        };
        assert_eq!(len, body.len());
        let p = &body[payload.0..payload.1];
        assert_eq!(count(p), 2);
        let back = decode(p).unwrap();
        assert_eq!(back, events());
        assert_eq!(json(&back[0]), json(&events()[0]), "still written as read");
        assert_eq!(oldest_time(p), Some(5));
    }

    #[test]
    fn long_lines_and_far_spans_read_back() {
        let long = "长".repeat(30_000);
        let line = format!(r#"{{"a":"{long}","b":{}}}"#, "7".repeat(200));
        let e = crate::decode::json::decode_object(line, -1).unwrap();
        let mut buf = Vec::new();
        encode(std::slice::from_ref(&e), &mut buf);
        let Next::Record { payload, .. } = next(&buf, true) else {
            panic!()
        };
        assert_eq!(decode(&buf[payload.0..payload.1]).unwrap(), vec![e]);
    }

    #[test]
    fn damage_is_stepped_over_to_the_next_record() {
        let mut buf = Vec::new();
        for _ in 0..3 {
            encode(&events(), &mut buf);
        }
        let one = buf.len() / 3;
        buf[one + 20] ^= 0xff; // inside the second record's payload
        let mut at = 0;
        let mut seen = Vec::new();
        loop {
            match next(&buf[at..], true) {
                Next::Record { len, .. } => {
                    seen.push("ok");
                    at += len;
                }
                Next::Damaged(n) => {
                    seen.push("damaged");
                    at += n;
                }
                Next::Partial => unreachable!("the buffer is complete"),
                Next::Empty => break,
            }
        }
        assert_eq!(seen, ["ok", "damaged", "ok"]);
    }

    #[test]
    fn a_torn_tail_waits_while_writing_and_is_damage_once_complete() {
        let mut buf = Vec::new();
        encode(&events(), &mut buf);
        let torn = &buf[..buf.len() - 5];
        assert_eq!(next(torn, false), Next::Partial);
        assert_eq!(next(torn, true), Next::Damaged(torn.len()));
        assert_eq!(next(&buf[..2], false), Next::Partial);
        assert_eq!(next(b"garbage", true), Next::Damaged(7));
    }

    #[test]
    fn a_checksum_that_holds_over_bad_spans_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        let e = Event::from_text("abc".into(), 0);
        encode(&[e], &mut buf);
        // Point the message span past the line, then fix the checksum:
        // header, count, time, flags, line (1 + 3), field count (1), key
        // (tag, 1 + "message"), then the value: tag, start, length.
        let p = HEADER + 4 + 8 + 1 + 4 + 1 + 1 + 1 + "message".len();
        assert_eq!(buf[p], 1, "value tag: text span");
        assert_eq!(buf[p + 2], 3, "its length");
        buf[p + 2] = 99;
        let crc = checksum(&buf[4..8], &buf[HEADER..]);
        buf[8..12].copy_from_slice(&crc.to_le_bytes());
        let Next::Record { payload, .. } = next(&buf, true) else {
            panic!()
        };
        assert!(decode(&buf[payload.0..payload.1]).is_err());
    }
}
