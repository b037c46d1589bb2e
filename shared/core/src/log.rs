//! One structured line per request, through `tracing`: each runtime installs the subscriber
//! that writes it where its platform reads logs (JSON lines to CloudWatch on Lambda, the
//! console on a Worker, stderr for `cloudify serve`).
//!
//! A failed request (5xx) is logged as a warning with the internal detail the client was not
//! given. Nothing else of the request is logged: no headers, so no credential.

use crate::error::Error;
use crate::store::OpCounts;

/// The target of request lines, for filtering.
pub const TARGET: &str = "cloudify::request";

/// What is logged of one request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The path, as the client sent it.
    pub path: &'a str,
    /// The status answered.
    pub status: u16,
    /// Bytes of the body answered.
    pub bytes_out: u64,
    /// Store operations made.
    pub ops: OpCounts,
    /// Milliseconds from request to answer, where the runtime has a clock.
    pub duration_ms: Option<f64>,
    /// The dataset version answered from, for dataset routes.
    pub version: Option<&'a str>,
    /// `hit` or `miss` where a response cache was asked.
    pub cache: Option<&'a str>,
    /// The error, for a failed request.
    pub error: Option<&'a Error>,
}

/// Log `line`.
pub fn request(line: &RequestLine<'_>) {
    let o = line.ops;
    let duration_ms = line.duration_ms.map(|d| (d * 1000.0).round() / 1000.0);
    match line.error.filter(|_| line.status >= 500) {
        Some(e) => tracing::warn!(
            target: TARGET,
            method = line.method,
            path = line.path,
            status = line.status,
            bytes_out = line.bytes_out,
            store_ops = o.total(),
            get = o.get,
            ranged_get = o.ranged_get,
            head = o.head,
            list = o.list,
            bytes_read = o.bytes,
            duration_ms,
            version = line.version,
            cache = line.cache,
            detail = %e.internal(),
            "request failed"
        ),
        None => tracing::info!(
            target: TARGET,
            method = line.method,
            path = line.path,
            status = line.status,
            bytes_out = line.bytes_out,
            store_ops = o.total(),
            get = o.get,
            ranged_get = o.ranged_get,
            head = o.head,
            list = o.list,
            bytes_read = o.bytes,
            duration_ms,
            version = line.version,
            cache = line.cache,
            "request"
        ),
    }
}
