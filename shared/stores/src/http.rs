//! Sources named by `http://` or `https://` URLs, read with ranged GETs.
//!
//! ureq is blocking, so the async [`Store`] calls run on tokio's blocking pool; the indexer,
//! which reads synchronously, calls [`HttpStore::range`] directly.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{
    ObjectMeta, Precondition, content_range_total, http_status, ranged_answer, size_changed,
    strong_etag,
};
use cloudify_core::{Error, HttpHeaders, Result, Store};
use ureq::Agent;

/// Read-only store over one URL scheme; its keys are URLs without the `scheme://`.
#[derive(Clone)]
pub struct HttpStore {
    scheme: &'static str,
    agent: Agent,
    headers: Arc<HttpHeaders>,
}

/// The environment variable holding the JSON of [`HttpHeaders`].
pub const HEADERS_VAR: &str = "CLOUDIFY_HTTP_HEADERS";

/// The request headers `CLOUDIFY_HTTP_HEADERS` configures (none when it is unset).
///
/// # Errors
/// A message naming the variable and the fault (never a header's value).
pub fn headers_from_env() -> std::result::Result<HttpHeaders, String> {
    match std::env::var(HEADERS_VAR) {
        Ok(json) if !json.trim().is_empty() => {
            HttpHeaders::parse(&json).map_err(|e| format!("{HEADERS_VAR}: {e}"))
        }
        _ => Ok(HttpHeaders::default()),
    }
}

impl HttpStore {
    /// Sources under `scheme` (`http` or `https`).
    pub fn new(scheme: &'static str) -> Self {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            scheme,
            agent,
            headers: Arc::default(),
        }
    }

    /// Send `headers`' entries for each URL with the requests to it.
    #[must_use]
    pub fn with_headers(mut self, headers: Arc<HttpHeaders>) -> Self {
        self.headers = headers;
        self
    }

    /// A request to `url` with the configured headers.
    fn request<B>(&self, mut req: ureq::RequestBuilder<B>, url: &str) -> ureq::RequestBuilder<B> {
        for (k, v) in self.headers.for_url(url) {
            req = req.header(k, v);
        }
        req
    }

    fn url(&self, key: &str) -> String {
        format!("{}://{key}", self.scheme)
    }

    /// Bytes `range` of `key` and the object's whole length from `Content-Range`; with
    /// `if_match`, only of that entity. `Ok(None)` for a missing object.
    ///
    /// # Errors
    /// [`Error::Conflict`] when `if_match` fails, [`Error::RangeNotSatisfiable`] past the end,
    /// [`Error::Storage`] for other answers (a server that ignores Range among them).
    pub fn range(
        &self,
        key: &str,
        range: &Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Option<u64>)>> {
        let url = self.url(key);
        let mut req = self
            .request(self.agent.get(&url), &url)
            .header("range", format!("bytes={}-{}", range.start, range.end - 1));
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        let mut resp = req.call().map_err(|e| failed(&url, &e))?;
        if !ranged_answer(resp.status().as_u16(), &url, range, if_match)? {
            return Ok(None);
        }
        let total = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(content_range_total);
        let body = resp
            .body_mut()
            .with_config()
            .limit(range.end - range.start)
            .read_to_vec()
            .map_err(|e| failed(&url, &e))?;
        Ok(Some((body, total)))
    }

    /// Size (`Content-Length`) and `ETag` of `key`, by HEAD.
    ///
    /// # Errors
    /// [`Error::Storage`] when the request fails or the answer has no length.
    pub fn meta(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let url = self.url(key);
        let resp = self
            .request(self.agent.head(&url), &url)
            .call()
            .map_err(|e| failed(&url, &e))?;
        let header = |h: &str| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match resp.status().as_u16() {
            200 => {
                let size = header("content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Error::Storage(format!("{url} gave no Content-Length")))?;
                Ok(Some(ObjectMeta {
                    size,
                    etag: header("etag"),
                }))
            }
            404 | 410 => Ok(None),
            s => Err(http_status(&url, s)),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(HttpStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this))
            .await
            .map_err(|e| Error::Storage(format!("HTTP read failed: {e}")))?
    }
}

fn failed(url: &str, e: &ureq::Error) -> Error {
    Error::Storage(format!("request to {url} failed: {e}"))
}

#[async_trait]
impl Store for HttpStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let Some(meta) = self.head(key).await? else {
            return Ok(None);
        };
        self.get_range(key, 0..meta.size).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        if range.is_empty() {
            return Ok(self.head(key).await?.map(|_| Bytes::new()));
        }
        let key = key.to_owned();
        self.blocking(move |s| Ok(s.range(&key, &range, None)?.map(|(b, _)| Bytes::from(b))))
            .await
    }

    /// One conditional ranged GET: `If-Match` on a strong recorded tag, the size from
    /// `Content-Range`.
    async fn get_range_checked(
        &self,
        key: &str,
        range: Range<u64>,
        size: u64,
        etag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        let key = key.to_owned();
        let strong = strong_etag(etag).map(str::to_owned);
        let read = self
            .blocking(move |s| s.range(&key, &range, strong.as_deref()))
            .await?;
        match read {
            None => Ok(None),
            Some((_, Some(total))) if total != size => Err(size_changed(total, size)),
            Some((bytes, _)) => Ok(Some(Bytes::from(bytes))),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let key = key.to_owned();
        self.blocking(move |s| s.meta(&key)).await
    }

    async fn put(&self, key: &str, _bytes: Bytes, _precondition: Precondition) -> Result<bool> {
        Err(Error::Storage(format!(
            "{}: HTTP sources are read-only",
            self.url(key)
        )))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Err(Error::Storage(format!(
            "{}: HTTP sources cannot be listed",
            self.url(prefix)
        )))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Err(Error::Storage(format!(
            "{}: HTTP sources are read-only",
            self.url(key)
        )))
    }
}
