//! The reindex function: the precompute job, run by S3 events on the source prefix and by a
//! schedule. It reads the config (`CONFIG_KEY`, below the index prefix), picks the datasets an
//! event's objects belong to (every dataset on the schedule), and reindexes them through the
//! same incremental, atomic path as `cloudify index --config`: an event that changes nothing
//! writes nothing.

use std::path::Path;
use std::sync::Arc;

use cloudify_core::Config;
use cloudify_core::ReadStoreExt;
use cloudify_job::Job;
use cloudify_job::config::{ConfigFile, Progress, RunOptions};
use cloudify_lambda::events::{self, Work};
use cloudify_stores::{Bucket, S3Store, logging};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{Error, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Arc::new(cloudify_lambda::config()?);
    logging::init(config.log_format);
    let name = config.bucket.clone().unwrap_or_default();
    let bucket = Bucket::s3(
        Arc::new(S3Store::new(&name).await),
        &name,
        &config.index_prefix,
    );
    let job = Job::new(bucket)
        .with_headers(config.http_headers.clone())
        .with_timeouts(config.timeouts);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (config, job) = (config.clone(), job.clone());
        async move { reindex(&config, &job, &event.payload).await }
    }))
    .await
}

/// Reindex what `event` asks for; the answer names the datasets and those that failed.
async fn reindex(config: &Config, job: &Job, event: &Value) -> Result<Value, Error> {
    let bucket = &job.bucket;
    let key = &config.config_key;
    let text = bucket
        .store()
        .get(key)
        .await?
        .ok_or_else(|| format!("{}/{key}: no config file", bucket.url()))?;
    let text = String::from_utf8(text.bytes.to_vec())
        .map_err(|_| format!("{}/{key}: not UTF-8", bucket.url()))?;
    let file = ConfigFile::parse(&text, &format!("{}/{key}", bucket.url()))?;
    let ids = match events::work(event) {
        Work::All => file.ids(),
        Work::Objects(urls) => {
            // The index's own writes are not sources: never reindex because of them.
            let mut ids: Vec<String> = urls
                .iter()
                .filter(|u| !bucket.is_index_object(u))
                .flat_map(|u| file.datasets_of(u))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        }
    };
    if ids.is_empty() {
        return Ok(json!({ "datasets": [], "failed": [] }));
    }
    // Chunks are checked against this function's platform unless the file names others.
    let targets = Some(file.targets()?.unwrap_or_else(|| vec![config.platform]));
    let options = RunOptions {
        only: Some(&ids),
        targets,
        ..RunOptions::default()
    };
    let log = |p: Progress<'_>| {
        if let Progress::Done { line, .. } | Progress::Note(line) = p {
            println!("{line}");
        }
    };
    let failed = cloudify_job::config::run_config(job, file, Path::new("."), options, &log).await?;
    Ok(json!({ "datasets": ids, "failed": failed }))
}
