//! The bucket as an R2 binding: ranged, conditional reads in one subrequest each.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{ObjectMeta, Precondition, object_store_etag, size_changed};
use cloudify_core::{Error, Result, Store};
use worker::{Bucket, Conditional, Object, Range as R2Range};

/// An R2 bucket binding as the core's [`Store`]. Read-only: the Worker never writes the index.
pub struct R2Store {
    bucket: Bucket,
}

impl R2Store {
    /// Read through `bucket`.
    pub fn new(bucket: Bucket) -> Self {
        Self { bucket }
    }

    /// A ranged GET, optionally only if the object's tag is `etag`. `Ok(None)` for a missing
    /// object; an object without a body when the condition failed.
    async fn ranged(
        &self,
        key: &str,
        range: &Range<u64>,
        etag: Option<&str>,
    ) -> Result<Option<Object>> {
        let mut get = self.bucket.get(key).range(R2Range::OffsetWithLength {
            offset: range.start,
            length: range.end - range.start,
        });
        if let Some(tag) = etag {
            get = get.only_if(Conditional {
                etag_matches: Some(tag.to_owned()),
                ..Conditional::default()
            });
        }
        match get.execute().await {
            Ok(o) => Ok(o),
            // R2 throws, rather than answering 416, for a range past the end: tell that apart
            // from a failing bucket with a HEAD.
            Err(e) => match self.head(key).await? {
                Some(meta) if range.end > meta.size => Err(Error::RangeNotSatisfiable(format!(
                    "bytes {}..{} of {key} requested, object has {} bytes",
                    range.start, range.end, meta.size
                ))),
                _ => Err(storage(key, &e)),
            },
        }
    }
}

fn storage(key: &str, e: &worker::Error) -> Error {
    Error::Storage(format!("R2 read of {key} failed: {e}"))
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
    }
}

#[async_trait(?Send)]
impl Store for R2Store {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.bucket.get(key).execute().await {
            Ok(Some(o)) => body(key, &o).await,
            Ok(None) => Ok(None),
            Err(e) => Err(storage(key, &e)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        if range.is_empty() {
            return Ok(self.head(key).await?.map(|_| Bytes::new()));
        }
        match self.ranged(key, &range, None).await? {
            Some(o) => body(key, &o).await,
            None => Ok(None),
        }
    }

    /// One conditional GET: `onlyIf` on the recorded tag when it is an R2/S3 tag (a tag
    /// recorded from a local folder cannot match), and the object's size from the same answer.
    async fn get_range_checked(
        &self,
        key: &str,
        range: Range<u64>,
        size: u64,
        etag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        let etag = etag.and_then(object_store_etag);
        let read = match self.ranged(key, &range, etag).await {
            Err(Error::RangeNotSatisfiable(_)) => {
                return match self.head(key).await? {
                    Some(m) if m.size != size => Err(size_changed(m.size, size)),
                    _ => Err(Error::RangeNotSatisfiable(format!(
                        "bytes {}..{} of {key}",
                        range.start, range.end
                    ))),
                };
            }
            other => other?,
        };
        let Some(o) = read else {
            return Ok(None);
        };
        if o.size() != size {
            return Err(size_changed(o.size(), size));
        }
        match body(key, &o).await? {
            Some(b) => Ok(Some(b)),
            None => Err(Error::Conflict(format!(
                "its tag is {}, {} when indexed",
                o.http_etag(),
                etag.unwrap_or("?")
            ))),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.bucket.head(key).await {
            Ok(o) => Ok(o.as_ref().map(meta)),
            Err(e) => Err(storage(key, &e)),
        }
    }

    async fn put(&self, key: &str, _bytes: Bytes, _precondition: Precondition) -> Result<bool> {
        Err(Error::Storage(format!(
            "the Worker serves its bucket read-only; {key} is written by `cloudify index`"
        )))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Err(Error::Storage(format!(
            "the Worker serves its bucket read-only; {key} is removed by `cloudify rm` or `gc`"
        )))
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
