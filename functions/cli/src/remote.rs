//! Indexing sources behind `http(s)://` URLs: the indexer's byte-range reads become ranged
//! GETs of whole blocks, cached, so the metadata's many small reads cost few requests and the
//! data chunks (never read) are never sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use cloudify_core::store::strong_etag;
use cloudify_index::{RangeRead, SourceSpec};
use cloudify_stores::HttpStore;

/// Bytes fetched per block: small, as blocks near metadata are mostly data.
const BLOCK: u64 = 16 << 10;
/// Blocks kept per source (4 MiB).
const CACHED_BLOCKS: usize = 256;

/// A remote source as the indexer reads it.
struct HttpFile {
    store: HttpStore,
    key: String,
    size: u64,
    etag: Option<String>,
    blocks: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
}

impl HttpFile {
    /// Fetch blocks `first..=last` in one request, and keep them.
    fn fetch(&self, first: u64, last: u64) -> std::io::Result<()> {
        let range = first * BLOCK..((last + 1) * BLOCK).min(self.size);
        let strong = strong_etag(self.etag.as_deref());
        let (bytes, _) = self
            .store
            .range(&self.key, &range, strong)
            .map_err(std::io::Error::other)?
            .ok_or_else(|| std::io::Error::other(format!("{} vanished", self.key)))?;
        if bytes.len() as u64 != range.end - range.start {
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

impl RangeRead for HttpFile {
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
            self.fetch(missing[i], missing[j])?;
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

/// The store that reads `url`'s scheme, and the key it knows `url` by; `None` for other URLs.
pub fn store_for(url: &str) -> Option<(HttpStore, &str)> {
    match url.split_once("://")? {
        ("http", rest) => Some((HttpStore::new("http"), rest)),
        ("https", rest) => Some((HttpStore::new("https"), rest)),
        _ => None,
    }
}

/// A source named by an `http(s)://` URL: its size and tag by HEAD, its bytes by range.
///
/// # Errors
/// When the URL does not answer, or answers without a length.
pub fn spec(url: &str) -> anyhow::Result<SourceSpec> {
    let (store, key) = store_for(url).ok_or_else(|| anyhow!("{url}: not an http(s) URL"))?;
    let meta = store
        .meta(key)
        .map_err(|e| anyhow!("{url}: {e}"))?
        .ok_or_else(|| anyhow!("{url}: no such object (404)"))?;
    let reader = HttpFile {
        key: key.to_owned(),
        size: meta.size,
        etag: meta.etag.clone(),
        store,
        blocks: Mutex::new(HashMap::new()),
    };
    Ok(SourceSpec {
        url: url.to_owned(),
        absolute_url: url.to_owned(),
        meta,
        reader: Arc::new(reader),
    })
}
