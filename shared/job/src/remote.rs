//! Indexing sources behind `http(s)://` and `s3://` URLs: the indexer's byte-range reads become
//! ranged GETs of whole blocks, cached, so the metadata's many small reads cost few requests and
//! the data chunks (never read) are never sent.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use cloudify_core::store::{Fetched, GetOptions, ObjectMeta, ReadStore};
use cloudify_core::{HttpHeaders, Timeouts};
use cloudify_index::{RangeRead, SourceSpec};
use cloudify_stores::{http_source, s3_sources};

use crate::Job;

/// Bytes fetched per block: small, as blocks near metadata are mostly data.
const BLOCK: u64 = 16 << 10;
/// Blocks kept per source (4 MiB).
const CACHED_BLOCKS: usize = 256;

/// One ranged read of the object as indexed (its tag checked where the store can).
type Fetch = Box<dyn Fn(Range<u64>) -> cloudify_core::Result<Vec<u8>> + Send + Sync>;

/// A remote source as the indexer reads it.
struct RemoteFile {
    fetch: Fetch,
    size: u64,
    blocks: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
}

impl RemoteFile {
    fn new(size: u64, fetch: Fetch) -> Self {
        Self {
            fetch,
            size,
            blocks: Mutex::new(HashMap::new()),
        }
    }

    /// Fetch blocks `first..=last` in one request, and keep them.
    fn load(&self, first: u64, last: u64) -> std::io::Result<()> {
        let range = first * BLOCK..((last + 1) * BLOCK).min(self.size);
        let want = range.end - range.start;
        let bytes = (self.fetch)(range).map_err(std::io::Error::other)?;
        if bytes.len() as u64 != want {
            return Err(std::io::Error::other("short read"));
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if blocks.len() + (last - first + 1) as usize > CACHED_BLOCKS {
            blocks.clear();
        }
        for (i, b) in bytes.chunks(BLOCK as usize).enumerate() {
            blocks.insert(first + i as u64, Arc::new(b.to_vec()));
        }
        Ok(())
    }
}

impl RangeRead for RemoteFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        if end > self.size {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let missing: Vec<u64> = {
            let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
            (first..=last).filter(|b| !blocks.contains_key(b)).collect()
        };
        // One request per run of missing blocks.
        let mut i = 0;
        while i < missing.len() {
            let mut j = i;
            while j + 1 < missing.len() && missing[j + 1] == missing[j] + 1 {
                j += 1;
            }
            self.load(missing[i], missing[j])?;
            i = j + 1;
        }
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        for b in first..=last {
            let block = blocks
                .get(&b)
                .ok_or_else(|| std::io::Error::other("a block fell out of the cache"))?;
            let start = b * BLOCK;
            let from = offset.max(start);
            let to = end.min(start + block.len() as u64);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&block[(from - start) as usize..(to - start) as usize]);
        }
        Ok(())
    }
}

/// Whether `url` names a remote source (`http`, `https` or `s3`).
pub fn is_remote(url: &str) -> bool {
    matches!(url.split_once("://"), Some(("http" | "https" | "s3", _)))
}

/// The store that reads `url`'s scheme when it is `http(s)`, and the key it knows `url` by.
pub fn http_store_for<'u>(
    url: &'u str,
    headers: &Arc<HttpHeaders>,
    timeouts: Timeouts,
) -> Option<(Arc<dyn ReadStore>, &'u str)> {
    let (scheme, rest) = match url.split_once("://")? {
        ("http", rest) => ("http", rest),
        ("https", rest) => ("https", rest),
        _ => return None,
    };
    Some((
        Arc::new(http_source(scheme, headers.clone(), timeouts)),
        rest,
    ))
}

/// The store that reads `url` (`s3://` or `http(s)://`), and the key it knows `url` by.
pub(crate) async fn store_for<'u>(
    url: &'u str,
    job: &Job,
) -> anyhow::Result<(Arc<dyn ReadStore>, &'u str)> {
    match url.strip_prefix("s3://") {
        Some(key) => Ok((Arc::new(s3_sources().await.clone()), key)),
        None => http_store_for(url, &job.headers, job.timeouts)
            .ok_or_else(|| anyhow!("{url}: not a remote URL")),
    }
}

/// A source named by a remote URL: its size and tag by HEAD, its bytes by cached ranged reads,
/// each conditional on the tag. An `s3://` object inside `bucket` is recorded by its key there.
///
/// # Errors
/// When the object does not answer or is missing.
pub async fn spec(url: &str, job: &Job) -> anyhow::Result<SourceSpec> {
    if let Some(meta) = job.listed(url) {
        return spec_as(url, meta, job).await;
    }
    let (store, key) = store_for(url, job).await?;
    let meta = store
        .head(key)
        .await
        .map_err(|e| anyhow!("{url}: {}", e.internal()))?
        .ok_or_else(|| anyhow!("{url}: no such object (404)"))?;
    spec_as(url, meta, job).await
}

/// [`spec`] of an object whose size and tag a listing or HEAD already gave.
///
/// # Errors
/// When `url` is not an `s3://` or `http(s)://` URL.
pub async fn spec_as(url: &str, meta: ObjectMeta, job: &Job) -> anyhow::Result<SourceSpec> {
    let (store, key) = store_for(url, job).await?;
    let (key, size, etag) = (key.to_owned(), meta.size, meta.etag.clone());
    let handle = tokio::runtime::Handle::current();
    // The indexer reads on a blocking thread, where waiting on the runtime is allowed.
    let fetch: Fetch = Box::new(move |range| {
        let options = GetOptions {
            range: Some(range),
            if_match: etag.clone(),
            if_none_match: None,
        };
        match handle.block_on(store.get_with(&key, &options))? {
            Fetched::Object(o) if o.meta.size == size => Ok(o.bytes.to_vec()),
            Fetched::Object(o) => Err(cloudify_core::store::size_changed(&key, o.meta.size, size)),
            _ => Err(cloudify_core::Error::storage(
                &key,
                "vanished while indexing",
            )),
        }
    });
    Ok(SourceSpec {
        url: job.bucket.key_of(url).unwrap_or(url).to_owned(),
        absolute_url: url.to_owned(),
        reader: Arc::new(RemoteFile::new(meta.size, fetch)),
        meta,
    })
}

/// The objects an `s3://` source names: itself, every object below it when it ends in `/`, or
/// those its glob pattern (`*`, `?`, `[...]` within one path segment) matches; sorted.
///
/// # Errors
/// When the listing fails, the pattern is malformed or matches nothing.
pub async fn expand_s3(url: &str, job: &Job) -> anyhow::Result<Vec<String>> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Ok(vec![url.to_owned()]);
    };
    let literal = rest.find(['*', '?', '[']).unwrap_or(rest.len());
    if literal == rest.len() && !rest.ends_with('/') {
        return Ok(vec![url.to_owned()]);
    }
    let pattern = glob::Pattern::new(rest).map_err(|e| anyhow!("{url}: {e}"))?;
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let listed = s3_sources()
        .await
        .list_meta(&rest[..literal])
        .await
        .map_err(|e| anyhow!("{url}: {}", e.internal()))?;
    let matched: Vec<(String, ObjectMeta)> = listed
        .into_iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .filter(|(k, _)| literal == rest.len() || pattern.matches_with(k, options))
        .map(|(k, meta)| (format!("s3://{k}"), meta))
        .collect();
    if matched.is_empty() {
        return Err(anyhow!("{url}: no object matches"));
    }
    let urls = matched.iter().map(|(u, _)| u.clone()).collect();
    job.remember(matched);
    Ok(urls)
}
