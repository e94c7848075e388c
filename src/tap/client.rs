//! `weir tap [COMPONENT...]`: prints the events leaving components of a
//! running weir, read from its local API's `GET /tap` ([`super::http`]).
//!
//! Events go to standard output, one JSON line each, exactly as the API
//! sends them (`{"component":…,"at":…,"event":{…}}`), flushed as they
//! arrive so that `weir tap | jq .event` follows live. Notices (events the
//! tap lost because it fell behind, the end of the stream) go to standard
//! error. The rate and the filter are checked here first, so a mistake is
//! reported before anything connects.
//!
//! It does not start, stop or change the pipeline, and talks to nothing
//! but the API address it is given.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::http::{TapRequest, parse_filter, parse_rate};
use crate::commands::{EXIT_CONFIG, EXIT_RUNTIME};

/// The API a client command talks to: `--address`, else `$WEIR_API_ADDR`
/// (what the shipped pipelines listen on), else the default 127.0.0.1:9464.
pub fn api_address(given: Option<&str>) -> Result<String, String> {
    let addr = match given {
        Some(a) => a.to_string(),
        None => std::env::var("WEIR_API_ADDR")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "127.0.0.1:9464".into()),
    };
    let addr = addr
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if addr.ends_with(":0") {
        return Err(format!(
            "the API address {addr} means `any free port`: give the port weir logged (`serving http://…`) with --address"
        ));
    }
    Ok(addr)
}

/// Options of `weir tap`.
#[derive(Debug, Clone, clap::Args)]
pub struct TapArgs {
    /// Components to tap: sources and transforms (the events they send
    /// on), or sinks (the events entering them). Default: every source
    /// and transform.
    pub components: Vec<String>,
    /// Show this share of the events: 0.1, 1/10 or 10% (after --filter).
    #[arg(long)]
    pub rate: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Only events matching this condition, in the `filter` transform's
    /// syntax as YAML or JSON: '{field: level, equals: ERROR}'.
    #[arg(long)]
    pub filter: Option<String>,
    /// The running weir's API (default: $WEIR_API_ADDR, else 127.0.0.1:9464).
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
}

/// Runs `weir tap`: 0 when the limit is reached or weir ends the stream,
/// 1 when weir cannot be reached, 2 for a wrong option or component.
pub fn run(args: TapArgs) -> ExitCode {
    let bad = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    };
    let rate = match args.rate.as_deref().map(parse_rate).transpose() {
        Ok(r) => r,
        Err(e) => return bad(format!("--{e}")),
    };
    if let Some(f) = &args.filter
        && let Err(e) = parse_filter(f)
    {
        return bad(format!("--{e}"));
    }
    if args.limit == Some(0) {
        return ExitCode::SUCCESS;
    }
    let addr = match api_address(args.address.as_deref()) {
        Ok(a) => a,
        Err(e) => return bad(e),
    };
    let req = TapRequest {
        components: args.components,
        rate,
        limit: args.limit,
        filter: args.filter,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(stream(&addr, &req))
}

async fn stream(addr: &str, req: &TapRequest) -> ExitCode {
    let url = format!("http://{addr}/tap?{}", req.to_query());
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot build an HTTP client: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let mut resp = match client.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: cannot reach weir's API at http://{addr}/tap: {e}; is weir running? (--address, or WEIR_API_ADDR)"
            );
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        eprintln!("error: {}", text.trim_end());
        return match status.as_u16() {
            400 | 404 => ExitCode::from(EXIT_CONFIG),
            _ => ExitCode::from(EXIT_RUNTIME),
        };
    }
    let limit = req.limit.unwrap_or(u64::MAX);
    let mut shown = 0u64;
    let mut partial: Vec<u8> = Vec::new();
    let stdout = std::io::stdout();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                eprintln!("weir tap: the stream broke off: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        partial.extend_from_slice(&chunk);
        let mut out = stdout.lock();
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &partial[start..]) {
            let line = &partial[start..start + i + 1];
            start += i + 1;
            if line.starts_with(b"{\"dropped\":") {
                let n = std::str::from_utf8(&line[11..])
                    .ok()
                    .and_then(|s| s.split(',').next())
                    .unwrap_or("?");
                eprintln!(
                    "weir tap: {n} events not shown: this tap fell behind (weir drops events for a slow tap rather than slow down)"
                );
                continue;
            }
            if out.write_all(line).is_err() {
                // Standard output closed (`weir tap | head`): done.
                return ExitCode::SUCCESS;
            }
            shown += 1;
            if shown >= limit {
                let _ = out.flush();
                return ExitCode::SUCCESS;
            }
        }
        partial.drain(..start);
        if out.flush().is_err() {
            return ExitCode::SUCCESS;
        }
    }
    if shown < limit {
        eprintln!("weir tap: weir ended the stream (the pipeline stopped)");
    }
    ExitCode::SUCCESS
}
