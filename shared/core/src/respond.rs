//! Answers as HTTP responses, in one place: content types, cache lifetimes and entity tags,
//! conditional requests, CORS, `Server-Timing`, HEAD, and error bodies.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::config::ErrorDetail;
use crate::error::{Error, Fault, Result};
use crate::read::Stats;

/// JSON.
pub const JSON: &str = "application/json";
/// GeoJSON (STAC items).
pub const GEO_JSON: &str = "application/geo+json";
/// Chunk bytes.
pub const OCTETS: &str = "application/octet-stream";
/// HTML pages.
pub const HTML: &str = "text/html; charset=utf-8";
/// The intake catalog.
pub const YAML: &str = "text/yaml";
/// kerchunk's Parquet references.
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// How long an answer may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Answers that may change on reindex: briefly, then revalidated by ETag.
    Short,
    /// Answers under a pinned version: forever.
    Immutable,
    /// Errors: never.
    NoStore,
}

impl Lifetime {
    fn header(self) -> &'static str {
        match self {
            Lifetime::Short => "public, max-age=60",
            Lifetime::Immutable => "public, max-age=31536000, immutable",
            Lifetime::NoStore => "no-store",
        }
    }
}

/// A successful answer before headers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The body.
    pub body: Bytes,
    /// Its media type.
    pub content_type: &'static str,
    /// How long it may be cached.
    pub lifetime: Lifetime,
    /// Its strong entity tag, if it has one.
    pub etag: Option<String>,
    /// Whether the body is empty because the client's copy is current.
    pub not_modified: bool,
}

impl Reply {
    /// `body` of `content_type`, cached briefly.
    pub fn bytes(body: Bytes, content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            lifetime: Lifetime::Short,
            etag: None,
            not_modified: false,
        }
    }

    /// A JSON document.
    ///
    /// # Errors
    /// When the value does not serialise (a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Self::json_as(value, JSON)
    }

    /// A JSON document of media type `content_type`.
    ///
    /// # Errors
    /// As [`Reply::json`].
    pub fn json_as<T: Serialize + ?Sized>(value: &T, content_type: &'static str) -> Result<Self> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::Storage(Fault::bare(format!("cannot serialise an answer: {e}"))))?;
        Ok(Self::bytes(Bytes::from(body), content_type))
    }

    /// A text document.
    pub fn text(body: String, content_type: &'static str) -> Self {
        Self::bytes(Bytes::from(body), content_type)
    }

    /// The answer to a client whose copy tagged `etag` is current.
    pub fn not_modified(etag: String, lifetime: Lifetime) -> Self {
        Self {
            etag: Some(etag),
            lifetime,
            not_modified: true,
            ..Self::bytes(Bytes::new(), JSON)
        }
    }

    /// This answer with its lifetime and tag.
    #[must_use]
    pub fn tagged(mut self, lifetime: Lifetime, etag: String) -> Self {
        self.lifetime = lifetime;
        self.etag = Some(etag);
        self
    }

    /// The response.
    pub fn into_response(self) -> Response<Bytes> {
        let status = if self.not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        };
        let mut r = Response::new(self.body);
        *r.status_mut() = status;
        let h = r.headers_mut();
        if !self.not_modified {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
        }
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.lifetime.header()),
        );
        if let Some(v) = self.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
            h.insert(header::ETAG, v);
        }
        r
    }
}

/// 64-bit FNV-1a: a stable, dependency-free hash for ETags (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The strong tag of what `route` (a path, with the query where it changes the answer)
/// answers at dataset `version`. The server's own version is in it too, so a release that
/// changes how bytes are served is not hidden behind clients' 304s.
pub fn etag(version: &str, route: &str) -> String {
    let tagged = format!("{}|{route}", env!("CARGO_PKG_VERSION"));
    format!("\"{version}-{:016x}\"", fnv1a(tagged.as_bytes()))
}

/// The entity tags of the client's `If-None-Match`.
fn if_none_match(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
}

/// Whether the client's `If-None-Match` names `etag`.
pub fn is_current(headers: &HeaderMap, etag: &str) -> bool {
    if_none_match(headers).any(|t| t == etag)
}

/// Whether the client's `If-None-Match` is `*`: any current representation (one that exists).
pub fn wants_any(headers: &HeaderMap) -> bool {
    if_none_match(headers).any(|t| t == "*")
}

/// The answer to a failed request, as every runtime gives it: the error's status and a JSON
/// body naming the problem, as much of it as `detail` allows.
pub fn error_response(e: &Error, detail: ErrorDetail) -> Response<Bytes> {
    let text = match detail {
        ErrorDetail::Public => e.public(),
        ErrorDetail::Internal => e.internal(),
    };
    let body = serde_json::json!({ "error": e.kind(), "detail": text });
    let mut r = Reply::bytes(Bytes::from(body.to_string()), JSON);
    r.lifetime = Lifetime::NoStore;
    let mut resp = r.into_response();
    *resp.status_mut() = e.status();
    if e.status() == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
    }
    // Room is given back as answers are sent: a second is the time of a few of them.
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// The error of an answer of `len` bytes where the platform carries at most `max` (a buffered
/// Lambda Function URL): the platform would otherwise drop it with a bare 502.
pub fn over_max_response(len: usize, max: u64) -> Error {
    Error::TooLarge(format!(
        "the answer is {len} bytes and this function answers at most {max} (MAX_RESPONSE_BYTES; \
         a buffered Function URL carries about 4.4 MB of binary): use the function with \
         InvokeMode RESPONSE_STREAM, or index with smaller served chunks (--chunks)"
    ))
}

/// Set each of `pairs` in `h`.
fn set_all(h: &mut HeaderMap, pairs: [(header::HeaderName, &'static str); 2]) {
    for (name, value) in pairs {
        h.insert(name, HeaderValue::from_static(value));
    }
}

/// The answer to a CORS preflight.
pub fn preflight() -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    set_all(
        r.headers_mut(),
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "*"),
        ],
    );
    r
}

/// The headers every answer carries (CORS, length, `Vary`, `Server-Timing`); no body for HEAD.
pub fn finish(resp: &mut Response<Bytes>, stats: &Stats, head: bool) {
    let len = resp.body().len() as u64;
    let bodiless = matches!(
        resp.status(),
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
    );
    let h = resp.headers_mut();
    set_all(
        h,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                "ETag, Retry-After, Server-Timing",
            ),
        ],
    );
    if !bodiless {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    // Links in some documents follow the host the request reached, and a dataset's summary
    // follows Accept: caches must key on them.
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Host, X-Forwarded-Host, X-Forwarded-Proto"),
    );
    if let Ok(v) = HeaderValue::from_str(&stats.header()) {
        h.insert("server-timing", v);
    }
    if head {
        *resp.body_mut() = Bytes::new();
    }
}

/// The base URL the request reached the function at: `X-Forwarded-Proto` (else http) and
/// `Host`, so documents link back to the function wherever it is deployed.
pub fn base_url(headers: &HeaderMap) -> String {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let proto = get("x-forwarded-proto")
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let host = get("x-forwarded-host")
        .or_else(|| get(header::HOST.as_str()))
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{proto}://{host}")
}

/// Whether the client prefers HTML.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}
