//! Lexer and parser for the subset of Go's `text/template` that rule
//! templates use.
//!
//! Accepted: text, actions `{{ pipeline }}`, trim markers `{{- ` / ` -}}`,
//! comments `{{/* … */}}`, `if`/`else if`/`else`/`end`, `range` (with
//! `$i, $e :=`), `with`, `break`, `continue`, variables (`$x := …`,
//! `$x = …`, `$`), fields and chains (`.a.b`, `$x.a`, `(…).a`), pipes,
//! parenthesised pipelines, string / raw string / char / number / bool /
//! `nil` literals. Not accepted: `define`, `template`, `block` (rule
//! templates cannot name other templates in Prometheus either, except
//! through `tmpl`, which is for console templates) and `else with`.
//!
//! Parse errors read like Go's: `template: NAME:LINE: message`.

use std::collections::HashSet;

/// A parsed template body.
pub(crate) type List = Vec<Node>;

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    Range(Branch),
    With(Branch),
    Break,
    Continue,
}

#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub pipe: Pipe,
    pub list: List,
    pub else_list: Option<List>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    /// Byte offset of the command in the template text (for errors).
    pub pos: usize,
    pub args: Vec<Arg>,
    /// Byte offset of each argument.
    pub arg_pos: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.a.b` (empty chain is not used: that is `Dot`).
    Field(Vec<String>),
    Dot,
    /// `$x.a.b`; `$` is the variable named `$`.
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    Str(String),
    /// The literal's text, its value as Go's untyped constant: `Int` when
    /// it is an integer literal, else `Float`.
    Num(String, Number),
    Bool(bool),
    Nil,
    /// `( pipeline ).a.b`
    Pipe(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl std::fmt::Display for Arg {
    /// Go's `Node.String()`, used in `executing "…" at <…>` messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain = |f: &mut std::fmt::Formatter<'_>, c: &[String]| {
            c.iter().try_for_each(|s| write!(f, ".{s}"))
        };
        match self {
            Arg::Field(c) => chain(f, c),
            Arg::Dot => f.write_str("."),
            Arg::Var(v, c) => {
                f.write_str(v)?;
                chain(f, c)
            }
            Arg::Ident(s) => f.write_str(s),
            Arg::Str(s) => f.write_str(&crate::alert::promql::format::go_quote(s)),
            Arg::Num(t, _) => f.write_str(t),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Nil => f.write_str("nil"),
            Arg::Pipe(p, c) => {
                write!(f, "({p})")?;
                chain(f, c)
            }
        }
    }
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decl.is_empty() {
            write!(
                f,
                "{} {} ",
                self.decl.join(", "),
                if self.is_assign { "=" } else { ":=" }
            )?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Var(String),
    Str(String),
    Char(char),
    Num(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    /// End of the action (`}}`).
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    /// Whitespace came right before this token.
    space_before: bool,
}

/// Parses `text` (already including Prometheus' definitions prefix) into
/// a node list. `funcs` are the known function names.
pub(crate) fn parse(name: &str, text: &str, funcs: &HashSet<&str>) -> Result<List, String> {
    let mut p = Parser {
        name,
        text,
        pos: 0,
        toks: Vec::new(),
        ti: 0,
        vars: vec!["$".to_string()],
        funcs,
        range_depth: 0,
        trim_next: false,
    };
    let (list, end) = p.list()?;
    match end {
        Stop::Eof => Ok(list),
        Stop::End => Err(p.err_at(p.last_pos(), "unexpected {{end}}")),
        Stop::Else(_) => Err(p.err_at(p.last_pos(), "unexpected {{else}}")),
    }
}

enum Stop {
    Eof,
    End,
    /// `{{else}}` (None) or `{{else if …}}` (the if's pipeline).
    Else(Option<Pipe>),
}

struct Parser<'a> {
    name: &'a str,
    text: &'a str,
    pos: usize,
    /// Tokens of the current action.
    toks: Vec<Token>,
    ti: usize,
    vars: Vec<String>,
    funcs: &'a HashSet<&'a str>,
    range_depth: usize,
    trim_next: bool,
}

impl Parser<'_> {
    fn line_of(&self, pos: usize) -> usize {
        1 + self.text[..pos.min(self.text.len())].matches('\n').count()
    }

    fn err_at(&self, pos: usize, msg: &str) -> String {
        format!("template: {}:{}: {}", self.name, self.line_of(pos), msg)
    }

    fn last_pos(&self) -> usize {
        self.toks
            .get(self.ti.saturating_sub(1))
            .map_or(self.pos, |t| t.pos)
    }

    /// Parses nodes until EOF, `{{end}}` or `{{else}}`.
    fn list(&mut self) -> Result<(List, Stop), String> {
        let mut out = List::new();
        loop {
            let rest = &self.text[self.pos..];
            let open = rest.find("{{");
            let mut text = &rest[..open.unwrap_or(rest.len())];
            if self.trim_next {
                text = text.trim_start_matches([' ', '\t', '\r', '\n']);
                self.trim_next = false;
            }
            let Some(open) = open else {
                if !text.is_empty() {
                    out.push(Node::Text(text.to_string()));
                }
                self.pos = self.text.len();
                return Ok((out, Stop::Eof));
            };
            let action_start = self.pos + open;
            let after = &self.text[action_start + 2..];
            let trim_left = after.starts_with("- ")
                || after.starts_with("-\t")
                || after.starts_with("-\n")
                || after.starts_with("-\r");
            if trim_left {
                text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            }
            if !text.is_empty() {
                out.push(Node::Text(text.to_string()));
            }
            self.pos = action_start + 2 + usize::from(trim_left);
            if self.comment(action_start)? {
                continue;
            }
            self.lex_action(action_start)?;
            if let Some(stop) = self.action(&mut out)? {
                return Ok((out, stop));
            }
        }
    }

    /// Handles `{{/* … */}}`; returns whether it was a comment.
    fn comment(&mut self, start: usize) -> Result<bool, String> {
        let rest = &self.text[self.pos..];
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if !trimmed.starts_with("/*") {
            return Ok(false);
        }
        let Some(close) = trimmed.find("*/") else {
            return Err(self.err_at(start, "unclosed comment"));
        };
        let after = &trimmed[close + 2..];
        let (len, trim) = if let Some(a) = after.strip_prefix(" -}}") {
            (rest.len() - a.len(), true)
        } else if let Some(a) = after.strip_prefix("}}") {
            (rest.len() - a.len(), false)
        } else {
            return Err(self.err_at(start, "comment ends before closing delimiter"));
        };
        self.pos += len;
        self.trim_next = trim;
        Ok(true)
    }

    /// Lexes one action starting at `self.pos` (after `{{` and the trim
    /// marker) up to and including `}}`.
    fn lex_action(&mut self, start: usize) -> Result<(), String> {
        self.toks.clear();
        self.ti = 0;
        let b = self.text.as_bytes();
        let mut i = self.pos;
        let mut space = true;
        loop {
            if i >= b.len() {
                return Err(self.err_at(start, "unclosed action"));
            }
            let c = b[i];
            if c == b' ' || c == b'\t' || c == b'\r' || c == b'\n' {
                // ` -}}` closes with trimming.
                if self.text[i..].starts_with(" -}}")
                    || self.text[i..].starts_with("\n-}}")
                    || self.text[i..].starts_with("\t-}}")
                    || self.text[i..].starts_with("\r-}}")
                {
                    self.toks.push(Token {
                        tok: Tok::End,
                        pos: i,
                        space_before: true,
                    });
                    self.pos = i + 4;
                    self.trim_next = true;
                    return Ok(());
                }
                space = true;
                i += 1;
                continue;
            }
            let pos = i;
            let tok = match c {
                b'}' if b.get(i + 1) == Some(&b'}') => {
                    self.toks.push(Token {
                        tok: Tok::End,
                        pos,
                        space_before: space,
                    });
                    self.pos = i + 2;
                    return Ok(());
                }
                b'|' => {
                    i += 1;
                    Tok::Pipe
                }
                b'(' => {
                    i += 1;
                    Tok::LParen
                }
                b')' => {
                    i += 1;
                    Tok::RParen
                }
                b',' => {
                    i += 1;
                    Tok::Comma
                }
                b'=' => {
                    i += 1;
                    Tok::Assign
                }
                b':' if b.get(i + 1) == Some(&b'=') => {
                    i += 2;
                    Tok::Declare
                }
                b'"' => {
                    let (s, end) = self.lex_quoted(i, start)?;
                    i = end;
                    Tok::Str(s)
                }
                b'`' => {
                    let Some(len) = self.text[i + 1..].find('`') else {
                        return Err(self.err_at(start, "unterminated raw quoted string"));
                    };
                    let s = self.text[i + 1..i + 1 + len].to_string();
                    i += len + 2;
                    Tok::Str(s)
                }
                b'\'' => {
                    let (c, end) = self.lex_char(i, start)?;
                    i = end;
                    Tok::Char(c)
                }
                b'$' | b'.' => {
                    let mut j = i + 1;
                    while j < b.len()
                        && (b[j] == b'_' || b[j].is_ascii_alphanumeric() || b[j] >= 0x80)
                    {
                        j += 1;
                    }
                    let word = &self.text[i..j];
                    if c == b'.' && j < b.len() && j == i + 1 && b[j].is_ascii_digit() {
                        // `.5` is a number.
                        let end = number_end(b, i);
                        let t = self.text[i..end].to_string();
                        i = end;
                        Tok::Num(t)
                    } else {
                        i = j;
                        if c == b'$' {
                            Tok::Var(word.to_string())
                        } else {
                            Tok::Field(word[1..].to_string())
                        }
                    }
                }
                b'0'..=b'9' | b'-' | b'+' => {
                    let end = number_end(b, i);
                    if end == i + 1 && (c == b'-' || c == b'+') {
                        return Err(
                            self.err_at(start, &format!("bad number syntax: {:?}", c as char))
                        );
                    }
                    let t = self.text[i..end].to_string();
                    i = end;
                    Tok::Num(t)
                }
                c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                    let mut j = i;
                    while j < b.len()
                        && (b[j] == b'_' || b[j].is_ascii_alphanumeric() || b[j] >= 0x80)
                    {
                        j += 1;
                    }
                    let w = self.text[i..j].to_string();
                    i = j;
                    Tok::Ident(w)
                }
                _ => {
                    let ch = self.text[i..].chars().next().unwrap_or('?');
                    return Err(self.err_at(
                        start,
                        &format!(
                            "unrecognized character in action: U+{:04X} '{ch}'",
                            ch as u32
                        ),
                    ));
                }
            };
            self.toks.push(Token {
                tok,
                pos,
                space_before: space,
            });
            space = false;
        }
    }

    fn lex_quoted(&self, i: usize, start: usize) -> Result<(String, usize), String> {
        let mut out = String::new();
        let mut chars = self.text[i + 1..].char_indices();
        while let Some((k, c)) = chars.next() {
            match c {
                '"' => return Ok((out, i + 1 + k + 1)),
                '\n' => break,
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    let v = match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'v' => '\u{b}',
                        '\\' => '\\',
                        '"' => '"',
                        '\'' => '\'',
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                            let v = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == n)
                                .and_then(char::from_u32);
                            match v {
                                Some(c) => c,
                                None => return Err(self.err_at(start, "invalid syntax")),
                            }
                        }
                        _ => return Err(self.err_at(start, "invalid syntax")),
                    };
                    out.push(v);
                }
                c => out.push(c),
            }
        }
        Err(self.err_at(start, "unterminated quoted string"))
    }

    fn lex_char(&self, i: usize, start: usize) -> Result<(char, usize), String> {
        let rest = &self.text[i + 1..];
        let mut it = rest.char_indices();
        let c = match it.next() {
            Some((_, '\\')) => match it.next() {
                Some((_, 'n')) => '\n',
                Some((_, 't')) => '\t',
                Some((_, '\\')) => '\\',
                Some((_, '\'')) => '\'',
                _ => return Err(self.err_at(start, "invalid syntax")),
            },
            Some((_, c)) if c != '\'' => c,
            _ => return Err(self.err_at(start, "unterminated character constant")),
        };
        match it.next() {
            Some((k, '\'')) => Ok((c, i + 1 + k + 1)),
            _ => Err(self.err_at(start, "unterminated character constant")),
        }
    }

    fn peek(&self) -> &Token {
        &self.toks[self.ti.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.ti < self.toks.len() {
            self.ti += 1;
        }
        t
    }

    fn unexpected(&self, t: &Token, ctx: &str) -> String {
        let what = match &t.tok {
            Tok::End => "}}".to_string(),
            Tok::Ident(s) | Tok::Num(s) => s.clone(),
            Tok::Field(s) => format!(".{s}"),
            Tok::Var(s) => s.clone(),
            Tok::Str(s) => crate::alert::promql::format::go_quote(s),
            Tok::Char(c) => format!("'{c}'"),
            Tok::Pipe => "|".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Declare => ":=".into(),
            Tok::Assign => "=".into(),
            Tok::Comma => ",".into(),
        };
        self.err_at(t.pos, &format!("unexpected {what:?} in {ctx}"))
    }

    /// Parses the lexed action; pushes nodes or returns a stop.
    fn action(&mut self, out: &mut List) -> Result<Option<Stop>, String> {
        let t = self.peek().clone();
        if let Tok::Ident(kw) = &t.tok {
            match kw.as_str() {
                "end" => {
                    self.next();
                    self.expect_end("end")?;
                    return Ok(Some(Stop::End));
                }
                "else" => {
                    self.next();
                    if matches!(&self.peek().tok, Tok::Ident(s) if s == "if") {
                        self.next();
                        let pipe = self.pipeline("if", true)?;
                        return Ok(Some(Stop::Else(Some(pipe))));
                    }
                    self.expect_end("else")?;
                    return Ok(Some(Stop::Else(None)));
                }
                "if" | "range" | "with" => {
                    self.next();
                    let node = self.control(kw)?;
                    out.push(node);
                    return Ok(None);
                }
                "break" | "continue" => {
                    self.next();
                    if self.range_depth == 0 {
                        return Err(
                            self.err_at(t.pos, &format!("{{{{{kw}}}}} outside {{{{range}}}}"))
                        );
                    }
                    self.expect_end(kw)?;
                    out.push(if kw == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                    return Ok(None);
                }
                "define" | "template" | "block" => {
                    return Err(self.err_at(
                        t.pos,
                        &format!("{{{{{kw}}}}} is not supported in weir templates"),
                    ));
                }
                _ => {}
            }
        }
        let pipe = self.pipeline("command", true)?;
        out.push(Node::Action(pipe));
        Ok(None)
    }

    fn expect_end(&mut self, ctx: &str) -> Result<(), String> {
        let t = self.next();
        if t.tok != Tok::End {
            return Err(self.unexpected(&t, ctx));
        }
        Ok(())
    }

    fn control(&mut self, kw: &str) -> Result<Node, String> {
        let mark = self.vars.len();
        let pipe = self.pipeline(kw, true)?;
        let branch = self.branch_body(kw, pipe)?;
        self.vars.truncate(mark);
        Ok(match kw {
            "if" => Node::If(branch),
            "range" => Node::Range(branch),
            _ => Node::With(branch),
        })
    }

    /// Parses the body after a control pipeline, through `{{end}}`.
    fn branch_body(&mut self, kw: &str, pipe: Pipe) -> Result<Branch, String> {
        if kw == "range" {
            self.range_depth += 1;
        }
        let (list, stop) = self.list()?;
        if kw == "range" {
            self.range_depth -= 1;
        }
        let else_list = match stop {
            Stop::Eof => return Err(self.err_at(self.text.len(), "unexpected EOF")),
            Stop::End => None,
            Stop::Else(None) => {
                let (l, stop) = self.list()?;
                match stop {
                    Stop::End => Some(l),
                    Stop::Eof => return Err(self.err_at(self.text.len(), "unexpected EOF")),
                    Stop::Else(_) => {
                        return Err(self.err_at(self.last_pos(), "expected end; found {{else}}"));
                    }
                }
            }
            Stop::Else(Some(p)) => {
                if kw != "if" {
                    return Err(self.err_at(self.last_pos(), "else if is only allowed in if"));
                }
                // `{{else if x}}…{{end}}` is `{{else}}{{if x}}…{{end}}{{end}}`.
                let mark = self.vars.len();
                let inner = self.branch_body("if", p)?;
                self.vars.truncate(mark);
                Some(vec![Node::If(inner)])
            }
        };
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    /// Parses a pipeline up to the action's end (or `)` when nested).
    fn pipeline(&mut self, ctx: &str, top: bool) -> Result<Pipe, String> {
        let mut decl = Vec::new();
        let mut is_assign = false;
        // Declarations: `$x :=`, `$x =`, `$i, $e :=`.
        if let Tok::Var(v) = &self.peek().tok {
            let save = self.ti;
            let v = v.clone();
            self.next();
            match self.peek().tok.clone() {
                Tok::Declare | Tok::Assign => {
                    is_assign = self.peek().tok == Tok::Assign;
                    self.next();
                    decl.push(v);
                }
                Tok::Comma if ctx == "range" => {
                    self.next();
                    let t = self.next();
                    let Tok::Var(v2) = t.tok.clone() else {
                        return Err(self.err_at(t.pos, "range can only initialize variables"));
                    };
                    let t = self.next();
                    if !matches!(t.tok, Tok::Declare | Tok::Assign) {
                        return Err(self.unexpected(&t, "range"));
                    }
                    is_assign = t.tok == Tok::Assign;
                    decl.push(v);
                    decl.push(v2);
                }
                _ => self.ti = save,
            }
        }
        if is_assign {
            for v in &decl {
                if !self.vars.contains(v) {
                    return Err(self.err_at(self.last_pos(), &format!("undefined variable {v:?}")));
                }
            }
        }
        let mut cmds = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::End if top => break,
                Tok::RParen if !top => break,
                _ => {}
            }
            cmds.push(self.command()?);
            let t = self.peek().clone();
            match t.tok {
                Tok::Pipe => {
                    self.next();
                }
                Tok::End if top => break,
                Tok::RParen if !top => break,
                _ => return Err(self.unexpected(&t, "operand")),
            }
        }
        if top {
            self.next(); // the End token
        }
        if cmds.is_empty() {
            return Err(self.err_at(self.last_pos(), &format!("missing value for {ctx}")));
        }
        for (i, c) in cmds.iter().enumerate().skip(1) {
            if let Some(a) = c.args.first()
                && !matches!(
                    a,
                    Arg::Ident(_) | Arg::Field(_) | Arg::Var(..) | Arg::Dot | Arg::Pipe(..)
                )
            {
                return Err(self.err_at(
                    c.pos,
                    &format!("non executable command in pipeline stage {}", i + 1),
                ));
            }
        }
        if !is_assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe {
            decl,
            is_assign,
            cmds,
        })
    }

    fn command(&mut self) -> Result<Cmd, String> {
        let pos = self.peek().pos;
        let mut args = Vec::new();
        let mut arg_pos = Vec::new();
        loop {
            let t = self.peek().clone();
            if matches!(t.tok, Tok::End | Tok::Pipe | Tok::RParen) {
                break;
            }
            if !args.is_empty() && !t.space_before {
                return Err(self.err_at(t.pos, "missing space?"));
            }
            let (arg, pos) = self.operand()?;
            arg_pos.push(pos.unwrap_or(t.pos));
            args.push(arg);
        }
        if args.is_empty() {
            let t = self.peek().clone();
            return Err(self.err_at(t.pos, "missing value for command"));
        }
        Ok(Cmd { pos, args, arg_pos })
    }

    /// One operand, with a trailing field chain glued to it (`$x.a`, `(…).b`).
    /// With a chain, Go positions the operand at the chain's first field.
    fn operand(&mut self) -> Result<(Arg, Option<usize>), String> {
        let start = self.ti;
        let arg = self.operand_inner()?;
        let chained = match &arg {
            Arg::Var(_, c) | Arg::Pipe(_, c) => !c.is_empty(),
            _ => false,
        };
        let pos = if chained {
            // The first glued field token after the operand's own tokens.
            self.toks[start..self.ti]
                .iter()
                .rev()
                .take_while(|t| matches!(t.tok, Tok::Field(_)))
                .last()
                .map(|t| t.pos)
        } else {
            None
        };
        Ok((arg, pos))
    }

    fn operand_inner(&mut self) -> Result<Arg, String> {
        let t = self.next();
        let arg = match t.tok {
            Tok::Field(f) if f.is_empty() => Arg::Dot,
            Tok::Field(f) => {
                let mut chain = vec![f];
                chain.extend(self.chain());
                return Ok(Arg::Field(chain));
            }
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.err_at(t.pos, &format!("undefined variable {v:?}")));
                }
                let chain = self.chain();
                return Ok(Arg::Var(v, chain));
            }
            Tok::LParen => {
                let p = self.pipeline("parenthesized pipeline", false)?;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(self.unexpected(&close, "parenthesized pipeline"));
                }
                let chain = self.chain();
                return Ok(Arg::Pipe(Box::new(p), chain));
            }
            Tok::Ident(w) => match w.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => {
                    if !self.funcs.contains(w.as_str()) {
                        return Err(self.err_at(t.pos, &format!("function {w:?} not defined")));
                    }
                    Arg::Ident(w)
                }
            },
            Tok::Str(s) => Arg::Str(s),
            Tok::Char(c) => Arg::Num(format!("'{c}'"), Number::Int(c as i64)),
            Tok::Num(text) => match parse_number(&text) {
                Some(n) => Arg::Num(text, n),
                None => return Err(self.err_at(t.pos, &format!("bad number syntax: {text:?}"))),
            },
            _ => return Err(self.unexpected(&t, "operand")),
        };
        // A field glued to a literal is an error in Go too.
        if let Tok::Field(_) = self.peek().tok
            && !self.peek().space_before
        {
            let p = self.peek().pos;
            return Err(self.err_at(p, "unexpected . after term"));
        }
        Ok(arg)
    }

    /// Field tokens glued (no space) to the previous operand.
    fn chain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Tok::Field(f) = &self.peek().tok {
            if self.peek().space_before || f.is_empty() {
                break;
            }
            out.push(f.clone());
            self.next();
        }
        out
    }
}

fn number_end(b: &[u8], mut i: usize) -> usize {
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    while i < b.len() {
        let c = b[i];
        let exp_sign =
            (c == b'+' || c == b'-') && i > 0 && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// Go's untyped constant for a number literal: integer literals (decimal,
/// `0x`, `0o`, `0b`, with `_`) are ints, others floats.
fn parse_number(text: &str) -> Option<Number> {
    let t = text.replace('_', "");
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, t.trim_start_matches('+').to_string()),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bn) = lower.strip_prefix("0b") {
        i64::from_str_radix(bn, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.bytes().all(|c| c.is_ascii_digit()) {
        lower.parse().ok()
    } else {
        None
    };
    if let Some(v) = int {
        return Some(Number::Int(if neg { -v } else { v }));
    }
    if lower.starts_with("0x") {
        return None;
    }
    let f: f64 = lower.parse().ok()?;
    if !f.is_finite() || lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    Some(Number::Float(if neg { -f } else { f }))
}
