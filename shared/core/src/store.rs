//! The storage trait every runtime implements, an in-memory store and a read-counting decorator.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};

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

/// What a store knows about an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// The store's version tag: an S3/R2 ETag, or size and mtime on a local folder.
    pub etag: Option<String>,
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

/// An object store addressed by `/`-separated keys.
///
/// A missing object is `Ok(None)`, never an error, so callers decide whether absence is a 404
/// (an unknown dataset) or a 502 (a source the index names has gone).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Store: MaybeSend {
    /// The whole object.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Bytes `range` of the object; a range past its end is [`Error::RangeNotSatisfiable`].
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails, [`Error::RangeNotSatisfiable`] past the end.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>>;

    /// Bytes `range` of an object that must still be as indexed: of `size` bytes and, where
    /// the store reports tags, tagged `etag`. Stores that can make the read itself conditional
    /// (S3/R2 `If-Match`) override this to do it in one request.
    ///
    /// # Errors
    /// [`Error::Conflict`] naming what changed, else as [`Store::get_range`].
    async fn get_range_checked(
        &self,
        key: &str,
        range: Range<u64>,
        size: u64,
        etag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        let Some(meta) = self.head(key).await? else {
            return Ok(None);
        };
        if meta.size != size {
            return Err(size_changed(meta.size, size));
        }
        if let (Some(want), Some(have)) = (etag, meta.etag.as_deref())
            && want != have
        {
            return Err(Error::Conflict(format!(
                "its tag is {have}, {want} when indexed"
            )));
        }
        self.get_range(key, range).await
    }

    /// Size and tag of the object.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Write an object if `precondition` holds; `Ok(false)` when it does not.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails.
    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool>;

    /// Keys under `prefix`, sorted.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Remove an object; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend fails or is read-only.
    async fn delete(&self, key: &str) -> Result<bool>;
}

/// A store held in memory: for tests, and as the model the other backends are tested against.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Bytes, u64)>>,
    generation: AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, u64)>> {
        // A poisoned lock only means another test thread panicked; the map is still whole.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Slice `range` out of `bytes`, or say why it cannot be.
///
/// # Errors
/// [`Error::RangeNotSatisfiable`] when the range is empty-inverted or runs past the end.
pub fn slice_range(key: &str, bytes: &Bytes, range: Range<u64>) -> Result<Bytes> {
    let len = bytes.len() as u64;
    if range.start > range.end || range.end > len {
        return Err(Error::RangeNotSatisfiable(format!(
            "bytes {}..{} of {key} requested, object has {len} bytes",
            range.start, range.end
        )));
    }
    // Both bounds are <= len, which is a usize.
    Ok(bytes.slice(range.start as usize..range.end as usize))
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.objects().get(key).map(|(b, _)| b.clone()))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        match self.objects().get(key) {
            Some((b, _)) => slice_range(key, b, range).map(Some),
            None => Ok(None),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.objects().get(key).map(|(b, generation)| ObjectMeta {
            size: b.len() as u64,
            etag: Some(format!("\"{generation}\"")),
        }))
    }

    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool> {
        let mut objects = self.objects();
        let current = objects.get(key).map(|(_, g)| format!("\"{g}\""));
        let ok = match (&precondition, &current) {
            (Precondition::None, _) | (Precondition::Absent, None) => true,
            (Precondition::Matches(want), Some(have)) => want == have,
            _ => false,
        };
        if ok {
            let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
            objects.insert(key.to_owned(), (bytes, generation));
        }
        Ok(ok)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .objects()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.objects().remove(key).is_some())
    }
}

/// The conflict of an object that is `now` bytes long where `indexed` were recorded.
pub fn size_changed(now: u64, indexed: u64) -> Error {
    Error::Conflict(format!("its size is {now} bytes, {indexed} when indexed"))
}

/// What the status of a ranged HTTP GET of `url` means, for every HTTP-backed store:
/// `Ok(true)` for 206 (the body is the range), `Ok(false)` for a missing object.
///
/// # Errors
/// [`Error::Conflict`] for 412 (`if_match` failed), [`Error::RangeNotSatisfiable`] for 416,
/// [`Error::Storage`] for a server that ignored Range (200) and any other status.
pub fn ranged_answer(
    status: u16,
    url: &str,
    range: &Range<u64>,
    if_match: Option<&str>,
) -> Result<bool> {
    match status {
        206 => Ok(true),
        404 | 410 => Ok(false),
        412 => Err(Error::Conflict(format!(
            "it no longer has the tag {}",
            if_match.unwrap_or("?")
        ))),
        416 => Err(Error::RangeNotSatisfiable(format!(
            "bytes {}..{} of {url}",
            range.start, range.end
        ))),
        200 => Err(Error::Storage(format!(
            "{url} ignored the Range header; sources must be served with byte ranges"
        ))),
        s => Err(http_status(url, s)),
    }
}

/// The error of an HTTP answer that is neither data nor absence; a refusal says where its
/// credentials are configured.
pub fn http_status(url: &str, status: u16) -> Error {
    let hint = match status {
        401 | 403 => {
            " (access denied: request headers for it, such as a token, are set in \
             CLOUDIFY_HTTP_HEADERS, or HTTP_HEADERS on a Worker)"
        }
        _ => "",
    };
    Error::Storage(format!("{url} answered HTTP {status}{hint}"))
}

/// The complete length in a `Content-Range: bytes a-b/total` header.
pub fn content_range_total(value: &str) -> Option<u64> {
    value.rsplit_once('/')?.1.trim().parse().ok()
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

/// A store seen from one of its folders: every key is read and written below `prefix`.
pub struct PrefixStore {
    inner: std::sync::Arc<dyn Store>,
    prefix: String,
}

impl PrefixStore {
    /// `inner`'s objects under `prefix` (slashes at either end ignored; empty: all of it).
    pub fn new(inner: std::sync::Arc<dyn Store>, prefix: &str) -> Self {
        let p = prefix.trim_matches('/');
        Self {
            inner,
            prefix: if p.is_empty() {
                String::new()
            } else {
                format!("{p}/")
            },
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Store for PrefixStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.get(&self.key(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        self.inner.get_range(&self.key(key), range).await
    }

    async fn get_range_checked(
        &self,
        key: &str,
        range: Range<u64>,
        size: u64,
        etag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        self.inner
            .get_range_checked(&self.key(key), range, size, etag)
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(&self.key(key)).await
    }

    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool> {
        self.inner.put(&self.key(key), bytes, precondition).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let keys = self.inner.list(&self.key(prefix)).await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.delete(&self.key(key)).await
    }
}

/// One read a [`CountingStore`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The object read.
    pub key: String,
    /// The byte range, or `None` for a whole-object `get`.
    pub range: Option<Range<u64>>,
}

/// A decorator that records every read and write passed to the inner store: the instrument
/// behind the "one range read per chunk" and "no change, no write" guarantees.
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    reads: Mutex<Vec<Read>>,
    writes: Mutex<Vec<String>>,
}

impl<S> CountingStore<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            reads: Mutex::new(Vec::new()),
            writes: Mutex::new(Vec::new()),
        }
    }

    /// The keys of every write and delete attempted so far, oldest first; clears the log.
    pub fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut *self.writes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record_write(&self, key: &str) {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key.to_owned());
    }

    /// Every read so far, oldest first; clears the log.
    pub fn take_reads(&self) -> Vec<Read> {
        std::mem::take(&mut *self.reads.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, key: &str, range: Option<Range<u64>>) {
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Read {
                key: key.to_owned(),
                range,
            });
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<S: Store> Store for CountingStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.record(key, None);
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        self.record(key, Some(range.clone()));
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool> {
        self.record_write(key);
        self.inner.put(key, bytes, precondition).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.record_write(key);
        self.inner.delete(key).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_executor::block_on;

    #[test]
    fn memory_store_ranges_and_preconditions() {
        block_on(async {
            let s = MemoryStore::new();
            assert!(
                s.put("a", Bytes::from_static(b"hello"), Precondition::Absent)
                    .await
                    .unwrap()
            );
            assert!(
                !s.put("a", Bytes::from_static(b"x"), Precondition::Absent)
                    .await
                    .unwrap()
            );
            let tag = s.head("a").await.unwrap().unwrap().etag.unwrap();
            assert_eq!(
                s.get_range("a", 1..4).await.unwrap().unwrap(),
                Bytes::from_static(b"ell")
            );
            assert!(matches!(
                s.get_range("a", 3..9).await,
                Err(Error::RangeNotSatisfiable(_))
            ));
            assert!(
                s.put(
                    "a",
                    Bytes::from_static(b"bye"),
                    Precondition::Matches(tag.clone())
                )
                .await
                .unwrap()
            );
            assert!(
                !s.put("a", Bytes::from_static(b"no"), Precondition::Matches(tag))
                    .await
                    .unwrap()
            );
            assert_eq!(s.get("missing").await.unwrap(), None);
            assert_eq!(s.list("").await.unwrap(), vec!["a".to_owned()]);
        });
    }

    #[test]
    fn prefix_store_reads_writes_and_lists_below_its_folder() {
        block_on(async {
            let inner = std::sync::Arc::new(MemoryStore::new());
            let p = PrefixStore::new(inner.clone(), "/idx/");
            assert!(
                p.put("a/b", Bytes::from_static(b"xyz"), Precondition::Absent)
                    .await
                    .unwrap()
            );
            assert_eq!(inner.get("idx/a/b").await.unwrap().unwrap(), "xyz");
            assert_eq!(p.get_range("a/b", 1..2).await.unwrap().unwrap(), "y");
            assert_eq!(p.list("a").await.unwrap(), vec!["a/b".to_owned()]);
            let whole = PrefixStore::new(inner, "");
            assert_eq!(whole.get("idx/a/b").await.unwrap().unwrap(), "xyz");
        });
    }

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
