//! Syntax Prometheus 3.x accepts and 2.42 does not, that `promql-parser`
//! (3.x grammar) parses without complaint and whose parse tree looks like
//! 2.42 syntax: quoted metric and label names (`{"up"}`,
//! `{"my.label"="x"}`, `sum by ("le") (…)`).
//!
//! A small lexical scan of the expression text, not a parser: it only
//! tracks string literals, comments, braces and the label lists of
//! grouping modifiers. Everything else 3.x-only is refused by the engine's
//! `check_supported` or by the parser itself.

const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// Inside `{…}` or a grouping `(…)`: names are listed here.
    Names,
    Other,
}

/// An error if `expr` quotes a metric or label name (Prometheus 3.x).
pub fn check_2_42_syntax(expr: &str) -> Result<(), String> {
    let b = expr.as_bytes();
    let mut stack: Vec<Ctx> = Vec::new();
    // At a position where a name would start inside a `Names` context.
    let mut name_pos = false;
    let mut last_ident = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                if name_pos && stack.last() == Some(&Ctx::Names) {
                    return Err(
                        "quoted metric or label names are Prometheus 3.x; 2.42 cannot parse them"
                            .into(),
                    );
                }
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                name_pos = false;
                last_ident.clear();
            }
            b'{' => {
                stack.push(Ctx::Names);
                name_pos = true;
            }
            b'(' => {
                let grouping = GROUPING.contains(&last_ident.as_str());
                stack.push(if grouping { Ctx::Names } else { Ctx::Other });
                name_pos = grouping;
            }
            b'}' | b')' => {
                stack.pop();
                name_pos = false;
            }
            b',' => name_pos = stack.last() == Some(&Ctx::Names),
            c if c.is_ascii_whitespace() => {}
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                last_ident = expr[start..i].to_string();
                name_pos = false;
                continue;
            }
            _ => {
                name_pos = false;
                last_ident.clear();
            }
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_2_42_syntax as check;

    #[test]
    fn quoted_names_are_refused_values_are_not() {
        for bad in [
            r#"{"up"}"#,
            r#"{"up", job="a"}"#,
            r#"up{"my.label"="x"}"#,
            r#"up{job="a", 'x'="y"}"#,
            r#"sum by ("le") (x)"#,
            r#"a * on (job, "x") group_left b"#,
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        for good in [
            r#"up{job="a", x!~"b,c{"}"#,
            r#"label_replace(up, "dst", "$1", "src", "(.*)")"#,
            r#"sum by (le) (rate(x{a="{"}[5m])) # "quoted" in a comment"#,
            r#"count_values("v", up) > on (job) group_left (x) y"#,
            r#"up @ start() offset 5m"#,
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
    }
}
