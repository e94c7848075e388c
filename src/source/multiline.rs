//! Multiline joining: continuation lines folded into the line they continue,
//! before decoding. Plain-text Python logs need it: a traceback follows its
//! log line over several physical lines.
//!
//! The rules are Vector's: a group starts at a line matching `start_pattern`;
//! `condition_pattern` with `mode` decides where it ends:
//!
//! | mode | the group takes |
//! |---|---|
//! | `continue_through` | following lines while they match (indented stack frames) |
//! | `continue_past` | following lines while they match, and then one more (a trailing `\`) |
//! | `halt_before` | following lines until one matches, which starts the next group (a timestamp) |
//! | `halt_with` | following lines up to and including one that matches (a terminator) |
//!
//! A line outside any group passes through alone. A group is also released
//! when no line arrives for `timeout`, at the end of input, or when it would
//! grow past the source's `max_line_bytes` (it is then cut and marked).
//! Lines are joined with `\n`.

use std::time::Duration;

use serde::Deserialize;

use super::lines::Line;
use crate::config::invalid::Invalid;
use crate::config::units::Dur;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    ContinueThrough,
    ContinuePast,
    HaltBefore,
    HaltWith,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    pub start_pattern: String,
    pub condition_pattern: String,
    pub mode: Mode,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}

#[derive(Debug)]
struct Group {
    line: Line,
    /// Stream offset where the group's first line starts.
    start_offset: u64,
}

/// Joins lines of one stream.
#[derive(Debug)]
pub struct Joiner {
    start: regex::Regex,
    condition: regex::Regex,
    mode: Mode,
    max_bytes: usize,
    group: Option<Group>,
    pub timeout: Duration,
}

fn compile(key: &'static str, p: &str) -> Result<regex::Regex, Invalid> {
    regex::Regex::new(p).map_err(|e| Invalid {
        path: vec![key.to_string()],
        message: format!(
            "invalid regex: {}",
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ),
    })
}

impl Joiner {
    pub fn new(cfg: &MultilineConfig, max_bytes: usize) -> Result<Joiner, Invalid> {
        Ok(Joiner {
            start: compile("start_pattern", &cfg.start_pattern)?,
            condition: compile("condition_pattern", &cfg.condition_pattern)?,
            mode: cfg.mode,
            max_bytes,
            group: None,
            timeout: cfg.timeout.0,
        })
    }

    /// Where the group being built starts, if one is; bytes from there on
    /// are not delivered yet.
    pub fn pending_start(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.start_offset)
    }

    /// Feeds one line that starts at `start_offset`; completed lines go to `out`.
    pub fn push(&mut self, line: Line, start_offset: u64, out: &mut Vec<Line>) {
        let Some(group) = self.group.as_mut() else {
            self.begin(line, start_offset, out);
            return;
        };
        let matches = self.condition.is_match(&line.text);
        match (self.mode, matches) {
            (Mode::ContinueThrough, true)
            | (Mode::ContinuePast, true)
            | (Mode::HaltBefore, false)
            | (Mode::HaltWith, false) => {
                append(group, line, self.max_bytes);
            }
            (Mode::ContinuePast, false) | (Mode::HaltWith, true) => {
                append(group, line, self.max_bytes);
                out.extend(self.flush());
            }
            (Mode::ContinueThrough, false) | (Mode::HaltBefore, true) => {
                out.extend(self.flush());
                self.begin(line, start_offset, out);
            }
        }
    }

    fn begin(&mut self, line: Line, start_offset: u64, out: &mut Vec<Line>) {
        if self.start.is_match(&line.text) {
            self.group = Some(Group { line, start_offset });
        } else {
            out.push(line);
        }
    }

    /// Releases the group being built (timeout, end of input).
    pub fn flush(&mut self) -> Option<Line> {
        self.group.take().map(|g| g.line)
    }
}

fn append(group: &mut Group, line: Line, max_bytes: usize) {
    let g = &mut group.line;
    g.end_offset = line.end_offset;
    if g.truncated || g.text.len() + 1 + line.text.len() > max_bytes {
        if !g.truncated {
            let room = max_bytes.saturating_sub(g.text.len() + 1);
            let mut cut = room.min(line.text.len());
            while !line.text.is_char_boundary(cut) {
                cut -= 1;
            }
            g.text.push('\n');
            g.text.push_str(&line.text[..cut]);
            g.truncated = true;
        }
        return;
    }
    g.text.push('\n');
    g.text.push_str(&line.text);
    g.truncated |= line.truncated;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner(start: &str, cond: &str, mode: Mode) -> Joiner {
        let cfg = MultilineConfig {
            start_pattern: start.into(),
            condition_pattern: cond.into(),
            mode,
            timeout: default_timeout(),
        };
        Joiner::new(&cfg, 1 << 20).unwrap()
    }

    fn run(j: &mut Joiner, input: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut offset = 0;
        for text in input.lines() {
            let end = offset + text.len() as u64 + 1;
            j.push(
                Line {
                    text: text.into(),
                    end_offset: end,
                    truncated: false,
                    envelope: None,
                },
                offset,
                &mut out,
            );
            offset = end;
        }
        out.extend(j.flush());
        out.into_iter().map(|l| l.text).collect()
    }

    const PY: &str = "2026-11-25 06:19:15,123 - agent.tools - ERROR - tool failed
Traceback (most recent call last):
  File \"/app/agent/tools.py\", line 88, in call
    return await self._run(query)
TimeoutError: timed out after 30s
2026-11-25 06:19:16,001 - api - INFO - next request
2026-11-25 06:19:16,002 - api - INFO - and another";

    #[test]
    fn python_tracebacks_halt_before_the_next_timestamp() {
        let mut j = joiner(
            r"^\d{4}-\d{2}-\d{2} ",
            r"^\d{4}-\d{2}-\d{2} ",
            Mode::HaltBefore,
        );
        let out = run(&mut j, PY);
        assert_eq!(out.len(), 3);
        assert!(out[0].starts_with("2026-11-25 06:19:15,123"));
        assert!(out[0].ends_with("TimeoutError: timed out after 30s"));
        assert_eq!(out[0].lines().count(), 5);
        assert_eq!(out[2], "2026-11-25 06:19:16,002 - api - INFO - and another");
    }

    #[test]
    fn continue_through_indented_lines() {
        let mut j = joiner(r"^\S", r"^\s", Mode::ContinueThrough);
        let out = run(&mut j, "a\n  b\n  c\nd\ne\n  f");
        assert_eq!(out, ["a\n  b\n  c", "d", "e\n  f"]);
    }

    #[test]
    fn continue_past_a_trailing_backslash() {
        let mut j = joiner(r"\\$", r"\\$", Mode::ContinuePast);
        let out = run(&mut j, "one \\\ntwo \\\nthree\nfour");
        assert_eq!(out, ["one \\\ntwo \\\nthree", "four"]);
    }

    #[test]
    fn halt_with_a_terminator() {
        let mut j = joiner(r"^BEGIN", r";$", Mode::HaltWith);
        let out = run(&mut j, "x\nBEGIN a\nb;\ny");
        assert_eq!(out, ["x", "BEGIN a\nb;", "y"]);
    }

    #[test]
    fn pending_groups_hold_back_their_offset() {
        let mut j = joiner(r"^\d", r"^\d", Mode::HaltBefore);
        let mut out = Vec::new();
        j.push(
            Line {
                text: "1 a".into(),
                end_offset: 4,
                truncated: false,
                envelope: None,
            },
            0,
            &mut out,
        );
        j.push(
            Line {
                text: " more".into(),
                end_offset: 10,
                truncated: false,
                envelope: None,
            },
            4,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(j.pending_start(), Some(0));
        j.push(
            Line {
                text: "2 b".into(),
                end_offset: 14,
                truncated: false,
                envelope: None,
            },
            10,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_offset, 10);
        assert_eq!(j.pending_start(), Some(10));
    }

    #[test]
    fn groups_are_capped_at_max_bytes() {
        let cfg = MultilineConfig {
            start_pattern: "^S".into(),
            condition_pattern: "^ ".into(),
            mode: Mode::ContinueThrough,
            timeout: default_timeout(),
        };
        let mut j = Joiner::new(&cfg, 10).unwrap();
        let mut out = Vec::new();
        for (i, t) in ["S1234", " 6789", " abc", "next"].iter().enumerate() {
            j.push(
                Line {
                    text: t.to_string(),
                    end_offset: i as u64 + 1,
                    truncated: false,
                    envelope: None,
                },
                i as u64,
                &mut out,
            );
        }
        assert_eq!(out[0].text, "S1234\n 678");
        assert!(out[0].truncated);
        assert_eq!(out[0].end_offset, 3);
        assert_eq!(out[1].text, "next");
    }
}
