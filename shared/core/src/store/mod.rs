//! Storage: the read and write traits every runtime implements, and what the core builds on
//! them.
//!
//! Reading and writing are two traits. The serving functions hold [`ReadStore`]s only; the
//! indexer writes through [`WriteStore`]. A read returns the bytes with the object's metadata
//! (size, tag, modification time) from the same answer, so nothing needs a HEAD first, and may
//! be conditional: on the tag recorded at index time (`If-Match`: a source changed since is a
//! [`crate::Error::Conflict`]) or on a tag the caller holds (`If-None-Match`: revalidating a
//! cached `index.json` costs one request and no body when it did not change).

mod conformance;
mod counting;
mod http;
mod memory;
mod prefix;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};

pub use conformance::{Fixture, check_reads, check_writes};
pub use counting::{Counted, CountingStore, Op, OpCounter, OpCounts, OpKind, Read};
pub use http::{HttpSource, Transport, content_range_total};
pub use memory::MemoryStore;
pub use prefix::PrefixStore;

/// `Send + Sync` on native targets, nothing on wasm32 where JS-backed values are neither.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSend for T {}
/// `Send + Sync` on native targets, nothing on wasm32 where JS-backed values are neither.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// What a store knows about an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    /// Size in bytes of the whole object (not of a range read of it).
    pub size: u64,
    /// The store's version tag: an S3/R2 ETag, an HTTP entity tag, or size and mtime on a
    /// local folder.
    pub etag: Option<String>,
    /// Last modification, in milliseconds since the Unix epoch, where the store says.
    pub last_modified: Option<u64>,
}

/// An object's bytes (all of it, or the range asked for) and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The bytes read.
    pub bytes: Bytes,
    /// The whole object's metadata.
    pub meta: ObjectMeta,
}

/// How to read an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Bytes `start..end` only; the whole object when `None`.
    pub range: Option<Range<u64>>,
    /// Read only if the object's tag is this one, else [`crate::Error::Conflict`]. S3, R2,
    /// HTTP and local folders apply it where the tag is one of their own kind (a tag recorded
    /// through another store cannot match; the size still is checked by the caller); the
    /// memory store compares any tag.
    pub if_match: Option<String>,
    /// Send no body when the object's tag is this one: [`Fetched::NotModified`].
    pub if_none_match: Option<String>,
}

impl GetOptions {
    /// Bytes `range` of the object.
    pub fn range(range: Range<u64>) -> Self {
        Self {
            range: Some(range),
            ..Self::default()
        }
    }
}

/// The outcome of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// There is no such object.
    Missing,
    /// The object still has the tag of `if_none_match`.
    NotModified,
    /// The bytes.
    Object(Object),
}

impl Fetched {
    /// The object, `None` when missing.
    ///
    /// # Errors
    /// [`Error::Storage`] for [`Fetched::NotModified`], which only a conditional read gives.
    pub fn object(self) -> Result<Option<Object>> {
        match self {
            Fetched::Missing => Ok(None),
            Fetched::Object(o) => Ok(Some(o)),
            Fetched::NotModified => Err(Error::Storage(crate::error::Fault::bare(
                "the store answered 'not modified' to an unconditional read",
            ))),
        }
    }
}

/// How a conditional write must find the object it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is there.
    None,
    /// Write only if the object does not exist.
    Absent,
    /// Write only if the object's current tag is this one.
    Matches(String),
}

/// An object store addressed by `/`-separated keys, read-only.
///
/// A missing object is [`Fetched::Missing`] (or `None`), never an error, so callers decide
/// whether absence is a 404 (an unknown dataset) or a 502 (a source the index names has gone).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait ReadStore: MaybeSend {
    /// Read an object, or a range of it, as `options` say. A range past the end is
    /// [`Error::RangeNotSatisfiable`].
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Timeout`] when the backend fails,
    /// [`Error::Conflict`] when `if_match` fails, [`Error::RangeNotSatisfiable`] past the end.
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched>;

    /// Size, tag and modification time of the object.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Keys under `prefix`, sorted.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails or cannot list.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// A store the indexer writes: reads, plus conditional writes and deletes.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait WriteStore: ReadStore {
    /// Write an object if `precondition` holds; `Ok(false)` when it does not.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails.
    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool>;

    /// Remove an object; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails.
    async fn delete(&self, key: &str) -> Result<bool>;
}

/// The reads everyone makes, on any [`ReadStore`].
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait ReadStoreExt {
    /// The whole object.
    ///
    /// # Errors
    /// As [`ReadStore::get_with`].
    async fn get(&self, key: &str) -> Result<Option<Object>>;

    /// Bytes `range` of the object.
    ///
    /// # Errors
    /// As [`ReadStore::get_with`].
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Object>>;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<S: ReadStore + ?Sized> ReadStoreExt for S {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        self.get_with(key, &GetOptions::default()).await?.object()
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Object>> {
        self.get_with(key, &GetOptions::range(range))
            .await?
            .object()
    }
}

/// Slice `range` out of `bytes` (an object of that many bytes named `key`), or say why not.
///
/// # Errors
/// [`Error::RangeNotSatisfiable`] when the range is inverted or runs past the end.
pub fn slice_range(key: &str, bytes: &Bytes, range: &Range<u64>) -> Result<Bytes> {
    let len = bytes.len() as u64;
    check_range(key, range, len)?;
    // Both bounds are <= len, which is a usize.
    Ok(bytes.slice(range.start as usize..range.end as usize))
}

/// Refuse `range` of an object of `len` bytes when it is inverted or runs past the end.
///
/// # Errors
/// [`Error::RangeNotSatisfiable`] naming the range and the size.
pub fn check_range(key: &str, range: &Range<u64>, len: u64) -> Result<()> {
    if range.start > range.end || range.end > len {
        return Err(Error::range(
            key,
            format!(
                "bytes {}..{} requested of an object of {len} bytes",
                range.start, range.end
            ),
        ));
    }
    Ok(())
}

/// The conflict of an object that is `now` bytes long where `indexed` were recorded.
pub fn size_changed(key: &str, now: u64, indexed: u64) -> Error {
    Error::changed(
        key,
        format!("its size is {now} bytes, {indexed} when indexed"),
    )
}

/// The tag an S3-compatible store (S3, R2) gives an object, unquoted: 32 hex digits of MD5,
/// with `-parts` for a multipart upload. `None` for tags of other stores (a local folder's
/// size and mtime), which such a store can never match, so a read is checked on size alone.
pub fn object_store_etag(tag: &str) -> Option<&str> {
    let t = tag.trim_matches('"');
    let (md5, parts) = t.split_once('-').unwrap_or((t, "1"));
    let hex = md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit());
    let parts = !parts.is_empty() && parts.bytes().all(|b| b.is_ascii_digit());
    (hex && parts).then_some(t)
}

/// A recorded tag an HTTP server can be asked to match (`If-Match`): a strong one, quoted.
pub fn strong_etag(tag: Option<&str>) -> Option<&str> {
    tag.filter(|t| t.starts_with('"'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_s3_style_tags_are_object_store_etags() {
        let md5 = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(object_store_etag(&format!("\"{md5}\"")), Some(md5));
        assert_eq!(
            object_store_etag(&format!("{md5}-12")),
            Some(format!("{md5}-12").as_str())
        );
        assert_eq!(object_store_etag("\"1234-1700000000123456789\""), None);
        assert_eq!(object_store_etag(&format!("{md5}-")), None);
        assert_eq!(object_store_etag("W/\"abc\""), None);
    }
}
