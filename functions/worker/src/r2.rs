//! The bucket as an R2 binding: ranged, conditional reads in one subrequest each.

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{
    Fetched, GetOptions, Object as Read, ObjectMeta, ReadStore, check_range, object_store_etag,
};
use cloudify_core::{Error, Result};
use worker::{Bucket, Conditional, Object, Range as R2Range};

/// An R2 bucket binding as the core's [`ReadStore`]: the Worker never writes the index.
pub struct R2Store {
    bucket: Bucket,
}

impl R2Store {
    /// Read through `bucket`.
    pub fn new(bucket: Bucket) -> Self {
        Self { bucket }
    }

    /// A GET, whole or ranged, with R2's `onlyIf` for the tags it can compare. `Ok(None)` for
    /// a missing object; an object without a body when the condition failed.
    async fn read(&self, key: &str, options: &GetOptions) -> Result<Option<Object>> {
        let mut get = self.bucket.get(key);
        if let Some(r) = &options.range {
            get = get.range(R2Range::OffsetWithLength {
                offset: r.start,
                length: r.end - r.start,
            });
        }
        // Only a tag of R2's (S3's) own form can match; others are left to the size check.
        let etag_matches = options
            .if_match
            .as_deref()
            .and_then(object_store_etag)
            .map(str::to_owned);
        let etag_does_not_match = options
            .if_none_match
            .as_deref()
            .map(|t| t.trim_matches('"').to_owned());
        if etag_matches.is_some() || etag_does_not_match.is_some() {
            get = get.only_if(Conditional {
                etag_matches,
                etag_does_not_match,
                ..Conditional::default()
            });
        }
        match get.execute().await {
            Ok(o) => Ok(o),
            // R2 throws, rather than answering 416, for a range past the end: tell that apart
            // from a failing bucket with a HEAD.
            Err(e) => match (&options.range, self.head(key).await?) {
                (Some(r), Some(meta)) if r.end > meta.size => {
                    check_range(key, r, meta.size)?;
                    Err(storage(key, &e))
                }
                _ => Err(storage(key, &e)),
            },
        }
    }
}

fn storage(key: &str, e: &worker::Error) -> Error {
    Error::failed(key, "the R2 read failed", e)
}

async fn body(key: &str, o: &Object) -> Result<Option<Bytes>> {
    match o.body() {
        Some(b) => Ok(Some(Bytes::from(
            b.bytes().await.map_err(|e| storage(key, &e))?,
        ))),
        None => Ok(None),
    }
}

fn meta(o: &Object) -> ObjectMeta {
    ObjectMeta {
        size: o.size(),
        etag: Some(o.http_etag()),
        last_modified: Some(o.uploaded().as_millis()),
    }
}

#[async_trait(?Send)]
impl ReadStore for R2Store {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        if let Some(r) = options.range.as_ref().filter(|r| r.start >= r.end) {
            // R2 cannot read zero bytes: a HEAD says whether the range fits.
            return match self.head(key).await? {
                None => Ok(Fetched::Missing),
                Some(meta) => {
                    check_range(key, r, meta.size)?;
                    Ok(Fetched::Object(Read {
                        bytes: Bytes::new(),
                        meta,
                    }))
                }
            };
        }
        let Some(o) = self.read(key, options).await? else {
            return Ok(Fetched::Missing);
        };
        if let Some(r) = &options.range {
            // Local R2 sends what there is of a range running past the end.
            check_range(key, r, o.size())?;
        }
        match body(key, &o).await? {
            Some(bytes) => Ok(Fetched::Object(Read {
                bytes,
                meta: meta(&o),
            })),
            None if options.if_none_match.is_some() => Ok(Fetched::NotModified),
            None => Err(Error::changed(
                key,
                format!(
                    "its tag is {}, {} when indexed",
                    o.http_etag(),
                    options.if_match.as_deref().unwrap_or("?")
                ),
            )),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.bucket.head(key).await {
            Ok(o) => Ok(o.as_ref().map(meta)),
            Err(e) => Err(storage(key, &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let mut list = self.bucket.list().prefix(prefix);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            let page = list.execute().await.map_err(|e| storage(prefix, &e))?;
            keys.extend(page.objects().iter().map(Object::key));
            match page.cursor().filter(|_| page.truncated()) {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}
