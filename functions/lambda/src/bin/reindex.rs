//! The reindex function: the precompute job, run by S3 events on the source prefix and by a
//! schedule. It reads the config (`CONFIG_KEY`, below the index prefix), picks the datasets an
//! event's objects belong to (every dataset on the schedule), and reindexes them through the
//! same incremental, atomic path as `cloudify index --config`: an event that changes nothing
//! writes nothing.

use std::path::Path;
use std::sync::Arc;

use cloudify::Bucket;
use cloudify::config::{self, Config};
use cloudify_lambda::Settings;
use cloudify_lambda::events::{self, Work};
use cloudify_stores::S3Store;
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{Error, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = Arc::new(Settings::from_env()?);
    cloudify::remote::init_http_headers()?;
    let bucket = Bucket::s3(
        Arc::new(S3Store::new(&settings.bucket).await),
        &settings.bucket,
        &settings.index_prefix,
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (settings, bucket) = (settings.clone(), bucket.clone());
        async move { reindex(&settings, &bucket, &event.payload).await }
    }))
    .await
}

/// Reindex what `event` asks for; the answer names the datasets and those that failed.
async fn reindex(settings: &Settings, bucket: &Bucket, event: &Value) -> Result<Value, Error> {
    let key = &settings.config_key;
    let text = bucket
        .store()
        .get(key)
        .await?
        .ok_or_else(|| format!("{}/{key}: no config file", bucket.url()))?;
    let text = String::from_utf8(text.to_vec())
        .map_err(|_| format!("{}/{key}: not UTF-8", bucket.url()))?;
    let config = Config::parse(&text, &format!("{}/{key}", bucket.url()))?;
    let ids = match events::work(event) {
        Work::All => config.ids(),
        Work::Objects(urls) => {
            // The index's own writes are not sources: never reindex because of them.
            let mut ids: Vec<String> = urls
                .iter()
                .filter(|u| !bucket.is_index_object(u))
                .flat_map(|u| config.datasets_of(u))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        }
    };
    if ids.is_empty() {
        return Ok(json!({ "datasets": [], "failed": [] }));
    }
    let failed = config::run_config(bucket, config, Path::new("."), Some(&ids), None).await?;
    Ok(json!({ "datasets": ids, "failed": failed }))
}
