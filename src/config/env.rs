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

/// One replaced `${…}` on a line, in characters.
#[derive(Debug, Clone, Copy)]
struct Substitution {
    line: u64,
    orig_col: u64,
    orig_len: u64,
    new_len: u64,
}

/// Expanded text plus the map back to the original columns.
#[derive(Debug, Clone)]
pub struct Expanded {
    pub text: String,
    subs: Vec<Substitution>,
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
}

/// Expands `text` with values from `lookup`. All problems are collected.
pub fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<EnvError>> {
    let mut out = String::with_capacity(text.len());
    let mut subs = Vec::new();
    let mut errors = Vec::new();
    for (i, whole) in text.split_inclusive('\n').enumerate() {
        let line_no = i as u64 + 1;
        let (line, comment) = whole.split_at(comment_start(whole));
        let mut rest = line;
        let mut col: u64 = 1; // column in the original line, in chars
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            col += rest[..at].chars().count() as u64;
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$$") {
                out.push('$');
                subs.push(Substitution {
                    line: line_no,
                    orig_col: col,
                    orig_len: 2,
                    new_len: 1,
                });
                col += 2;
                rest = after;
                continue;
            }
            if !tail.starts_with("${") {
                out.push('$');
                col += 1;
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
            let value = if !valid_name {
                errors.push(EnvError {
                    pos,
                    message: format!(
                        "`${{{inner}}}` is not a variable reference: names are letters, digits and `_`"
                    ),
                });
                String::new()
            } else {
                // As in POSIX shells, `:-` also applies when the variable is set but empty.
                match (lookup(name).filter(|v| !v.is_empty()), default) {
                    (Some(v), _) => v,
                    (None, Some(d)) => d.to_string(),
                    (None, None) => {
                        errors.push(EnvError {
                            pos,
                            message: format!(
                                "environment variable `{name}` is not set; set it, or write `${{{name}:-default}}` to give a default"
                            ),
                        });
                        String::new()
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
            let orig_len = tail[..=close].chars().count() as u64;
            subs.push(Substitution {
                line: line_no,
                orig_col: col,
                orig_len,
                new_len: value.chars().count() as u64,
            });
            out.push_str(&value);
            col += orig_len;
            rest = &tail[close + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if errors.is_empty() {
        Ok(Expanded { text: out, subs })
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
    fn lone_dollar_is_kept() {
        assert_eq!(
            expand("cost: 5$ total\n", env).unwrap().text,
            "cost: 5$ total\n"
        );
    }
}
