//! S3 and S3-compatible servers through aws-sdk-s3: the bucket of the Lambda and of
//! `cloudify serve --bucket s3://…`, and `s3://` sources.
//!
//! Configuration comes from the environment as the AWS SDKs read it (credentials, region,
//! `AWS_ENDPOINT_URL`), plus two settings of ours: `CLOUDIFY_S3_TIMEOUT_MS` (per operation,
//! retries included) and `CLOUDIFY_S3_REQUESTER_PAYS=1`.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::RequestPayer;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::Bytes;
use cloudify_core::store::{
    Fetched, GetOptions, Object, ObjectMeta, Precondition, ReadStore, WriteStore,
    content_range_total, object_store_etag,
};
use cloudify_core::{Error, Result};

/// Default time one S3 operation may take, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The AWS region of this process's environment (`us-east-1` when it names none), as
/// catalogs and Icechunk's own S3 client name it.
pub fn s3_region() -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "us-east-1".into())
}

/// A bucket, or with [`S3Store::any_bucket`] every bucket (keys are then `bucket/key`).
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: Option<String>,
    timeout: Duration,
    requester_pays: bool,
}

/// A client configured from the environment.
async fn client(timeout: Duration) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .build(),
        )
        .load()
        .await;
    // A custom endpoint (MinIO, moto, s3s, R2) usually has no per-bucket host names.
    let custom = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(custom)
        .build();
    Client::from_conf(config)
}

fn env_timeout() -> Duration {
    std::env::var("CLOUDIFY_S3_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
}

impl S3Store {
    /// Every object below `prefix` with its size, tag and time as the listing gives them (what
    /// a HEAD of each would say), sorted by key, page by page.
    ///
    /// # Errors
    /// When a page cannot be read, naming the bucket.
    pub async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, ObjectMeta)>> {
        let (bucket, object_prefix) = match &self.bucket {
            Some(b) => (b.as_str(), prefix),
            None => prefix.split_once('/').unwrap_or((prefix, "")),
        };
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(object_prefix)
            .set_request_payer(self.payer())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| match self.error(&e, bucket, object_prefix) {
                Failure::Err(e) => e,
                _ => Error::storage(format!("s3://{bucket}"), "cannot be listed"),
            })?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    let key = match self.bucket {
                        Some(_) => k.to_owned(),
                        None => format!("{bucket}/{k}"),
                    };
                    let meta = ObjectMeta {
                        size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        etag: o.e_tag().map(str::to_owned),
                        last_modified: o.last_modified().and_then(millis),
                    };
                    objects.push((key, meta));
                }
            }
        }
        objects.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(objects)
    }
    /// The store of `bucket`, configured from the environment.
    pub async fn new(bucket: &str) -> Self {
        Self::configured(Some(bucket.to_owned())).await
    }

    /// A store of every bucket the credentials reach: the reader of `s3://bucket/key` sources,
    /// whose keys are `bucket/key`.
    pub async fn any_bucket() -> Self {
        Self::configured(None).await
    }

    async fn configured(bucket: Option<String>) -> Self {
        let timeout = env_timeout();
        Self {
            client: client(timeout).await,
            bucket,
            timeout,
            requester_pays: std::env::var("CLOUDIFY_S3_REQUESTER_PAYS").is_ok_and(|v| v == "1"),
        }
    }

    /// Bucket and object key of a store key.
    fn locate<'a>(&'a self, key: &'a str) -> Result<(&'a str, &'a str)> {
        match &self.bucket {
            Some(b) => Ok((b, key)),
            None => key
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| Error::storage(format!("s3://{key}"), "names no object")),
        }
    }

    fn payer(&self) -> Option<RequestPayer> {
        self.requester_pays.then_some(RequestPayer::Requester)
    }

    /// What an S3 failure means. Messages name the object and the service's error code, never
    /// a request's headers, so no credential can leak into a response.
    fn error<E: ProvideErrorMetadata>(
        &self,
        e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        bucket: &str,
        key: &str,
    ) -> Failure {
        let url = format!("s3://{bucket}/{key}");
        let timed_out = match e {
            SdkError::TimeoutError(_) => true,
            SdkError::DispatchFailure(d) => d.is_timeout(),
            _ => false,
        };
        if timed_out {
            return Failure::Err(Error::timeout(
                url,
                format!("no answer within {} ms", self.timeout.as_millis()),
            ));
        }
        match e {
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let code = s.err().code().unwrap_or("no error code");
                match status {
                    304 => Failure::NotModified,
                    404 => Failure::Missing,
                    412 | 409 => Failure::Precondition,
                    416 => Failure::Err(Error::range(url, "the range is outside the object")),
                    403 => Failure::Err(Error::storage(
                        url,
                        format!("access denied ({code}); the function's role cannot read it"),
                    )),
                    s => Failure::Err(Error::storage(url, format!("S3 answered {s} ({code})"))),
                }
            }
            SdkError::DispatchFailure(_) => {
                Failure::Err(Error::storage(url, "cannot reach the S3 endpoint"))
            }
            // A 304 comes back as a response the SDK cannot parse into an error.
            SdkError::ResponseError(r) if r.raw().status().as_u16() == 304 => Failure::NotModified,
            _ => Failure::Err(Error::storage(
                url,
                format!("S3 request failed ({})", e.code().unwrap_or("no answer")),
            )),
        }
    }

    /// A GET as `options` say: the bytes and the object's metadata.
    async fn read(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        let (bucket, object) = self.locate(key)?;
        // Only a tag of S3's own form can match; others are left to the caller's size check.
        let if_match = options.if_match.as_deref().and_then(object_store_etag);
        let mut req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(object)
            .set_request_payer(self.payer())
            .set_if_match(if_match.map(|t| format!("\"{t}\"")))
            .set_if_none_match(options.if_none_match.clone());
        if let Some(r) = &options.range {
            if r.start >= r.end {
                // S3 cannot ask for zero bytes: a HEAD says whether the range fits.
                return match self.head(key).await? {
                    None => Ok(Fetched::Missing),
                    Some(meta) => {
                        cloudify_core::store::check_range(key, r, meta.size)?;
                        Ok(Fetched::Object(Object {
                            bytes: Bytes::new(),
                            meta,
                        }))
                    }
                };
            }
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                return match self.error(&e, bucket, object) {
                    Failure::Missing => Ok(Fetched::Missing),
                    Failure::NotModified => Ok(Fetched::NotModified),
                    Failure::Precondition => Err(Error::changed(
                        format!("s3://{bucket}/{object}"),
                        format!("it no longer has the tag {}", if_match.unwrap_or("?")),
                    )),
                    Failure::Err(e) => Err(e),
                };
            }
        };
        let size = match &options.range {
            Some(_) => out.content_range().and_then(content_range_total),
            None => out.content_length().and_then(|n| u64::try_from(n).ok()),
        };
        let etag = out.e_tag().map(str::to_owned);
        let last_modified = out.last_modified().and_then(millis);
        let body = out.body.collect().await.map_err(|e| {
            Error::failed(
                format!("s3://{bucket}/{object}"),
                "reading the body failed",
                e,
            )
        })?;
        let bytes = body.into_bytes();
        let size = size.unwrap_or(bytes.len() as u64);
        if let Some(r) = options.range.as_ref().filter(|r| r.end > size) {
            // S3 sends what there is of a range running past the end.
            return Err(Error::range(
                format!("s3://{bucket}/{object}"),
                format!("bytes {}..{} of an object of {size} bytes", r.start, r.end),
            ));
        }
        Ok(Fetched::Object(Object {
            bytes,
            meta: ObjectMeta {
                size,
                etag,
                last_modified,
            },
        }))
    }
}

/// Milliseconds since the Unix epoch of an S3 timestamp.
fn millis(t: &aws_sdk_s3::primitives::DateTime) -> Option<u64> {
    u64::try_from(t.to_millis().ok()?).ok()
}

/// The outcomes of a failed request that callers treat apart.
enum Failure {
    Missing,
    NotModified,
    Precondition,
    Err(Error),
}

#[async_trait]
impl ReadStore for S3Store {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        self.read(key, options).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let (bucket, object) = self.locate(key)?;
        let sent = self
            .client
            .head_object()
            .bucket(bucket)
            .key(object)
            .set_request_payer(self.payer())
            .send()
            .await;
        match sent {
            Ok(out) => Ok(Some(ObjectMeta {
                size: out
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                etag: out.e_tag().map(str::to_owned),
                last_modified: out.last_modified().and_then(millis),
            })),
            Err(e) => match self.error(&e, bucket, object) {
                Failure::Missing => Ok(None),
                Failure::Precondition | Failure::NotModified => Err(Error::storage(
                    format!("s3://{bucket}/{object}"),
                    "HEAD answered a precondition failure",
                )),
                Failure::Err(e) => Err(e),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }
}

/// The content type and cache policy of an object, for clients that read the bucket directly
/// (STAC Browser on a public bucket or a copy `cloudify publish` made, a CDN in front of it):
/// JSON as JSON, and the objects of a dataset's version, never rewritten, cached for good.
fn headers_for(key: &str) -> (&'static str, &'static str) {
    let kind = match key.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "json" => "application/json",
        "parquet" => "application/vnd.apache.parquet",
        "html" => "text/html; charset=utf-8",
        "png" => "image/png",
        _ => "application/octet-stream",
    };
    // `datasets/{id}/{version}/…` and `datasets/{id}/values/{digest}.bin`, below any prefix:
    // a version is named by its content's hash, a stored value by its digest.
    let parts: Vec<&str> = key.split('/').collect();
    let named_by_content = |p: &str| {
        p == "values"
            || (p.len() == cloudify_core::registry::VERSION_LEN
                && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let immutable = parts
        .windows(4)
        .any(|w| w[0] == "datasets" && named_by_content(w[2]));
    let cache = match immutable {
        true => "public, max-age=31536000, immutable",
        false => "public, max-age=60",
    };
    (kind, cache)
}

#[async_trait]
impl WriteStore for S3Store {
    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool> {
        let (bucket, object) = self.locate(key)?;
        let (content_type, cache_control) = headers_for(object);
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(object)
            .content_type(content_type)
            .cache_control(cache_control)
            .body(bytes.into());
        req = match precondition {
            Precondition::None => req,
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Matches(tag) => req.if_match(tag),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => match self.error(&e, bucket, object) {
                Failure::Precondition | Failure::NotModified => Ok(false),
                Failure::Missing => Err(Error::storage(format!("s3://{bucket}"), "no such bucket")),
                Failure::Err(e) => Err(e),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        // S3 answers a delete the same whether or not the object was there.
        if self.head(key).await?.is_none() {
            return Ok(false);
        }
        let (bucket, object) = self.locate(key)?;
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(object)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match self.error(&e, bucket, object) {
                Failure::Missing | Failure::Precondition | Failure::NotModified => Ok(false),
                Failure::Err(e) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::headers_for;

    #[test]
    fn objects_are_typed_and_only_versions_cached_for_good() {
        let forever = "public, max-age=31536000, immutable";
        for (key, kind, cache) in [
            (
                "stac/catalog.json",
                "application/json",
                "public, max-age=60",
            ),
            ("index.json", "application/json", "public, max-age=60"),
            (
                "idx/datasets/tas/0194d809fdab45611bf8/manifest.json",
                "application/json",
                forever,
            ),
            (
                "datasets/tas/0194d809fdab45611bf8/tables/tas",
                "application/octet-stream",
                forever,
            ),
            (
                "datasets/tas/values/00ff.bin",
                "application/octet-stream",
                forever,
            ),
            (
                "datasets/idx/stac/c/x/x.json",
                "application/json",
                "public, max-age=60",
            ),
            (
                "icechunk/tas/refs/branch.main/ref.json",
                "application/json",
                "public, max-age=60",
            ),
        ] {
            assert_eq!(headers_for(key), (kind, cache), "{key}");
        }
    }
}
