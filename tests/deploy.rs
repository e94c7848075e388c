//! What `deploy/` ships, checked as an operator would use it: shell
//! completions and man pages from the binary, the Kubernetes DaemonSet and
//! its pipeline (run against a fake Loki on CRI logs), the systemd unit and
//! the container file.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use weir_testkit::loki::{FakeConfig, FakeLoki};

const SUBCOMMANDS: [&str; 10] = [
    "run",
    "validate",
    "test",
    "backtest",
    "buffer",
    "rules",
    "generate",
    "completions",
    "man",
    "inspect",
];

fn weir(args: &[&str]) -> std::process::Output {
    Command::new(weir_bin())
        .args(args)
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let out = weir(args);
    assert!(
        out.status.success(),
        "weir {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no `{sub}`");
        }
    }
    // The bash script loads and registers itself for `weir`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.bash");
    std::fs::write(&path, stdout_of(&["completions", "bash"])).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && complete -p weir", path.display()))
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("_weir"));

    let out = weir(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: bash"));
}

#[test]
fn the_man_page_is_roff_generated_from_the_commands() {
    let page = stdout_of(&["man"]);
    // roff's own apostrophe preamble (`.ie`/`.el`), then the title.
    let first = page
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap();
    assert!(first.starts_with(".TH weir 1"), "{first}");
    assert!(page.contains(".SH SUBCOMMANDS"));
    for sub in ["run", "validate", "backtest", "completions", "man"] {
        assert!(page.contains(&format!("weir\\-{sub}(1)")), "no {sub}");
    }

    // One page per command, into a directory that does not exist yet.
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man/man1");
    let out = weir(&["man", "--output", man1.to_str().unwrap()]);
    assert!(out.status.success());
    let mut names: Vec<String> = std::fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in [
        "weir.1",
        "weir-run.1",
        "weir-buffer-inspect.1",
        "weir-rules-export.1",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let run = read(&man1.join("weir-run.1"));
    assert!(run.contains("\\-\\-once"), "{run}");
}

/// The documents of a multi-document YAML file.
fn yaml_documents(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
        .collect()
}

#[test]
fn the_daemonset_runs_the_shipped_kubernetes_pipeline() {
    let docs = yaml_documents(&read(&repo().join("deploy/kubernetes/daemonset.yaml")));
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap().clone();
    let pipeline = read(&repo().join("pipelines/kubernetes.yaml"));
    assert_eq!(
        kind("ConfigMap")["data"]["pipeline.yaml"].as_str().unwrap(),
        pipeline,
        "the ConfigMap holds pipelines/kubernetes.yaml verbatim"
    );

    let ds = kind("DaemonSet");
    let pod = &ds["spec"]["template"];
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9464");
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    let spec = &pod["spec"];
    assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() > 30);
    let c = &spec["containers"][0];
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "/etc/weir/pipeline.yaml"])
    );
    assert_eq!(c["ports"][0]["containerPort"], 9464);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    for r in ["cpu", "memory"] {
        assert!(c["resources"]["limits"][r].is_string(), "no {r} limit");
    }
    // Mounts: the logs (read-only), data_dir on the host, the pipeline.
    let volumes: BTreeMap<String, Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    let mounts: BTreeMap<String, Value> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["mountPath"].as_str().unwrap().to_string(), m.clone()))
        .collect();
    let host_path = |mount: &str| {
        let m = &mounts[mount];
        volumes[m["name"].as_str().unwrap()]["hostPath"]["path"].clone()
    };
    assert_eq!(host_path("/var/log"), "/var/log");
    assert_eq!(mounts["/var/log"]["readOnly"], true);
    assert_eq!(host_path("/var/lib/weir"), "/var/lib/weir");
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(env("WEIR_DATA_DIR"), Some(Value::from("/var/lib/weir")));
    assert_eq!(
        volumes[mounts["/etc/weir"]["name"].as_str().unwrap()]["configMap"]["name"],
        kind("ConfigMap")["metadata"]["name"]
    );

    let s = Scratch::new();
    let out = s
        .weir(&[
            "validate",
            repo().join("pipelines/kubernetes.yaml").to_str().unwrap(),
        ])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kubernetes_pipeline_ships_cri_logs_to_loki_and_derives_the_metrics() {
    let s = Scratch::new();
    let app = stdout_of(&["generate", "--clean", "--lines", "200", "--seed", "3"]);
    let app: Vec<&str> = app.lines().collect();
    // As containerd writes them: every tenth line in two parts, stderr for some.
    let mut cri = String::new();
    for (i, line) in app.iter().enumerate() {
        let stream = if i % 3 == 0 { "stderr" } else { "stdout" };
        let t = "2026-11-25T06:19:15.000000001Z";
        if i % 10 == 0 {
            let mut cut = line.len() / 2;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            cri.push_str(&format!("{t} {stream} P {}\n", &line[..cut]));
            cri.push_str(&format!("{t} {stream} F {}\n", &line[cut..]));
        } else {
            cri.push_str(&format!("{t} {stream} F {line}\n"));
        }
    }
    s.write("containers/feynman-7d9f_default_api-0123abcd.log", &cri);
    // weir's own pod: not read.
    s.write(
        "containers/weir-x2k4p_weir_weir-89ef.log",
        "2026-11-25T06:19:15.000000001Z stderr F {\"level\":\"INFO\",\"message\":\"weir itself\"}\n",
    );
    let loki = FakeLoki::with_config(FakeConfig {
        reject_old_samples: false,
        ..FakeConfig::default()
    });

    let out = s
        .weir(&[
            "run",
            repo().join("pipelines/kubernetes.yaml").to_str().unwrap(),
            "--once",
            "--metrics-file",
            "final.prom",
        ])
        .env("WEIR_CONTAINER_LOGS", s.path("containers"))
        .env("LOKI_URL", loki.url())
        .env("NODE_NAME", "node-7")
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // The app's lines exactly as it wrote them (the runtime's wrapper taken
    // off, partial records joined), each in the stream of its label.
    let mut got: Vec<(String, String)> = Vec::new();
    for (labels, entries) in loki.streams() {
        assert!(labels.contains("node=\"node-7\""), "{labels}");
        assert!(labels.contains("source=\"kubernetes\""), "{labels}");
        let stream = if labels.contains("stream=\"stderr\"") {
            "stderr"
        } else {
            assert!(labels.contains("stream=\"stdout\""), "{labels}");
            "stdout"
        };
        got.extend(entries.into_iter().map(|e| (e.line, stream.to_string())));
    }
    let mut want: Vec<(String, String)> = app
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                l.to_string(),
                if i % 3 == 0 { "stderr" } else { "stdout" }.to_string(),
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "every app line once, weir's own none"
    );
    assert_eq!(got, want);

    let prom = read(&s.path("final.prom"));
    assert!(
        prom.lines()
            .any(|l| l.starts_with("fastapi_requests_total{")),
        "{prom}"
    );
    // Checkpoints and the disk buffer live in data_dir.
    assert!(s.path("data/checkpoints/containers.json").exists());
    assert!(s.path("data/buffers/loki").is_dir());
}

/// `key=value` lines of a unit file, in order (a key may repeat).
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_systemd_unit_reloads_on_hup_and_outlasts_the_grace_period() {
    let text = read(&repo().join("deploy/systemd/weir.service"));
    let settings = unit_settings(&text);
    let get = |k: &str| {
        settings
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k}="))
    };
    assert_eq!(get("Type"), "simple");
    assert_eq!(get("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(get("KillSignal"), "SIGTERM");
    let stop: u64 = get("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(
        stop > 30,
        "TimeoutStopSec={stop} must exceed grace_period's 30s"
    );
    assert_eq!(get("User"), "weir");
    assert_eq!(get("StateDirectory"), "weir");
    assert_eq!(get("Environment"), "WEIR_DATA_DIR=/var/lib/weir");
    // Hardened, but /var/log stays readable.
    assert_eq!(get("ProtectSystem"), "strict");
    assert_eq!(get("NoNewPrivileges"), "yes");
    for (k, v) in &settings {
        if k.starts_with("Inaccessible") || k == "TemporaryFileSystem" {
            assert!(!v.contains("/var"), "{k}={v} hides the logs");
        }
    }

    // systemd's own check, with the binary and man page this build makes.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output_within(RUN_LIMIT)
        .is_err()
    {
        eprintln!("systemd-analyze not installed; skipping `systemd-analyze verify`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(
        weir(&["man", "-o", dir.path().join("man/man1").to_str().unwrap()])
            .status
            .success()
    );
    let unit = dir.path().join("weir.service");
    std::fs::write(&unit, text.replace("/usr/local/bin/weir", weir_bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", unit.to_str().unwrap()])
        .env("MANPATH", dir.path().join("man"))
        .output_within(RUN_LIMIT)
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

#[test]
fn the_container_file_builds_in_two_stages_and_runs_unprivileged() {
    let text = read(&repo().join("deploy/Containerfile"));
    let instr: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && !l.trim().is_empty())
        .collect();
    let froms: Vec<&&str> = instr.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS build"));
    assert!(froms[1].starts_with("FROM debian:") && froms[1].contains("slim"));
    assert!(text.contains("ca-certificates"));
    assert!(instr.contains(&"EXPOSE 9464"));
    assert!(instr.contains(&"USER weir"));
    assert!(instr.contains(&"ENTRYPOINT [\"weir\"]"));
    // The rust image is the MSRV.
    let manifest = read(&repo().join("Cargo.toml"));
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        froms[0].starts_with(&format!("FROM rust:{msrv}-")),
        "{}",
        froms[0]
    );

    // The health check's command, run against a weir serving /health.
    let json = text
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|h| h.split("CMD ").nth(1))
        .and_then(|c| c.lines().next())
        .unwrap();
    let cmd: Vec<String> = serde_json::from_str(json).unwrap();
    assert_eq!(cmd[0], "bash");
    let s = Scratch::new();
    let mut weir = s.weir(&["run"]);
    weir.env("WEIR_API_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null());
    let running = Running::start(weir);
    let addr = running.api_address();
    let port = addr.rsplit(':').next().unwrap();
    let check = |port: &str| {
        Command::new(&cmd[0])
            .args(cmd[1..].iter().map(|a| a.replace("9464", port)))
            .status()
            .unwrap()
            .success()
    };
    assert!(
        check(port),
        "the health check fails against a healthy weir: {}",
        running.stderr()
    );
    drop(running);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !check(port),
        "the health check passes with nothing listening"
    );
}
