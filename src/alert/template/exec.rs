//! The evaluator: walks parsed nodes over [`Value`]s with Go's
//! `text/template` semantics (truth, scoping of variables, `range` over
//! maps in key order, map lookups with `missingkey=zero` as Prometheus sets
//! it) and Go-shaped execution errors:
//! `template: NAME:LINE:COL: executing "NAME" at <cmd>: message`.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::funcs;
use super::parse::{Arg, Branch, Cmd, List, Node, Number, Pipe};
use super::{QuerySample, fmt};

/// A template value: the Go types rule templates meet.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Go's invalid / nil value; an action prints it as `<no value>`.
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    /// A map with string keys; `zero` is what a missing key yields
    /// (`""` for `map[string]string`, `Nil` for `map[string]interface{}`).
    Map(Rc<BTreeMap<String, Value>>, Rc<Value>),
    /// The data struct Prometheus passes to alert templates.
    Data(Rc<Vec<(&'static str, Value)>>),
    /// `query`'s result (`[]*sample`).
    Samples(Rc<Vec<Rc<QuerySample>>>),
    Sample(Rc<QuerySample>),
    /// A `*time.Time`, nanoseconds since the epoch, UTC
    /// ([`am::ZERO_TIME_NS`](super::am::ZERO_TIME_NS) is Go's zero time).
    Time(i64),
    /// A slice of message template data; the kind gives its Go type and
    /// methods.
    List(Rc<Vec<Value>>, ListKind),
    /// Alertmanager's `template.KV` (label and annotation maps).
    Kv(Rc<BTreeMap<String, String>>),
    /// A struct of Alertmanager's template data: its Go type, its fields.
    Struct(&'static str, Rc<Vec<(&'static str, Value)>>),
}

/// What a [`Value::List`] is in Alertmanager's template data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `template.Alerts` (has `Firing`, `Resolved`).
    Alerts,
    /// `[]template.Alert`.
    AlertList,
    /// `template.Strings` (has `Join`).
    Strings,
    /// `template.Pairs` (has `Names`, `Values`).
    Pairs,
    /// `[]interface {}`.
    Plain,
}

impl Value {
    pub(crate) fn str(s: &str) -> Value {
        Value::Str(Rc::from(s))
    }

    pub(crate) fn string_map(m: &BTreeMap<String, String>) -> Value {
        let entries = m.iter().map(|(k, v)| (k.clone(), Value::str(v))).collect();
        Value::Map(Rc::new(entries), Rc::new(Value::str("")))
    }

    /// Go's type name, as `%T` and error messages print it.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_, z) if matches!(**z, Value::Nil) => "map[string]interface {}",
            Value::Map(..) => "map[string]string",
            Value::Data(_) => {
                "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }"
            }
            Value::Samples(_) => "template.queryResult",
            Value::Sample(_) => "*template.sample",
            Value::Time(_) => "*time.Time",
            Value::List(_, k) => match k {
                ListKind::Alerts => "template.Alerts",
                ListKind::AlertList => "[]template.Alert",
                ListKind::Strings => "template.Strings",
                ListKind::Pairs => "template.Pairs",
                ListKind::Plain => "[]interface {}",
            },
            Value::Kv(_) => "template.KV",
            Value::Struct(t, _) => t,
        }
    }

    /// Go's `template.IsTrue`.
    pub(crate) fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m, _) => !m.is_empty(),
            Value::Samples(s) => !s.is_empty(),
            Value::List(l, _) => !l.is_empty(),
            Value::Kv(m) => !m.is_empty(),
            Value::Data(_) | Value::Sample(_) | Value::Time(_) | Value::Struct(..) => true,
        }
    }
}

/// A failure during execution: the message and the command it happened in.
pub(crate) struct ExecError {
    pub msg: String,
    pub at: Option<(usize, String)>,
}

impl ExecError {
    pub(crate) fn new(msg: impl Into<String>) -> ExecError {
        ExecError {
            msg: msg.into(),
            at: None,
        }
    }
}

type R<T> = Result<T, ExecError>;

pub(crate) enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) type QueryCallback<'a> = Option<&'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>>;

pub(crate) struct State<'a> {
    pub vars: Vec<(String, Value)>,
    pub out: String,
    pub query: QueryCallback<'a>,
    /// Iterations left for all `range`s together (guards runaway output).
    pub budget: usize,
    /// A message template: Alertmanager's functions (see [`super::am`]).
    pub message: bool,
}

impl State<'_> {
    pub(crate) fn walk(&mut self, list: &List, dot: &Value) -> R<Flow> {
        for node in list {
            let flow = match node {
                Node::Text(t) => {
                    self.out.push_str(t);
                    Flow::Normal
                }
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_empty() {
                        print_value(&mut self.out, &v);
                    }
                    Flow::Normal
                }
                Node::If(b) => self.if_with(b, dot, false)?,
                Node::With(b) => self.if_with(b, dot, true)?,
                Node::Range(b) => self.range(b, dot)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if !matches!(flow, Flow::Normal) {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn if_with(&mut self, b: &Branch, dot: &Value, with: bool) -> R<Flow> {
        let mark = self.vars.len();
        let v = self.pipeline(&b.pipe, dot)?;
        let flow = if v.truth() {
            let d = if with { v } else { dot.clone() };
            self.walk(&b.list, &d)?
        } else if let Some(e) = &b.else_list {
            self.walk(e, dot)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, b: &Branch, dot: &Value) -> R<Flow> {
        let mark = self.vars.len();
        let v = self.pipeline(&b.pipe, dot)?;
        // The declared variables were pushed by `pipeline` with the whole
        // value; range rebinds them per element.
        let items: Vec<(Value, Value)> = match &v {
            Value::Map(m, _) => m.iter().map(|(k, v)| (Value::str(k), v.clone())).collect(),
            Value::Samples(s) => s
                .iter()
                .enumerate()
                .map(|(i, s)| (Value::Int(i as i64), Value::Sample(s.clone())))
                .collect(),
            Value::List(l, _) => l
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::Int(i as i64), x.clone()))
                .collect(),
            Value::Kv(m) => m
                .iter()
                .map(|(k, v)| (Value::str(k), Value::str(v)))
                .collect(),
            Value::Nil => Vec::new(),
            other => {
                return Err(ExecError {
                    msg: format!(
                        "range can't iterate over {}",
                        fmt::sprint(std::slice::from_ref(other))
                    ),
                    at: Some((b.pipe.cmds[0].pos, b.pipe.to_string())),
                });
            }
        };
        if items.is_empty() {
            let flow = match &b.else_list {
                Some(e) => self.walk(e, dot)?,
                None => Flow::Normal,
            };
            self.vars.truncate(mark);
            return Ok(flow);
        }
        for (k, e) in items {
            if self.budget == 0 {
                return Err(ExecError::new("range iteration limit exceeded"));
            }
            self.budget -= 1;
            let inner = self.vars.len();
            match b.pipe.decl.len() {
                1 => self.set_var(&b.pipe.decl[0], e.clone()),
                2 => {
                    self.set_var(&b.pipe.decl[0], k);
                    self.set_var(&b.pipe.decl[1], e.clone());
                }
                _ => {}
            }
            let flow = self.walk(&b.list, &e)?;
            self.vars.truncate(inner);
            if let Flow::Break = flow {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    /// Rebinds a range variable (declared by `pipeline` in the range's
    /// scope, or an outer one for `=`) to the current element.
    fn set_var(&mut self, name: &str, v: Value) {
        if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = v;
        }
    }

    fn var(&self, name: &str) -> R<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ExecError::new(format!("undefined variable: {name}")))
    }

    pub(crate) fn pipeline(&mut self, p: &Pipe, dot: &Value) -> R<Value> {
        let mut v: Option<Value> = None;
        for c in &p.cmds {
            let r = self.command(c, dot, v.take());
            v = Some(r.map_err(|mut e| {
                if e.at.is_none() {
                    e.at = Some((c.pos, c.to_string()));
                }
                e
            })?);
        }
        let v = v.unwrap_or(Value::Nil);
        for name in &p.decl {
            if p.is_assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, c: &Cmd, dot: &Value, fin: Option<Value>) -> R<Value> {
        let first = &c.args[0];
        if let Arg::Ident(name) = first {
            return self.call(
                name,
                &c.args[1..],
                &c.arg_pos[1..],
                c.pos,
                &c.to_string(),
                dot,
                fin,
            );
        }
        let at = |mut e: ExecError| {
            if e.at.is_none() {
                e.at = Some((c.arg_pos[0], first.to_string()));
            }
            e
        };
        if let Arg::Nil = first {
            return Err(at(ExecError::new("nil is not a command")));
        }
        if c.args.len() > 1 || fin.is_some() {
            // A method with arguments: `.StartsAt.Format "15:04"`.
            if let Some((recv, m)) = self.method_target(first, dot).map_err(at)? {
                let mut vals = Vec::with_capacity(c.args.len());
                for a in &c.args[1..] {
                    vals.push(self.arg(a, dot).map_err(at)?);
                }
                vals.extend(fin);
                if let Some(r) = super::am::method(&recv, &m, &vals) {
                    return r
                        .map_err(|e| at(ExecError::new(format!("error calling {m}: {}", e.msg))));
                }
            }
            return Err(at(ExecError::new(format!(
                "can't give argument to non-function {first}"
            ))));
        }
        self.arg(first, dot).map_err(at)
    }

    /// The receiver and method name of `.a.M`, `$x.M` or `(…).M`.
    fn method_target(&mut self, a: &Arg, dot: &Value) -> R<Option<(Value, String)>> {
        let (base, chain) = match a {
            Arg::Field(c) => (dot.clone(), c),
            Arg::Var(v, c) => (self.var(v)?, c),
            Arg::Pipe(p, c) if !c.is_empty() => (self.pipeline_scoped(p, dot)?, c),
            _ => return Ok(None),
        };
        let Some((m, init)) = chain.split_last() else {
            return Ok(None);
        };
        Ok(Some((field_chain(base, init)?, m.clone())))
    }

    /// A parenthesised pipeline: its declarations do not leak out.
    fn pipeline_scoped(&mut self, p: &Pipe, dot: &Value) -> R<Value> {
        let mark = self.vars.len();
        let v = self.pipeline(p, dot);
        if p.is_assign || p.decl.is_empty() {
            self.vars.truncate(mark);
        }
        v
    }

    /// Evaluates an argument: literals become Go's untyped-constant value.
    pub(crate) fn arg(&mut self, a: &Arg, dot: &Value) -> R<Value> {
        Ok(match a {
            Arg::Field(chain) => field_chain(dot.clone(), chain)?,
            Arg::Dot => dot.clone(),
            Arg::Var(v, chain) => field_chain(self.var(v)?, chain)?,
            Arg::Ident(name) => self.call(name, &[], &[], 0, name, dot, None)?,
            Arg::Str(s) => Value::str(s),
            Arg::Num(_, Number::Int(i)) => Value::Int(*i),
            Arg::Num(_, Number::Float(f)) => Value::Float(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Nil,
            Arg::Pipe(p, chain) => {
                let v = self.pipeline_scoped(p, dot)?;
                field_chain(v, chain)?
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        name: &str,
        args: &[Arg],
        arg_pos: &[usize],
        pos: usize,
        ctx: &str,
        dot: &Value,
        fin: Option<Value>,
    ) -> R<Value> {
        let eval = |st: &mut Self, i: usize| {
            st.arg(&args[i], dot).map_err(|mut e| {
                if e.at.is_none() {
                    e.at = Some((arg_pos[i], args[i].to_string()));
                }
                e
            })
        };
        // `and` / `or` evaluate lazily, as Go >= 1.18 does.
        if name == "and" || name == "or" {
            let n = args.len() + usize::from(fin.is_some());
            if n == 0 {
                return Err(ExecError {
                    msg: format!("wrong number of args for {name}: want at least 1 got 0"),
                    at: Some((pos, name.to_string())),
                });
            }
            let want = name == "or";
            let mut last = Value::Nil;
            for i in 0..args.len() {
                last = eval(self, i)?;
                if last.truth() == want {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for i in 0..args.len() {
            vals.push(eval(self, i)?);
        }
        if let Some(f) = fin {
            vals.push(f);
        }
        funcs::call(self, name, vals).map_err(|e| {
            if e.msg.starts_with("wrong number of args") {
                return ExecError {
                    msg: e.msg,
                    at: Some((pos, name.to_string())),
                };
            }
            match e.arg {
                Some(i) if i < args.len() => ExecError {
                    msg: e.msg,
                    at: Some((arg_pos[i], args[i].to_string())),
                },
                Some(_) => ExecError {
                    msg: e.msg,
                    at: Some((pos, name.to_string())),
                },
                None => ExecError {
                    msg: format!("error calling {name}: {}", e.msg),
                    at: Some((pos, ctx.to_string())),
                },
            }
        })
    }
}

/// `.a.b` on a value: map keys (missing → the map's zero value) and the
/// fields of the alert data and of query samples.
pub(crate) fn field_chain(mut v: Value, chain: &[String]) -> R<Value> {
    for f in chain {
        if let Some(r) = super::am::method(&v, f, &[]) {
            v = r?;
            continue;
        }
        v = match &v {
            Value::Kv(m) => Value::str(m.get(f).map_or("", String::as_str)),
            Value::Struct(t, fields) => match fields.iter().find(|(n, _)| n == f) {
                Some((_, x)) => x.clone(),
                None => {
                    return Err(ExecError::new(format!(
                        "can't evaluate field {f} in type {t}"
                    )));
                }
            },
            Value::Map(m, zero) => m.get(f).cloned().unwrap_or_else(|| (**zero).clone()),
            Value::Data(fields) => match fields.iter().find(|(n, _)| n == f) {
                Some((_, x)) => x.clone(),
                None => {
                    return Err(ExecError::new(format!(
                        "can't evaluate field {f} in type {}",
                        v.type_name()
                    )));
                }
            },
            Value::Sample(s) => match f.as_str() {
                "Labels" => Value::string_map(&s.labels),
                "Value" => Value::Float(s.value),
                _ => {
                    return Err(ExecError::new(format!(
                        "can't evaluate field {f} in type *template.sample"
                    )));
                }
            },
            Value::Nil => {
                return Err(ExecError::new(format!(
                    "nil pointer evaluating interface {{}}.{f}"
                )));
            }
            other => {
                return Err(ExecError::new(format!(
                    "can't evaluate field {f} in type {}",
                    other.type_name()
                )));
            }
        };
    }
    Ok(v)
}

/// How an action prints its value: `<no value>` for nil, else `%v`.
fn print_value(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("<no value>"),
        Value::Str(s) => out.push_str(s),
        v => out.push_str(&fmt::sprint(std::slice::from_ref(v))),
    }
}
