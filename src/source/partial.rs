//! Container records back into the application's lines: the stage between
//! framing and multiline joining for a source with `decode.container`.
//!
//! Each framed line is read as a record of the container format
//! (`decode::container`). A full record whose stream has nothing pending is
//! its own line; partial records (CRI's `P`, Docker's `log` without `\n`)
//! are joined per stream — stdout and stderr interleave freely — until the
//! stream's next full record. The line that comes out carries the first
//! record's time and its stream as an [`Envelope`], for the decoder.
//!
//! Bounds, as for any line of the source:
//!
//! - a joined line longer than `max_line_bytes` is cut there and released at
//!   once, marked truncated (`oversize: truncate`), or dropped
//!   (`oversize: drop`), and counted; the stream's remaining parts of it are
//!   skipped up to its full record;
//! - a partial line whose continuation never comes is released by
//!   [`Reassembler::release`] after the source's line timeout, and at the end
//!   of input.
//!
//! A line that is not a record of the format is passed on whole, marked
//! [`Envelope::Malformed`], for the decoder to count and keep or drop: it
//! never stops the source. Blank lines are passed on as they are (the
//! decoder skips them).
//!
//! Offsets: a pending partial line holds back [`Reassembler::pending_start`],
//! so a checkpoint never passes a record whose line was not delivered.
//! Lines of the other stream may be delivered meanwhile; after a restart
//! they are read again (at least once), with the same origin offsets.
//!
//! A `multiline` block, if the source has one, joins the lines that come
//! out of here, in the order they complete, whatever their stream.
//!
//! It deliberately does not decode the application's line, and does not
//! know about files (the file and stdin sources drive it).

use std::time::{Duration, Instant};

use super::lines::{FrameCounts, Line, Oversize};
use super::multiline::Joiner;
use crate::decode::container::{self, ContainerFormat, Envelope};

/// A line being joined from partial records of one stream.
#[derive(Debug)]
struct Group {
    text: String,
    /// Stream offset where the group's first record starts.
    start: u64,
    /// Stream offset just past its last record.
    end: u64,
    /// The first record's time.
    time: i64,
    truncated: bool,
    /// When the last record came, for the line timeout.
    touched: Instant,
}

/// Joins the partial records of one input (a file, standard input).
#[derive(Debug)]
pub struct Reassembler {
    format: ContainerFormat,
    max_bytes: usize,
    oversize: Oversize,
    /// Per stream (`Stream::index`).
    groups: [Option<Group>; 2],
    /// Per stream: a line cut or dropped at `max_bytes` whose remaining
    /// parts are being skipped.
    skipping: [bool; 2],
}

impl Reassembler {
    pub fn new(format: ContainerFormat, max_bytes: usize, oversize: Oversize) -> Reassembler {
        Reassembler {
            format,
            max_bytes: max_bytes.max(1),
            oversize,
            groups: [None, None],
            skipping: [false; 2],
        }
    }

    /// Where the earliest pending partial line starts, if one is pending;
    /// bytes from there on are not delivered yet.
    pub fn pending_start(&self) -> Option<u64> {
        self.groups.iter().flatten().map(|g| g.start).min()
    }

    /// Feeds one framed line that starts at `start`; each line completed
    /// goes to `emit` with the offset its first record starts at.
    /// Truncations and drops at `max_bytes` are added to `counts`.
    pub fn push(
        &mut self,
        line: Line,
        start: u64,
        counts: &mut FrameCounts,
        emit: &mut impl FnMut(Line, u64),
    ) {
        if line.text.trim().is_empty() {
            emit(line, start);
            return;
        }
        let record = match container::parse(self.format, &line.text) {
            Ok(r) => r,
            Err(why) => {
                let line = Line {
                    envelope: Some(Envelope::Malformed(why)),
                    ..line
                };
                emit(line, start);
                return;
            }
        };
        let s = record.stream.index();
        if self.skipping[s] {
            // The rest of a line already cut or dropped.
            self.skipping[s] = record.partial;
            return;
        }
        let joined = self.groups[s].as_ref().map_or(0, |g| g.text.len()) + record.content.len();
        if joined > self.max_bytes {
            let group = self.groups[s].take();
            self.skipping[s] = record.partial;
            match self.oversize {
                Oversize::Drop => counts.dropped_too_long += 1,
                Oversize::Truncate => {
                    counts.truncated += 1;
                    let (mut text, first, time) = match group {
                        Some(g) => (g.text, g.start, g.time),
                        None => (String::new(), start, record.time),
                    };
                    let room = self.max_bytes - text.len();
                    let content = record.content.as_str(&line.text);
                    let mut cut = room.min(content.len());
                    while !content.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.push_str(&content[..cut]);
                    let line = Line {
                        text,
                        end_offset: line.end_offset,
                        truncated: true,
                        envelope: Some(Envelope::Record {
                            time,
                            stream: record.stream,
                        }),
                    };
                    emit(line, first);
                }
            }
            return;
        }
        match (self.groups[s].take(), record.partial) {
            (None, false) => {
                // The common case: a whole line in one record.
                let line = Line {
                    end_offset: line.end_offset,
                    truncated: line.truncated,
                    envelope: Some(Envelope::Record {
                        time: record.time,
                        stream: record.stream,
                    }),
                    text: record.content.into_string(line.text),
                };
                emit(line, start);
            }
            (None, true) => {
                let end = line.end_offset;
                let truncated = line.truncated;
                self.groups[s] = Some(Group {
                    text: record.content.into_string(line.text),
                    start,
                    end,
                    time: record.time,
                    truncated,
                    touched: Instant::now(),
                });
            }
            (Some(mut g), partial) => {
                g.text.push_str(record.content.as_str(&line.text));
                g.end = line.end_offset;
                g.truncated |= line.truncated;
                if partial {
                    g.touched = Instant::now();
                    self.groups[s] = Some(g);
                } else {
                    let first = g.start;
                    emit(finish(g, record.stream), first);
                }
            }
        }
    }

    /// Releases the partial lines whose last record came at least
    /// `quiet` ago (`Duration::ZERO`: all of them, at the end of input),
    /// in the order they started.
    pub fn release(&mut self, quiet: Duration, emit: &mut impl FnMut(Line, u64)) {
        let mut due: Vec<(Group, container::Stream)> = Vec::new();
        for (slot, stream) in self
            .groups
            .iter_mut()
            .zip([container::Stream::Stdout, container::Stream::Stderr])
        {
            if slot.as_ref().is_some_and(|g| g.touched.elapsed() >= quiet) {
                due.extend(slot.take().map(|g| (g, stream)));
            }
        }
        due.sort_by_key(|(g, _)| g.start);
        for (g, stream) in due {
            let first = g.start;
            emit(finish(g, stream), first);
        }
    }
}

/// Passes one framed line on its way to the decoder: through the
/// reassembler when the source reads container logs, then through the
/// multiline joiner when it has one; what is complete lands in `out`.
pub fn feed(
    reassembler: Option<&mut Reassembler>,
    joiner: Option<&mut Joiner>,
    line: Line,
    start: u64,
    counts: &mut FrameCounts,
    out: &mut Vec<Line>,
) {
    match (reassembler, joiner) {
        (None, None) => out.push(line),
        (None, Some(j)) => j.push(line, start, out),
        (Some(r), None) => r.push(line, start, counts, &mut |l, _| out.push(l)),
        (Some(r), Some(j)) => r.push(line, start, counts, &mut |l, s| j.push(l, s, out)),
    }
}

/// Releases the reassembler's partial lines quiet for `quiet` (see
/// [`Reassembler::release`]) through the joiner, if any, into `out`.
pub fn release(
    reassembler: Option<&mut Reassembler>,
    joiner: Option<&mut Joiner>,
    quiet: Duration,
    out: &mut Vec<Line>,
) {
    let Some(r) = reassembler else { return };
    match joiner {
        None => r.release(quiet, &mut |l, _| out.push(l)),
        Some(j) => r.release(quiet, &mut |l, s| j.push(l, s, out)),
    }
}

fn finish(g: Group, stream: container::Stream) -> Line {
    Line {
        text: g.text,
        end_offset: g.end,
        truncated: g.truncated,
        envelope: Some(Envelope::Record {
            time: g.time,
            stream,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::container::{Malformed, Stream};

    const T0: &str = "2026-11-25T06:19:15.000000001Z";
    const T0_NS: i64 = 1_795_587_555_000_000_001;

    /// Feeds `records` as consecutive lines of one stream of bytes; returns
    /// (text, start, end, envelope, truncated) of each line that came out.
    struct Run {
        r: Reassembler,
        offset: u64,
        counts: FrameCounts,
        out: Vec<(String, u64, u64, Option<Envelope>, bool)>,
    }

    impl Run {
        fn new(format: ContainerFormat, max: usize, oversize: Oversize) -> Run {
            Run {
                r: Reassembler::new(format, max, oversize),
                offset: 0,
                counts: FrameCounts::default(),
                out: Vec::new(),
            }
        }

        fn feed(&mut self, records: &[&str]) -> &mut Run {
            for text in records {
                let end = self.offset + text.len() as u64 + 1;
                let line = Line {
                    text: text.to_string(),
                    end_offset: end,
                    truncated: false,
                    envelope: None,
                };
                let out = &mut self.out;
                self.r
                    .push(line, self.offset, &mut self.counts, &mut |l, s| {
                        out.push((l.text, s, l.end_offset, l.envelope, l.truncated))
                    });
                self.offset = end;
            }
            self
        }

        fn end(&mut self) -> &mut Run {
            let out = &mut self.out;
            self.r.release(Duration::ZERO, &mut |l, s| {
                out.push((l.text, s, l.end_offset, l.envelope, l.truncated))
            });
            self
        }

        fn texts(&self) -> Vec<&str> {
            self.out.iter().map(|o| o.0.as_str()).collect()
        }
    }

    fn cri(stream: &str, tag: &str, content: &str) -> String {
        format!("{T0} {stream} {tag} {content}")
    }

    fn docker(stream: &str, log: &str) -> String {
        serde_json::json!({"log": log, "stream": stream, "time": T0}).to_string()
    }

    #[test]
    fn a_full_record_is_a_line_with_its_time_and_stream() {
        let mut run = Run::new(ContainerFormat::Cri, 1 << 20, Oversize::Truncate);
        let line = cri("stdout", "F", r#"{"level":"INFO"}"#);
        run.feed(&[&line]);
        assert_eq!(run.texts(), [r#"{"level":"INFO"}"#]);
        let (_, start, end, envelope, truncated) = &run.out[0];
        assert_eq!(
            (*start, *end, *truncated),
            (0, line.len() as u64 + 1, false)
        );
        assert_eq!(
            *envelope,
            Some(Envelope::Record {
                time: T0_NS,
                stream: Stream::Stdout
            })
        );
        assert_eq!(run.r.pending_start(), None);
    }

    #[test]
    fn partial_records_are_joined_and_hold_back_their_offset() {
        for (format, records) in [
            (
                ContainerFormat::Cri,
                vec![
                    cri("stdout", "P", r#"{"a":"#),
                    cri("stdout", "P", r#""lo"#),
                    cri("stdout", "F", r#"ng"}"#),
                ],
            ),
            (
                ContainerFormat::Docker,
                vec![
                    docker("stdout", r#"{"a":"#),
                    docker("stdout", r#""lo"#),
                    docker("stdout", "ng\"}\n"),
                ],
            ),
        ] {
            let mut run = Run::new(format, 1 << 20, Oversize::Truncate);
            run.feed(&[&records[0], &records[1]]);
            assert!(run.out.is_empty());
            assert_eq!(run.r.pending_start(), Some(0));
            run.feed(&[&records[2]]);
            assert_eq!(run.texts(), [r#"{"a":"long"}"#], "{format:?}");
            assert_eq!(run.out[0].1, 0, "starts at the first record");
            assert_eq!(run.out[0].2, run.offset, "ends past the last");
            assert_eq!(run.r.pending_start(), None);
        }
    }

    #[test]
    fn stdout_and_stderr_are_joined_apart_when_they_interleave() {
        type Wrap = fn(&str, bool, &str) -> String;
        let as_cri: Wrap =
            |stream, partial, text| cri(stream, if partial { "P" } else { "F" }, text);
        let as_docker: Wrap = |stream, partial, text| {
            docker(
                stream,
                &if partial {
                    text.to_string()
                } else {
                    format!("{text}\n")
                },
            )
        };
        for (format, wrap) in [
            (ContainerFormat::Cri, as_cri),
            (ContainerFormat::Docker, as_docker),
        ] {
            let mut run = Run::new(format, 1 << 20, Oversize::Truncate);
            let first = wrap("stdout", true, "out-1 ");
            run.feed(&[
                &first,
                &wrap("stderr", true, "err-1 "),
                &wrap("stderr", false, "err-2"),
            ]);
            assert_eq!(run.texts(), ["err-1 err-2"], "{format:?}");
            assert_eq!(
                run.out[0].3,
                Some(Envelope::Record {
                    time: T0_NS,
                    stream: Stream::Stderr
                })
            );
            assert_eq!(run.out[0].1, first.len() as u64 + 1);
            // stdout's part still holds the checkpoint back to its start.
            assert_eq!(run.r.pending_start(), Some(0));
            run.feed(&[&wrap("stdout", false, "out-2")]);
            assert_eq!(run.texts(), ["err-1 err-2", "out-1 out-2"], "{format:?}");
            assert_eq!(run.out[1].1, 0);
            assert_eq!(
                run.out[1].3,
                Some(Envelope::Record {
                    time: T0_NS,
                    stream: Stream::Stdout
                })
            );
        }
    }

    #[test]
    fn oversized_lines_are_cut_or_dropped_and_the_rest_skipped() {
        let parts = [
            cri("stdout", "P", "0123"),
            cri("stdout", "P", "4567"),
            cri("stdout", "P", "89ab"),
            cri("stdout", "F", "cdef"),
            cri("stdout", "F", "next"),
        ];
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let mut run = Run::new(ContainerFormat::Cri, 6, Oversize::Truncate);
        run.feed(&parts);
        assert_eq!(run.texts(), ["012345", "next"]);
        assert!(run.out[0].4, "marked truncated");
        assert_eq!(run.counts.truncated, 1);

        let mut run = Run::new(ContainerFormat::Cri, 6, Oversize::Drop);
        run.feed(&parts);
        assert_eq!(run.texts(), ["next"]);
        assert_eq!(run.counts.dropped_too_long, 1);
        assert_eq!(run.r.pending_start(), None);

        // Multi-byte characters are not split.
        let mut run = Run::new(ContainerFormat::Docker, 4, Oversize::Truncate);
        run.feed(&[&docker("stderr", "ab"), &docker("stderr", "cé\n")]);
        assert_eq!(run.texts(), ["abc"]);
    }

    #[test]
    fn a_partial_line_without_continuation_is_released() {
        let mut run = Run::new(ContainerFormat::Docker, 1 << 20, Oversize::Truncate);
        run.feed(&[&docker("stderr", "b-"), &docker("stdout", "a-")]);
        let out = &mut run.out;
        run.r.release(Duration::from_secs(3600), &mut |l, s| {
            out.push((l.text, s, l.end_offset, l.envelope, l.truncated))
        });
        assert!(run.out.is_empty(), "not quiet long enough yet");
        run.end();
        assert_eq!(run.texts(), ["b-", "a-"], "in the order they started");
        assert_eq!(run.r.pending_start(), None);
    }

    #[test]
    fn malformed_lines_pass_whole_and_marked_and_reading_goes_on() {
        let mut run = Run::new(ContainerFormat::Cri, 1 << 20, Oversize::Truncate);
        run.feed(&[
            "not a cri line",
            "",
            &cri("stdout", "P", "a"),
            &cri("stdout", "F", "b"),
        ]);
        assert_eq!(run.texts(), ["not a cri line", "", "ab"]);
        assert_eq!(run.out[0].3, Some(Envelope::Malformed(Malformed::CriTime)));
        assert_eq!(run.out[1].3, None, "blank lines are left to the decoder");
    }
}
