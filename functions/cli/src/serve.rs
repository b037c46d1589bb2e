//! The core router as a local HTTP server: the same function the Lambda and the Worker run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use cloudify_core::App;
use cloudify_stores::LocalStore;

use crate::bucket::Bucket;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Milliseconds since the first call: the clock of `Server-Timing`.
pub fn now_ms() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1000.0
}

/// What one request may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes a request may read from sources.
    pub read_budget: u64,
    /// Largest merged read.
    pub merge_cap: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            read_budget: cloudify_core::router::DEFAULT_READ_BUDGET,
            merge_cap: cloudify_core::read::DEFAULT_MERGE_CAP,
        }
    }
}

/// Serve the bucket on `addr`; `ready` is called with the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn run(
    bucket: &Bucket,
    addr: SocketAddr,
    limits: Limits,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let app = Arc::new(
        App::new(bucket.shared())
            .with_scheme("file", Arc::new(LocalStore::new("/")))
            .with_scheme("s3", Arc::new(crate::remote::s3().await.clone()))
            .with_scheme("http", Arc::new(crate::remote::http_store("http")))
            .with_scheme("https", Arc::new(crate::remote::http_store("https")))
            .with_read_budget(limits.read_budget)
            .with_reads(cloudify_core::read::DEFAULT_CONCURRENCY, limits.merge_cap)
            .with_clock(now_ms),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    println!("cloudify serving {bucket} on http://{bound}");
    ready(bound);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let resp = app.handle(&req).await;
                    Ok::<_, Infallible>(resp.map(Full::<Bytes>::new))
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}
