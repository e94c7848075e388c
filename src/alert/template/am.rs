//! Alertmanager's notification template data and functions, for user
//! message templates ([`Template::parse_message`](super::Template::parse_message)).
//!
//! The data is Alertmanager's `template.Data`: `.Receiver`, `.Status`,
//! `.Alerts` (with `.Firing` and `.Resolved`), `.GroupLabels`,
//! `.CommonLabels`, `.CommonAnnotations`, `.ExternalURL`; each alert has
//! `.Status`, `.Labels`, `.Annotations`, `.StartsAt`, `.EndsAt`,
//! `.GeneratorURL`, `.Fingerprint`. Label maps are `template.KV`:
//! `.SortedPairs` (each `.Name`, `.Value`), `.Names`, `.Values` (with
//! `.Join ","`), `.Remove (stringSlice "a")`, and print as `a=1, b=2`.
//! Times are UTC `time.Time`s: they print like Go's, and have `.Format
//! "2006-01-02 15:04:05"`, `.Unix`, `.UnixMilli`, `.UTC`, `.IsZero`; a
//! firing alert's `.EndsAt` is Go's zero time.
//!
//! Functions: Go's builtins and Alertmanager's `toUpper`, `toLower`,
//! `title`, `trimSpace`, `join`, `match`, `safeHtml`, `safeUrl`,
//! `urlUnescape`, `reReplaceAll`, `stringSlice`, `date` (`date "15:04"
//! .StartsAt`), `humanizeDuration`, `base64encode`, `base64decode`,
//! `list`, `dict`. Not supported (they fail to parse): `tz`, `now`,
//! `since`, `toDate`, `mustToDate`, `toJson`, `append`, `routeLabels`.

use std::collections::BTreeMap;
use std::rc::Rc;

use base64::Engine as _;

use super::exec::{ExecError, ListKind, Value};
use super::funcs::{self, FnErr};

/// Alertmanager's functions a message template may use (with Go's
/// builtins, [`funcs::GO_BUILTINS`]).
pub(crate) const NAMES: &[&str] = &[
    "toUpper",
    "toLower",
    "title",
    "trimSpace",
    "join",
    "match",
    "safeHtml",
    "safeUrl",
    "urlUnescape",
    "reReplaceAll",
    "stringSlice",
    "date",
    "humanizeDuration",
    "base64encode",
    "base64decode",
    "list",
    "dict",
];

/// Go's zero `time.Time` (not representable in nanoseconds since 1970).
pub(crate) const ZERO_TIME_NS: i64 = i64::MIN;

/// One alert as a message template sees it (Alertmanager's `template.Alert`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageAlert {
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Milliseconds since the epoch.
    pub starts_at_ms: i64,
    /// Milliseconds since the epoch; `None` is Go's zero time.
    pub ends_at_ms: Option<i64>,
    pub generator_url: String,
    pub fingerprint: String,
}

/// What a message template sees (Alertmanager's `template.Data`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageData {
    pub receiver: String,
    pub status: String,
    pub alerts: Vec<MessageAlert>,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    pub external_url: String,
}

fn kv(m: &BTreeMap<String, String>) -> Value {
    Value::Kv(Rc::new(m.clone()))
}

fn ms_time(ms: i64) -> Value {
    Value::Time(ms.saturating_mul(1_000_000))
}

fn alert_value(a: &MessageAlert) -> Value {
    Value::Struct(
        "template.Alert",
        Rc::new(vec![
            ("Status", Value::str(&a.status)),
            ("Labels", kv(&a.labels)),
            ("Annotations", kv(&a.annotations)),
            ("StartsAt", ms_time(a.starts_at_ms)),
            (
                "EndsAt",
                a.ends_at_ms.map_or(Value::Time(ZERO_TIME_NS), ms_time),
            ),
            ("GeneratorURL", Value::str(&a.generator_url)),
            ("Fingerprint", Value::str(&a.fingerprint)),
        ]),
    )
}

/// The root value (`.`) of a message template.
pub(crate) fn root(d: &MessageData) -> Value {
    let alerts = d.alerts.iter().map(alert_value).collect();
    Value::Struct(
        "template.Data",
        Rc::new(vec![
            ("Receiver", Value::str(&d.receiver)),
            ("Status", Value::str(&d.status)),
            ("Alerts", Value::List(Rc::new(alerts), ListKind::Alerts)),
            ("GroupLabels", kv(&d.group_labels)),
            ("CommonLabels", kv(&d.common_labels)),
            ("CommonAnnotations", kv(&d.common_annotations)),
            ("ExternalURL", Value::str(&d.external_url)),
        ]),
    )
}

fn strings(v: impl IntoIterator<Item = String>) -> Value {
    let items = v.into_iter().map(|s| Value::str(&s)).collect();
    Value::List(Rc::new(items), ListKind::Strings)
}

fn pairs(m: &BTreeMap<String, String>) -> Value {
    let items = m
        .iter()
        .map(|(k, v)| {
            Value::Struct(
                "template.Pair",
                Rc::new(vec![("Name", Value::str(k)), ("Value", Value::str(v))]),
            )
        })
        .collect();
    Value::List(Rc::new(items), ListKind::Pairs)
}

fn list_strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::List(items, _) => items
            .iter()
            .map(|x| match x {
                Value::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A method of `recv` named `name` with `args`, if it has one (Go looks
/// methods up before fields and map keys).
pub(crate) fn method(recv: &Value, name: &str, args: &[Value]) -> Option<Result<Value, ExecError>> {
    let want = |n: usize| -> Result<(), ExecError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(ExecError::new(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            )))
        }
    };
    let r = match (recv, name) {
        (Value::List(items, ListKind::Alerts), "Firing" | "Resolved") => want(0).map(|_| {
            let status = if name == "Firing" { "firing" } else { "resolved" };
            let sel = items
                .iter()
                .filter(|a| matches!(super::exec::field_chain((*a).clone(), &["Status".into()]), Ok(Value::Str(s)) if &*s == status))
                .cloned()
                .collect();
            Value::List(Rc::new(sel), ListKind::AlertList)
        }),
        (Value::List(items, ListKind::Pairs), "Names" | "Values") => want(0).map(|_| {
            let field = if name == "Names" { "Name" } else { "Value" };
            let v = items.iter().filter_map(|p| match p {
                Value::Struct(_, f) => f.iter().find(|(n, _)| *n == field).map(|(_, v)| match v {
                    Value::Str(s) => s.to_string(),
                    _ => String::new(),
                }),
                _ => None,
            });
            strings(v)
        }),
        (Value::List(_, ListKind::Strings), "Join") => want(1).and_then(|_| {
            let (Value::Str(sep), Some(items)) = (&args[0], list_strings(recv)) else {
                return Err(ExecError::new("wrong type for value; expected string"));
            };
            Ok(Value::str(&items.join(sep)))
        }),
        (Value::Kv(m), "SortedPairs") => want(0).map(|_| pairs(m)),
        (Value::Kv(m), "Names") => want(0).map(|_| strings(m.keys().cloned())),
        (Value::Kv(m), "Values") => want(0).map(|_| strings(m.values().cloned())),
        (Value::Kv(m), "String") => want(0).map(|_| Value::str(&kv_string(m))),
        (Value::Kv(m), "Remove") => want(1).and_then(|_| {
            let keys = list_strings(&args[0])
                .ok_or_else(|| ExecError::new("wrong type for value; expected []string"))?;
            let mut m = (**m).clone();
            m.retain(|k, _| !keys.contains(k));
            Ok(Value::Kv(Rc::new(m)))
        }),
        (Value::Time(ns), _) => return time_method(*ns, name, args),
        _ => return None,
    };
    Some(r)
}

fn time_method(ns: i64, name: &str, args: &[Value]) -> Option<Result<Value, ExecError>> {
    let want0 = || {
        if args.is_empty() {
            Ok(())
        } else {
            Err(ExecError::new(format!(
                "wrong number of args for {name}: want 0 got {}",
                args.len()
            )))
        }
    };
    let zero = ns == ZERO_TIME_NS;
    let r = match name {
        "Format" => match args {
            [Value::Str(layout)] => Ok(Value::str(&go_format(ns, layout))),
            [_] => Err(ExecError::new("wrong type for value; expected string")),
            _ => Err(ExecError::new(format!(
                "wrong number of args for Format: want 1 got {}",
                args.len()
            ))),
        },
        "Unix" => want0().map(|_| {
            Value::Int(if zero {
                -62_135_596_800
            } else {
                ns.div_euclid(1_000_000_000)
            })
        }),
        "UnixMilli" => want0().map(|_| {
            Value::Int(if zero {
                -62_135_596_800_000
            } else {
                ns.div_euclid(1_000_000)
            })
        }),
        "UTC" | "Local" => want0().map(|_| Value::Time(ns)),
        "IsZero" => want0().map(|_| Value::Bool(zero)),
        "String" => want0().map(|_| Value::str(&super::fmt::time_string(ns))),
        _ => return None,
    };
    Some(r)
}

/// `KV.String()`: `a=1, b=2`.
pub(crate) fn kv_string(m: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(", ")
}

/// Civil UTC fields of `ns`: (year, month, day, hour, min, sec, nanos, weekday 0=Sunday, yday).
fn civil(ns: i64) -> (i64, u32, u32, i64, i64, i64, i64, i64, i64) {
    if ns == ZERO_TIME_NS {
        return (1, 1, 1, 0, 0, 0, 0, 1, 1);
    }
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::alert::promql::functions::civil_from_days(days);
    let jan1 = days_from_civil(y, 1, 1);
    let wday = (days + 4).rem_euclid(7);
    (
        y,
        m,
        d,
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        nanos,
        wday,
        days - jan1 + 1,
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Go's `time.Time.Format` for a UTC time: the reference-time layout
/// elements (`2006 06 January Jan 01 1 Monday Mon 02 _2 2 002 15 03 3 04 4
/// 05 5 PM pm MST Z07:00 Z0700 -07:00 -0700 -07 .000 .999 ,000`).
pub(crate) fn go_format(ns: i64, layout: &str) -> String {
    let (y, mo, d, h, mi, s, nanos, wd, yd) = civil(ns);
    let mut out = String::new();
    let mut rest = layout;
    // Longest elements first where one is a prefix of another.
    let simple: [(&str, String); 33] = [
        ("January", MONTHS[mo as usize - 1].to_string()),
        ("Jan", MONTHS[mo as usize - 1][..3].to_string()),
        ("Monday", DAYS[wd as usize].to_string()),
        ("Mon", DAYS[wd as usize][..3].to_string()),
        ("MST", "UTC".to_string()),
        ("2006", format!("{y:04}")),
        ("002", format!("{yd:03}")),
        ("__2", format!("{yd:>3}")),
        ("01", format!("{mo:02}")),
        ("02", format!("{d:02}")),
        ("_2", format!("{d:>2}")),
        ("06", format!("{:02}", y.rem_euclid(100))),
        ("15", format!("{h:02}")),
        ("03", format!("{:02}", twelve(h))),
        ("04", format!("{mi:02}")),
        ("05", format!("{s:02}")),
        ("PM", if h >= 12 { "PM" } else { "AM" }.to_string()),
        ("pm", if h >= 12 { "pm" } else { "am" }.to_string()),
        ("Z07:00:00", "Z".to_string()),
        ("Z070000", "Z".to_string()),
        ("Z07:00", "Z".to_string()),
        ("Z0700", "Z".to_string()),
        ("Z07", "Z".to_string()),
        ("-07:00:00", "+00:00:00".to_string()),
        ("-070000", "+000000".to_string()),
        ("-07:00", "+00:00".to_string()),
        ("-0700", "+0000".to_string()),
        ("-07", "+00".to_string()),
        ("1", mo.to_string()),
        ("2", d.to_string()),
        ("3", twelve(h).to_string()),
        ("4", mi.to_string()),
        ("5", s.to_string()),
    ];
    'outer: while !rest.is_empty() {
        // Fractional seconds: `.000`/`,000` (fixed) or `.999` (trimmed),
        // only right after a seconds element in Go; accepted anywhere here.
        if let Some(sep @ ('.' | ',')) = rest.chars().next() {
            let digits = rest[1..].bytes().take_while(|b| *b == b'0' || *b == b'9');
            let n = digits.count();
            let all_same = n > 0 && rest[1..=n].bytes().all(|b| b == rest.as_bytes()[1]);
            if all_same && !rest[1 + n..].starts_with(|c: char| c.is_ascii_digit()) {
                let f = format!("{nanos:09}");
                let f = &f[..n.min(9)];
                if rest.as_bytes()[1] == b'0' {
                    out.push(sep);
                    out.push_str(f);
                } else {
                    let t = f.trim_end_matches('0');
                    if !t.is_empty() {
                        out.push(sep);
                        out.push_str(t);
                    }
                }
                rest = &rest[1 + n..];
                continue;
            }
        }
        for (elem, val) in &simple {
            if let Some(r) = rest.strip_prefix(elem) {
                out.push_str(val);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn twelve(h: i64) -> i64 {
    match h % 12 {
        0 => 12,
        x => x,
    }
}

/// `cases.Title(language.AmericanEnglish)`: each word's first letter
/// upper-cased, the rest lower-cased (a simplification of Unicode word
/// breaking: letters, digits and `'` make words).
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if c.is_alphanumeric() || (in_word && c == '\'') {
            let piece = funcs::simple_case(c.encode_utf8(&mut [0; 4]), !in_word);
            out.push_str(&piece);
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

fn str_arg(a: &[Value], i: usize) -> Result<&str, FnErr> {
    match &a[i] {
        Value::Str(s) => Ok(s),
        v => Err(FnErr {
            arg: Some(i),
            msg: format!(
                "wrong type for value; expected string; got {}",
                v.type_name()
            ),
        }),
    }
}

fn arity(name: &str, a: &[Value], n: usize) -> Result<(), FnErr> {
    if a.len() != n {
        return Err(FnErr::from(format!(
            "wrong number of args for {name}: want {n} got {}",
            a.len()
        )));
    }
    Ok(())
}

/// Alertmanager's functions where they differ from or add to
/// Prometheus'; `None` for the names both share (and Go's builtins).
pub(crate) fn call(name: &str, a: &[Value]) -> Option<Result<Value, FnErr>> {
    let r = (|| -> Result<Value, FnErr> {
        match name {
            "title" => {
                arity(name, a, 1)?;
                Ok(Value::str(&title_case(str_arg(a, 0)?)))
            }
            "trimSpace" => {
                arity(name, a, 1)?;
                Ok(Value::str(str_arg(a, 0)?.trim()))
            }
            "join" => {
                arity(name, a, 2)?;
                let sep = str_arg(a, 0)?;
                let items = list_strings(&a[1]).ok_or_else(|| FnErr {
                    arg: Some(1),
                    msg: format!(
                        "wrong type for value; expected []string; got {}",
                        a[1].type_name()
                    ),
                })?;
                Ok(Value::str(&items.join(sep)))
            }
            "safeUrl" => {
                arity(name, a, 1)?;
                Ok(Value::str(str_arg(a, 0)?))
            }
            "urlUnescape" => {
                arity(name, a, 1)?;
                let s = str_arg(a, 0)?;
                let bytes: Vec<u8> = url_unescape(s)
                    .ok_or_else(|| FnErr::from(format!("invalid URL escape in {s:?}")))?;
                Ok(Value::str(&String::from_utf8_lossy(&bytes)))
            }
            "stringSlice" => {
                let items: Result<Vec<String>, FnErr> = (0..a.len())
                    .map(|i| str_arg(a, i).map(str::to_string))
                    .collect();
                Ok(strings(items?))
            }
            "date" => {
                arity(name, a, 2)?;
                let layout = str_arg(a, 0)?;
                match &a[1] {
                    Value::Time(ns) => Ok(Value::str(&go_format(*ns, layout))),
                    v => Err(FnErr {
                        arg: Some(1),
                        msg: format!(
                            "wrong type for value; expected time.Time; got {}",
                            v.type_name()
                        ),
                    }),
                }
            }
            "base64encode" => {
                arity(name, a, 1)?;
                let s = str_arg(a, 0)?;
                Ok(Value::str(
                    &base64::engine::general_purpose::URL_SAFE.encode(s),
                ))
            }
            "base64decode" => {
                arity(name, a, 1)?;
                let s = str_arg(a, 0)?;
                let b = base64::engine::general_purpose::URL_SAFE
                    .decode(s)
                    .map_err(|e| FnErr::from(e.to_string()))?;
                Ok(Value::str(&String::from_utf8_lossy(&b)))
            }
            "list" => Ok(Value::List(Rc::new(a.to_vec()), ListKind::Plain)),
            "dict" => {
                if !a.len().is_multiple_of(2) {
                    return Err("dict requires an even number of arguments".into());
                }
                let mut m = BTreeMap::new();
                for p in a.chunks(2) {
                    let Value::Str(k) = &p[0] else {
                        return Err("dict keys must be strings".into());
                    };
                    m.insert(k.to_string(), p[1].clone());
                }
                Ok(Value::Map(Rc::new(m), Rc::new(Value::Nil)))
            }
            _ => Err(FnErr::from("")),
        }
    })();
    match r {
        Err(FnErr { arg: None, msg }) if msg.is_empty() => None,
        r => Some(r),
    }
}

/// Go's `url.QueryUnescape` (`+` is a space).
fn url_unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}
