//! Go's template builtins and Prometheus 2.42's template functions.
//!
//! Every name Prometheus defines parses (Go checks function names at parse
//! time, so `weir validate` must accept the same names). `js`, `call` and
//! `slice` parse but fail when executed: rule templates have no use for
//! them. `query` needs a query callback (see
//! [`Template::render_with_query`](super::Template::render_with_query));
//! without one it fails with "query is not supported in weir templates yet".

use std::rc::Rc;

use super::exec::{State, Value};
use super::fmt::{go_g, sprint, sprintf, sprintln};

/// Go's `text/template` builtins, in every kind of template.
pub(crate) const GO_BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "printf", "print", "println", "html", "js",
    "urlquery", "call", "eq", "ne", "lt", "le", "gt", "ge",
];

/// Prometheus' functions, for alert templates (with [`GO_BUILTINS`]).
pub(crate) const NAMES: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "stripPort",
    "stripDomain",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "pathPrefix",
    "externalURL",
    "parseDuration",
];

/// A function's failure; `arg` is the argument a type error is about.
pub(crate) struct FnErr {
    pub arg: Option<usize>,
    pub msg: String,
}

impl From<String> for FnErr {
    fn from(msg: String) -> FnErr {
        FnErr { arg: None, msg }
    }
}

impl From<&str> for FnErr {
    fn from(msg: &str) -> FnErr {
        FnErr::from(msg.to_string())
    }
}

type R = Result<Value, FnErr>;

fn arity(name: &str, a: &[Value], n: usize) -> Result<(), String> {
    if a.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            a.len()
        ));
    }
    Ok(())
}

fn wrong(i: usize, want: &str, got: &Value) -> FnErr {
    FnErr {
        arg: Some(i),
        msg: format!(
            "wrong type for value; expected {want}; got {}",
            got.type_name()
        ),
    }
}

fn string_arg(a: &[Value], i: usize) -> Result<&str, FnErr> {
    match &a[i] {
        Value::Str(s) => Ok(s),
        v => Err(wrong(i, "string", v)),
    }
}

/// Prometheus' `convertToFloat`.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_float(s),
        v => Err(format!("can't convert {} to float", v.type_name())),
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input.
pub(crate) fn parse_float(s: &str) -> Result<f64, String> {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s).to_ascii_lowercase();
    let ok_word = matches!(t.as_str(), "inf" | "infinity" | "nan");
    let ok_num = !t.is_empty()
        && t.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
        && t.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == b'.');
    if !(ok_word || ok_num) || (t == "nan" && s.starts_with(['+', '-'])) {
        return Err(format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            super::quote(s)
        ));
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_infinite() && !ok_word => Err(format!(
            "strconv.ParseFloat: parsing {}: value out of range",
            super::quote(s)
        )),
        Ok(v) => Ok(v),
        Err(_) => Err(format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            super::quote(s)
        )),
    }
}

fn samples_arg(a: &[Value], i: usize) -> Result<Rc<Vec<Rc<super::QuerySample>>>, FnErr> {
    match &a[i] {
        Value::Samples(s) => Ok(s.clone()),
        v => Err(wrong(i, "template.queryResult", v)),
    }
}

fn sample_arg(a: &[Value], i: usize) -> Result<Rc<super::QuerySample>, FnErr> {
    match &a[i] {
        Value::Sample(s) => Ok(s.clone()),
        v => Err(wrong(i, "*template.sample", v)),
    }
}

pub(crate) fn call(st: &mut State<'_>, name: &str, a: Vec<Value>) -> R {
    if st.message
        && let Some(r) = super::am::call(name, &a)
    {
        return r;
    }
    match name {
        "not" => {
            arity(name, &a, 1)?;
            Ok(Value::Bool(!a[0].truth()))
        }
        "len" => {
            arity(name, &a, 1)?;
            match &a[0] {
                Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                Value::Map(m, _) => Ok(Value::Int(m.len() as i64)),
                Value::Samples(s) => Ok(Value::Int(s.len() as i64)),
                Value::List(l, _) => Ok(Value::Int(l.len() as i64)),
                Value::Kv(m) => Ok(Value::Int(m.len() as i64)),
                Value::Nil => Err("len of nil pointer".into()),
                v => Err(format!("len of type {}", v.type_name()).into()),
            }
        }
        "index" => {
            if a.is_empty() {
                return Err("wrong number of args for index: want at least 1 got 0".into());
            }
            let mut v = a[0].clone();
            for i in &a[1..] {
                v = match (&v, i) {
                    (Value::Map(m, zero), Value::Str(k)) => {
                        m.get(&**k).cloned().unwrap_or_else(|| (**zero).clone())
                    }
                    (Value::Map(..), k) => {
                        return Err(
                            format!("value has type {}; should be string", k.type_name()).into(),
                        );
                    }
                    (Value::Kv(m), Value::Str(k)) => {
                        Value::str(m.get(&**k).map_or("", String::as_str))
                    }
                    (Value::List(l, _), Value::Int(n)) => {
                        match usize::try_from(*n).ok().and_then(|n| l.get(n)) {
                            Some(x) => x.clone(),
                            None => return Err(format!("index out of range: {n}").into()),
                        }
                    }
                    (Value::Samples(s), Value::Int(n)) => {
                        match usize::try_from(*n).ok().and_then(|n| s.get(n)) {
                            Some(x) => Value::Sample(x.clone()),
                            None => return Err(format!("index out of range: {n}").into()),
                        }
                    }
                    (Value::Str(s), Value::Int(n)) => {
                        match usize::try_from(*n).ok().and_then(|n| s.as_bytes().get(n)) {
                            Some(b) => Value::Int(i64::from(*b)),
                            None => return Err(format!("index out of range: {n}").into()),
                        }
                    }
                    (Value::Nil, _) => return Err("index of untyped nil".into()),
                    (v, _) => {
                        return Err(format!("can't index item of type {}", v.type_name()).into());
                    }
                };
            }
            Ok(v)
        }
        "printf" => {
            if a.is_empty() {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            }
            let f = string_arg(&a, 0)?;
            Ok(Value::str(&sprintf(f, &a[1..])))
        }
        "print" => Ok(Value::str(&sprint(&a))),
        "println" => Ok(Value::str(&sprintln(&a))),
        "html" => Ok(Value::str(&html_escape(&sprint_args(&a)))),
        "urlquery" => Ok(Value::str(&query_escape(&sprint_args(&a)))),
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => compare(name, &a),
        "js" | "call" | "slice" => Err(format!("{name} is not supported in weir templates").into()),

        "query" => {
            arity(name, &a, 1)?;
            let q = string_arg(&a, 0)?;
            let Some(f) = st.query else {
                return Err("query is not supported in weir templates yet".into());
            };
            let res = f(q)?;
            Ok(Value::Samples(Rc::new(
                res.into_iter().map(Rc::new).collect(),
            )))
        }
        "first" => {
            arity(name, &a, 1)?;
            let s = samples_arg(&a, 0)?;
            match s.first() {
                Some(x) => Ok(Value::Sample(x.clone())),
                None => Err("first() called on vector with no elements".into()),
            }
        }
        "label" => {
            arity(name, &a, 2)?;
            let l = string_arg(&a, 0)?;
            let s = sample_arg(&a, 1)?;
            Ok(Value::str(s.labels.get(l).map_or("", String::as_str)))
        }
        "value" => {
            arity(name, &a, 1)?;
            Ok(Value::Float(sample_arg(&a, 0)?.value))
        }
        "strvalue" => {
            arity(name, &a, 1)?;
            let s = sample_arg(&a, 0)?;
            Ok(Value::str(
                s.labels.get("__value__").map_or("", String::as_str),
            ))
        }
        "sortByLabel" => {
            arity(name, &a, 2)?;
            let l = string_arg(&a, 0)?.to_string();
            let s = samples_arg(&a, 1)?;
            let mut v: Vec<_> = s.iter().cloned().collect();
            let key = |x: &Rc<super::QuerySample>| x.labels.get(&l).cloned().unwrap_or_default();
            v.sort_by_key(key);
            Ok(Value::Samples(Rc::new(v)))
        }
        "args" => {
            let m = a
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v))
                .collect();
            Ok(Value::Map(Rc::new(m), Rc::new(Value::Nil)))
        }
        "reReplaceAll" => {
            arity(name, &a, 3)?;
            let (p, r, t) = (string_arg(&a, 0)?, string_arg(&a, 1)?, string_arg(&a, 2)?);
            let re = regex::Regex::new(p)
                .map_err(|e| format!("regexp: Compile({}): {}", re_quote(p), re_error(p, &e)))?;
            Ok(Value::str(&re.replace_all(t, r)))
        }
        "match" => {
            arity(name, &a, 2)?;
            let (p, t) = (string_arg(&a, 0)?, string_arg(&a, 1)?);
            let re = regex::Regex::new(p).map_err(|e| re_error(p, &e))?;
            Ok(Value::Bool(re.is_match(t)))
        }
        "safeHtml" => {
            arity(name, &a, 1)?;
            Ok(Value::str(string_arg(&a, 0)?))
        }
        "title" => {
            arity(name, &a, 1)?;
            Ok(Value::str(&title(string_arg(&a, 0)?)))
        }
        "toUpper" => {
            arity(name, &a, 1)?;
            Ok(Value::str(&simple_case(string_arg(&a, 0)?, true)))
        }
        "toLower" => {
            arity(name, &a, 1)?;
            Ok(Value::str(&simple_case(string_arg(&a, 0)?, false)))
        }
        "graphLink" | "tableLink" => {
            arity(name, &a, 1)?;
            let tab = if name == "graphLink" { 0 } else { 1 };
            Ok(Value::str(&format!(
                "/graph?g0.expr={}&g0.tab={tab}",
                query_escape(string_arg(&a, 0)?)
            )))
        }
        "stripPort" => {
            arity(name, &a, 1)?;
            let hp = string_arg(&a, 0)?;
            Ok(Value::str(split_host_port(hp).map_or(hp, |(h, _)| h)))
        }
        "stripDomain" => {
            arity(name, &a, 1)?;
            let hp = string_arg(&a, 0)?;
            let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
            if host.parse::<std::net::IpAddr>().is_ok() {
                return Ok(Value::str(hp));
            }
            let short = host.split('.').next().unwrap_or("");
            Ok(Value::str(&if port.is_empty() {
                short.to_string()
            } else if short.contains(':') {
                format!("[{short}]:{port}")
            } else {
                format!("{short}:{port}")
            }))
        }
        "humanize" => {
            arity(name, &a, 1)?;
            Ok(Value::str(&humanize(to_float(&a[0])?)))
        }
        "humanize1024" => {
            arity(name, &a, 1)?;
            Ok(Value::str(&humanize1024(to_float(&a[0])?)))
        }
        "humanizeDuration" => {
            arity(name, &a, 1)?;
            Ok(Value::str(&humanize_duration(to_float(&a[0])?)))
        }
        "humanizePercentage" => {
            arity(name, &a, 1)?;
            Ok(Value::str(&format!("{}%", g4(to_float(&a[0])? * 100.0))))
        }
        "humanizeTimestamp" => {
            arity(name, &a, 1)?;
            let v = to_float(&a[0])?;
            if !v.is_finite() {
                return Ok(Value::str(&g4(v)));
            }
            Ok(Value::str(&super::fmt::time_string(float_to_time(v)?)))
        }
        "toTime" => {
            arity(name, &a, 1)?;
            let v = to_float(&a[0])?;
            if !v.is_finite() {
                return Err("value is NaN or Inf".into());
            }
            Ok(Value::Time(float_to_time(v)?))
        }
        "pathPrefix" => {
            arity(name, &a, 0)?;
            Ok(Value::str(url_path(&st_external_url(st))))
        }
        "externalURL" => {
            arity(name, &a, 0)?;
            Ok(Value::str(&st_external_url(st)))
        }
        "parseDuration" => {
            arity(name, &a, 1)?;
            let d = string_arg(&a, 0)?;
            parse_duration(d)
                .map(|ms| Value::Float(ms as f64 / 1000.0))
                .ok_or_else(|| format!("not a valid duration string: {}", super::quote(d)).into())
        }
        _ => Err(format!("{} is not a defined function", super::quote(name)).into()),
    }
}

fn st_external_url(st: &State<'_>) -> String {
    st.vars
        .iter()
        .find(|(n, _)| n == "$")
        .and_then(|(_, v)| match v {
            Value::Data(f) => f
                .iter()
                .find(|(n, _)| *n == "ExternalURL")
                .map(|(_, v)| v.clone()),
            _ => None,
        })
        .and_then(|v| match v {
            Value::Str(s) => Some(s.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

fn url_path(u: &str) -> &str {
    let rest = u.split_once("://").map_or(u, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    rest.find('/').map_or("", |i| &rest[i..])
}

/// Go's `regexp` quoting of a pattern in errors: backquotes when possible.
fn re_quote(p: &str) -> String {
    if p.contains('`') || p.chars().any(|c| c.is_control() && c != '\t') {
        super::quote(p)
    } else {
        format!("`{p}`")
    }
}

/// A regex compile error worded like Go's `regexp/syntax` for the common
/// cases (`error parsing regexp: missing closing ): `(``); other errors
/// keep the regex crate's description.
fn re_error(p: &str, e: &regex::Error) -> String {
    let m = e.to_string();
    let code = if m.contains("unclosed group") {
        "missing closing )"
    } else if m.contains("unopened group") {
        "unexpected )"
    } else if m.contains("unclosed character class") {
        "missing closing ]"
    } else if m.contains("repetition operator missing expression") {
        "missing argument to repetition operator"
    } else {
        let last = m.lines().last().unwrap_or("").trim();
        return format!(
            "error parsing regexp: {}: {}",
            last.trim_start_matches("error: "),
            re_quote(p)
        );
    };
    format!("error parsing regexp: {code}: {}", re_quote(p))
}

/// Go's `unicode.ToUpper`/`ToLower` per rune: simple (one-to-one) case
/// mappings only, so `ß` stays `ß` where Rust's full mapping gives `SS`.
pub(crate) fn simple_case(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            if !upper && c == '\u{130}' {
                return 'i';
            }
            let mut m: Vec<char> = if upper {
                c.to_uppercase().collect()
            } else {
                c.to_lowercase().collect()
            };
            if m.len() == 1 { m.remove(0) } else { c }
        })
        .collect()
}

/// Arguments of `html`/`urlquery`: one string as is, else `fmt.Sprint`.
fn sprint_args(a: &[Value]) -> String {
    match a {
        [Value::Str(s)] => s.to_string(),
        a => sprint(a),
    }
}

/// `%.4g`.
fn g4(v: f64) -> String {
    go_g(v, Some(4), 'e')
}

/// Prometheus' `humanize`: SI prefixes, `%.4g`.
pub(crate) fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

/// Prometheus' `humanize1024`: binary prefixes, `%.4g`.
pub(crate) fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

/// Prometheus' `humanizeDuration`: `1d 2h 3m 4s`, seconds with `%.4g`,
/// sub-second values with SI prefixes (`500ms`).
pub(crate) fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        // Go's int64(v) saturates differently, but such durations are
        // beyond any alert.
        let d = v as i64;
        let (s, m, h, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", g4(v));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

/// Prometheus' `floatToTime` (finite `v`): seconds → nanoseconds,
/// truncated to milliseconds as `model.Time` does.
fn float_to_time(v: f64) -> Result<i64, String> {
    let ts = v * 1e9;
    if ts > i64::MAX as f64 || ts < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            crate::alert::promql::format::format_float(v)
        ));
    }
    let ms = (ts as i64) / 1_000_000;
    Ok(ms * 1_000_000)
}

/// Prometheus' `model.ParseDuration` in milliseconds (see
/// [`crate::alert::rules::parse_duration`]).
pub(crate) fn parse_duration(s: &str) -> Option<i64> {
    crate::alert::rules::parse_duration(s).ok()
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
pub(crate) fn title(s: &str) -> String {
    fn sep(r: char) -> bool {
        if r.is_ascii() {
            return !(r.is_ascii_alphanumeric() || r == '_');
        }
        if r.is_alphanumeric() {
            return false;
        }
        r.is_whitespace()
    }
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if sep(prev) {
            out.push_str(&simple_case(c.encode_utf8(&mut [0; 4]), true));
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Go's `net.SplitHostPort`.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':')?;
        if port.contains([':', '[', ']']) || rest[..end].contains('[') {
            return None;
        }
        return Some((&rest[..end], port));
    }
    let i = hp.rfind(':')?;
    let (h, p) = (&hp[..i], &hp[i + 1..]);
    if h.contains([':', '[', ']']) || p.contains([']', '[']) {
        return None;
    }
    Some((h, p))
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("&#34;"),
            '\'' => o.push_str("&#39;"),
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\0' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            b' ' => o.push('+'),
            b => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// Go's `eq ne lt le gt ge` on basic kinds: both sides must be the same
/// kind (int, float, string, bool); `eq` compares the first argument with
/// each of the others.
fn compare(name: &str, a: &[Value]) -> R {
    compare_inner(name, a).map_err(FnErr::from)
}

fn compare_inner(name: &str, a: &[Value]) -> Result<Value, String> {
    use std::cmp::Ordering;
    if name == "eq" {
        if a.len() < 2 {
            return Err(if a.is_empty() {
                "wrong number of args for eq: want at least 1 got 0".into()
            } else {
                "missing argument for comparison".into()
            });
        }
    } else {
        arity(name, a, 2)?;
    }
    let cmp = |x: &Value, y: &Value| -> Result<Option<Ordering>, String> {
        match (x, y) {
            (Value::Int(p), Value::Int(q)) => Ok(p.partial_cmp(q)),
            (Value::Float(p), Value::Float(q)) => Ok(p.partial_cmp(q)),
            (Value::Str(p), Value::Str(q)) => Ok(p.partial_cmp(q)),
            (Value::Bool(p), Value::Bool(q)) => {
                if matches!(name, "eq" | "ne") {
                    Ok(p.partial_cmp(q))
                } else {
                    Err("invalid type for comparison".into())
                }
            }
            (
                Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bool(_),
                Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bool(_),
            ) => Err("incompatible types for comparison".into()),
            _ => Err(if matches!(name, "eq" | "ne") {
                "non-comparable types".into()
            } else {
                "invalid type for comparison".into()
            }),
        }
    };
    let r = match name {
        "eq" => {
            let mut any = false;
            for y in &a[1..] {
                if cmp(&a[0], y)? == Some(Ordering::Equal) {
                    any = true;
                    break;
                }
            }
            any
        }
        "ne" => cmp(&a[0], &a[1])? != Some(Ordering::Equal),
        "lt" => cmp(&a[0], &a[1])? == Some(Ordering::Less),
        "le" => matches!(cmp(&a[0], &a[1])?, Some(Ordering::Less | Ordering::Equal)),
        "gt" => cmp(&a[0], &a[1])? == Some(Ordering::Greater),
        _ => matches!(
            cmp(&a[0], &a[1])?,
            Some(Ordering::Greater | Ordering::Equal)
        ),
    };
    Ok(Value::Bool(r))
}
