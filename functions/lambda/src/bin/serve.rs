//! The serving function: the core router behind a Function URL, reading the bucket through S3
//! and sources through S3 and HTTP(S). Its settings are the core's [`cloudify_core::Config`]
//! from the Lambda preset and the environment. It holds no indexing code; parsed manifests
//! stay in memory between invocations of a warm instance.

use std::sync::Arc;

use cloudify_lambda::respond;
use cloudify_stores::{Bucket, S3Store, logging, native_app};
use http_body_util::Full;
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = cloudify_lambda::config()?;
    logging::init(config.log_format);
    let name = config.bucket.clone().unwrap_or_default();
    let bucket = Bucket::s3(
        Arc::new(S3Store::new(&name).await),
        &name,
        &config.index_prefix,
    );
    let stream = config.stream;
    let app = Arc::new(native_app(config, bucket.reader(), false).await);
    if stream {
        lambda_http::run_with_streaming_response(service_fn(move |req: Request| {
            let app = app.clone();
            async move { Ok::<_, Error>(app.handle(&req).await.map(Full::new)) }
        }))
        .await
    } else {
        lambda_http::run(service_fn(move |req: Request| {
            let app = app.clone();
            async move { Ok::<_, Error>(respond::buffered(app.handle(&req).await)) }
        }))
        .await
    }
}
