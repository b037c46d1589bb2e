//! The Worker's transport of HTTP(S) sources: `fetch`. The protocol (ranges, conditions,
//! sizes, statuses) is the core's [`cloudify_core::store::HttpSource`].

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::Transport;
use cloudify_core::{Error, Result};
use worker::{Fetch as Send, Headers, Method, Request, RequestInit};

/// `fetch`, one subrequest per call.
pub struct Fetch;

fn failed(url: &str, e: &worker::Error) -> Error {
    Error::failed(url, "fetch failed", e)
}

#[async_trait(?Send)]
impl Transport for Fetch {
    async fn send(
        &self,
        req: http::Request<()>,
        limit: Option<u64>,
    ) -> Result<http::Response<Bytes>> {
        let url = req.uri().to_string();
        let headers = Headers::new();
        for (k, v) in req.headers() {
            let v = v
                .to_str()
                .map_err(|e| Error::storage(&url, e.to_string()))?;
            headers.set(k.as_str(), v).map_err(|e| failed(&url, &e))?;
        }
        let method = if req.method() == http::Method::HEAD {
            Method::Head
        } else {
            Method::Get
        };
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        let request = Request::new_with_init(&url, &init).map_err(|e| failed(&url, &e))?;
        let mut resp = Send::Request(request)
            .send()
            .await
            .map_err(|e| failed(&url, &e))?;
        let mut out = http::Response::builder().status(resp.status_code());
        for (k, v) in resp.headers().entries() {
            out = out.header(k, v);
        }
        let mut body = resp.bytes().await.map_err(|e| failed(&url, &e))?;
        if let Some(l) = limit {
            body.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        out.body(Bytes::from(body))
            .map_err(|e| Error::storage(&url, e.to_string()))
    }
}
