use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "LOGS" => Some("/var/log/app".into()),
        _ => None,
    }
}

fn check(text: &str) -> Result<Pipeline, Vec<String>> {
    Pipeline::from_text(text, "p.yaml", env)
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

const GOOD: &str = "\
sources:
  app:
    type: file
    include: [\"${LOGS}/*.log\"]
  pipe:
    type: stdin
transforms:
  errors:
    type: filter
    inputs: [app]
    condition: {field: level, equals: ERROR}
sinks:
  out:
    type: file
    inputs: [errors, pipe]
    path: ./out/%Y-%m-%d.ndjson
";

#[test]
fn a_good_pipeline_loads() {
    let p = check(GOOD).unwrap();
    assert_eq!(p.sources.len(), 2);
    // The spec carries the settings and the compiled globs.
    let spec = format!("{:?}", p.sources[0].kind);
    assert!(spec.starts_with("FileSpec"), "{spec}");
    assert!(spec.contains("\"/var/log/app/*.log\""), "{spec}");
    assert_eq!(p.sinks[0].inputs, ["errors", "pipe"]);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.api.address, "127.0.0.1:9464");
}

#[test]
fn the_shipped_pipelines_load() {
    let p = Pipeline::from_text(EMBEDDED_DEFAULT, "feynman.yaml", |_| None).unwrap();
    assert_eq!(p.data_dir, PathBuf::from("./data"));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn typo_in_a_key_names_file_position_component_and_suggestion() {
    let errs = check(&GOOD.replace("    include:", "    incldue:")).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0]
            .starts_with("p.yaml:4:5: sources.app: unknown key `incldue`: did you mean `include`?"),
        "{}",
        errs[0]
    );
}

#[test]
fn typo_in_a_type_or_top_level_key() {
    let errs = check(&GOOD.replace("type: stdin", "type: stdn")).unwrap_err();
    assert!(
        errs[0].contains(
            "p.yaml:6:11: sources.pipe: unknown source type `stdn`: did you mean `stdin`?"
        ),
        "{errs:?}"
    );
    let errs = check(&format!("sink:\n  x: 1\n{GOOD}")).unwrap_err();
    assert!(
        errs[0].starts_with("p.yaml:1:1: unknown key `sink`: did you mean `sinks`?"),
        "{errs:?}"
    );
}

#[test]
fn unknown_inputs_and_cycles() {
    let errs = check(&GOOD.replace("inputs: [errors, pipe]", "inputs: [erors, pipe]")).unwrap_err();
    assert!(errs[0].contains("sinks.out: input `erors` is not a source or transform of this pipeline; did you mean `errors`?"), "{errs:?}");

    let cyclic = GOOD.replace(
        "transforms:\n",
        "transforms:\n  a:\n    type: filter\n    inputs: [b]\n    condition: {field: x, exists: true}\n  b:\n    type: filter\n    inputs: [a]\n    condition: {field: x, exists: true}\n",
    );
    let errs = check(&cyclic).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("inputs form a cycle: a -> b -> a")),
        "{errs:?}"
    );
}

#[test]
fn bad_regex_is_reported_at_the_pattern() {
    let text = "sources:\n  s:\n    type: stdin\n    decode:\n      codec: regex\n      pattern: '(?P<x>[a-'\nsinks:\n  o: {type: console, inputs: [s]}\n";
    let errs = check(text).unwrap_err();
    assert!(
        errs[0].starts_with("p.yaml:6:16: sources.s: invalid regex"),
        "{errs:?}"
    );
}

#[test]
fn missing_variable_without_default() {
    let errs = check("data_dir: ${NOT_SET}\n").unwrap_err();
    assert_eq!(
        errs,
        [
            "p.yaml:1:11: environment variable `NOT_SET` is not set; set it, or write `${NOT_SET:-default}` to give a default"
        ]
    );
}

#[test]
fn positions_after_a_substitution_are_the_written_ones() {
    // `${LOGS}` is 7 characters, `/var/log/app` 12: the error column must not move.
    let text = "data_dir: ${LOGS}\napi: {address: ${LOGS}, enabled: nope}\n";
    let errs = check(text).unwrap_err();
    assert!(errs[0].starts_with("p.yaml:2:"), "{errs:?}");
    let col: u64 = errs[0].split(':').nth(2).unwrap().parse().unwrap();
    assert_eq!(col, 34, "{errs:?}");
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let errs = check("sources:\n  a: [unclosed\n").unwrap_err();
    assert!(errs[0].starts_with("p.yaml:"), "{errs:?}");
    assert!(errs[0].contains("invalid YAML"), "{errs:?}");
}

#[test]
fn unused_sources_warn() {
    let p =
        check("sources:\n  a: {type: stdin}\nsinks:\n  o: {type: blackhole, inputs: [a]}\n  \n")
            .unwrap();
    assert!(p.warnings.is_empty());
    let p = check("sources:\n  a: {type: stdin}\n  b: {type: stdin}\nsinks:\n  o: {type: blackhole, inputs: [a]}\n").unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].to_string().contains("sources.b"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "sources:\n  a: {type: stdin, bogus: 1}\n  b: {type: file}\nsinks:\n  o: {type: console, inputs: [zz]}\n";
    let errs = check(text).unwrap_err();
    assert!(errs.len() >= 3, "{errs:?}");
}

#[test]
fn a_password_in_a_url_is_not_printed() {
    let text = "sources:\n  a: {type: stdin}\nsinks:\n  l:\n    type: loki\n    inputs: [a]\n    endpoint: htp://weir:pa55word@loki:3100\n    labels: {app: x}\n";
    let errs = check(text).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0]
            .starts_with("p.yaml:7:15: sinks.l: `htp://weir:***@loki:3100` is not an http(s) URL"),
        "{errs:?}"
    );
    assert!(!errs[0].contains("pa55word"), "{errs:?}");
}

fn check_with(text: &str, vars: &[(&str, &str)]) -> Result<Pipeline, Vec<String>> {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    Pipeline::from_text(text, "p.yaml", lookup)
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

const SECRET: &str = "hunter2-Sup3rSecret";

fn loki_with(lines: &str) -> String {
    format!(
        "sources:\n  a: {{type: stdin}}\nsinks:\n  l:\n    type: loki\n    inputs: [a]\n    labels: {{app: x}}\n{lines}"
    )
}

#[test]
fn a_secret_given_to_the_wrong_key_is_not_echoed() {
    let text = loki_with("    endpoint: http://loki:3100\n    auth: \"${LOKI_PW}\"\n");
    let errs = check_with(&text, &[("LOKI_PW", SECRET)]).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("p.yaml:9:11: sinks.l: "), "{errs:?}");
    assert!(errs[0].contains("\"${LOKI_PW}\""), "{errs:?}");
    assert!(
        errs[0].contains("the value of `LOKI_PW` comes from the environment and is not shown"),
        "{errs:?}"
    );
    assert!(!errs[0].contains(SECRET), "{errs:?}");
}

#[test]
fn env_values_are_not_echoed_in_variant_url_address_or_key_errors() {
    let vars = [
        ("ENC", SECRET),
        ("LOKI_URL", "not a url but a Sup3rSecret"),
        ("ADDR", "Sup3rSecret-address"),
        ("KEY", "Sup3rSecret-key"),
        ("SHORT", "jsn"),
    ];
    let text = format!(
        "api: {{address: \"${{ADDR}}\"}}\n{}",
        loki_with("    endpoint: ${LOKI_URL}\n    encoding: ${ENC}\n")
    );
    let errs = check_with(&text, &vars).unwrap_err();
    let all = errs.join("\n");
    assert!(!all.contains("Sup3rSecret"), "{all}");
    assert!(
        all.contains("p.yaml:1:16: api: `${ADDR}` is not an address to listen on"),
        "{all}"
    );
    assert!(
        all.contains("p.yaml:10:15: sinks.l: unknown value `${ENC}`"),
        "{all}"
    );
    // Once the encoding is right, the URL check runs.
    let text = loki_with("    endpoint: ${LOKI_URL}\n");
    let errs = check_with(&text, &vars).unwrap_err();
    assert_eq!(
        errs,
        [
            "p.yaml:8:15: sinks.l: `${LOKI_URL}` is not an http(s) URL, e.g. http://127.0.0.1:3100 (the value of `LOKI_URL` comes from the environment and is not shown)"
        ]
    );
    // A key, and a short value with a suggestion.
    let text = loki_with("    endpoint: http://l\n    ${KEY}: 1\n    encoding: ${SHORT}\n");
    let errs = check_with(&text, &vars).unwrap_err().join("\n");
    assert!(!errs.contains("Sup3rSecret"), "{errs}");
    assert!(errs.contains("unknown key `${KEY}`"), "{errs}");
}

#[test]
fn a_value_from_a_default_is_shown() {
    let text = loki_with("    endpoint: ${NOT_SET:-nonsense}\n");
    let errs = check_with(&text, &[]).unwrap_err();
    assert!(
        errs[0].contains("`nonsense` is not an http(s) URL"),
        "{errs:?}"
    );
}

#[test]
fn duplicate_keys_are_reported_with_the_first_line_and_all_at_once() {
    let text = GOOD
        .replace("    type: stdin\n", "    type: stdin\n    type: file\n")
        .replace(
            "    path: ./out/%Y-%m-%d.ndjson\n",
            "    path: ./out/%Y-%m-%d.ndjson\n    path: ./other.ndjson\n",
        );
    let errs = check(&text).unwrap_err();
    assert_eq!(
        errs,
        [
            "p.yaml:7:5: sources.pipe: duplicate key `type`: it is already defined at line 6; remove one of the two",
            "p.yaml:18:5: sinks.out: duplicate key `path`: it is already defined at line 17; remove one of the two",
        ]
    );
    assert!(!errs.join("\n").contains("DuplicateKeyPolicy"));
}

#[test]
fn every_bad_key_and_value_of_one_component_is_reported() {
    let text = "sources:\n  app:\n    type: file\n    include: ./logs/*.log\n    poll_interval: often\n    fingerprint_bytes: many\n    bogus: 1\n    decode: {codec: jsn, on_eror: keep}\nsinks:\n  o:\n    type: file\n    inputs: [app]\n    pth: x\n    batch: {timeout: soon, max_events: -1}\n";
    let errs = check(text).unwrap_err();
    let want = [
        "p.yaml:4:14: sources.app: expected a list, found string \"./logs/*.log\"",
        "p.yaml:5:20: sources.app: `often` is not a duration",
        "p.yaml:6:24: sources.app: expected a whole number, 0 or more, found string \"many\"",
        "p.yaml:7:5: sources.app: unknown key `bogus` (valid keys: `include`,",
        "p.yaml:8:21: sources.app: unknown value `jsn`, expected one of `json`, `regex`, `raw` (did you mean `json`?)",
        "p.yaml:8:26: sources.app: unknown key `on_eror`: did you mean `on_error`?",
        "p.yaml:13:5: sinks.o: unknown key `pth`: did you mean `path`?",
        "p.yaml:14:22: sinks.o: `soon` is not a duration",
        "p.yaml:14:40: sinks.o: expected a whole number, 0 or more, found integer `-1`",
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for (e, w) in errs.iter().zip(want) {
        assert!(e.starts_with(w), "want {w}\n got {e}\nall: {errs:#?}");
    }
    // `path` is missing, but the typo's suggestion already says so.
    assert!(!errs.iter().any(|e| e.contains("missing key")), "{errs:#?}");
}

#[test]
fn an_empty_pipeline_is_an_error() {
    for text in [
        "",
        "\n  \n",
        "# just a comment\n# and another\n",
        "---\n",
        "data_dir: ./d\n",
        "sources: {}\nsinks:\n",
    ] {
        let errs = check(text).unwrap_err();
        assert_eq!(errs.len(), 1, "{text:?}: {errs:?}");
        assert!(
            errs[0].starts_with(
                "p.yaml:1:1: the pipeline is empty: define at least one source and one sink"
            ),
            "{text:?}: {errs:?}"
        );
    }
}

#[test]
fn api_connection_limits() {
    let p = check(GOOD).unwrap();
    assert_eq!(p.api.max_connections, 256);
    assert_eq!(p.api.header_read_timeout.0, Duration::from_secs(10));
    let p = check(&format!(
        "api: {{max_connections: 20, header_read_timeout: 2s}}\n{GOOD}"
    ))
    .unwrap();
    assert_eq!(p.api.max_connections, 20);
    assert_eq!(p.api.header_read_timeout.0, Duration::from_secs(2));
    let errs = check(&format!(
        "api:\n  max_connections: 0\n  header_read_timeout: 0s\n{GOOD}"
    ))
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "p.yaml:2:20: api: `max_connections` must be at least 1 (default 256); to turn the API off, write `enabled: false`",
            "p.yaml:3:24: api: `header_read_timeout` must be more than 0 (default 10s)",
        ]
    );
}

fn with_buffer(buffer: &str) -> Result<Pipeline, Vec<String>> {
    check(&format!(
        "sources:\n  pipe: {{type: stdin}}\nsinks:\n  out:\n    type: file\n    inputs: [pipe]\n    path: ./out.ndjson\n    buffer: {buffer}\n"
    ))
}

#[test]
fn a_sink_buffer_is_checked_with_its_position() {
    use crate::buffer::{Buffer, Fsync, WhenFull};
    let p =
        with_buffer("{type: disk, max_size: 64MiB, fsync: 50ms, when_full: drop_newest}").unwrap();
    let Buffer::Disk(d) = p.sinks[0].buffer else {
        panic!("{:?}", p.sinks[0].buffer)
    };
    assert_eq!(d.max_bytes, 64 << 20);
    assert_eq!(d.fsync, Fsync::Every(std::time::Duration::from_millis(50)));
    assert_eq!(d.when_full, WhenFull::DropNewest);
    assert!(matches!(
        with_buffer("{type: memory, max_events: 500}").unwrap().sinks[0].buffer,
        Buffer::Memory(m) if m.max_events == 500
    ));
    assert_eq!(
        with_buffer("{type: memory}").unwrap().sinks[0].buffer,
        Buffer::Channel
    );

    let e = with_buffer("{type: disk, max_events: 10}").unwrap_err();
    assert!(
        e[0].contains("p.yaml:8:") && e[0].contains("max_bytes"),
        "{e:?}"
    );
    let e = with_buffer("{type: disk, fsync: sometimes}").unwrap_err();
    assert!(e[0].contains("`sometimes` is not an fsync policy"), "{e:?}");
    let e = with_buffer("{type: tape}").unwrap_err();
    assert!(e[0].contains("tape"), "{e:?}");
    let e = with_buffer("{type: memory, fsync: batch}").unwrap_err();
    assert!(e[0].contains("disk buffers"), "{e:?}");
    let e = check("sources:\n  pipe: {type: stdin, buffer: {type: disk}}\nsinks:\n  out: {type: blackhole, inputs: [pipe]}\n").unwrap_err();
    assert!(e[0].contains("only sinks take a `buffer`"), "{e:?}");
}
