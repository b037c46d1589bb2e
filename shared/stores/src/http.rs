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
use cloudify_core::{Error, HttpHeaders, Result, Timeouts};
use http::{Request, Response};
use ureq::Agent;

/// ureq, on the blocking pool. Redirects are not followed here but by the protocol, which
/// knows where each configured header may go.
#[derive(Clone)]
pub struct Ureq {
    agent: Agent,
    timeouts: Timeouts,
}

impl Ureq {
    /// A transport that waits `timeouts.connect_ms` to connect and `timeouts.source_ms` for a
    /// whole answer.
    pub fn new(timeouts: Timeouts) -> Self {
        let ms = Duration::from_millis;
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(ms(timeouts.connect_ms)))
            .timeout_global(Some(ms(timeouts.source_ms)))
            .build()
            .into();
        Self { agent, timeouts }
    }
}

/// An HTTP(S) source store for `scheme`, sending `headers`' entries to their URLs.
pub fn http_source(
    scheme: &'static str,
    headers: Arc<HttpHeaders>,
    timeouts: Timeouts,
) -> HttpSource<Ureq> {
    HttpSource::new(scheme, Ureq::new(timeouts), headers)
}

impl Ureq {
    fn send_blocking(&self, req: Request<()>, limit: Option<u64>) -> Result<Response<Bytes>> {
        let url = req.uri().to_string();
        let t = self.timeouts;
        let failed = |e: ureq::Error| match e {
            ureq::Error::Timeout(_) => Error::timeout(
                &url,
                format!(
                    "no answer within {} s (connecting: {} s)",
                    t.source_ms / 1000,
                    t.connect_ms / 1000
                ),
            ),
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
