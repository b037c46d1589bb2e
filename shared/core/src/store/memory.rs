//! A store held in memory: for tests, and the model the other backends are checked against.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Fetched, GetOptions, Object, ObjectMeta, Precondition, ReadStore, WriteStore, slice_range,
};
use crate::error::{Error, Result};

/// Objects in a map, each tagged with the generation of its last write.
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

fn meta(bytes: &Bytes, generation: u64) -> ObjectMeta {
    ObjectMeta {
        size: bytes.len() as u64,
        etag: Some(format!("\"{generation}\"")),
        last_modified: None,
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ReadStore for MemoryStore {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        let Some((bytes, generation)) = self.objects().get(key).cloned() else {
            return Ok(Fetched::Missing);
        };
        let meta = meta(&bytes, generation);
        if let Some(want) = &options.if_match
            && meta.etag.as_deref() != Some(want.as_str())
        {
            return Err(Error::changed(key, format!("its tag is no longer {want}")));
        }
        if options.if_none_match.is_some() && options.if_none_match == meta.etag {
            return Ok(Fetched::NotModified);
        }
        let bytes = match &options.range {
            Some(r) => slice_range(key, &bytes, r)?,
            None => bytes,
        };
        Ok(Fetched::Object(Object { bytes, meta }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.objects().get(key).map(|(b, g)| meta(b, *g)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .objects()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl WriteStore for MemoryStore {
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

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.objects().remove(key).is_some())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{check_reads, check_writes};
    use futures_executor::block_on;

    #[test]
    fn the_memory_store_passes_the_conformance_suite() {
        block_on(async {
            let s = MemoryStore::new();
            let fixture = check_writes(&s, "conformance/").await.unwrap();
            check_reads(&s, &fixture).await.unwrap();
        });
    }
}
