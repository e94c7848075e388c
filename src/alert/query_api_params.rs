//! The query API's request parameters, errors and JSON writing, as
//! Prometheus 2.42's `web/api/v1` reads and writes them.
//!
//! Parameters come from the query string and, for a POST with a
//! form-encoded body, the body (whose values come first, as Go's
//! `Request.FormValue` takes them). JSON is written by hand so numbers and
//! strings look as Go's encoder prints them (`60`, not `60.0`; `<` as
//! `\u003c`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;

use crate::alert::promql::engine::selector_matchers;
use crate::alert::promql::format::format_f;

/// Prometheus' smallest and largest API times (`minTime`, `maxTime` of
/// `web/api/v1/api.go`), in ms, and how they are spelled.
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277026596-12-04T15:30:07.999999999Z";

/// Prometheus' error types, with the HTTP status each answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Internal,
    Unavailable,
}

impl ErrorType {
    fn word(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error answer: `{"status":"error","errorType":…,"error":…}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorType,
    pub msg: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, msg: impl Into<String>) -> Self {
        ApiError {
            kind,
            msg: msg.into(),
        }
    }

    pub fn bad_data(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, msg)
    }

    /// Prometheus' `invalidParamError`: bad data, `invalid parameter "p": …`.
    pub fn param(name: &str, msg: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter \"{name}\": {msg}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = J::obj([
            ("status", J::str("error")),
            ("errorType", J::str(self.kind.word())),
            ("error", J::Str(self.msg)),
        ]);
        json_response(self.kind.status(), body)
    }
}

/// The answer to a request: data or an error.
pub type ApiResult = Result<J, ApiError>;

/// `{"status":"success","data":…}` or the error.
pub fn respond(r: ApiResult) -> Response {
    match r {
        Ok(data) => json_response(
            StatusCode::OK,
            J::obj([("status", J::str("success")), ("data", data)]),
        ),
        Err(e) => e.into_response(),
    }
}

fn json_response(status: StatusCode, body: J) -> Response {
    let mut s = String::new();
    body.write(&mut s);
    (status, [(header::CONTENT_TYPE, "application/json")], s).into_response()
}

/// A JSON value, written as Go's `encoding/json` writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    /// Written as is: numbers.
    Raw(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn str(s: &str) -> J {
        J::Str(s.to_string())
    }

    pub fn obj<'a>(pairs: impl IntoIterator<Item = (&'a str, J)>) -> J {
        J::Obj(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// An object of string values, in the given order.
    pub fn strings<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> J {
        J::Obj(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), J::str(v)))
                .collect(),
        )
    }

    /// A number as Go's `encoding/json` prints a float64.
    pub fn num(v: f64) -> J {
        J::Raw(go_json_float(v))
    }

    pub fn int(v: i64) -> J {
        J::Raw(v.to_string())
    }

    pub fn write(&self, out: &mut String) {
        match self {
            J::Raw(s) => out.push_str(s),
            J::Str(s) => write_str(out, s),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string as Go escapes it (HTML characters too).
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `encoding/json` float64: `'f'` form, `'e'` below 1e-6 and from
/// 1e21 with a one-digit exponent kept short (`1e-7`).
pub fn go_json_float(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() || a == 0.0 || (1e-6..1e21).contains(&a) {
        return format_f(v);
    }
    let s = crate::alert::promql::format::format_float_e(v);
    match s.split_once("e-0") {
        Some((m, d)) if d.len() == 1 => format!("{m}e-{d}"),
        _ => s,
    }
}

/// A sample timestamp as Prometheus' `jsonutil.MarshalTimestamp` writes it:
/// seconds with the milliseconds as three digits, none when whole.
pub fn timestamp(t_ms: i64) -> J {
    let mut s = String::new();
    if t_ms < 0 {
        s.push('-');
    }
    let a = t_ms.unsigned_abs();
    s.push_str(&(a / 1000).to_string());
    if !a.is_multiple_of(1000) {
        s.push_str(&format!(".{:03}", a % 1000));
    }
    J::Raw(s)
}

/// A sample value as `jsonutil.MarshalValue` writes it: a string, `'f'`
/// form, `'e'` below 1e-6 and from 1e21.
pub fn sample_value(v: f64) -> J {
    let a = v.abs();
    J::Str(if a != 0.0 && !(1e-6..1e21).contains(&a) {
        crate::alert::promql::format::format_float_e(v)
    } else {
        format_f(v)
    })
}

/// A time as Go's `time.Time` marshals in UTC (RFC 3339 with the fraction
/// trimmed); `None` is Go's zero time.
pub fn rfc3339(t_ms: Option<i64>) -> J {
    let Some(ms) = t_ms else {
        return J::str("0001-01-01T00:00:00Z");
    };
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
        return J::str("0001-01-01T00:00:00Z");
    };
    let mut s = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        let f = format!(".{frac:03}");
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    J::Str(s)
}

/// The request's form: body values (POST, form-encoded) then query values.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a query string and an optional form body.
    pub fn parse(query: Option<&str>, body: Option<&[u8]>) -> Params {
        let mut v: Vec<(String, String)> = Vec::new();
        if let Some(b) = body {
            v.extend(form_urlencoded::parse(b).into_owned());
        }
        if let Some(q) = query {
            v.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Params(v)
    }

    /// The first value of `name`, `""` when absent (Go's `FormValue`).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_string);
        let form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let body = if form {
            let b = Bytes::from_request(req, state).await.map_err(|e| {
                ApiError::bad_data(format!("error parsing form values: {e}")).into_response()
            })?;
            Some(b)
        } else {
            None
        };
        Ok(Params::parse(query.as_deref(), body.as_deref()))
    }
}

/// Prometheus' `parseTime`: Unix seconds (a float, rounded to ms) or
/// RFC 3339; in ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = s.parse::<f64>()
        && t.is_finite()
    {
        let whole = t.trunc();
        let frac = ((t - whole) * 1000.0).round();
        return Ok((whole as i64)
            .saturating_mul(1000)
            .saturating_add(frac as i64));
    }
    match s {
        MIN_TIME_TEXT => return Ok(MIN_TIME_MS),
        MAX_TIME_TEXT => return Ok(MAX_TIME_MS),
        _ => {}
    }
    if s.contains('T')
        && let Ok(ts) = s.parse::<jiff::Timestamp>()
    {
        return Ok(ts.as_millisecond());
    }
    Err(format!("cannot parse {s:?} to a valid timestamp"))
}

/// Prometheus' `parseTimeParam`: `default` when absent, else the time, or
/// the `invalid parameter` error.
pub fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        "" => Ok(default),
        v => parse_time(v)
            .map_err(|e| ApiError::param(name, format!("Invalid time value for '{name}': {e}"))),
    }
}

/// Prometheus' `parseDuration`: float seconds or a duration such as `1m30s`;
/// in nanoseconds.
pub fn parse_duration(s: &str) -> Result<i128, String> {
    if let Ok(d) = s.parse::<f64>()
        && d.is_finite()
    {
        let ns = d * 1e9;
        if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i128);
    }
    crate::alert::rules::parse_duration(s)
        .map(|ms| ms as i128 * 1_000_000)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

/// Prometheus' `parseMatchersParam`: each `match[]` a series selector, and
/// each set with at least one matcher that does not match the empty string.
pub fn matcher_sets(values: &[&str]) -> Result<Vec<Vec<Matcher>>, String> {
    let mut sets = Vec::new();
    for s in values {
        let expr = crate::alert::promql::parse(s)?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(format!("{s:?} is not a series selector"));
        };
        if vs.offset.is_some() || vs.at.is_some() {
            return Err(format!("{s:?} is not a series selector"));
        }
        if !vs.matchers.or_matchers.is_empty() {
            return Err(format!(
                "{s:?}: `or` inside label matchers is Prometheus 3.x"
            ));
        }
        sets.push(selector_matchers(&vs));
    }
    if sets.iter().any(|ms| ms.iter().all(|m| m.is_match(""))) {
        return Err("match[] must contain at least one non-empty matcher".into());
    }
    Ok(sets)
}
