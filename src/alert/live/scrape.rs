//! Reading weir's own `/metrics` back as samples: the rules read exactly
//! what a Prometheus scraping weir would see.
//!
//! This parses the text exposition format 0.0.4 as weir writes it (see
//! [`crate::telemetry`] and the metrics store): `# HELP`/`# TYPE` lines are
//! skipped, each sample line is `name{label="value",…} value`. Timestamps
//! after the value are ignored (weir writes none). It is not a general
//! parser for other exporters' output: no OpenMetrics, no exemplars.

use crate::alert::promql::Labels;
use crate::alert::promql::value::METRIC_NAME;

/// Parses an exposition into (labels with `__name__`, value) pairs. Lines
/// that do not parse are skipped and counted in the second value.
pub fn parse(text: &str) -> (Vec<(Labels, f64)>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(s) => out.push(s),
            None => bad += 1,
        }
    }
    (out, bad)
}

fn parse_line(line: &str) -> Option<(Labels, f64)> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut pairs: Vec<(String, String)> = vec![(METRIC_NAME.to_string(), name.to_string())];
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut pairs)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let v = parse_value(fields.next()?)?;
    Some((Labels::from_pairs(pairs), v))
}

/// Parses `a="x",b="y"}` and returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, pairs: &mut Vec<(String, String)>) -> Option<&'a str> {
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(r) = s.strip_prefix('}') {
            return Some(r);
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        };
        s = &s[end + 1..];
        pairs.push((key, value));
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_registry_and_store_write() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
                    y{a=\"1\",b=\"q\\\"u\\\\o\\nte\"} 2.5\n\
                    h_bucket{le=\"+Inf\"} 7\nz NaN\nw -Inf\n";
        let (s, bad) = parse(text);
        assert_eq!(bad, 0);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].0.get(METRIC_NAME), "x_total");
        assert_eq!(s[0].1, 3.0);
        assert_eq!(s[1].0.get("b"), "q\"u\\o\nte");
        assert_eq!(s[1].0.get("a"), "1");
        assert_eq!(s[2].0.get("le"), "+Inf");
        assert!(s[3].1.is_nan());
        assert_eq!(s[4].1, f64::NEG_INFINITY);
    }

    #[test]
    fn a_broken_line_is_skipped_and_counted() {
        let (s, bad) = parse("ok 1\nbroken{a=\"1\" 2\nnovalue\nalso_ok{} 4\n");
        assert_eq!(s.len(), 2);
        assert_eq!(bad, 2);
    }

    #[test]
    fn the_registry_round_trips() {
        let r = crate::telemetry::Registry::default();
        r.counter("weir_lines_read_total", "Lines.", &[("source", "a\"b")])
            .add(42);
        let mut text = String::new();
        r.render(&mut text);
        let (s, bad) = parse(&text);
        assert_eq!(bad, 0);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0.get("source"), "a\"b");
        assert_eq!(s[0].1, 42.0);
    }
}
