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
    match &p.sources[0].kind {
        SourceKind::File(f) => assert_eq!(f.include, ["/var/log/app/*.log"]),
        other => panic!("{other:?}"),
    }
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
