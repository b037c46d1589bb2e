//! Sources named by `http://` or `https://` URLs: the protocol, once for every runtime. Only
//! sending a request is the runtime's ([`Transport`]: ureq natively, `fetch` on a Worker).
//!
//! A read is one GET: with `Range` for a part, `If-Match` on a strong recorded tag, and the
//! object's size from `Content-Range` (a ranged answer) or `Content-Length` (a whole one). A
//! server that ignores `Range` is refused rather than read whole: sources must answer 206.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};

use super::{Fetched, GetOptions, MaybeSend, Object, ObjectMeta, ReadStore, strong_etag};
use crate::error::{Error, Result};
use crate::http_headers::HttpHeaders;

/// Sends one HTTP request and gives back the whole answer.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Transport: MaybeSend {
    /// Send `request`; read at most `limit` bytes of the body (the rest is dropped: the
    /// protocol checks lengths).
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Timeout`] when no answer arrives.
    async fn send(&self, request: Request<()>, limit: Option<u64>) -> Result<Response<Bytes>>;
}

/// Read-only store over one URL scheme; its keys are URLs without the `scheme://`.
pub struct HttpSource<T> {
    scheme: &'static str,
    transport: T,
    headers: Arc<HttpHeaders>,
}

impl<T: Transport> HttpSource<T> {
    /// Sources under `scheme` (`http` or `https`), sent `headers`' entries for their URLs.
    pub fn new(scheme: &'static str, transport: T, headers: Arc<HttpHeaders>) -> Self {
        Self {
            scheme,
            transport,
            headers,
        }
    }

    fn url(&self, key: &str) -> String {
        format!("{}://{key}", self.scheme)
    }

    /// Send a request to `url`, following redirects (at most [`MAX_REDIRECTS`]) here rather
    /// than in the transport, so a configured header is only ever sent to its own prefix: a
    /// request that carries configured headers is followed only to a URL they are configured
    /// for, and every hop gets the headers of its own URL.
    async fn send(
        &self,
        method: Method,
        url: &str,
        extra: &[(header::HeaderName, String)],
        limit: Option<u64>,
    ) -> Result<Response<Bytes>> {
        let mut at = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let configured = self.headers.for_url(&at);
            let mut req = Request::builder().method(method.clone()).uri(&at);
            for (k, v) in &configured {
                req = req.header(*k, *v);
            }
            for (k, v) in extra {
                req = req.header(k, v.as_str());
            }
            let req = req
                .body(())
                .map_err(|e| Error::storage(url, format!("not a valid request: {e}")))?;
            let resp = self.transport.send(req, limit).await?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let next = header_str(resp.headers(), header::LOCATION)
                .and_then(|l| redirect_target(&at, l))
                .ok_or_else(|| {
                    Error::storage(
                        url,
                        format!("answered HTTP {} without a usable Location", resp.status()),
                    )
                })?;
            if !configured.is_empty() && self.headers.for_url(&next) != configured {
                return Err(Error::storage(
                    url,
                    format!(
                        "redirected to {next}, outside the prefix its request headers are \
                         configured for; not followed"
                    ),
                ));
            }
            at = next;
        }
        Err(Error::storage(
            url,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }
}

/// Redirects one read follows.
pub const MAX_REDIRECTS: usize = 5;

/// The absolute `http(s)` URL a `Location` header names, relative to `base`.
fn redirect_target(base: &str, location: &str) -> Option<String> {
    let next = url::Url::parse(base).ok()?.join(location).ok()?;
    matches!(next.scheme(), "http" | "https").then(|| next.to_string())
}

/// The complete length in a `Content-Range: bytes a-b/total` header.
pub fn content_range_total(value: &str) -> Option<u64> {
    value.rsplit_once('/')?.1.trim().parse().ok()
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Size, tag and modification time from an answer's headers; `size` as the caller found it.
fn meta(h: &HeaderMap, size: u64) -> ObjectMeta {
    ObjectMeta {
        size,
        etag: header_str(h, header::ETAG).map(str::to_owned),
        last_modified: header_str(h, header::LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64),
    }
}

/// The error of an answer that is neither data nor absence; a refusal says where its
/// credentials are configured.
fn status_error(url: &str, status: StatusCode) -> Error {
    let hint = match status.as_u16() {
        401 | 403 => {
            " (access denied: request headers for it, such as a token, are set in \
             CLOUDIFY_HTTP_HEADERS, or HTTP_HEADERS on a Worker)"
        }
        _ => "",
    };
    Error::storage(url, format!("answered HTTP {}{hint}", status.as_u16()))
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<T: Transport> ReadStore for HttpSource<T> {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        let url = self.url(key);
        let range = options.range.clone();
        // HTTP cannot ask for zero bytes: an empty range is a HEAD.
        if let Some(r) = range.as_ref().filter(|r| r.start >= r.end) {
            super::check_range(&url, r, u64::MAX)?;
            return Ok(match self.head(key).await? {
                None => Fetched::Missing,
                Some(meta) => {
                    super::check_range(&url, r, meta.size)?;
                    Fetched::Object(Object {
                        bytes: Bytes::new(),
                        meta,
                    })
                }
            });
        }
        let mut extra = Vec::new();
        if let Some(r) = &range {
            extra.push((header::RANGE, format!("bytes={}-{}", r.start, r.end - 1)));
        }
        let if_match = strong_etag(options.if_match.as_deref());
        if let Some(tag) = if_match {
            extra.push((header::IF_MATCH, tag.to_owned()));
        }
        if let Some(tag) = &options.if_none_match {
            extra.push((header::IF_NONE_MATCH, tag.clone()));
        }
        let limit = range.as_ref().map(|r| r.end - r.start);
        let resp = self.send(Method::GET, &url, &extra, limit).await?;
        let status = resp.status();
        let size = match (status.as_u16(), &range) {
            (206, Some(_)) => match header_str(resp.headers(), header::CONTENT_RANGE)
                .and_then(content_range_total)
            {
                Some(total) => total,
                // `bytes a-b/*`: the server does not say; ask it.
                None => match self.head(key).await? {
                    Some(m) => m.size,
                    None => return Ok(Fetched::Missing),
                },
            },
            (200, None) => resp.body().len() as u64,
            (200, Some(_)) => {
                return Err(Error::storage(
                    &url,
                    "ignored the Range header; sources must be served with byte ranges",
                ));
            }
            (304, _) if options.if_none_match.is_some() => return Ok(Fetched::NotModified),
            (404 | 410, _) => return Ok(Fetched::Missing),
            (412, _) => {
                return Err(Error::changed(
                    &url,
                    format!("it no longer has the tag {}", if_match.unwrap_or("?")),
                ));
            }
            (416, Some(r)) => {
                return Err(Error::range(
                    &url,
                    format!("bytes {}..{} are outside the object", r.start, r.end),
                ));
            }
            _ => return Err(status_error(&url, status)),
        };
        if let Some(r) = range.as_ref().filter(|r| r.end > size) {
            // A server sends what there is of a range running past the end.
            return Err(Error::range(
                &url,
                format!("bytes {}..{} of an object of {size} bytes", r.start, r.end),
            ));
        }
        let meta = meta(resp.headers(), size);
        let bytes = resp.into_body();
        if let Some(r) = &range
            && bytes.len() as u64 != r.end - r.start
        {
            return Err(Error::storage(
                &url,
                format!(
                    "answered {} bytes for a range of {}",
                    bytes.len(),
                    r.end - r.start
                ),
            ));
        }
        Ok(Fetched::Object(Object { bytes, meta }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let url = self.url(key);
        let resp = self.send(Method::HEAD, &url, &[], Some(0)).await?;
        match resp.status().as_u16() {
            200 => {
                let size = header_str(resp.headers(), header::CONTENT_LENGTH)
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| Error::storage(&url, "gave no Content-Length"))?;
                Ok(Some(meta(resp.headers(), size)))
            }
            404 | 410 => Ok(None),
            _ => Err(status_error(&url, resp.status())),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Err(Error::storage(
            self.url(prefix),
            "HTTP sources cannot be listed",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::ReadStoreExt;
    use futures_executor::block_on;
    use std::sync::Mutex;

    /// A server of one object that answers as a well-behaved HTTP server would, and records
    /// the requests it got.
    struct Fake {
        body: Bytes,
        etag: &'static str,
        seen: Mutex<Vec<Request<()>>>,
    }

    #[async_trait]
    impl Transport for Fake {
        async fn send(&self, req: Request<()>, _limit: Option<u64>) -> Result<Response<Bytes>> {
            let h = req.headers().clone();
            let path = req.uri().path().to_owned();
            self.seen.lock().unwrap().push(req);
            let mut resp = Response::builder().header("etag", self.etag);
            let to = match path.as_str() {
                "/to-inside" => Some("/obj"),
                "/to-outside" => Some("https://elsewhere/obj"),
                "/loop" => Some("/loop"),
                _ => None,
            };
            if let Some(to) = to {
                return Ok(resp
                    .status(302)
                    .header("location", to)
                    .body(Bytes::new())
                    .unwrap());
            }
            if path != "/obj" {
                return Ok(resp.status(404).body(Bytes::new()).unwrap());
            }
            if h.get("if-none-match").is_some_and(|t| t == self.etag) {
                return Ok(resp.status(304).body(Bytes::new()).unwrap());
            }
            if h.get("if-match").is_some_and(|t| t != self.etag) {
                return Ok(resp.status(412).body(Bytes::new()).unwrap());
            }
            let len = self.body.len();
            resp = resp.header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT");
            let Some(range) = h.get("range") else {
                return Ok(resp
                    .header("content-length", len)
                    .body(self.body.clone())
                    .unwrap());
            };
            let spec = range.to_str().unwrap().trim_start_matches("bytes=");
            let (a, b) = spec.split_once('-').unwrap();
            let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
            if b >= len {
                return Ok(resp.status(416).body(Bytes::new()).unwrap());
            }
            Ok(resp
                .status(206)
                .header("content-range", format!("bytes {a}-{b}/{len}"))
                .body(self.body.slice(a..=b))
                .unwrap())
        }
    }

    fn source() -> HttpSource<Fake> {
        let headers = HttpHeaders::parse(r#"{"https://h/": {"X-Key": "k"}}"#).unwrap();
        let fake = Fake {
            body: Bytes::from_static(b"0123456789"),
            etag: "\"v1\"",
            seen: Mutex::new(Vec::new()),
        };
        HttpSource::new("https", fake, Arc::new(headers))
    }

    #[test]
    fn ranged_conditional_reads_give_bytes_and_the_whole_size() {
        block_on(async {
            let s = source();
            let o = s.get_range("h/obj", 2..5).await.unwrap().unwrap();
            assert_eq!(o.bytes, "234");
            assert_eq!(o.meta.size, 10);
            assert_eq!(o.meta.etag.as_deref(), Some("\"v1\""));
            assert_eq!(o.meta.last_modified, Some(784_111_777_000));
            let changed = GetOptions {
                range: Some(0..1),
                if_match: Some("\"v0\"".into()),
                ..GetOptions::default()
            };
            assert!(matches!(
                s.get_with("h/obj", &changed).await,
                Err(Error::Conflict(_))
            ));
            let weak = GetOptions {
                if_match: Some("size-mtime".into()),
                ..changed
            };
            assert!(s.get_with("h/obj", &weak).await.is_ok(), "not a strong tag");
            let revalidate = GetOptions {
                if_none_match: Some("\"v1\"".into()),
                ..GetOptions::default()
            };
            assert_eq!(
                s.get_with("h/obj", &revalidate).await.unwrap(),
                Fetched::NotModified
            );
            assert!(matches!(
                s.get_range("h/obj", 8..12).await,
                Err(Error::RangeNotSatisfiable(_))
            ));
            assert_eq!(s.get("h/gone").await.unwrap(), None);
            assert_eq!(s.head("h/obj").await.unwrap().unwrap().size, 10);
            let seen = s.transport.seen.lock().unwrap();
            assert!(seen.iter().all(|r| r.headers()["x-key"] == "k"));
        });
    }

    #[test]
    fn redirects_keep_configured_headers_within_their_prefix() {
        block_on(async {
            let s = source();
            let o = s.get_range("h/to-inside", 0..2).await.unwrap().unwrap();
            assert_eq!(o.bytes, "01");
            let e = s.get("h/to-outside").await.unwrap_err().internal();
            assert!(e.contains("outside the prefix"), "{e}");
            assert!(
                s.get("h/loop")
                    .await
                    .unwrap_err()
                    .internal()
                    .contains("redirects")
            );
            // Without configured headers a redirect goes anywhere.
            let free = s.get("free/to-outside").await.unwrap().unwrap();
            assert_eq!(free.bytes, "0123456789");
            let seen = s.transport.seen.lock().unwrap();
            let uris: Vec<String> = seen.iter().map(|r| r.uri().to_string()).collect();
            for r in seen.iter() {
                let host = r.uri().host().unwrap();
                assert_eq!(r.headers().contains_key("x-key"), host == "h", "{uris:?}");
            }
            assert!(
                uris.contains(&"https://elsewhere/obj".to_owned()),
                "{uris:?}"
            );
        });
    }
}
