//! The serving function: the core router behind a Function URL, reading the bucket through S3
//! and HTTP(S) sources with the request headers `CLOUDIFY_HTTP_HEADERS` configures.
//! It holds no indexing code; parsed manifests stay in memory between invocations of a warm
//! instance, bounded by `MANIFEST_CACHE_BYTES`.

use std::sync::Arc;

use cloudify::Bucket;
use cloudify_core::App;
use cloudify_lambda::{Settings, respond};
use cloudify_stores::S3Store;
use http_body_util::Full;
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = Settings::from_env()?;
    let bucket = Bucket::s3(
        Arc::new(S3Store::new(&settings.bucket).await),
        &settings.bucket,
        &settings.index_prefix,
    );
    cloudify::remote::init_http_headers()?;
    let mut app = App::new(bucket.shared())
        .with_scheme("s3", Arc::new(S3Store::any_bucket().await))
        .with_scheme("http", Arc::new(cloudify::remote::http_store("http")))
        .with_scheme("https", Arc::new(cloudify::remote::http_store("https")))
        .with_read_budget(settings.read_budget)
        .with_manifest_cache_bytes(settings.manifest_cache_bytes)
        .with_clock(cloudify::serve::now_ms);
    if let Some(url) = &settings.public_url {
        app = app.with_public_url(url);
    }
    let app = Arc::new(app);
    let max = settings.max_response;
    if settings.stream {
        lambda_http::run_with_streaming_response(service_fn(move |req: Request| {
            let app = app.clone();
            async move {
                let resp = respond::limited(app.handle(&req).await, max);
                Ok::<_, Error>(resp.map(Full::new))
            }
        }))
        .await
    } else {
        lambda_http::run(service_fn(move |req: Request| {
            let app = app.clone();
            async move {
                let resp = respond::limited(app.handle(&req).await, max);
                Ok::<_, Error>(respond::buffered(resp))
            }
        }))
        .await
    }
}
