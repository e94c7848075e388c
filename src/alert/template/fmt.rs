//! Go's `fmt.Sprintf`, `fmt.Sprint` and `fmt.Sprintln` over template
//! [`Value`]s, as `printf`, `print`, `println` and actions use them.
//!
//! Verbs: `%v %s %d %f %F %e %E %g %G %x %X %o %b %q %c %t %T %%`, flags
//! `- + # 0 space`, width and precision (also `*`). Wrong verbs, missing
//! and extra arguments print as Go does (`%!d(string=a)`,
//! `%!s(MISSING)`, `%!(EXTRA int=1)`). Not done: argument indexes
//! (`%[1]d`), `%x` on floats, `%U`, `%#v` Go syntax (printed as `%v`), and
//! Go's pointer addresses inside lists (weir prints the pointed-to sample).

use crate::alert::promql::format::{format_float, go_quote};
use crate::alert::promql::functions::civil_from_days;

use super::exec::Value;

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `fmt.Sprintf(format, args...)`.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut argi = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut s = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => s.minus = true,
                '+' => s.plus = true,
                '#' => s.sharp = true,
                '0' => s.zero = true,
                ' ' => s.space = true,
                _ => break,
            }
            chars.next();
        }
        // Width.
        if chars.peek() == Some(&'*') {
            chars.next();
            match args.get(argi) {
                Some(Value::Int(n)) => {
                    if *n < 0 {
                        s.minus = true;
                    }
                    s.width = Some(n.unsigned_abs() as usize);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            argi += 1;
        } else {
            s.width = digits(&mut chars);
        }
        if chars.peek() == Some(&'.') {
            chars.next();
            if chars.peek() == Some(&'*') {
                chars.next();
                match args.get(argi) {
                    Some(Value::Int(n)) if *n >= 0 => s.prec = Some(*n as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                argi += 1;
            } else {
                s.prec = Some(digits(&mut chars).unwrap_or(0));
            }
        }
        if s.minus {
            s.zero = false;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        out.push_str(&format_arg(verb, &s, arg));
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[argi..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match a {
                Value::Nil => out.push_str("<nil>"),
                a => out.push_str(&format!("{}={}", a.type_name(), plain(a))),
            }
        }
        out.push(')');
    }
    out
}

fn digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
        chars.next();
    }
    n
}

/// `fmt.Sprint(args...)`: operands separated by a space when neither side
/// is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&plain(a));
    }
    out
}

/// `fmt.Sprintln(args...)`: always spaces, and a newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(plain).collect();
    let mut s = parts.join(" ");
    s.push('\n');
    s
}

/// `%v` with no flags.
fn plain(v: &Value) -> String {
    format_arg('v', &Spec::default(), v)
}

fn bad(verb: char, v: &Value) -> String {
    match v {
        Value::Nil => format!("%!{verb}(<nil>)"),
        v => format!("%!{verb}({}={})", v.type_name(), plain(v)),
    }
}

fn format_arg(verb: char, s: &Spec, v: &Value) -> String {
    if verb == 'T' {
        return pad(s, v.type_name().to_string(), false);
    }
    match v {
        Value::Nil => match verb {
            'v' => pad(s, "<nil>".to_string(), false),
            _ => bad(verb, v),
        },
        Value::Bool(b) => match verb {
            'v' | 't' => pad(s, b.to_string(), false),
            _ => bad(verb, v),
        },
        Value::Int(i) => format_int(verb, s, *i).unwrap_or_else(|| bad(verb, v)),
        Value::Float(f) => format_float_verb(verb, s, *f).unwrap_or_else(|| bad(verb, v)),
        Value::Str(st) => format_str(verb, s, st).unwrap_or_else(|| bad(verb, v)),
        Value::Time(ns) => match verb {
            'v' | 's' => pad(s, time_string(*ns), false),
            'q' => pad(s, go_quote(&time_string(*ns)), false),
            _ => bad(verb, v),
        },
        Value::Map(m, _) => {
            let mut out = String::from("map[");
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&format_arg(verb, s, &Value::str(k)));
                out.push(':');
                out.push_str(&format_arg(verb, s, x));
            }
            out.push(']');
            out
        }
        Value::Data(fields) => {
            let parts: Vec<String> = fields.iter().map(|(_, x)| format_arg(verb, s, x)).collect();
            format!("{{{}}}", parts.join(" "))
        }
        Value::Sample(smp) => format!(
            "&{{{} {}}}",
            format_arg(verb, s, &Value::string_map(&smp.labels)),
            format_arg(verb, s, &Value::Float(smp.value))
        ),
        Value::Kv(m) => pad(s, super::am::kv_string(m), false),
        Value::List(items, super::exec::ListKind::Pairs) => {
            let parts: Vec<String> = items
                .iter()
                .map(|p| match p {
                    Value::Struct(_, f) => {
                        let get = |n: &str| {
                            f.iter()
                                .find(|(k, _)| *k == n)
                                .map(|(_, v)| plain(v))
                                .unwrap_or_default()
                        };
                        format!("{}={}", get("Name"), get("Value"))
                    }
                    _ => String::new(),
                })
                .collect();
            pad(s, parts.join(", "), false)
        }
        Value::List(items, _) => {
            let parts: Vec<String> = items.iter().map(|x| format_arg(verb, s, x)).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Struct(_, fields) => {
            let parts: Vec<String> = fields.iter().map(|(_, x)| format_arg(verb, s, x)).collect();
            format!("{{{}}}", parts.join(" "))
        }
        Value::Samples(list) => {
            let parts: Vec<String> = list
                .iter()
                .map(|x| format_arg(verb, s, &Value::Sample(x.clone())))
                .collect();
            format!("[{}]", parts.join(" "))
        }
    }
}

/// Width padding; `numeric` pads zeros after the sign.
fn pad(s: &Spec, body: String, numeric: bool) -> String {
    let n = body.chars().count();
    let Some(w) = s.width.filter(|w| *w > n) else {
        return body;
    };
    let fill = w - n;
    if s.minus {
        return format!("{body}{}", " ".repeat(fill));
    }
    if s.zero {
        if numeric && let Some(first) = body.chars().next().filter(|c| matches!(c, '+' | '-' | ' '))
        {
            return format!("{first}{}{}", "0".repeat(fill), &body[1..]);
        }
        return format!("{}{body}", "0".repeat(fill));
    }
    format!("{}{body}", " ".repeat(fill))
}

fn sign(s: &Spec, neg: bool) -> &'static str {
    if neg {
        "-"
    } else if s.plus {
        "+"
    } else if s.space {
        " "
    } else {
        ""
    }
}

fn format_int(verb: char, s: &Spec, i: i64) -> Option<String> {
    let neg = i < 0;
    let a = i.unsigned_abs();
    let mut digits = match verb {
        'v' | 'd' => a.to_string(),
        'x' => format!("{a:x}"),
        'X' => format!("{a:X}"),
        'o' => format!("{a:o}"),
        'b' => format!("{a:b}"),
        'c' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            return Some(pad(s, c.to_string(), false));
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            let q = go_quote(&c.to_string());
            let inner = &q[1..q.len() - 1];
            let inner = if inner == "\\\"" {
                "\""
            } else if c == '\'' {
                "\\'"
            } else {
                inner
            };
            return Some(pad(s, format!("'{inner}'"), false));
        }
        _ => return None,
    };
    let mut s2 = *s;
    if let Some(p) = s.prec {
        // Precision: minimum digits; disables zero padding.
        if digits.len() < p {
            digits = format!("{}{digits}", "0".repeat(p - digits.len()));
        }
        if p == 0 && a == 0 {
            digits.clear();
        }
        s2.zero = false;
    }
    let prefix = match (s.sharp, verb) {
        (true, 'x') => "0x",
        (true, 'X') => "0X",
        (true, 'o') if !digits.starts_with('0') => "0",
        _ => "",
    };
    let body = format!("{}{prefix}{digits}", sign(s, neg));
    Some(pad(&s2, body, true))
}

fn format_float_verb(verb: char, s: &Spec, f: f64) -> Option<String> {
    let body = match verb {
        'v' | 'g' => go_g(f, s.prec, 'e'),
        'G' => go_g(f, s.prec, 'E'),
        'f' | 'F' => special(f).unwrap_or_else(|| format!("{:.*}", s.prec.unwrap_or(6), f.abs())),
        'e' => special(f).unwrap_or_else(|| go_e(f.abs(), s.prec.unwrap_or(6), 'e')),
        'E' => special(f).unwrap_or_else(|| go_e(f.abs(), s.prec.unwrap_or(6), 'E')),
        _ => return None,
    };
    Some(float_sign_pad(s, f, body))
}

fn special(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some("Inf".into())
    } else {
        None
    }
}

/// Adds the sign (Go's rules: `+Inf` always signed, `NaN` only with `+`
/// or space) and pads.
fn float_sign_pad(s: &Spec, f: f64, body: String) -> String {
    let body = body.trim_start_matches('-').to_string();
    let body = body.strip_prefix('+').map(str::to_string).unwrap_or(body);
    if f.is_nan() {
        let sg = if s.plus {
            "+"
        } else if s.space {
            " "
        } else {
            ""
        };
        let mut s2 = *s;
        s2.zero = false;
        return pad(&s2, format!("{sg}NaN"), false);
    }
    let neg = f.is_sign_negative();
    if f.is_infinite() {
        let sg = if neg {
            "-"
        } else if s.space && !s.plus {
            " "
        } else {
            "+"
        };
        let mut s2 = *s;
        s2.zero = false;
        return pad(&s2, format!("{sg}Inf"), false);
    }
    pad(s, format!("{}{body}", sign(s, neg)), true)
}

/// Go's `%e` with `prec` digits after the point (of |f|).
fn go_e(f: f64, prec: usize, e: char) -> String {
    let r = format!("{:.*e}", prec, f);
    let (m, x) = r.split_once('e').unwrap_or((&r, "0"));
    let x: i32 = x.parse().unwrap_or(0);
    format!(
        "{m}{e}{}{:02}",
        if x < 0 { '-' } else { '+' },
        x.unsigned_abs()
    )
}

/// Go's `strconv.FormatFloat(f, 'g', prec, 64)` (`None` = shortest).
pub(crate) fn go_g(f: f64, prec: Option<usize>, e: char) -> String {
    if let Some(sp) = special(f) {
        return if sp == "Inf" && f > 0.0 {
            "+Inf".into()
        } else if sp == "Inf" {
            "-Inf".into()
        } else {
            sp
        };
    }
    let Some(p) = prec else {
        let s = format_float(f);
        return if e == 'E' { s.replace('e', "E") } else { s };
    };
    let p = p.max(1);
    let neg = f.is_sign_negative();
    let (digits, exp) = if f == 0.0 {
        ("0".to_string(), 0)
    } else {
        let r = format!("{:.*e}", p - 1, f.abs());
        let (m, x) = r.split_once('e').unwrap_or((&r, "0"));
        let d: String = m.chars().filter(|c| *c != '.').collect();
        let d = d.trim_end_matches('0').to_string();
        (
            if d.is_empty() { "0".into() } else { d },
            x.parse::<i32>().unwrap_or(0),
        )
    };
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let mut eprec = p as i32;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let sg = if neg { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        let mut m = digits[..1].to_string();
        if nd > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        return format!(
            "{sg}{m}{e}{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
    // Plain notation from the rounded digits.
    let body = if dp <= 0 {
        format!("0.{}{digits}", "0".repeat((-dp) as usize))
    } else if dp >= nd {
        format!("{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        format!("{}.{}", &digits[..dp as usize], &digits[dp as usize..])
    };
    format!("{sg}{body}")
}

fn format_str(verb: char, s: &Spec, st: &str) -> Option<String> {
    let st: String = match s.prec {
        Some(p) if matches!(verb, 's' | 'v' | 'q') => st.chars().take(p).collect(),
        _ => st.to_string(),
    };
    Some(match verb {
        'v' | 's' => pad(s, st, false),
        'q' => pad(s, go_quote(&st), false),
        'x' | 'X' => {
            let mut h = String::new();
            for b in st.bytes() {
                if verb == 'x' {
                    h.push_str(&format!("{b:02x}"));
                } else {
                    h.push_str(&format!("{b:02X}"));
                }
            }
            pad(s, h, false)
        }
        _ => return None,
    })
}

/// Go's `time.Time.String()` for a UTC time:
/// `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub(crate) fn time_string(ns: i64) -> String {
    if ns == super::am::ZERO_TIME_NS {
        return "0001-01-01 00:00:00 +0000 UTC".to_string();
    }
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}
