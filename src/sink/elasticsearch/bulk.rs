//! One `_bulk` request body as it is built: every action and document line
//! written straight into one buffer, and where each document lies in it.
//! Sending takes the buffer as it is; resending some documents or writing
//! one to the dead-letter file slices it. There is no per-document string
//! to allocate, copy into the body, and free again.
//!
//! With gzip, each document is compressed as soon as it is written, while
//! the sink still waits for more events, so sending a full batch does not
//! start with compressing all of it.
//!
//! It knows the NDJSON layout and nothing of Elasticsearch's answers.

/// A document's `_id`, as the action line writes it.
#[derive(Debug, Clone, Copy)]
pub enum Id<'a> {
    None,
    /// The file's fingerprint and the line's offset.
    Fingerprint {
        file: u64,
        offset: u64,
    },
    Text(&'a str),
}

/// Where one document's two lines lie in the body.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// Start of the action line.
    action: usize,
    /// Start of the document line (just after the action's newline).
    source: usize,
    /// End of the document line, before its newline.
    end: usize,
    /// Its index name, in [`Bulk::indices`].
    index: usize,
    has_id: bool,
}

/// The bulk body being built and its documents, in order.
#[derive(Default)]
pub struct Bulk {
    body: Vec<u8>,
    spans: Vec<Span>,
    /// The index names of this body's documents, each once.
    indices: Vec<String>,
    /// Where the document being written began.
    open: Option<(usize, usize)>,
    /// Compress the body (gzip).
    gzip: bool,
    /// The documents written so far, compressed (from the body's start).
    gz: Option<crate::http::Gzip>,
    /// The whole body compressed, once asked for (kept for retries).
    compressed: Option<Vec<u8>>,
}

impl Bulk {
    /// A body compressed with gzip as it is written, or not.
    pub fn new(gzip: bool) -> Bulk {
        Bulk {
            gzip,
            ..Bulk::default()
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The NDJSON body: every action and document line, each with its newline.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Forgets every document; keeps the buffer unless a burst made it big.
    pub fn clear(&mut self) {
        self.body.clear();
        self.spans.clear();
        self.indices.clear();
        self.open = None;
        self.gz = None;
        self.compressed = None;
        if self.body.capacity() > 32 << 20 {
            self.body.shrink_to(8 << 20);
        }
    }

    /// The number of index `name` in this body, added if new.
    pub fn index_slot(&mut self, name: &str) -> usize {
        match self.indices.iter().position(|i| i == name) {
            Some(i) => i,
            None => {
                self.indices.push(name.to_string());
                self.indices.len() - 1
            }
        }
    }

    /// Starts a document: the caller writes its action line (without the
    /// newline) into [`Bulk::buf`], then calls [`Bulk::source`].
    pub fn begin(&mut self) {
        self.open = Some((self.body.len(), usize::MAX));
    }

    /// Starts a document with its action line, `{"<op>":{"_index":…,"_id":…}}`,
    /// and its newline; the document line follows in [`Bulk::buf`].
    pub fn begin_action(&mut self, op: &str, index: usize, id: Id<'_>) {
        self.begin();
        let out = &mut self.body;
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\":{\"_index\":");
        crate::event::write_json_str(out, &self.indices[index]);
        match id {
            Id::None => {}
            Id::Fingerprint { file, offset } => {
                use std::io::Write as _;
                // Hex digits and a number: nothing to escape.
                let _ = write!(out, ",\"_id\":\"{file:016x}-{offset}\"");
            }
            Id::Text(t) => {
                out.extend_from_slice(b",\"_id\":");
                crate::event::write_json_str(out, t);
            }
        }
        out.extend_from_slice(b"}}");
        self.source();
    }

    /// The buffer to write the open document's lines into.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// Ends the action line; the document line comes next.
    pub fn source(&mut self) {
        self.body.push(b'\n');
        if let Some((_, s)) = self.open.as_mut() {
            *s = self.body.len();
        }
    }

    /// Ends the document line; returns the bytes the document took.
    pub fn end(&mut self, index: usize, has_id: bool) -> usize {
        let (action, source) = self.open.take().expect("begin() first");
        let end = self.body.len();
        self.body.push(b'\n');
        if self.gzip && self.compressed.is_none() && (self.gz.is_some() || action == 0) {
            self.gz
                .get_or_insert_with(|| crate::http::Gzip::new(1 << 20))
                .write(&self.body[action..]);
        }
        self.spans.push(Span {
            action,
            source,
            end,
            index,
            has_id,
        });
        self.body.len() - action
    }

    fn text(&self, from: usize, to: usize) -> &str {
        std::str::from_utf8(&self.body[from..to]).unwrap_or("")
    }

    /// Document `i`'s action line.
    pub fn action(&self, i: usize) -> &str {
        let s = &self.spans[i];
        self.text(s.action, s.source - 1)
    }

    /// Document `i`'s line.
    pub fn document(&self, i: usize) -> &str {
        let s = &self.spans[i];
        self.text(s.source, s.end)
    }

    /// Document `i`'s index name.
    pub fn index(&self, i: usize) -> &str {
        &self.indices[self.spans[i].index]
    }

    /// Whether document `i` was sent with an `_id`.
    pub fn has_id(&self, i: usize) -> bool {
        self.spans[i].has_id
    }

    /// Document `i`'s `_id`, read back from its action line (for the
    /// dead-letter file: a rare path).
    pub fn id(&self, i: usize) -> Option<String> {
        if !self.has_id(i) {
            return None;
        }
        let action: serde_json::Value = serde_json::from_str(self.action(i)).ok()?;
        let (_, meta) = action.as_object()?.iter().next()?;
        meta["_id"].as_str().map(str::to_string)
    }

    /// The body to send: gzip-compressed when asked for (what was
    /// compressed while writing, finished now), else as it is.
    pub fn request_body(&mut self) -> &[u8] {
        if !self.gzip {
            return &self.body;
        }
        if self.compressed.is_none() {
            let done = match self.gz.take() {
                Some(gz) => gz.finish(&self.body),
                None => crate::http::gzip(&self.body),
            };
            self.compressed = Some(done);
        }
        self.compressed.as_deref().unwrap_or_default()
    }

    /// Keeps only the documents `keep` says yes to, in order.
    pub fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        // Compressed again, whole, when sent.
        self.gz = None;
        self.compressed = None;
        let mut body = Vec::with_capacity(self.body.len());
        let mut spans = Vec::new();
        for (i, s) in self.spans.iter().enumerate() {
            if !keep(i) {
                continue;
            }
            let base = body.len();
            body.extend_from_slice(&self.body[s.action..=s.end]);
            spans.push(Span {
                action: base,
                source: base + (s.source - s.action),
                end: base + (s.end - s.action),
                index: s.index,
                has_id: s.has_id,
            });
        }
        self.body = body;
        self.spans = spans;
    }
}

/// Appends `nanos` since the epoch as RFC 3339 in UTC, the way jiff's
/// `Timestamp` displays it (fractional seconds without trailing zeros,
/// none when whole). `cache` keeps the formatted second: events of one
/// second share it.
pub fn write_timestamp(out: &mut Vec<u8>, nanos: i64, cache: &mut Option<(i64, [u8; 19])>) {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let text = match cache {
        Some((s, t)) if *s == secs => *t,
        _ => {
            let Ok(ts) = jiff::Timestamp::from_second(secs) else {
                out.extend_from_slice(b"1970-01-01T00:00:00Z");
                return;
            };
            let shown = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            let Ok(t) = <[u8; 19]>::try_from(shown.as_bytes()) else {
                // Years before 0 or after 9999: rare enough to format whole.
                let whole = jiff::Timestamp::from_nanosecond(i128::from(nanos))
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                out.extend_from_slice(whole.to_string().as_bytes());
                return;
            };
            *cache = Some((secs, t));
            t
        }
    };
    out.extend_from_slice(&text);
    if frac > 0 {
        let digits = format!("{frac:09}");
        out.push(b'.');
        out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
    }
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_jiff_writes_them() {
        let mut cache = None;
        for nanos in [
            0i64,
            1_738_310_400_123_000_000,
            1_795_586_400_785_114_000,
            1_795_586_400_785_114_001,
            1_795_586_400_000_000_010,
            1_795_586_401_500_000_000,
            -1_500_000_000,
            9_000_000_000_123_456_789, // 2255
        ] {
            let mut out = Vec::new();
            write_timestamp(&mut out, nanos, &mut cache);
            let want = jiff::Timestamp::from_nanosecond(i128::from(nanos))
                .unwrap()
                .to_string();
            assert_eq!(String::from_utf8(out).unwrap(), want, "{nanos}");
        }
    }

    #[test]
    fn documents_slice_back_and_retain_keeps_order() {
        for gzip in [false, true] {
            slices_and_retain(gzip);
        }
    }

    fn unzip(body: &[u8]) -> String {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(body)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    fn slices_and_retain(gzip: bool) {
        let mut b = Bulk::new(gzip);
        for (i, name) in ["a", "b", "a"].iter().enumerate() {
            let slot = b.index_slot(name);
            b.begin();
            let line = format!(r#"{{"create":{{"_index":"{name}","_id":"id{i}"}}}}"#);
            b.buf().extend_from_slice(line.as_bytes());
            b.source();
            b.buf()
                .extend_from_slice(format!(r#"{{"n":{i}}}"#).as_bytes());
            b.end(slot, true);
        }
        assert_eq!(b.len(), 3);
        let whole = String::from_utf8(b.body().to_vec()).unwrap();
        let sent = b.request_body().to_vec();
        assert_eq!(
            if gzip {
                unzip(&sent)
            } else {
                String::from_utf8(sent).unwrap()
            },
            whole
        );
        assert_eq!(b.index(2), "a");
        assert_eq!(b.document(1), r#"{"n":1}"#);
        assert_eq!(b.id(2).as_deref(), Some("id2"));
        b.retain(|i| i != 1);
        assert_eq!(b.len(), 2);
        let sent = b.request_body().to_vec();
        let text = if gzip {
            unzip(&sent)
        } else {
            String::from_utf8(sent).unwrap()
        };
        assert_eq!(text.as_bytes(), b.body());
        assert_eq!(b.document(1), r#"{"n":2}"#);
        assert_eq!(
            std::str::from_utf8(b.body()).unwrap(),
            "{\"create\":{\"_index\":\"a\",\"_id\":\"id0\"}}\n{\"n\":0}\n{\"create\":{\"_index\":\"a\",\"_id\":\"id2\"}}\n{\"n\":2}\n"
        );
    }
}
