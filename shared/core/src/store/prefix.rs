//! A store seen from one of its folders.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Fetched, GetOptions, ObjectMeta, Precondition, ReadStore, WriteStore};
use crate::error::Result;

/// Every key is read (and written) below `prefix` of the inner store: the bucket of a
/// function whose index lives in a folder of a larger bucket.
pub struct PrefixStore<S: ?Sized> {
    inner: Arc<S>,
    prefix: String,
}

impl<S: ?Sized> PrefixStore<S> {
    /// `inner`'s objects under `prefix` (slashes at either end ignored; empty: all of it).
    pub fn new(inner: Arc<S>, prefix: &str) -> Self {
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
impl<S: ReadStore + ?Sized> ReadStore for PrefixStore<S> {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        self.inner.get_with(&self.key(key), options).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(&self.key(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let keys = self.inner.list(&self.key(prefix)).await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned))
            .collect())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<S: WriteStore + ?Sized> WriteStore for PrefixStore<S> {
    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool> {
        self.inner.put(&self.key(key), bytes, precondition).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.delete(&self.key(key)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{MemoryStore, ReadStoreExt, check_reads, check_writes};
    use futures_executor::block_on;

    #[test]
    fn prefix_store_reads_writes_and_lists_below_its_folder() {
        block_on(async {
            let inner = Arc::new(MemoryStore::new());
            let p = PrefixStore::new(inner.clone(), "/idx/");
            assert!(
                p.put("a/b", Bytes::from_static(b"xyz"), Precondition::Absent)
                    .await
                    .unwrap()
            );
            assert_eq!(inner.get("idx/a/b").await.unwrap().unwrap().bytes, "xyz");
            assert_eq!(p.get_range("a/b", 1..2).await.unwrap().unwrap().bytes, "y");
            assert_eq!(p.list("a").await.unwrap(), vec!["a/b".to_owned()]);
            let whole = PrefixStore::new(inner.clone(), "");
            assert_eq!(whole.get("idx/a/b").await.unwrap().unwrap().bytes, "xyz");
            let fixture = check_writes(&p, "conformance/").await.unwrap();
            check_reads(&p, &fixture).await.unwrap();
        });
    }
}
