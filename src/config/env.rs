//! `${VAR}` and `${VAR:-default}` expansion in pipeline text.
//!
//! Expansion happens on the raw text before YAML parsing, as Vector does, so a
//! variable can stand anywhere a value can. It never adds or removes lines, and
//! it remembers where it changed a line's length so that an error found later
//! in the expanded text can be reported at the column the user wrote.
//! `$$` is a literal `$`. Comments are left alone, so a commented-out line
//! may mention a variable that is not set. It does not interpret the
//! inserted values.

use super::node::Pos;

/// One replaced `${…}` (or `$$`), in characters.
#[derive(Debug, Clone)]
struct Substitution {
    line: u64,
    orig_col: u64,
    orig_len: u64,
    new_len: u64,
    /// Where the written text starts in the original, and its replacement
    /// in the expanded text, counted in characters from the start.
    orig_offset: u64,
    exp_offset: u64,
    /// The variable's name when the value came from the environment (not
    /// from a default, not `$$`): such values may be secrets.
    env: Option<String>,
}

/// Expanded text plus the map back to the original text and columns.
#[derive(Debug, Clone)]
pub struct Expanded {
    pub text: String,
    original: String,
    subs: Vec<Substitution>,
}

/// A value taken from the environment, and the `${…}` written for it.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvValue<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub written: &'a str,
}

/// A variable that is needed but missing, or malformed syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvError {
    pub pos: Pos,
    pub message: String,
}

impl Expanded {
    /// Maps a position in the expanded text to the position in the original.
    pub fn original_pos(&self, pos: Pos) -> Pos {
        let mut shift: i64 = 0;
        for s in self.subs.iter().filter(|s| s.line == pos.line) {
            let start = (s.orig_col as i64 + shift) as u64;
            if pos.column < start {
                break;
            }
            if pos.column < start + s.new_len {
                return Pos {
                    line: pos.line,
                    column: s.orig_col,
                };
            }
            shift += s.new_len as i64 - s.orig_len as i64;
        }
        Pos {
            line: pos.line,
            column: (pos.column as i64 - shift).max(1) as u64,
        }
    }

    /// The variables whose values from the environment make up part of the
    /// expanded characters `start..end`.
    pub fn env_vars_in(&self, start: u64, end: u64) -> Vec<&str> {
        self.subs
            .iter()
            .filter(|s| s.exp_offset < end && start < s.exp_offset + s.new_len.max(1))
            .filter_map(|s| s.env.as_deref())
            .collect()
    }

    /// The original text that expanded into the characters `start..end`.
    pub fn original_text(&self, start: u64, end: u64) -> &str {
        let (a, b) = (self.to_original(start, false), self.to_original(end, true));
        char_slice(&self.original, a, b.max(a))
    }

    /// The expanded characters `start..end`.
    pub fn expanded_text(&self, start: u64, end: u64) -> &str {
        char_slice(&self.text, start, end)
    }

    /// Every value that came from the environment, in order of appearance.
    pub fn env_values(&self) -> impl Iterator<Item = EnvValue<'_>> {
        self.subs.iter().filter_map(|s| {
            Some(EnvValue {
                name: s.env.as_deref()?,
                value: char_slice(&self.text, s.exp_offset, s.exp_offset + s.new_len),
                written: char_slice(&self.original, s.orig_offset, s.orig_offset + s.orig_len),
            })
        })
    }

    /// Maps a character offset of the expanded text to the original. An
    /// offset inside a replacement goes to the start of what was written
    /// (or, for the `end` of a range, to its end).
    fn to_original(&self, offset: u64, end: bool) -> u64 {
        let mut shift: i64 = 0;
        for s in &self.subs {
            let (exp_start, exp_end) = (s.exp_offset, s.exp_offset + s.new_len);
            let inside = if end {
                offset > exp_start && offset <= exp_end
            } else {
                offset >= exp_start && offset < exp_end
            };
            if inside {
                return if end {
                    s.orig_offset + s.orig_len
                } else {
                    s.orig_offset
                };
            }
            if offset < exp_start || (end && offset == exp_start) {
                break;
            }
            shift = exp_end as i64 - (s.orig_offset + s.orig_len) as i64;
        }
        (offset as i64 - shift).max(0) as u64
    }
}

/// The characters `start..end` of `s` (clamped to its length).
fn char_slice(s: &str, start: u64, end: u64) -> &str {
    let byte = |n: u64| s.char_indices().nth(n as usize).map_or(s.len(), |(i, _)| i);
    let (a, b) = (byte(start), byte(end.max(start)));
    &s[a..b]
}

/// Expands `text` with values from `lookup`. All problems are collected.
pub fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<EnvError>> {
    let mut out = String::with_capacity(text.len());
    let mut subs = Vec::new();
    let mut errors = Vec::new();
    // Characters of the original consumed and of the expansion written
    // before the current line.
    let (mut orig_before, mut exp_chars): (u64, u64) = (0, 0);
    let chars = |s: &str| s.chars().count() as u64;
    for (i, whole) in text.split_inclusive('\n').enumerate() {
        let line_no = i as u64 + 1;
        let (line, comment) = whole.split_at(comment_start(whole));
        let mut rest = line;
        let mut col: u64 = 1; // column in the original line, in chars
        let sub =
            |orig_col: u64, orig_len: u64, value: &str, env: Option<&str>, exp: u64| Substitution {
                line: line_no,
                orig_col,
                orig_len,
                new_len: chars(value),
                orig_offset: orig_before + orig_col - 1,
                exp_offset: exp,
                env: env.map(str::to_string),
            };
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            col += chars(&rest[..at]);
            exp_chars += chars(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$$") {
                out.push('$');
                subs.push(sub(col, 2, "$", None, exp_chars));
                exp_chars += 1;
                col += 2;
                rest = after;
                continue;
            }
            if !tail.starts_with("${") {
                out.push('$');
                col += 1;
                exp_chars += 1;
                rest = &tail[1..];
                continue;
            }
            let Some(close) = tail.find('}') else {
                errors.push(EnvError {
                    pos: Pos {
                        line: line_no,
                        column: col,
                    },
                    message: "`${` without a closing `}`".into(),
                });
                out.push_str(tail);
                exp_chars += chars(tail);
                rest = "";
                break;
            };
            let inner = &tail[2..close];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let pos = Pos {
                line: line_no,
                column: col,
            };
            let valid_name = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            let (value, from_env) = if !valid_name {
                errors.push(EnvError {
                    pos,
                    message: format!(
                        "`${{{inner}}}` is not a variable reference: names are letters, digits and `_`"
                    ),
                });
                (String::new(), false)
            } else {
                // As in POSIX shells, `:-` also applies when the variable is set but empty.
                match (lookup(name).filter(|v| !v.is_empty()), default) {
                    (Some(v), _) => (v, true),
                    (None, Some(d)) => (d.to_string(), false),
                    (None, None) => {
                        errors.push(EnvError {
                            pos,
                            message: format!(
                                "environment variable `{name}` is not set; set it, or write `${{{name}:-default}}` to give a default"
                            ),
                        });
                        (String::new(), false)
                    }
                }
            };
            if value.contains('\n') {
                errors.push(EnvError {
                    pos,
                    message: format!(
                        "environment variable `{name}` contains a line break, which cannot be inserted into the pipeline text"
                    ),
                });
            }
            let orig_len = chars(&tail[..=close]);
            subs.push(sub(
                col,
                orig_len,
                &value,
                from_env.then_some(name),
                exp_chars,
            ));
            out.push_str(&value);
            exp_chars += chars(&value);
            col += orig_len;
            rest = &tail[close + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
        exp_chars += chars(rest) + chars(comment);
        orig_before += chars(whole);
    }
    if errors.is_empty() {
        Ok(Expanded {
            text: out,
            original: text.to_string(),
            subs,
        })
    } else {
        Err(errors)
    }
}

/// Where a YAML comment starts on this line (its length if none): a `#`
/// at the start or after white space, outside quotes.
fn comment_start(line: &str) -> usize {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return i,
            _ => {}
        }
        prev = c;
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME_DIR" => Some("/home/weir".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_default_and_escape() {
        let e = expand(
            "a: ${HOME_DIR}/x\nb: ${NOPE:-./data} $$5 ${EMPTY:-e}\n",
            env,
        )
        .unwrap();
        assert_eq!(e.text, "a: /home/weir/x\nb: ./data $5 e\n");
    }

    #[test]
    fn missing_variable_is_reported_where_written() {
        let errs = expand("x: 1\ny: \"${MISSING}\"\n", env).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].pos, Pos { line: 2, column: 5 });
        assert!(errs[0].message.contains("`MISSING` is not set"));
        assert!(errs[0].message.contains("${MISSING:-default}"));
    }

    #[test]
    fn columns_map_back_across_substitutions() {
        let e = expand("p: ${HOME_DIR}/logs: bad\n", env).unwrap();
        // "p: /home/weir/logs: bad": the ':' after logs is column 19 expanded.
        let orig = e.original_pos(Pos {
            line: 1,
            column: 19,
        });
        assert_eq!(orig.column, 20); // "p: ${HOME_DIR}/logs: bad"
        // Inside the inserted value, point at the `${`.
        assert_eq!(e.original_pos(Pos { line: 1, column: 6 }).column, 4);
    }

    #[test]
    fn comments_are_not_expanded() {
        let e = expand(
            "# ${NOPE}\na: 1 # uses ${NOPE}\nb: \"x # ${HOME_DIR}\"\n",
            env,
        )
        .unwrap();
        assert_eq!(
            e.text,
            "# ${NOPE}\na: 1 # uses ${NOPE}\nb: \"x # /home/weir\"\n"
        );
    }

    #[test]
    fn env_values_and_original_text_of_a_range() {
        let lookup = |n: &str| match n {
            "PW" => Some("hunter2-secret".to_string()),
            "HOME_DIR" => Some("/home/weir".to_string()),
            _ => None,
        };
        let e = expand(
            "x: ${NOPE:-d}\nauth: \"${PW}\"  # ${PW}\nurl: http://u:${PW}@h/${HOME_DIR} $$ ${PW}\n",
            lookup,
        )
        .unwrap();
        let vals: Vec<(&str, &str, &str)> = e
            .env_values()
            .map(|v| (v.name, v.value, v.written))
            .collect();
        assert_eq!(
            vals,
            [
                ("PW", "hunter2-secret", "${PW}"),
                ("PW", "hunter2-secret", "${PW}"),
                ("HOME_DIR", "/home/weir", "${HOME_DIR}"),
                ("PW", "hunter2-secret", "${PW}"),
            ]
        );
        // The scalar `"hunter2-secret"` on line 2, with its quotes.
        let start = e.text.chars().position(|c| c == '"').unwrap() as u64;
        let end = start + "\"hunter2-secret\"".len() as u64;
        assert_eq!(e.expanded_text(start, end), "\"hunter2-secret\"");
        assert_eq!(e.original_text(start, end), "\"${PW}\"");
        assert_eq!(e.env_vars_in(start, end), ["PW"]);
        // The URL on line 3.
        let at = e.text.find("http").unwrap() as u64;
        let len = "http://u:hunter2-secret@h//home/weir".len() as u64;
        assert_eq!(
            e.original_text(at, at + len),
            "http://u:${PW}@h/${HOME_DIR}"
        );
        assert_eq!(e.env_vars_in(at, at + len), ["PW", "HOME_DIR"]);
        // `x: d` took a default: nothing from the environment there.
        assert!(e.env_vars_in(0, 4).is_empty());
        assert_eq!(e.original_text(3, 4), "${NOPE:-d}");
        // Text after a `$$` and a substitution maps back exactly.
        let last = e.text.rfind("hunter2").unwrap() as u64;
        let last = e.text[..last as usize].chars().count() as u64;
        assert_eq!(e.original_text(last - 2, last + 14), "$$ ${PW}");
    }

    #[test]
    fn lone_dollar_is_kept() {
        assert_eq!(
            expand("cost: 5$ total\n", env).unwrap().text,
            "cost: 5$ total\n"
        );
    }
}
