//! Numbers and strings printed as Go prints them.
//!
//! Prometheus and promtool print sample values with Go's
//! `strconv.FormatFloat(v, 'g', -1, 64)` (also what `%v` does), label
//! values in `count_values` with `'f', -1`, promtool's test failures with
//! `'E', -1`, the HTTP API's alert values with `'e', -1` (and its sample
//! values with `'f'`, or `'e'` for tiny and huge ones), and quote label
//! values with `strconv.Quote`. Rust's `{}` differs (`1000000` vs
//! `1e+06`, `inf` vs `+Inf`), hence these helpers. Only the
//! shortest-round-trip forms (precision -1) are provided.

/// Shortest round-trip decimal digits and the decimal exponent of the first
/// digit: `1234.5` → `("12345", 3)`. `v` must be finite and non-zero.
fn shortest_digits(v: f64) -> (String, i32) {
    // Rust's `{:e}` prints the shortest round-trip digits, e.g. "1.2345e3".
    let s = format!("{:e}", v.abs());
    let (mant, exp) = s.split_once('e').expect("exponent form");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    (digits, exp.parse().expect("exponent"))
}

fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

fn exp_form(neg: bool, digits: &str, exp: i32, e: char) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push(e);
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
    out
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`: `1e+06`, `0.0001`, `1e-05`,
/// `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let (digits, exp) = shortest_digits(v);
    let neg = v < 0.0;
    if !(-4..6).contains(&exp) {
        return exp_form(neg, &digits, exp, 'e');
    }
    format_f(v)
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`: `1E+06`, `1.5E+00`.
pub fn format_float_upper_e(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    if v == 0.0 {
        let sign = if v.is_sign_negative() { "-" } else { "" };
        return format!("{sign}0E+00");
    }
    let (digits, exp) = shortest_digits(v);
    exp_form(v < 0.0, &digits, exp, 'E')
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: `1e+00`, `1.5e-07` (what
/// Prometheus' API prints an alert's value with).
pub fn format_float_e(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    if v == 0.0 {
        let sign = if v.is_sign_negative() { "-" } else { "" };
        return format!("{sign}0e+00");
    }
    let (digits, exp) = shortest_digits(v);
    exp_form(v < 0.0, &digits, exp, 'e')
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: no exponent, shortest digits.
pub fn format_f(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    // Rust's `{}` is the shortest round-trip form without an exponent.
    format!("{v}")
}

/// Go's `strconv.Quote`: double quotes, backslash escapes for `"`, `\` and
/// control characters; printable Unicode is kept as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_format_matches_go() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (0.16666666666666669, "0.16666666666666669"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (123456.7, "123456.7"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float(v), want, "{v:?}");
        }
    }

    #[test]
    fn e_and_f_formats_match_go() {
        assert_eq!(format_float_upper_e(1.5), "1.5E+00");
        assert_eq!(format_float_upper_e(1e6), "1E+06");
        assert_eq!(format_float_upper_e(0.0), "0E+00");
        assert_eq!(format_float_upper_e(-0.00025), "-2.5E-04");
        assert_eq!(format_float_e(1.0), "1e+00");
        assert_eq!(format_float_e(0.0), "0e+00");
        assert_eq!(format_float_e(-1.5e-7), "-1.5e-07");
        assert_eq!(format_float_e(123.0), "1.23e+02");
        assert_eq!(format_float_e(f64::NAN), "NaN");
        assert_eq!(format_f(1e6), "1000000");
        assert_eq!(format_f(0.00001), "0.00001");
        assert_eq!(format_f(1e21), "1000000000000000000000");
        assert_eq!(format_f(f64::INFINITY), "+Inf");
        assert_eq!(format_f(2.5), "2.5");
    }

    #[test]
    fn quote_matches_go() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote("API错误"), "\"API错误\"");
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
    }
}
