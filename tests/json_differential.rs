//! The JSON fast path against serde_json, the oracle.
//!
//! `decode::json::decode_object` takes most lines through its own scanner and
//! hands the rest to serde_json (`decode_with_serde`). Whatever the scanner
//! accepts, serde_json must accept with the same fields, and whatever
//! serde_json rejects, the scanner must give up on; the error messages then
//! come from serde_json itself. These tests feed both the same hostile lines:
//! the app's own lines and generated JSON, mutated byte by byte, cut short,
//! nested deep, made huge.
//!
//! `WEIR_JSON_CASES=N` runs N generated cases instead of the default (the
//! `fuzz/` target does the same comparison under libFuzzer).

use weir::decode::json::{decode_object, decode_with_serde};
use weir::decode::scan::index_object;

/// Decodes `line` both ways and fails on any difference. Returns whether the
/// fast path took the line.
fn same_answer(line: &str) -> bool {
    let mut fields = Vec::new();
    let fast = index_object(line, &mut fields);
    let oracle = decode_with_serde(line.to_string(), Vec::new(), 7);
    match &oracle {
        Ok(event) if fast => {
            let (_, want, _) = event.raw_parts();
            assert_eq!(fields, want, "fields differ for {line:?}");
        }
        Ok(event) => {
            // Allowed only for what the fast path leaves to serde_json.
            let escaped_key = event
                .raw_parts()
                .1
                .iter()
                .any(|f| matches!(f.key, weir::event::Text::Owned(_)));
            assert!(
                escaped_key || deeper_than_64(line),
                "fast path gave up on a line serde_json takes: {line:?}"
            );
        }
        Err(e) => assert!(
            !fast,
            "fast path took a line serde_json rejects ({e:?}): {line:?}"
        ),
    }
    assert_eq!(
        decode_object(line.to_string(), 7),
        oracle,
        "decode_object differs from serde_json for {line:?}"
    );
    fast
}

fn deeper_than_64(line: &str) -> bool {
    let (mut depth, mut max, mut in_str, mut esc) = (0i32, 0i32, false, false);
    for c in line.bytes() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    max > 65 // the top-level object is one level
}

/// xorshift64*: the same cases on every run, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn pick_line<'a>(&mut self, items: &'a [String]) -> &'a String {
        &items[self.below(items.len())]
    }
}

const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    " ",
    "\t",
    "\n",
    "\r",
    "\\",
    "\\\"",
    "\\u",
    "\\ud800",
    "\\udc00",
    "\\n",
    "\\x",
    "0",
    "1",
    "9",
    "-",
    "+",
    ".",
    "e",
    "E",
    "null",
    "true",
    "false",
    "nul",
    "tru",
    "\u{0}",
    "\u{1f}",
    "\u{7f}",
    "é",
    "工",
    "😀",
    "01",
    "1.",
    "-0",
    "1e",
    "1e+",
    "\"k\":",
    "\"a\\u0062\":",
    ",}",
    ",]",
    "{}",
    "[]",
];

fn random_value(rng: &mut Rng, depth: u32, out: &mut String) {
    let ws = |rng: &mut Rng, out: &mut String| {
        if rng.below(4) == 0 {
            out.push_str(rng.pick(&[" ", "  ", "\t", "\n", "\r\n", " \t "]));
        }
    };
    ws(rng, out);
    match rng.below(if depth > 3 { 6 } else { 8 }) {
        0 => out.push_str(rng.pick(&["null", "true", "false"])),
        1 => out.push_str(rng.pick(&[
            "0",
            "-0",
            "12",
            "-3.25",
            "1e9",
            "2E-7",
            "6.02e+23",
            "0.5",
            "123456789012345678901234567890",
            "1.7976931348623157e309",
        ])),
        2..=5 => {
            out.push('"');
            for _ in 0..rng.below(24) {
                out.push_str(rng.pick(&[
                    "a",
                    "Z",
                    " ",
                    "工具",
                    "é",
                    "😀",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\n",
                    "\\t",
                    "\\u00e9",
                    "\\ud83d\\ude00",
                    "\\ud800",
                    "\\uDFFF",
                    "/",
                    "'",
                    "abcdefghijklmnop",
                ]));
            }
            out.push('"');
        }
        6 => {
            out.push('[');
            let n = rng.below(4);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                random_value(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push(']');
        }
        _ => random_object(rng, depth + 1, out),
    }
    ws(rng, out);
}

fn random_object(rng: &mut Rng, depth: u32, out: &mut String) {
    out.push('{');
    let n = rng.below(if depth == 0 { 12 } else { 4 });
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        if rng.below(3) == 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(&[
            "\"level\"",
            "\"message\"",
            "\"k\"",
            "\"\"",
            "\"工具\"",
            "\"a\\u0062\"",
            "\"q\\\"\"",
            "\"event\"",
            "\"x y\"",
        ]));
        if rng.below(3) == 0 {
            out.push(' ');
        }
        out.push(':');
        random_value(rng, depth, out);
    }
    if rng.below(5) == 0 {
        out.push(' ');
    }
    out.push('}');
}

/// One random edit of `line`, on character boundaries so it stays a `str`.
fn mutate(rng: &mut Rng, line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    if chars.is_empty() {
        return rng.pick(PIECES).to_string();
    }
    let at = rng.below(chars.len() + 1);
    let head: String = chars[..at].iter().collect();
    let tail: String = chars[at..].iter().collect();
    match rng.below(6) {
        0 => head,                                                          // cut short
        1 => format!("{head}{}", tail.chars().skip(1).collect::<String>()), // delete
        2 => format!("{head}{}{tail}", rng.pick(PIECES)),                   // insert
        3 => format!(
            "{head}{}{}",
            rng.pick(PIECES),
            tail.chars().skip(1 + rng.below(3)).collect::<String>()
        ), // replace
        4 => {
            let to = at + rng.below(chars.len() - at + 1);
            let span: String = chars[at..to].iter().collect();
            format!("{head}{span}{tail}") // duplicate a span
        }
        _ => format!("{tail}{head}"), // rotate
    }
}

fn app_lines() -> Vec<String> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/feynman-sample.log"),
    )
    .expect("fixtures/feynman-sample.log");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.extend(
        [
            r#"{"message":"a \"quoted\" word\n\ttab \u00e9 \ud83d\ude00","n":-0.0e-0}"#,
            r#"{ "a" : [ 1 , { "b" : [ ] , "c" : { } } ] , "d" : "\/" }"#,
            r#"{"dup":1,"dup":2}"#,
            r#"{"a\u0062":1,"k":2}"#,
            r#"{"lone":"\ud800","trail":"\udc00x"}"#,
            "\t{\"ws\":\r\n1}\n",
        ]
        .map(String::from),
    );
    lines
}

#[test]
fn the_apps_lines_take_the_fast_path_with_serde_jsons_fields() {
    let mut fast = 0;
    let lines = app_lines();
    for line in &lines {
        fast += usize::from(same_answer(line));
    }
    // Only the uvicorn banner lines (not JSON) and the escaped key miss it.
    let json = lines
        .iter()
        .filter(|l| l.trim_start().starts_with('{'))
        .count();
    assert_eq!(fast, json - 1, "of {} lines", lines.len());
}

#[test]
fn mutated_lines_get_serde_jsons_answer() {
    let cases: usize = std::env::var("WEIR_JSON_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = app_lines();
    let (mut taken, mut rejected) = (0usize, 0usize);
    for n in 0..cases {
        let mut line = if n % 2 == 0 {
            rng.pick_line(&seeds).clone()
        } else {
            let mut s = String::new();
            random_object(&mut rng, 0, &mut s);
            s
        };
        for _ in 0..rng.below(4) {
            line = mutate(&mut rng, &line);
        }
        if same_answer(&line) {
            taken += 1;
        } else if decode_with_serde(line.clone(), Vec::new(), 0).is_err() {
            rejected += 1;
        }
    }
    // Both sides of the comparison must have been exercised.
    assert!(taken > cases / 5, "only {taken} of {cases} taken");
    assert!(rejected > cases / 5, "only {rejected} of {cases} rejected");
}

#[test]
fn deep_huge_and_cut_lines() {
    for depth in [1, 63, 64, 65, 200, 20_000] {
        for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
            let line = format!("{{\"a\":{}1{}}}", open.repeat(depth), close.repeat(depth));
            same_answer(&line);
            same_answer(&line[..line.len() - 1]);
            same_answer(&format!("{{\"a\":{}1}}", open.repeat(depth))); // unclosed
        }
    }
    let huge = format!(
        "{{\"message\":\"{}\",\"n\":{}}}",
        "工具调用完成 \\\" ".repeat(200_000),
        "9".repeat(100_000)
    );
    assert!(same_answer(&huge));
    // Every prefix of a line with every kind of value: cut anywhere.
    let line = &app_lines()[app_lines().len() - 6];
    for (at, _) in line.char_indices() {
        same_answer(&line[..at]);
    }
}
