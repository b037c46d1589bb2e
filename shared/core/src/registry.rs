//! `index.json`: the bucket's registry of datasets and their current versions.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Precondition, ReadStore, ReadStoreExt, WriteStore};

/// Key of the registry in the bucket.
pub const INDEX_KEY: &str = "index.json";
/// Version of the registry's format, apart from the manifests' (a registry names versions;
/// it holds none of their tables).
pub const REGISTRY_FORMAT: u32 = 1;

/// How often a conditional registry write is retried after losing a race.
const PUBLISH_ATTEMPTS: usize = 20;
/// Versions a dataset's entry remembers after its current one (for `cloudify gc --keep`).
pub const PREVIOUS_KEPT: usize = 16;

/// The registry document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// [`REGISTRY_FORMAT`] of the writer.
    pub format_version: u32,
    /// Dataset id → entry.
    pub datasets: BTreeMap<String, Entry>,
}

/// One dataset in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Content hash of the dataset's current manifest.
    pub version: String,
    /// The STAC collection the dataset belongs to.
    #[serde(default = "default_collection")]
    pub collection: String,
    /// Versions it replaced, newest first (at most [`PREVIOUS_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<String>,
    /// Catalogued, not served ([`crate::Manifest::catalog_only`]): `/datasets` leaves it out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catalog_only: bool,
}

/// The collection of datasets indexed without naming one.
pub const DEFAULT_COLLECTION: &str = "datasets";

fn default_collection() -> String {
    DEFAULT_COLLECTION.to_owned()
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            format_version: REGISTRY_FORMAT,
            datasets: BTreeMap::new(),
        }
    }
}

/// The record of which datasets each discovery prefix gave (`cloudify index --config`).
pub const DISCOVERED_KEY: &str = "discovered.json";

/// Hex digits of the content hash that names a dataset's version.
pub const VERSION_LEN: usize = 20;

/// Folder of one dataset version in the bucket.
pub fn version_dir(id: &str, version: &str) -> String {
    format!("datasets/{id}/{version}")
}

/// Key of one dataset version's manifest.
pub fn manifest_key(id: &str, version: &str) -> String {
    format!("{}/manifest.json", version_dir(id, version))
}

impl Registry {
    /// Read the registry; an empty one when the bucket has none yet.
    ///
    /// # Errors
    /// [`Error::Storage`] when the read fails, [`Error::Json`]/[`Error::Corrupt`] when the document
    /// is malformed or of another format version.
    pub async fn load(store: &dyn ReadStore) -> Result<Self> {
        Ok(Self::load_tagged(store).await?.0)
    }

    /// The registry and the precondition that replaces exactly this version of it.
    async fn load_tagged(store: &dyn ReadStore) -> Result<(Self, Precondition)> {
        let Some(o) = store.get(INDEX_KEY).await? else {
            return Ok((Self::default(), Precondition::Absent));
        };
        let registry = Self::parse(&o.bytes)?;
        let pre = o
            .meta
            .etag
            .map_or(Precondition::None, Precondition::Matches);
        Ok((registry, pre))
    }

    /// Parse `index.json` and check its format version.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON, [`Error::Corrupt`] for another format version.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let registry: Registry =
            serde_json::from_slice(bytes).map_err(|e| Error::json(INDEX_KEY, e))?;
        if registry.format_version != REGISTRY_FORMAT {
            return Err(Error::corrupt(
                INDEX_KEY,
                format!(
                    "the registry has format {} where {REGISTRY_FORMAT} is expected",
                    registry.format_version
                ),
            ));
        }
        Ok(registry)
    }

    /// The current version of `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown dataset.
    pub fn version(&self, id: &str) -> Result<&str> {
        self.datasets
            .get(id)
            .map(|e| e.version.as_str())
            .ok_or_else(|| Error::NotFound(format!("no dataset {id:?}")))
    }

    /// Point `id` at `version` by read-merge-write guarded by a conditional write, so concurrent
    /// indexers never drop each other's datasets. Returns `false` when nothing had to change.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails or the race is lost [`PUBLISH_ATTEMPTS`] times.
    pub async fn publish(
        store: &dyn WriteStore,
        id: &str,
        version: &str,
        collection: &str,
        catalog_only: bool,
    ) -> Result<bool> {
        Self::update(store, id, |current| {
            let mut previous = Vec::new();
            if let Some(e) = current {
                if e.version == version && e.collection == collection {
                    return None;
                }
                previous.push(e.version.clone());
                previous.extend(e.previous.iter().cloned());
            }
            previous.retain(|v| v != version);
            previous.dedup();
            previous.truncate(PREVIOUS_KEPT);
            Some(Some(Entry {
                version: version.to_owned(),
                collection: collection.to_owned(),
                previous,
                catalog_only,
            }))
        })
        .await
    }

    /// Remove `id`; `false` when it was not there.
    ///
    /// # Errors
    /// As [`Self::publish`].
    pub async fn remove(store: &dyn WriteStore, id: &str) -> Result<bool> {
        Self::update(store, id, |current| current.map(|_| None)).await
    }

    /// Read-merge-write of one entry: `change` maps the current entry to the new one (`None`
    /// removes it), or returns `None` for no change. Returns whether anything was written.
    async fn update(
        store: &dyn WriteStore,
        id: &str,
        change: impl Fn(Option<&Entry>) -> Option<Option<Entry>>,
    ) -> Result<bool> {
        for _ in 0..PUBLISH_ATTEMPTS {
            let (mut registry, pre) = Self::load_tagged(store).await?;
            match change(registry.datasets.get(id)) {
                None => return Ok(false),
                Some(Some(entry)) => registry.datasets.insert(id.to_owned(), entry),
                Some(None) => registry.datasets.remove(id),
            };
            let body =
                serde_json::to_vec_pretty(&registry).map_err(|e| Error::json(INDEX_KEY, e))?;
            if store.put(INDEX_KEY, Bytes::from(body), pre).await? {
                return Ok(true);
            }
        }
        Err(Error::storage(
            INDEX_KEY,
            format!("the registry kept changing under {PUBLISH_ATTEMPTS} attempts to update {id}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::MemoryStore;
    use futures_executor::block_on;

    #[test]
    fn publish_merges_and_is_idempotent() {
        block_on(async {
            let s = MemoryStore::new();
            assert!(Registry::publish(&s, "a", "v1", "c", false).await.unwrap());
            assert!(Registry::publish(&s, "b", "v2", "c", false).await.unwrap());
            assert!(!Registry::publish(&s, "b", "v2", "c", false).await.unwrap());
            let r = Registry::load(&s).await.unwrap();
            assert_eq!(r.version("a").unwrap(), "v1");
            assert_eq!(r.version("b").unwrap(), "v2");
            assert!(matches!(r.version("c"), Err(Error::NotFound(_))));
        });
    }

    #[test]
    fn replaced_versions_are_remembered_and_removal_keeps_the_others() {
        block_on(async {
            let s = MemoryStore::new();
            for v in ["v1", "v2", "v3", "v2"] {
                assert!(Registry::publish(&s, "a", v, "c", false).await.unwrap());
            }
            Registry::publish(&s, "b", "w1", "c", false).await.unwrap();
            let r = Registry::load(&s).await.unwrap();
            assert_eq!(r.datasets["a"].version, "v2");
            assert_eq!(r.datasets["a"].previous, vec!["v3", "v1"]);
            assert!(Registry::remove(&s, "a").await.unwrap());
            assert!(!Registry::remove(&s, "a").await.unwrap());
            let r = Registry::load(&s).await.unwrap();
            assert_eq!(r.datasets.keys().collect::<Vec<_>>(), vec!["b"]);
        });
    }
}
