//! Keeping values that came from the environment out of config errors.
//!
//! `${VAR}` is often a secret (`auth: {password: "${LOKI_PW}"}`), and a secret
//! given to the wrong key would otherwise be echoed in the error about it.
//! Every message passes through [`Masks::apply`], which puts back what the
//! user wrote wherever a value from the environment appears: the whole
//! scalar it is part of (`http://u:${PW}@host` for a URL), or the value
//! alone (`${PW}`), and says that the value is not shown.
//!
//! A value shorter than [`LONG`] characters is only replaced where it stands
//! alone between quotes (`` `8080` ``), so that a short value does not
//! rewrite unrelated words or numbers of the message.

use std::borrow::Cow;

use super::env::Expanded;
use super::node::{Node, NodeKind};

/// Values at least this long are replaced wherever they appear.
const LONG: usize = 8;

/// Quote characters that delimit a value in weir's and serde's messages.
const QUOTES: &[char] = &['`', '"', '\''];

#[derive(Debug, Clone)]
struct Mask {
    needle: String,
    written: String,
    vars: Vec<String>,
}

/// What to hide, and what to show instead.
#[derive(Debug, Clone, Default)]
pub struct Masks {
    masks: Vec<Mask>,
}

impl Masks {
    /// The values from the environment, each shown as its `${…}`.
    pub fn new(x: &Expanded) -> Masks {
        let mut m = Masks::default();
        for v in x.env_values() {
            m.add(v.value, v.written, vec![v.name.to_string()]);
        }
        m.sort();
        m
    }

    /// Adds every scalar of `root` (keys too) that holds a value from the
    /// environment, each shown as written in the file.
    pub fn add_tree(&mut self, x: &Expanded, root: &Node) {
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            match &node.kind {
                NodeKind::Seq(items) => stack.extend(items.iter()),
                NodeKind::Map(entries) => {
                    for (k, v) in entries {
                        stack.push(k);
                        stack.push(v);
                    }
                }
                _ => self.add_scalar(x, node),
            }
        }
        self.sort();
    }

    fn add_scalar(&mut self, x: &Expanded, node: &Node) {
        let Some(span) = node.span else { return };
        let (start, end) = (span.offset, span.offset + span.len);
        let vars: Vec<String> = x
            .env_vars_in(start, end)
            .into_iter()
            .map(str::to_string)
            .collect();
        if vars.is_empty() {
            return;
        }
        let written = unquote(x.original_text(start, end)).to_string();
        let raw = unquote(x.expanded_text(start, end)).to_string();
        if let NodeKind::Str(value) = &node.kind {
            self.add(value, &written, vars.clone());
            let escaped = value.escape_debug().to_string();
            if escaped != *value {
                self.add(&escaped, &written, vars.clone());
            }
        }
        self.add(&raw, &written, vars);
    }

    fn add(&mut self, needle: &str, written: &str, vars: Vec<String>) {
        if needle.is_empty() || needle == written {
            return;
        }
        if let Some(m) = self.masks.iter_mut().find(|m| m.needle == needle) {
            // The same value written in two ways (two variables with one
            // value): the first spelling is shown, and the note names all.
            if m.written != written {
                for v in vars {
                    if !m.vars.contains(&v) {
                        m.vars.push(v);
                    }
                }
            }
            return;
        }
        self.masks.push(Mask {
            needle: needle.to_string(),
            written: written.to_string(),
            vars,
        });
    }

    /// Longest first, so that a whole URL wins over the password in it.
    fn sort(&mut self) {
        self.masks
            .sort_by_key(|m| std::cmp::Reverse(m.needle.chars().count()));
    }

    /// `message` with every value from the environment replaced by what the
    /// file says, and a note naming the variables when there was any.
    pub fn apply<'a>(&self, message: &'a str) -> Cow<'a, str> {
        if self.masks.is_empty() {
            return Cow::Borrowed(message);
        }
        let mut out = String::with_capacity(message.len());
        let mut vars: Vec<&str> = Vec::new();
        let mut i = 0;
        'scan: while i < message.len() {
            for m in &self.masks {
                if self.matches(message, i, m) {
                    out.push_str(&m.written);
                    for v in &m.vars {
                        if !vars.contains(&v.as_str()) {
                            vars.push(v.as_str());
                        }
                    }
                    i += m.needle.len();
                    continue 'scan;
                }
            }
            let c = message[i..].chars().next().expect("inside the message");
            out.push(c);
            i += c.len_utf8();
        }
        if vars.is_empty() {
            return Cow::Borrowed(message);
        }
        let names = vars
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if vars.len() == 1 {
            out.push_str(&format!(
                " (the value of {names} comes from the environment and is not shown)"
            ));
        } else {
            out.push_str(&format!(
                " (the values of {names} come from the environment and are not shown)"
            ));
        }
        Cow::Owned(out)
    }

    fn matches(&self, message: &str, at: usize, m: &Mask) -> bool {
        if !message[at..].starts_with(&m.needle) {
            return false;
        }
        if m.needle.chars().count() >= LONG {
            return true;
        }
        let before = message[..at].chars().next_back();
        let after = message[at + m.needle.len()..].chars().next();
        before.is_some_and(|c| QUOTES.contains(&c)) && after.is_some_and(|c| QUOTES.contains(&c))
    }
}

/// `s` without one pair of surrounding YAML quotes.
fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::expand;

    fn masks(text: &str) -> Masks {
        let lookup = |n: &str| match n {
            "PW" => Some("hunter2-very-secret".to_string()),
            "PORT" => Some("9464".to_string()),
            "HOST" => Some("loki.internal".to_string()),
            _ => None,
        };
        let x = expand(text, lookup).unwrap();
        let root = Node::parse(&x.text).unwrap();
        let mut m = Masks::new(&x);
        m.add_tree(&x, &root);
        m
    }

    #[test]
    fn a_secret_is_shown_as_written() {
        let m = masks("auth: \"${PW}\"\n");
        assert_eq!(
            m.apply("expected a mapping, found string \"hunter2-very-secret\""),
            "expected a mapping, found string \"${PW}\" (the value of `PW` comes from the environment and is not shown)"
        );
        assert_eq!(m.apply("nothing to hide"), "nothing to hide");
    }

    #[test]
    fn a_scalar_with_a_secret_inside_is_shown_whole() {
        let m = masks("url: http://weir:${PW}@${HOST}:3100/x\n");
        assert_eq!(
            m.apply("`http://weir:hunter2-very-secret@loki.internal:3100/x` is not an http(s) URL"),
            "`http://weir:${PW}@${HOST}:3100/x` is not an http(s) URL (the values of `PW`, `HOST` come from the environment and are not shown)"
        );
        // The value alone, anywhere.
        assert!(
            !m.apply("password hunter2-very-secretly")
                .contains("hunter2-very-secret")
        );
    }

    #[test]
    fn short_values_only_between_quotes() {
        let m = masks("port: ${PORT}\nn: 9464\n");
        assert_eq!(
            m.apply("found integer `9464`, line 9464"),
            "found integer `${PORT}`, line 9464 (the value of `PORT` comes from the environment and is not shown)"
        );
    }

    #[test]
    fn defaults_and_plain_text_are_not_masked() {
        let m = masks("a: ${NOPE:-plain-default-value}\nb: hunter2-very-secret\n");
        let msg = "`plain-default-value` and `hunter2-very-secret`";
        assert_eq!(m.apply(msg), msg);
    }
}
