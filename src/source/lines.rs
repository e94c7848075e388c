//! Framing: cutting a byte stream into lines, with bounded memory.
//!
//! The framer owns one buffer per stream. It hands out complete lines with the
//! stream offset just past their newline (what a checkpoint may record once the
//! line is delivered), strips a trailing `\r`, replaces invalid UTF-8, and
//! enforces `max_line_bytes`: a longer line is truncated (the rest skipped up to
//! its newline) or dropped, and counted. A line without its newline stays
//! buffered until the caller decides it is complete (end of input, timeout).
//!
//! It does not know about files, rotation or decoding.

use std::io::{self, Read};

use serde::Deserialize;

/// The most bytes read per `fill`; a stream starts with much smaller reads
/// and grows them while they come back full, so that a hundred quiet files
/// do not hold a hundred large buffers.
const CHUNK: usize = 256 * 1024;
const FIRST_READ: usize = 16 * 1024;

/// What to do with a line longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Keep the first `max_line_bytes` bytes, marked `weir_truncated`.
    #[default]
    Truncate,
    Drop,
}

/// One complete line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    /// Stream offset just past this line (and its newline, if it had one).
    pub end_offset: u64,
    pub truncated: bool,
    /// What a container record around the line said; set by
    /// `source::partial` when the source has `decode.container`.
    pub envelope: Option<crate::decode::container::Envelope>,
}

/// Counts kept by the framer for its owner to publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub lines: u64,
    pub bytes: u64,
    pub truncated: u64,
    pub dropped_too_long: u64,
    pub invalid_utf8: u64,
}

#[derive(Debug)]
pub struct Framer {
    /// Always initialized up to its length; the data ends at `end`.
    buf: Vec<u8>,
    end: usize,
    /// Bytes to ask for in the next read.
    read_size: usize,
    /// First unconsumed byte in `buf`.
    start: usize,
    /// Where the search for the next newline resumes.
    scan: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Inside an overlong line whose rest is being skipped.
    skipping: bool,
    max_line_bytes: usize,
    oversize: Oversize,
    pub counts: FrameCounts,
}

impl Framer {
    pub fn new(max_line_bytes: usize, oversize: Oversize, offset: u64) -> Self {
        Framer {
            buf: Vec::new(),
            end: 0,
            read_size: FIRST_READ,
            start: 0,
            scan: 0,
            base: offset,
            skipping: false,
            max_line_bytes: max_line_bytes.max(1),
            oversize,
            counts: FrameCounts::default(),
        }
    }

    /// Offset of the first byte not yet handed out as part of a line.
    pub fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Offset of the next byte to be read from the stream.
    pub fn read_offset(&self) -> u64 {
        self.base + self.end as u64
    }

    /// Bytes buffered that belong to a line not yet complete.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Forgets buffered bytes and continues at `offset` (after truncation).
    pub fn reset(&mut self, offset: u64) {
        self.end = 0;
        self.start = 0;
        self.scan = 0;
        self.base = offset;
        self.skipping = false;
    }

    /// Reads once from `r`; returns the byte count (0 at end of input).
    pub fn fill<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        let want = self.read_size;
        self.make_room(want);
        let n = loop {
            match r.read(&mut self.buf[self.end..self.end + want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.end += n;
        if n == want {
            self.read_size = (want * 2).min(CHUNK);
        }
        self.counts.bytes += n as u64;
        Ok(n)
    }

    /// Appends bytes obtained elsewhere.
    pub fn push(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
        self.counts.bytes += bytes.len() as u64;
    }

    /// Makes `n` bytes writable after `end`, moving unconsumed data to the
    /// front first and growing the buffer only if that is not enough.
    fn make_room(&mut self, n: usize) {
        if self.start > 0 && self.buf.len() - self.end < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scan -= self.start;
            self.base += self.start as u64;
            self.start = 0;
        }
        if self.buf.len() - self.end < n {
            self.buf.resize(self.end + n, 0);
        }
    }

    /// Gives back a large buffer once everything in it is consumed (a burst
    /// is over); the next reads start small again.
    pub fn shrink_if_idle(&mut self) {
        if self.pending() == 0 && self.buf.len() > 4 * FIRST_READ {
            self.base += self.end as u64;
            self.buf = Vec::new();
            self.start = 0;
            self.scan = 0;
            self.end = 0;
            self.read_size = FIRST_READ;
        }
    }

    /// The next complete line, if one is buffered.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            match memchr::memchr(b'\n', &self.buf[self.scan..self.end]) {
                Some(i) => {
                    let nl = self.scan + i;
                    let (from, skipped) = (self.start, self.skipping);
                    self.start = nl + 1;
                    self.scan = self.start;
                    self.skipping = false;
                    if skipped {
                        continue;
                    }
                    if nl - from > self.max_line_bytes {
                        // A long line that arrived whole in one read.
                        match self.cut_long(from, nl) {
                            Some(line) => return Some(line),
                            None => continue,
                        }
                    }
                    return Some(self.line(from, nl, false));
                }
                None => {
                    self.scan = self.end;
                    if self.skipping {
                        self.start = self.end;
                        return None;
                    }
                    if self.pending() > self.max_line_bytes {
                        let from = self.start;
                        self.start = self.end;
                        self.skipping = true;
                        match self.cut_long(from, self.end) {
                            Some(line) => return Some(line),
                            None => return None,
                        }
                    }
                    return None;
                }
            }
        }
    }

    /// The buffered rest of an unterminated line, as a line (end of input,
    /// or the line timeout passed).
    pub fn take_partial(&mut self) -> Option<Line> {
        if self.skipping || self.pending() == 0 {
            self.start = self.end;
            self.scan = self.start;
            self.skipping = false;
            return None;
        }
        let from = self.start;
        let end = self.end;
        self.start = end;
        self.scan = end;
        Some(self.line(from, end, false))
    }

    fn cut_long(&mut self, from: usize, end: usize) -> Option<Line> {
        match self.oversize {
            Oversize::Drop => {
                self.counts.dropped_too_long += 1;
                None
            }
            Oversize::Truncate => {
                self.counts.truncated += 1;
                let mut cut = from + self.max_line_bytes;
                // Do not split a UTF-8 character.
                while cut > from && (self.buf[cut] & 0xC0) == 0x80 {
                    cut -= 1;
                }
                let mut line = self.line(from, cut, true);
                line.end_offset = self.base + (end.min(self.end - 1) + 1) as u64;
                Some(line)
            }
        }
    }

    fn line(&mut self, from: usize, mut to: usize, truncated: bool) -> Line {
        let end_offset = self.base + self.start as u64;
        if to > from && self.buf[to - 1] == b'\r' {
            to -= 1;
        }
        let bytes = &self.buf[from..to];
        let text = match simdutf8::basic::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                self.counts.invalid_utf8 += 1;
                String::from_utf8_lossy(bytes).into_owned()
            }
        };
        self.counts.lines += 1;
        Line {
            text,
            end_offset,
            truncated,
            envelope: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer) -> Vec<Line> {
        std::iter::from_fn(|| f.next_line()).collect()
    }

    #[test]
    fn lines_carry_offsets_past_their_newline() {
        let mut f = Framer::new(100, Oversize::Truncate, 1000);
        f.push(b"ab\r\ncd\nef");
        let lines = all(&mut f);
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].text.as_str(), lines[0].end_offset), ("ab", 1004));
        assert_eq!((lines[1].text.as_str(), lines[1].end_offset), ("cd", 1007));
        assert_eq!(f.offset(), 1007);
        f.push(b"gh\n");
        assert_eq!(f.next_line().unwrap().text, "efgh");
        assert_eq!(f.offset(), 1012);
    }

    #[test]
    fn a_line_split_across_reads_is_joined() {
        let mut f = Framer::new(100, Oversize::Truncate, 0);
        let mut r: &[u8] = b"hello world\n";
        // Read in tiny pieces through a reader that returns 3 bytes at a time.
        struct Slow<'a>(&'a mut &'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(3).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                *self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut slow = Slow(&mut r);
        let mut got = Vec::new();
        while f.fill(&mut slow).unwrap() > 0 {
            got.extend(all(&mut f));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "hello world");
    }

    #[test]
    fn long_lines_are_truncated_at_a_char_boundary_and_the_rest_skipped() {
        let mut f = Framer::new(5, Oversize::Truncate, 0);
        f.push("abcd语言xyz\nok\n".as_bytes());
        let lines = all(&mut f);
        assert_eq!(lines[0].text, "abcd");
        assert!(lines[0].truncated);
        assert_eq!(lines[1].text, "ok");
        assert_eq!(f.counts.truncated, 1);

        // Arriving in pieces: the buffer never holds more than the limit + a chunk.
        let mut f = Framer::new(5, Oversize::Drop, 0);
        f.push(b"0123456789");
        assert_eq!(f.next_line(), None);
        f.push(b"0123456789\nnext\n");
        let lines = all(&mut f);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "next");
        assert_eq!(lines[0].end_offset, 26);
        assert_eq!(f.counts.dropped_too_long, 1);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let mut f = Framer::new(100, Oversize::Truncate, 0);
        f.push(b"a\xffb\n");
        assert_eq!(f.next_line().unwrap().text, "a\u{fffd}b");
        assert_eq!(f.counts.invalid_utf8, 1);
    }

    #[test]
    fn partial_line_is_released_on_request() {
        let mut f = Framer::new(100, Oversize::Truncate, 0);
        f.push(b"done\nhalf");
        assert_eq!(f.next_line().unwrap().text, "done");
        assert_eq!(f.next_line(), None);
        let p = f.take_partial().unwrap();
        assert_eq!((p.text.as_str(), p.end_offset), ("half", 9));
        assert_eq!(f.take_partial(), None);
    }
}
