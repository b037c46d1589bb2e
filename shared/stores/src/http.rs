//! The native transport of HTTP(S) sources: ureq. The protocol (ranges, conditions, sizes,
//! statuses) is the core's [`HttpSource`]; this only sends a request and reads the answer.
//!
//! ureq is blocking, so requests run on tokio's blocking pool.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{HttpSource, Transport};
use cloudify_core::{Error, HttpHeaders, Result};
use http::{Request, Response};
use ureq::Agent;

/// How long one request to a source may take, answer included.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// ureq, on the blocking pool.
#[derive(Clone)]
pub struct Ureq {
    agent: Agent,
}

impl Default for Ureq {
    fn default() -> Self {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        Self { agent }
    }
}

/// An HTTP(S) source store for `scheme`, sending `headers`' entries to their URLs.
pub fn http_source(scheme: &'static str, headers: Arc<HttpHeaders>) -> HttpSource<Ureq> {
    HttpSource::new(scheme, Ureq::default(), headers)
}

impl Ureq {
    fn send_blocking(&self, req: Request<()>, limit: Option<u64>) -> Result<Response<Bytes>> {
        let url = req.uri().to_string();
        let failed = |e: ureq::Error| match e {
            ureq::Error::Timeout(_) => {
                Error::timeout(&url, format!("no answer within {HTTP_TIMEOUT:?}"))
            }
            e => Error::failed(&url, "the request failed", e),
        };
        let mut resp = self.agent.run(req).map_err(failed)?;
        let mut body = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(limit.unwrap_or(u64::MAX))
            .read_to_end(&mut body)
            .map_err(|e| Error::failed(&url, "reading the answer failed", e))?;
        let (parts, _) = resp.into_parts();
        Ok(Response::from_parts(parts, Bytes::from(body)))
    }
}

#[async_trait]
impl Transport for Ureq {
    async fn send(&self, req: Request<()>, limit: Option<u64>) -> Result<Response<Bytes>> {
        let this = self.clone();
        let url = req.uri().to_string();
        tokio::task::spawn_blocking(move || this.send_blocking(req, limit))
            .await
            .map_err(|e| Error::failed(url, "the request failed", e))?
    }
}
