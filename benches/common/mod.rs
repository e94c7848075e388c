//! What both benchmarks share: the floor they measure weir against (read
//! the file, `serde_json`-parse every line into a `Value`, in this
//! process), CPU accounting, the workload file, small config helpers.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use weir_workload::{Workload, WorkloadOptions};

pub type Res<T> = Result<T, String>;

/// A number from the environment (`_` separators allowed), or `default`.
pub fn env_u64(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|e| format!("{name}={v:?}: {e}")),
        _ => Ok(default),
    }
}

pub fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// User + system time of a rusage.
pub fn cpu_of(ru: &libc::rusage) -> Duration {
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub fn self_usage() -> libc::rusage {
    // SAFETY: getrusage only writes into the struct we pass; all-zero is a valid rusage.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    }
}

/// A `/proc/<who>/status` value in KiB (`VmHWM:`, `VmRSS:`).
pub fn proc_status_kib(who: &str, key: &str) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The floor's result.
pub struct Floor {
    pub lines: u64,
    /// Lines that parsed as JSON.
    pub ok: u64,
    pub wall: Duration,
    pub cpu: Duration,
    pub rss_kib: Option<i64>,
}

/// Reads and parses every line of `input` in this process.
pub fn floor(input: &Path) -> Res<Floor> {
    let err = |e: std::io::Error| format!("cannot read {}: {e}", input.display());
    // ru_maxrss survives exec (it would show cargo's peak), so the floor's RSS is the
    // VmHWM of this process, reset first to the current RSS ("5" = reset peak RSS).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = self_usage();
    let start = Instant::now();
    let mut reader = BufReader::with_capacity(256 << 10, File::open(input).map_err(err)?);
    let mut buf = Vec::with_capacity(64 << 10);
    let (mut lines, mut ok) = (0u64, 0u64);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(err)? == 0 {
            break;
        }
        lines += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            std::hint::black_box(&v);
            ok += 1;
        }
    }
    let wall = start.elapsed();
    let after = self_usage();
    Ok(Floor {
        lines,
        ok,
        wall,
        cpu: cpu_of(&after).saturating_sub(cpu_of(&before)),
        rss_kib: proc_status_kib("self", "VmHWM:"),
    })
}

/// Writes `lines` lines of the Feynman workload (seed 42, no malformed
/// lines) to `path`; returns the bytes written.
pub fn generate(path: &Path, lines: u64) -> Res<u64> {
    eprintln!("generating {lines} lines into {}…", path.display());
    let file = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut w = Workload::new(WorkloadOptions {
        seed: 42,
        malformed: false,
        ..Default::default()
    });
    w.write_lines(lines, &mut out)
        .and_then(|b| out.flush().map(|()| b))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A double-quoted YAML scalar.
pub fn yaml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reaps `pid` if it has exited (`block` waits for it); returns (status, rusage).
pub fn reap(pid: libc::pid_t, block: bool) -> Res<Option<(libc::c_int, libc::rusage)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: all-zero is a valid rusage; wait4 only writes into `status` and `ru`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: `pid` is our own unreaped child; the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            return Ok(Some((status, ru)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {e}"));
        }
    }
}
