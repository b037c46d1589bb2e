//! The Worker's transport of HTTP(S) sources: `fetch`. The protocol (ranges, conditions,
//! sizes, statuses) is the core's [`cloudify_core::store::HttpSource`].

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::Transport;
use cloudify_core::{Error, Result};
use std::time::Duration;

use futures_util::future::{Either, select};
use worker::{
    AbortController, Delay, Fetch as Send, Headers, Method, Request, RequestInit, RequestRedirect,
};

/// `fetch`, one subrequest per call, aborted after the source timeout. Redirects come back to
/// the protocol, which decides where configured headers may follow them.
pub struct Fetch {
    /// How long one request may take, its body included.
    pub timeout_ms: u64,
}

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
        init.with_method(method)
            .with_headers(headers)
            .with_redirect(RequestRedirect::Manual);
        let request = Request::new_with_init(&url, &init).map_err(|e| failed(&url, &e))?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let exchange = async move {
            let mut resp = Send::Request(request).send_with_signal(&signal).await?;
            let body = resp.bytes().await?;
            Ok::<_, worker::Error>((resp, body))
        };
        let timer = Delay::from(Duration::from_millis(self.timeout_ms));
        let (resp, mut body) = match select(Box::pin(exchange), timer).await {
            Either::Left((answer, _)) => answer.map_err(|e| failed(&url, &e))?,
            Either::Right(_) => {
                controller.abort();
                return Err(Error::timeout(
                    &url,
                    format!("no answer within {} s", self.timeout_ms / 1000),
                ));
            }
        };
        let mut out = http::Response::builder().status(resp.status_code());
        for (k, v) in resp.headers().entries() {
            out = out.header(k, v);
        }
        if let Some(l) = limit {
            body.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        out.body(Bytes::from(body))
            .map_err(|e| Error::storage(&url, e.to_string()))
    }
}
