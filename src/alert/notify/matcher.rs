//! Alertmanager's label matchers (`pkg/labels/parse.go` syntax):
//! `severity="critical"`, `severity=critical`, `alertname=~"High.*"`,
//! `team!=db`, `x!~"a|b"`; regexes fully anchored, as Alertmanager's.

use std::fmt;

use regex::Regex;

use crate::alert::promql::Labels;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One label matcher, Alertmanager's syntax and semantics: a missing
/// label matches as the empty string, regexes are fully anchored.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Parses `name op value` as Alertmanager's `labels.ParseMatcher`:
    /// whitespace around the tokens is dropped, the value may be in double
    /// quotes (with `\"`, `\\`, `\n` escapes).
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let bad = || format!("bad matcher format: {s}");
        let t = s.trim_start();
        let name_len = t
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
            })
            .map_or(t.len(), |(i, _)| i);
        if name_len == 0 {
            return Err(bad());
        }
        let name = &t[..name_len];
        let rest = t[name_len..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Re, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::Ne, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Eq, r)
        } else {
            return Err(bad());
        };
        let raw = rest.trim();
        let value = unquote(raw)?;
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regex {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            re,
        })
    }

    /// Whether the label set is accepted.
    pub fn matches(&self, ls: &Labels) -> bool {
        let v = ls.get(&self.name);
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            (_, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// The value token of a matcher, unescaped as Alertmanager does.
fn unquote(raw: &str) -> Result<String, String> {
    let unescaped = || format!("matcher value contains unescaped double quote: {raw}");
    let (body, quoted) = match raw.strip_prefix('"') {
        Some(b) => (b, true),
        None => (raw, false),
    };
    let mut out = String::with_capacity(body.len());
    let mut closed = !quoted;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.peek().map(|&(_, n)| n) {
                Some('n') => {
                    out.push('\n');
                    chars.next();
                }
                Some(n @ ('"' | '\\')) => {
                    out.push(n);
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '"' if quoted && !closed && i + 1 == body.len() => closed = true,
            '"' => return Err(unescaped()),
            c => out.push(c),
        }
    }
    if !closed {
        return Err(unescaped());
    }
    Ok(out)
}
