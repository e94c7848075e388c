//! `GET /`: weir's live page — one self-contained HTML document whose
//! style and script (`page/page.css`, `page/page.js`, hand-written, no
//! framework) are compiled into the binary and inlined into
//! `page/index.html` once.
//!
//! The page reads weir's own query API (`/api/v1/query`, `query_range`,
//! `rules`, `alerts`) and [`super::summary`], so what it shows is what the
//! alert rules see: per source lines/s, bytes/s and decode errors; per sink
//! events/s, failed attempts, retries, dead letters and buffer contents;
//! charts of the last hour (lines/s, requests by endpoint, latency p50/p95,
//! tool success rate, tokens by model); LLM cost of the newest day against
//! the daily budget, by model; active alerts with their rendered
//! annotations. When the query API answers 503 (no `alerting:` section) it
//! falls back to `/metrics` and says so. The script documents the stable
//! element ids the browser test reads.
//!
//! What it deliberately does not do: fetch anything from anywhere but
//! weir (the Content-Security-Policy allows only the inlined script and
//! style, by hash, and requests to weir itself), change anything in weir,
//! or keep state of its own beyond the previous `/metrics` poll of the
//! fallback. Checkpoint lag is not shown: weir exports no checkpointed
//! offsets to derive it from.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use sha2::{Digest, Sha256};

const HTML: &str = include_str!("page/index.html");
const CSS: &str = include_str!("page/page.css");
const JS: &str = include_str!("page/page.js");

/// The assembled document and its Content-Security-Policy.
struct Page {
    html: String,
    csp: String,
}

fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let html = HTML
        .replacen("/*STYLE*/", CSS, 1)
        .replacen("/*SCRIPT*/", JS, 1);
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_source(JS),
        sha256_source(CSS)
    );
    Page { html, csp }
});

async fn index() -> impl IntoResponse {
    let page = &*PAGE;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, page.csp.as_str()),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        page.html.as_str(),
    )
}

/// The route of the page: `GET /`.
pub fn router() -> Router {
    Router::new().route("/", get(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_inlines_its_assets_and_fetches_nothing_from_outside() {
        let html = &PAGE.html;
        assert!(!html.contains("/*STYLE*/") && !html.contains("/*SCRIPT*/"));
        assert!(html.contains(CSS) && html.contains(JS));
        // No external URL anywhere: no CDN, no font, no script source.
        for needle in ["http://", "https://", "//cdn", "src=\"", "@import", "url("] {
            let hits: Vec<&str> = html
                .lines()
                .filter(|l| l.contains(needle))
                .filter(|l| !l.contains("http://www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{needle}: {hits:?}");
        }
        // The policy names exactly the inlined script and style.
        let script = format!("<script>{JS}</script>");
        assert!(html.contains(&script));
        assert!(PAGE.csp.contains(&sha256_source(JS)));
        assert!(PAGE.csp.contains(&sha256_source(CSS)));
        assert!(PAGE.csp.starts_with("default-src 'none'"));
    }

    #[test]
    fn the_script_writes_data_as_text_only() {
        // Label values and annotations come from logs and rule files: the
        // script builds elements with textContent/setAttribute, never HTML.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!JS.contains(banned), "{banned}");
        }
    }
}
