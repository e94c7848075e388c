//! The `stdin` source: lines piped into weir (`app 2>&1 | weir run …`).
//!
//! A reader thread does the blocking reads, so that the source itself can
//! notice a shutdown while the writer is silent. Standard input has no
//! checkpoints: what was read before a crash is not read again. The source
//! ends at end of input.
//!
//! On a machine with more than one core, a chunk with many lines is
//! decoded in two halves at once — the second by a helper thread that lives
//! as long as the source — and the events are sent in the order of their
//! lines.

use std::io::{IsTerminal, Read};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use serde::Deserialize;

use super::lines::{FrameCounts, Framer, Line, Oversize};
use super::multiline::{Joiner, MultilineConfig};
use super::partial::{self, Reassembler};
use super::{DEFAULT_MAX_LINE_BYTES, LineDecoder, SourceContext, flush};
use crate::component::{CheckCx, Kind, SourceKind, SourceSpec};
use crate::config::units::ByteSize;
use crate::decode::DecodeConfig;
use crate::decode::timestamp::now_nanos;
use crate::event::Event;

/// Lines in a chunk from which its decoding is split in two: below it,
/// handing lines to the helper and back costs more than it saves.
const SPLIT_AT: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    #[serde(default)]
    pub decode: DecodeConfig,
    pub multiline: Option<MultilineConfig>,
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    #[serde(default)]
    pub oversize: Oversize,
}

fn default_max_line() -> ByteSize {
    ByteSize(DEFAULT_MAX_LINE_BYTES)
}

const READ_CHUNK: usize = 256 * 1024;

/// How long a partial container line (`decode.container`) waits for its
/// continuation: the file source's default `line_timeout`.
const PARTIAL_TIMEOUT: Duration = Duration::from_secs(1);

/// The `stdin` source kind.
pub const KIND: SourceKind = Kind {
    name: "stdin",
    check,
};

#[derive(Debug)]
struct StdinSpec {
    cfg: StdinConfig,
}

impl SourceSpec for StdinSpec {
    fn run(&self, ctx: SourceContext) -> Result<(), String> {
        run(self.cfg.clone(), ctx)
    }

    /// The size of standard input when it is a file (`< app.log`).
    fn replay_bytes(&self) -> Option<u64> {
        use std::os::fd::AsFd;
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        let m = std::fs::File::from(fd).metadata().ok()?;
        m.is_file().then_some(m.len())
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<Arc<dyn SourceSpec>> {
    if super::misplaced_container(cx) {
        return None;
    }
    let cfg: StdinConfig = cx.typed()?;
    super::check_reading(cx, &cfg.decode, cfg.multiline.as_ref());
    (!cx.has_errors()).then(|| Arc::new(StdinSpec { cfg }) as Arc<dyn SourceSpec>)
}

/// Runs the source on the calling thread until end of input or shutdown.
pub fn run(cfg: StdinConfig, ctx: SourceContext) -> Result<(), String> {
    let stdin = std::io::stdin();
    if ctx.once && stdin.is_terminal() {
        tracing::info!(source = %ctx.name, "standard input is a terminal; nothing to replay from it in --once mode");
        return Ok(());
    }
    run_reader(cfg, ctx, stdin)
}

/// Runs the source over any reader (tests use this).
pub fn run_reader<R: Read + Send + 'static>(
    cfg: StdinConfig,
    ctx: SourceContext,
    mut input: R,
) -> Result<(), String> {
    let mut lines = LineDecoder::new(&cfg.decode, &ctx)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut helper = if cores > 1 {
        Some(Helper::start(
            &ctx.name,
            LineDecoder::new(&cfg.decode, &ctx)?,
        )?)
    } else {
        None
    };
    let mut framer = Framer::new(cfg.max_line_bytes.0 as usize, cfg.oversize, 0);
    let mut joiner = match &cfg.multiline {
        Some(m) => Some(Joiner::new(m, cfg.max_line_bytes.0 as usize).map_err(|e| e.message)?),
        None => None,
    };
    let mut reassembler = cfg
        .decode
        .container
        .map(|format| Reassembler::new(format, cfg.max_line_bytes.0 as usize, cfg.oversize));
    let mut joined = Vec::new();
    let mut last_data = std::time::Instant::now();

    // Small bound: the reader stays at most two chunks ahead.
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(2);
    // Chunks go back to the reader once framed, so that it reads into
    // memory it has used before instead of a fresh 256 KiB each time.
    let (give_back, spare) = mpsc::sync_channel::<Vec<u8>>(2);
    std::thread::Builder::new()
        .name(format!("{}-read", ctx.name))
        .spawn(move || {
            loop {
                let mut buf = spare.try_recv().unwrap_or_default();
                buf.resize(READ_CHUNK, 0);
                let r = match input.read(&mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let end = !matches!(&r, Ok(b) if !b.is_empty());
                if tx.send(r).is_err() || end {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the stdin reader: {e}"))?;

    let mut events = Vec::new();
    loop {
        if ctx.shutdown.is_triggered() {
            break;
        }
        let chunk = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(chunk)) => chunk,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // A partial container line and a multiline group wait
                // only so long for their next line.
                partial::release(
                    reassembler.as_mut(),
                    joiner.as_mut(),
                    PARTIAL_TIMEOUT,
                    &mut joined,
                );
                if let Some(j) = joiner.as_mut()
                    && last_data.elapsed() >= j.timeout
                {
                    joined.extend(j.flush());
                }
                if !joined.is_empty() {
                    let now = now_nanos();
                    decode_all(&mut lines, helper.as_mut(), &mut joined, now, &mut events);
                    if flush(&ctx.output, &mut events, None).is_err() {
                        break;
                    }
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(source = %ctx.name, error = %e, "reading standard input failed; the source stops");
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let end = chunk.is_empty();
        last_data = std::time::Instant::now();
        framer.push(&chunk);
        let _ = give_back.try_send(chunk);
        let now = now_nanos();
        let mut start = framer.offset();
        while let Some(line) = framer.next_line() {
            let next = line.end_offset;
            partial::feed(
                reassembler.as_mut(),
                joiner.as_mut(),
                line,
                start,
                &mut framer.counts,
                &mut joined,
            );
            start = next;
        }
        if end && let Some(line) = framer.take_partial() {
            partial::feed(
                reassembler.as_mut(),
                joiner.as_mut(),
                line,
                start,
                &mut framer.counts,
                &mut joined,
            );
        }
        let wait = if end { Duration::ZERO } else { PARTIAL_TIMEOUT };
        partial::release(reassembler.as_mut(), joiner.as_mut(), wait, &mut joined);
        if end {
            joined.extend(joiner.as_mut().and_then(|j| j.flush()));
        }
        decode_all(&mut lines, helper.as_mut(), &mut joined, now, &mut events);
        lines.publish(&mut framer.counts);
        if flush(&ctx.output, &mut events, None).is_err() || end {
            break;
        }
    }
    lines.publish(&mut framer.counts);
    Ok(())
}

/// Decodes `joined` into `events`, in the order of the lines. With a
/// helper and enough lines, the second half is decoded by the helper while
/// this thread decodes the first.
fn decode_all(
    lines: &mut LineDecoder,
    helper: Option<&mut Helper>,
    joined: &mut Vec<Line>,
    now: i64,
    events: &mut Vec<Event>,
) {
    // The second half goes to the helper before this thread starts on the first.
    let helper = helper.filter(|_| joined.len() >= SPLIT_AT).map(|h| {
        let second = joined.split_off(joined.len() / 2);
        let handed = h
            .work
            .as_ref()
            .is_some_and(|w| w.send((second, now)).is_ok());
        (h, handed)
    });
    for line in joined.drain(..) {
        lines.push(line, now, events);
    }
    if let Some((h, handed)) = helper {
        match handed.then(|| h.done.recv().ok()).flatten() {
            Some(out) => events.extend(out),
            None => h.panicked(),
        }
    }
}

/// A thread that decodes the second half of large chunks, for as long as
/// the source runs. One thread for the source's life, not one per chunk:
/// starting a thread costs as much as decoding tens of lines, and each new
/// thread starts a fresh allocator heap.
struct Helper {
    /// `None` only while dropping.
    work: Option<mpsc::SyncSender<(Vec<Line>, i64)>>,
    done: mpsc::Receiver<Vec<Event>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Helper {
    fn start(name: &str, mut lines: LineDecoder) -> Result<Helper, String> {
        let (work, todo) = mpsc::sync_channel::<(Vec<Line>, i64)>(1);
        let (finished, done) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("{name}-decode"))
            .spawn(move || {
                for (batch, now) in todo {
                    let mut out = Vec::with_capacity(batch.len());
                    for line in batch {
                        lines.push(line, now, &mut out);
                    }
                    lines.publish(&mut FrameCounts::default());
                    if finished.send(out).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the stdin decoder: {e}"))?;
        Ok(Helper {
            work: Some(work),
            done,
            thread: Some(thread),
        })
    }

    /// The helper thread is gone, which only a panic does: the source
    /// panics with it, as it would have had it decoded the lines itself.
    fn panicked(&mut self) -> ! {
        match self.thread.take().map(|t| t.join()) {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => panic!("the stdin decoder thread stopped"),
        }
    }
}

impl Drop for Helper {
    /// Ends the thread: closing its work channel stops its loop.
    fn drop(&mut self) {
        drop(self.work.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
