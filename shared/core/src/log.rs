//! One structured line per request, through `tracing`: each runtime installs ([`init`]) a
//! writer where its platform reads logs (JSON lines to CloudWatch on Lambda, the console on a
//! Worker, stderr for `cloudify serve`).
//!
//! A failed request (5xx, and 409: a source changed since indexing) is logged as a warning
//! with the internal detail the client was not given. Nothing else of the request is logged: no headers, so no credential.

use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;
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

/// One `tracing` event of `level` for `line`, with further fields and the message last.
macro_rules! event {
    ($level:ident, $line:expr, $($more:tt)*) => {{
        let (l, o) = ($line, $line.ops);
        tracing::$level!(
            target: TARGET,
            method = l.method,
            path = l.path,
            status = l.status,
            bytes_out = l.bytes_out,
            store_ops = o.total(),
            get = o.get,
            ranged_get = o.ranged_get,
            head = o.head,
            list = o.list,
            bytes_read = o.bytes,
            duration_ms = l.duration_ms.map(|d| (d * 1000.0).round() / 1000.0),
            version = l.version,
            cache = l.cache,
            $($more)*
        )
    }};
}

/// Log `line`.
pub fn request(line: &RequestLine<'_>) {
    // Failures of the service, and sources that changed since indexing (the operator must
    // reindex), are warnings with what the client was not told.
    match line
        .error
        .filter(|_| line.status >= 500 || line.status == 409)
    {
        Some(e) => event!(warn, line, detail = %e.internal(), "request failed"),
        None => event!(info, line, "request"),
    }
}

/// Write the request lines (info and above; other crates' events are not the request log) to
/// `writer` in `format`, each stamped with the time when `timed` (a Worker has no clock the
/// formatter may read: its platform stamps lines). Only the first call of a process or isolate
/// installs anything.
pub fn init<W>(format: LogFormat, writer: W, timed: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let only = Targets::new().with_target(TARGET, tracing::Level::INFO);
    // No spans are made, so the JSON lines carry none: only the event's fields, flattened.
    let layer = fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false);
    let layer = match (format, timed) {
        (LogFormat::Json, true) => layer.json().flatten_event(true).with_filter(only).boxed(),
        (LogFormat::Json, false) => {
            let layer = layer.without_time().json().flatten_event(true);
            layer.with_filter(only).boxed()
        }
        (LogFormat::Text, true) => layer.with_filter(only).boxed(),
        (LogFormat::Text, false) => layer.without_time().with_filter(only).boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
