//! Sources: where lines come from. Each source runs on its own thread, frames
//! and decodes its lines there, and sends batches downstream; it stops reading
//! when the pipeline stops, or at end of input in `--once` mode.
//!
//! What is common to every source lives here: the configuration of line
//! limits and decoding, and [`LineDecoder`], which turns framed lines into
//! events and keeps the self-metrics of reading.

pub mod checkpoint;
pub mod demo;
pub mod file;
pub mod fingerprint;
pub mod lines;
pub mod multiline;
pub mod partial;
pub mod stdin;

use std::path::PathBuf;

use crate::component::CheckCx;
use crate::decode::{DecodeConfig, Decoder};
use crate::event::{Batch, Event};
use crate::fanout::Fanout;
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Registry};
use lines::{FrameCounts, Line};
use multiline::{Joiner, MultilineConfig};

/// Default `max_line_bytes`: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;

/// Marks an event whose line was cut at `max_line_bytes`.
pub const TRUNCATED_FIELD: &str = "weir_truncated";

/// Everything a running source needs besides its own configuration.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub name: String,
    pub output: Fanout,
    pub shutdown: Shutdown,
    /// Read what is there to the end, then finish (replay / backfill).
    pub once: bool,
    pub registry: Registry,
    pub data_dir: PathBuf,
}

/// Frames → events, with the counters of one source.
pub struct LineDecoder {
    decoder: Decoder,
    lines_read: Counter,
    bytes_read: Counter,
    truncated: Counter,
    dropped_too_long: Counter,
    invalid_utf8: Counter,
}

impl LineDecoder {
    pub fn new(cfg: &DecodeConfig, ctx: &SourceContext) -> Result<Self, String> {
        let r = &ctx.registry;
        let src = [("source", ctx.name.as_str())];
        let decoder = Decoder::new(cfg, r, &ctx.name).map_err(|e| e.message)?;
        Ok(LineDecoder {
            decoder,
            lines_read: r.counter("weir_lines_read_total", "Lines read, by source.", &src),
            bytes_read: r.counter("weir_bytes_read_total", "Bytes read, by source.", &src),
            truncated: r.counter(
                "weir_lines_truncated_total",
                "Lines longer than max_line_bytes that were cut short.",
                &src,
            ),
            dropped_too_long: r.counter(
                "weir_lines_dropped_total",
                "Lines dropped before decoding, by source and reason.",
                &[("source", ctx.name.as_str()), ("reason", "too_long")],
            ),
            invalid_utf8: r.counter(
                "weir_invalid_utf8_lines_total",
                "Lines with invalid UTF-8, read with replacement characters.",
                &src,
            ),
        })
    }

    /// Decodes one line into `out` (or nothing, if the decoder drops it).
    pub fn push(&mut self, line: Line, now: i64, out: &mut Vec<Event>) {
        self.push_from(line, now, None, out);
    }

    /// Like [`LineDecoder::push`], recording which file the line came from.
    pub fn push_from(&mut self, line: Line, now: i64, file: Option<u64>, out: &mut Vec<Event>) {
        if line.text.trim().is_empty() {
            return;
        }
        let (truncated, offset) = (line.truncated, line.end_offset);
        let event = match line.envelope {
            None => self.decoder.decode(line.text, now),
            Some(envelope) => self.decoder.decode_contained(line.text, now, envelope),
        };
        if let Some(mut event) = event {
            if truncated {
                event.insert(TRUNCATED_FIELD, serde_json::Value::Bool(true));
            }
            event.origin = file.map(|file| crate::event::Origin { file, offset });
            out.push(event);
        }
    }

    /// Moves locally kept counts into the shared self-metrics.
    pub fn publish(&mut self, counts: &mut FrameCounts) {
        let c = std::mem::take(counts);
        self.lines_read.add(c.lines);
        self.bytes_read.add(c.bytes);
        self.truncated.add(c.truncated);
        self.dropped_too_long.add(c.dropped_too_long);
        self.invalid_utf8.add(c.invalid_utf8);
        self.decoder.publish();
    }
}

/// Sends a batch if it holds anything; `Err` when nobody listens any more.
pub fn flush(
    output: &Fanout,
    events: &mut Vec<Event>,
    ack: Option<crate::ack::Ack>,
) -> Result<(), crate::fanout::Closed> {
    if events.is_empty() && ack.is_none() {
        return Ok(());
    }
    // The next batch is likely as big: make room for it now rather than
    // grow into it by doubling.
    let room = events.len();
    let batch = Batch {
        events: std::mem::replace(events, Vec::with_capacity(room)),
        ack,
    };
    output.send_blocking(batch)
}

/// `container:` written beside `decode:` instead of inside it: says where
/// it goes, which the generic unknown-key message would not. Returns
/// whether it reported that.
pub fn misplaced_container(cx: &mut CheckCx<'_>) -> bool {
    if cx.body().get("container").is_none() {
        return false;
    }
    cx.error_at_key(
        "container",
        "`container` belongs inside `decode:`, e.g. `decode: {container: cri, codec: json}`",
    );
    true
}

/// Checks the decoding and multiline settings every source shares.
pub fn check_reading(
    cx: &mut CheckCx<'_>,
    decode: &DecodeConfig,
    multiline: Option<&MultilineConfig>,
) {
    if let Err(e) = Decoder::check(decode) {
        cx.report(e.under("decode"));
    }
    if let Some(m) = multiline
        && let Err(e) = Joiner::new(m, 1)
    {
        cx.report(e.under("multiline"));
    }
}
