//! Headless Chromium for the tests that look at a page weir made (the live
//! page, the back-test report), and a reader of the DOM it dumps.
//!
//! Chromium is `chromium` (Debian's; scripts/test.sh installs it) or
//! `$WEIR_CHROMIUM`. If it is missing or cannot start, the tests fail,
//! unless `WEIR_SKIP_BROWSER=1`, which skips the browser parts only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Scratch, weir_bin};

pub fn skip_browser() -> bool {
    std::env::var("WEIR_SKIP_BROWSER").is_ok_and(|v| v == "1")
}

/// Chromium, or a failure saying how to get it.
pub fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("WEIR_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "this test needs a browser and found none: install Debian's chromium \
         (`apt-get install -y chromium`; scripts/test.sh does), set WEIR_CHROMIUM=/path/to/chromium, \
         or set WEIR_SKIP_BROWSER=1 to skip the browser checks"
    );
}

/// Runs headless Chromium on `url` with `extra` arguments; its stdout.
pub fn run_chromium(s: &Scratch, url: &str, extra: &[String]) -> String {
    let bin = chromium();
    let profile = s.path(&format!("chromium-profile-{}", extra.len()));
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=6000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {} ({e}): install Debian's chromium, or set WEIR_SKIP_BROWSER=1 to skip the browser checks",
            bin.display()
        )
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("{} did not finish within 180 s on {url}", bin.display());
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed on {url} ({}); stderr:\n{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Saves a screenshot of `url`; prints and returns its path, and copies it
/// to target/live-page.png.
pub fn screenshot(s: &Scratch, url: &str, name: &str) -> PathBuf {
    let path = s.path(name);
    run_chromium(
        s,
        url,
        &[
            format!("--screenshot={}", path.display()),
            "--window-size=1280,2000".to_string(),
        ],
    );
    let png =
        std::fs::read(&path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a {}-byte screenshot is blank",
        png.len()
    );
    println!("screenshot: {}", path.display());
    // target/ is two levels above the binary (target/debug/weir).
    if let Some(target) = Path::new(weir_bin()).parent().and_then(Path::parent) {
        let copy = target.join(name);
        if std::fs::copy(&path, &copy).is_ok() {
            println!("screenshot copied to {}", copy.display());
        }
    }
    path
}

pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

#[derive(Debug, Clone, Default)]
pub struct El {
    pub attrs: BTreeMap<String, String>,
    /// The text up to the next tag.
    pub text: String,
}

impl El {
    pub fn attr(&self, k: &str) -> Option<&str> {
        self.attrs.get(k).map(String::as_str)
    }
    pub fn value(&self) -> Option<f64> {
        self.attr("data-value").map(|v| v.parse().unwrap())
    }
}

/// The elements of a serialized DOM, as start tags with their attributes.
pub struct Dom {
    pub html: String,
    pub els: Vec<El>,
}

impl Dom {
    pub fn parse(html: &str) -> Dom {
        let tag = regex::Regex::new(
            r"<([a-zA-Z][a-zA-Z0-9]*)((?:\s+[^\s=>]+(?:=\x22[^\x22]*\x22)?)*)\s*/?>([^<]*)",
        )
        .unwrap();
        let attr = regex::Regex::new(r#"([^\s=>]+)(?:="([^"]*)")?"#).unwrap();
        let els = tag
            .captures_iter(html)
            .map(|c| El {
                attrs: attr
                    .captures_iter(&c[2])
                    .map(|a| {
                        (
                            a[1].to_string(),
                            unescape(a.get(2).map_or("", |m| m.as_str())),
                        )
                    })
                    .collect(),
                text: unescape(&c[3]),
            })
            .collect();
        Dom {
            html: html.to_string(),
            els,
        }
    }

    pub fn id(&self, id: &str) -> &El {
        self.els
            .iter()
            .find(|e| e.attr("id") == Some(id))
            .unwrap_or_else(|| panic!("no element #{id} in the page; DOM:\n{}", self.html))
    }

    pub fn try_id(&self, id: &str) -> Option<&El> {
        self.els.iter().find(|e| e.attr("id") == Some(id))
    }

    pub fn body(&self) -> &El {
        self.els
            .iter()
            .find(|e| e.attr("data-mode").is_some())
            .expect("a body with data-mode")
    }

    pub fn with_attr<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.els.iter().filter(move |e| e.attrs.contains_key(k))
    }
}
