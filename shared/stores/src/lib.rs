//! Native stores for cloudify: a local folder (the bucket of `cloudify serve --bucket DIR`,
//! and the reader of `file://` sources), S3 and S3-compatible servers, and the transport of
//! `http(s)://` sources; the bucket a command names, and the stores a native function reads
//! sources through.

mod bucket;
mod http;
mod local;
pub mod logging;
mod s3;

use std::sync::Arc;

use cloudify_core::admit::Sleep;
use cloudify_core::read::Offload;
use cloudify_core::{App, Config, HttpHeaders, ReadStore, Timeouts};

pub use bucket::Bucket;
pub use http::{Ureq, http_source};
pub use local::LocalStore;
pub use s3::{DEFAULT_TIMEOUT, S3Store, s3_region};

/// The reader of every `s3://` source of this process, configured once from the environment.
pub async fn s3_sources() -> &'static S3Store {
    static S3: tokio::sync::OnceCell<S3Store> = tokio::sync::OnceCell::const_new();
    S3.get_or_init(S3Store::any_bucket).await
}

/// The stores a native function reads sources through, by scheme: `s3`, `http` and `https`
/// (sending `headers` to the URLs under their prefixes), and with `files` the machine's own
/// files (`file://`), which only a function running beside them should read.
pub async fn source_stores(
    headers: &Arc<HttpHeaders>,
    timeouts: Timeouts,
    files: bool,
) -> Vec<(&'static str, Arc<dyn ReadStore>)> {
    let mut out: Vec<(&'static str, Arc<dyn ReadStore>)> = vec![
        ("s3", Arc::new(s3_sources().await.clone())),
        (
            "http",
            Arc::new(http_source("http", headers.clone(), timeouts)),
        ),
        (
            "https",
            Arc::new(http_source("https", headers.clone(), timeouts)),
        ),
    ];
    if files {
        out.push(("file", Arc::new(LocalStore::new("/"))));
    }
    out
}

/// The function of a native runtime (`cloudify serve`, the Lambda) over `bucket`: sources read
/// through [`source_stores`], and tokio's timer ending a request's wait for room in the budget
/// of bytes in flight.
pub async fn native_app(config: Config, bucket: Arc<dyn ReadStore>, files: bool) -> App {
    let stores = source_stores(&config.http_headers, config.timeouts, files).await;
    let sleep: Sleep =
        Arc::new(|ms| Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms))));
    stores.into_iter().fold(
        App::new(config, bucket).with_sleep(sleep),
        |app, (scheme, store)| app.with_source(scheme, store),
    )
}

/// Where `cloudify serve` decodes and encodes chunks: rayon's pool, a thread per core, so the
/// source chunks of one request and concurrent requests use every core. A pool as large as
/// tokio's blocking one would spread chunk buffers over every glibc arena (a thread gets one of
/// its own), which tripled the peak memory under load. (Not the Lambda's: it answers one
/// request per instance. With the pool, xarray's reads through `cargo lambda watch` lost
/// answers: in a run of the Lambda tier two xarray tests waited out their timeout, while gdb
/// showed every function process idle, rayon's threads asleep and tokio's parked, so the
/// emulator, not the function, held them.)
pub fn decode_pool() -> Offload {
    Arc::new(|job| {
        let (done, answer) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            let _ = done.send(out);
        });
        Box::pin(async move {
            match answer.await {
                Ok(Ok(out)) => out,
                _ => Err(cloudify_core::Error::corrupt_data(
                    "decoding or encoding a chunk stopped",
                )),
            }
        })
    })
}
