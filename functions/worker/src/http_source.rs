//! Sources named by `http://` or `https://` URLs, read with `Range` through `fetch`.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{
    ObjectMeta, Precondition, content_range_total, http_status, ranged_answer, size_changed,
    strong_etag,
};
use cloudify_core::{Error, HttpHeaders, Result, Store};
use worker::{Fetch, Headers, Method, Request, RequestInit, Response};

/// Read-only store over one URL scheme; its keys are URLs without the `scheme://`.
pub struct HttpSource {
    scheme: &'static str,
    headers: HttpHeaders,
}

impl HttpSource {
    /// Sources under `scheme` (`http` or `https`), sent `headers`' entries for their URLs.
    pub fn new(scheme: &'static str, headers: &HttpHeaders) -> Self {
        Self {
            scheme,
            headers: headers.clone(),
        }
    }

    async fn send(&self, key: &str, method: Method, headers: &[(&str, &str)]) -> Result<Response> {
        let url = format!("{}://{key}", self.scheme);
        let h = Headers::new();
        for (k, v) in self
            .headers
            .for_url(&url)
            .into_iter()
            .chain(headers.iter().copied())
        {
            h.set(k, v).map_err(|e| failed(&url, &e))?;
        }
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(h);
        let req = Request::new_with_init(&url, &init).map_err(|e| failed(&url, &e))?;
        Fetch::Request(req)
            .send()
            .await
            .map_err(|e| failed(&url, &e))
    }

    /// A ranged GET; with `if_match`, only of that entity.
    async fn ranged(
        &self,
        key: &str,
        range: &Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Option<(Bytes, Option<u64>)>> {
        let spec = format!("bytes={}-{}", range.start, range.end - 1);
        let mut headers = vec![("range", spec.as_str())];
        if let Some(tag) = if_match {
            headers.push(("if-match", tag));
        }
        let mut resp = self.send(key, Method::Get, &headers).await?;
        let url = format!("{}://{key}", self.scheme);
        if !ranged_answer(resp.status_code(), &url, range, if_match)? {
            return Ok(None);
        }
        let total = resp
            .headers()
            .get("content-range")
            .ok()
            .flatten()
            .and_then(|v| content_range_total(&v));
        let body = resp.bytes().await.map_err(|e| failed(&url, &e))?;
        Ok(Some((Bytes::from(body), total)))
    }
}

fn failed(url: &str, e: &worker::Error) -> Error {
    Error::Storage(format!("fetch of {url} failed: {e}"))
}

#[async_trait(?Send)]
impl Store for HttpSource {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let mut resp = self.send(key, Method::Get, &[]).await?;
        match resp.status_code() {
            200 => Ok(Some(Bytes::from(
                resp.bytes().await.map_err(|e| failed(key, &e))?,
            ))),
            404 | 410 => Ok(None),
            s => Err(http_status(&format!("{}://{key}", self.scheme), s)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        if range.is_empty() {
            return Ok(self.head(key).await?.map(|_| Bytes::new()));
        }
        Ok(self.ranged(key, &range, None).await?.map(|(b, _)| b))
    }

    /// One conditional ranged GET: `If-Match` on a strong recorded tag, and the size from
    /// `Content-Range`.
    async fn get_range_checked(
        &self,
        key: &str,
        range: Range<u64>,
        size: u64,
        etag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        let strong = strong_etag(etag);
        let Some((bytes, total)) = self.ranged(key, &range, strong).await? else {
            return Ok(None);
        };
        match total {
            Some(t) if t != size => Err(size_changed(t, size)),
            _ => Ok(Some(bytes)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let resp = self.send(key, Method::Head, &[]).await?;
        match resp.status_code() {
            200 => {
                let get = |h: &str| resp.headers().get(h).ok().flatten();
                Ok(Some(ObjectMeta {
                    size: get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_default(),
                    etag: get("etag"),
                }))
            }
            404 | 410 => Ok(None),
            s => Err(http_status(&format!("{}://{key}", self.scheme), s)),
        }
    }

    async fn put(&self, key: &str, _bytes: Bytes, _precondition: Precondition) -> Result<bool> {
        Err(Error::Storage(format!(
            "{}://{key}: HTTP sources are read-only",
            self.scheme
        )))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Err(Error::Storage(format!(
            "{}://{prefix}: HTTP sources cannot be listed",
            self.scheme
        )))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Err(Error::Storage(format!(
            "{}://{key}: HTTP sources are read-only",
            self.scheme
        )))
    }
}
