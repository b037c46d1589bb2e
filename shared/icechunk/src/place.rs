//! Where a repository lives: a local folder or an `s3://bucket/prefix`, and the S3 settings
//! of this process's environment (as the AWS SDKs read them, like the bucket's own client).

use std::path::Path;
use std::sync::Arc;

use icechunk::config::{Credentials, S3Credentials, S3Options};
use icechunk::storage::new_http_storage;
use icechunk::{Storage, new_local_filesystem_storage, new_s3_object_store_storage};

use cloudify_stores::s3_region;

use crate::{Error, fail};

/// S3 options from the environment: region, and a custom endpoint (an S3-compatible server)
/// addressed by path, over HTTP where it says so.
pub(crate) fn s3_options() -> S3Options {
    let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
    let options = S3Options::default()
        .with_region(s3_region())
        .with_allow_http(
            endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        )
        .with_force_path_style(endpoint.is_some());
    match endpoint {
        Some(e) => options.with_endpoint_url(e),
        None => options,
    }
}

/// Credentials for S3 containers and repositories: the environment's.
pub(crate) fn s3_credentials() -> Credentials {
    Credentials::S3(S3Credentials::FromEnv)
}

/// The storage of the repository at `location`: a folder path, `s3://bucket/prefix`, or an
/// `http(s)://` URL (read only).
pub(crate) async fn storage(location: &str) -> Result<Arc<dyn Storage + Send + Sync>, Error> {
    if location.starts_with("http://") || location.starts_with("https://") {
        let config = [("allow_http".to_owned(), "true".to_owned())];
        let http = location.starts_with("http://").then(|| config.into());
        return new_http_storage(location, http, None).map_err(|e| fail(location)(&e));
    }
    match location.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_matches('/');
            new_s3_object_store_storage(
                s3_options(),
                bucket.to_owned(),
                (!prefix.is_empty()).then(|| prefix.to_owned()),
                Some(S3Credentials::FromEnv),
                Vec::new(),
                Vec::new(),
            )
            .await
            .map_err(|e| fail(location)(&e))
        }
        None => {
            let path = Path::new(location.strip_prefix("file://").unwrap_or(location));
            std::fs::create_dir_all(path).map_err(|e| fail(location)(&e))?;
            new_local_filesystem_storage(path)
                .await
                .map_err(|e| fail(location)(&e))
        }
    }
}
