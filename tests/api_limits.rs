//! The API cannot starve the pipeline: however many clients connect and
//! however slowly they talk, weir keeps descriptors for the files it reads,
//! and a client that does not send its request in time is disconnected.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SECS: Duration = Duration::from_secs(30);

/// Gives the child `n` open files at most (soft and hard), so that running
/// it out of descriptors is cheap.
fn limit_open_files(cmd: &mut Command, n: libc::rlim_t) {
    // SAFETY: only setrlimit, which is async-signal-safe, runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Raises this process's own soft limit to its hard limit; returns it.
fn raise_own_limit() -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    rl.rlim_cur
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn tailing_pipeline(s: &Scratch, api: &str) -> String {
    pipeline(
        s,
        "p.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0', {api}}}\nsources:\n  logs:\n    type: file\n    include: ['{}/*.log']\n    glob_interval: 100ms\n    fingerprint_bytes: 8\nsinks:\n  out: {{type: file, inputs: [logs], path: data/out/x.ndjson, batch: {{timeout: 50ms}}}}\n",
            s.path("logs").display()
        ),
    )
}

#[test]
fn thousands_of_idle_api_connections_do_not_stop_new_files_being_read() {
    let s = Scratch::new();
    s.write("logs/first.log", "{\"first\": 1}\n");
    // More connections allowed than a quarter of the descriptors: weir
    // keeps the API to 1024 / 4 = 256.
    let p = tailing_pipeline(&s, "max_connections: 5000, header_read_timeout: 1h");
    let w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::null());
        limit_open_files(&mut c, 1024);
        c
    });
    let addr = w.api_address();
    wait_until(SECS, || s.output_lines().len() == 1).expect("the first file is read");
    let stderr = w.stderr();
    assert!(
        stderr.contains("api.max_connections is more than a quarter of the open-file limit; serving 256 API connections at most"),
        "{stderr}"
    );

    // 3,000 clients that connect and say nothing.
    let wanted = 3000.min(usize::try_from(raise_own_limit().saturating_sub(200)).unwrap_or(3000));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let idle: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let attempts: Vec<_> = (0..wanted)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(
                        Duration::from_secs(3),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                })
            })
            .collect();
        let mut idle = Vec::new();
        for a in attempts {
            if let Ok(Ok(Ok(stream))) = a.await {
                idle.push(stream);
            }
        }
        idle
    });
    assert!(
        idle.len() >= 256,
        "only {} connections could be made",
        idle.len()
    );
    // weir holds 256 of them; the others wait in the kernel's backlog (or
    // were never let in), costing weir nothing.
    let fds = open_descriptors(w.child.id());
    assert!(fds < 256 + 64, "weir has {fds} descriptors open");

    // A new file is still found and read.
    s.write("logs/second.log", "{\"second\": 2}\n");
    wait_until(SECS, || s.output_lines().len() == 2).unwrap_or_else(|| {
        panic!(
            "the new file was not read; weir has {} descriptors open; stderr:\n{}",
            open_descriptors(w.child.id()),
            w.stderr()
        )
    });

    // Once the idle clients go, the API answers again.
    drop(idle);
    drop(rt);
    let mut metrics = String::new();
    wait_until(SECS, || {
        metrics = try_http_get(&addr, "/metrics").map_or(String::new(), |r| r.2);
        metric(&metrics, "weir_api_connections_open") == Some(1.0)
    })
    .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(metric(&metrics, "weir_api_max_connections"), Some(256.0));
    assert!(
        metric(&metrics, "weir_api_connection_limit_reached_total").unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, r#"weir_lines_read_total{source="logs"}"#),
        Some(2.0)
    );
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(SECS);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the API has max_connections connections open; new ones wait"),
        "{stderr}"
    );
    let mut out = s.output_lines();
    out.sort();
    assert_eq!(out, ["{\"first\": 1}", "{\"second\": 2}"]);
}

/// Reads until the server closes the connection; how long that took.
fn time_to_close(stream: &mut TcpStream, start: Instant) -> Duration {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("still open after {:?}", start.elapsed())
            }
            Err(_) => return start.elapsed(),
        }
    }
}

#[test]
fn slow_and_idle_clients_are_disconnected_after_the_header_timeout() {
    let s = Scratch::new();
    let p = tailing_pipeline(&s, "header_read_timeout: 1s");
    let w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.stdin(Stdio::null());
        c
    });
    let addr = w.api_address();
    assert_eq!(http_get(&addr, "/health").0, 200);

    let start = Instant::now();
    // Says nothing at all.
    let mut silent = TcpStream::connect(&addr).unwrap();
    // Sends half a request and stops.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\n")
        .unwrap();
    // Asks once, keeps the connection alive, then says nothing.
    let mut kept = TcpStream::connect(&addr).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: weir\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok\n") {
        let n = kept.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));

    // Meanwhile the API serves others.
    assert_eq!(http_get(&addr, "/ready").0, 200);

    for (name, stream) in [
        ("silent", &mut silent),
        ("slow", &mut slow),
        ("kept alive", &mut kept),
    ] {
        let took = time_to_close(stream, start);
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(10),
            "{name}: closed after {took:?}"
        );
    }
    let m = http_get(&addr, "/metrics").2;
    assert_eq!(
        metric(&m, "weir_api_connections_timed_out_total"),
        Some(3.0),
        "{m}"
    );
    w.signal(libc::SIGTERM);
    let (code, stderr) = w.wait(SECS);
    assert_eq!(code, 0, "{stderr}");
}
