//! Two indexers writing the static catalog at once: one that read `index.json` before the
//! other published must not leave the catalog without the other's dataset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::registry::Registry;
use cloudify_core::stac::{self, CatalogInfo};
use cloudify_core::store::{Fetched, GetOptions, Precondition, ReadStoreExt};
use cloudify_core::{MemoryStore, ObjectMeta, ReadStore, Result, WriteStore};
use cloudify_index::{Kept, LocalFile, ServeOptions, SourceSpec, publish, read_dataset};

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sample.nc")
}

/// Index the sample as dataset `id` of collection `c`.
async fn index(store: &dyn WriteStore, id: &str) {
    let path = sample();
    let spec = SourceSpec {
        url: format!("file://{}", path.display()),
        absolute_url: format!("file://{}", path.display()),
        meta: ObjectMeta {
            size: std::fs::metadata(&path).unwrap().len(),
            ..ObjectMeta::default()
        },
        reader: Arc::new(LocalFile::open(&path).unwrap()),
    };
    let indexed = read_dataset(
        id,
        &[spec],
        &ServeOptions::default(),
        None,
        &Kept::default(),
    )
    .unwrap();
    publish(store, &indexed, "c").await.unwrap();
}

/// A bucket in which, just before the first catalog writer writes collection `c`, a second
/// indexer publishes dataset `late` and writes the whole catalog: the first writer read
/// `index.json` before `late` existed.
struct Interleaved {
    inner: Arc<MemoryStore>,
    armed: Mutex<bool>,
}

#[async_trait]
impl ReadStore for Interleaved {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        self.inner.get_with(key, options).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix).await
    }
}

#[async_trait]
impl WriteStore for Interleaved {
    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool> {
        let fire =
            key == stac::collection_key("c") && std::mem::take(&mut *self.armed.lock().unwrap());
        if fire {
            index(self.inner.as_ref(), "late").await;
            cloudify_index::write_catalog(self.inner.as_ref(), &CatalogInfo::default())
                .await
                .unwrap();
        }
        self.inner.put(key, bytes, precondition).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn a_writer_with_an_older_index_does_not_lose_a_newer_item() {
    let inner = Arc::new(MemoryStore::new());
    index(inner.as_ref(), "early").await;
    let bucket = Interleaved {
        inner: inner.clone(),
        armed: Mutex::new(true),
    };
    cloudify_index::write_catalog(&bucket, &CatalogInfo::default())
        .await
        .unwrap();
    assert!(!*bucket.armed.lock().unwrap(), "the second indexer ran");
    let registry = Registry::load(inner.as_ref()).await.unwrap();
    assert_eq!(registry.datasets.len(), 2);
    let collection = inner
        .get(&stac::collection_key("c"))
        .await
        .unwrap()
        .expect("the collection");
    let doc: serde_json::Value = serde_json::from_slice(&collection.bytes).unwrap();
    let items: Vec<&str> = doc["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"] == "item")
        .map(|l| l["href"].as_str().unwrap())
        .collect();
    assert_eq!(items.len(), 2, "{items:?}");
    for id in registry.datasets.keys() {
        assert!(
            inner
                .head(&stac::item_key("c", id))
                .await
                .unwrap()
                .is_some(),
            "the item of {id}"
        );
    }
}
