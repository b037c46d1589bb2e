//! The core router as a local HTTP server: the same function the Lambda and the Worker run,
//! configured by the same [`Config`] (flags and `CLOUDIFY_*` variables over the native
//! preset).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use cloudify_core::{App, Config, Platform};
use cloudify_stores::{Bucket, logging, source_stores};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// The configuration of `cloudify serve`: `flags` (variable name → value) over the
/// `CLOUDIFY_*` environment over the native preset.
///
/// # Errors
/// A message naming the variable at fault.
pub fn config(flags: &BTreeMap<&str, String>) -> anyhow::Result<Config> {
    Config::from_lookup(Platform::Native, |name| {
        flags.get(name).cloned().or_else(|| logging::env_var(name))
    })
    .map_err(|e| anyhow!(e))
}

/// The function over `bucket`, reading sources in the bucket, on this machine, in S3 and
/// behind HTTP(S).
pub async fn app(bucket: &Bucket, config: Config) -> App {
    let stores = source_stores(&config.http_headers, true).await;
    stores
        .into_iter()
        .fold(App::new(config, bucket.reader()), |app, (scheme, store)| {
            app.with_source(scheme, store)
        })
}

/// Serve the bucket on `addr`; `ready` is called with the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn run(
    bucket: &Bucket,
    addr: SocketAddr,
    config: Config,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    logging::init(config.log_format);
    let app = Arc::new(app(bucket, config).await);
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
