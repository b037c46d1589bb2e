//! From a request to what it names: the dataset (registry entry, version, manifest, pinned or
//! not) and, for a chunk key, the plan to answer it.
//!
//! A warm function keeps three caches here, shared by every request of the instance:
//! - `index.json`, trusted for the max-age unpinned answers carry and then revalidated with
//!   one conditional GET (no body when it did not change);
//! - parsed manifests, bounded in bytes, least recently used out;
//! - chunk-table records ([`RecordCache`]).
//!
//! A pinned version (`{id}@{version}`) reads no `index.json` for its chunks and documents (its
//! manifest is immutable); only its STAC item does, for the collection it is in.

use std::borrow::Cow;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use crate::codecs::ServedCodec;
use crate::error::{Error, Result};
use crate::key::{DatasetRef, View};
use crate::manifest::{self, ArrayMeta, Manifest};
use crate::read::{Clock, RecordCache};
use crate::registry::{DEFAULT_COLLECTION, Entry, INDEX_KEY, Registry, manifest_key};
use crate::store::{Fetched, GetOptions, ReadStore};
use crate::unpack;

/// Manifests a warm instance keeps at most, whatever their size.
const MANIFESTS: usize = 64;

/// A dataset a request names, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The dataset id.
    pub id: String,
    /// The version served.
    pub version: String,
    /// Whether the URL pinned the version (its answers never change).
    pub pinned: bool,
    /// The manifest of that version.
    pub manifest: Arc<Manifest>,
}

/// The registry as last read, its tag and when it was checked.
struct CachedRegistry {
    registry: Arc<Registry>,
    etag: Option<String>,
    checked_at: f64,
}

/// Parsed manifests by `(id, version)` with the size of the JSON each came from.
struct Manifests {
    lru: lru::LruCache<(String, String), (Arc<Manifest>, u64)>,
    bytes: u64,
    max_bytes: u64,
}

/// The caches of a warm function, and how long `index.json` is trusted.
pub struct Resolver {
    registry: Mutex<Option<CachedRegistry>>,
    manifests: Mutex<Manifests>,
    records: RecordCache,
    ttl_ms: u64,
    clock: Clock,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the caches are still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Resolver {
    /// Caches of at most `manifest_bytes` of manifests and `records` table records; the
    /// registry trusted for `ttl_ms` as `clock` counts (without a clock, revalidated on every
    /// request).
    pub fn new(manifest_bytes: u64, records: usize, ttl_ms: u64, clock: Clock) -> Self {
        Self {
            registry: Mutex::new(None),
            manifests: Mutex::new(Manifests {
                lru: lru::LruCache::new(NonZeroUsize::new(MANIFESTS).unwrap_or(NonZeroUsize::MIN)),
                bytes: 0,
                max_bytes: manifest_bytes,
            }),
            records: RecordCache::new(records),
            ttl_ms,
            clock,
        }
    }

    /// The record cache requests read tables through.
    pub fn records(&self) -> &RecordCache {
        &self.records
    }

    /// The registry: cached, or revalidated with one conditional GET once its time is up.
    ///
    /// # Errors
    /// [`Error::Storage`] when the read fails, [`Error::Json`]/[`Error::Corrupt`] for a
    /// malformed registry.
    pub async fn registry(&self, bucket: &dyn ReadStore) -> Result<Arc<Registry>> {
        let now = self.clock.map(|c| c());
        let held = {
            let cached = lock(&self.registry);
            match (cached.as_ref(), now) {
                (Some(c), Some(now)) if now - c.checked_at < self.ttl_ms as f64 => {
                    return Ok(c.registry.clone());
                }
                (c, _) => c.map(|c| (c.registry.clone(), c.etag.clone())),
            }
        };
        let options = GetOptions {
            if_none_match: held.as_ref().and_then(|(_, tag)| tag.clone()),
            ..GetOptions::default()
        };
        let (registry, etag) = match bucket.get_with(INDEX_KEY, &options).await? {
            Fetched::NotModified => {
                let Some((registry, etag)) = held else {
                    return Err(Error::storage(INDEX_KEY, "answered 'not modified' unasked"));
                };
                // Still current: only its time moves on, unless a newer one came in meanwhile.
                let mut cached = lock(&self.registry);
                if let Some(c) = cached.as_mut().filter(|c| c.etag == etag) {
                    c.checked_at = now.unwrap_or_default();
                }
                return Ok(registry);
            }
            Fetched::Missing => (Arc::new(Registry::default()), None),
            Fetched::Object(o) => (Arc::new(Registry::parse(&o.bytes)?), o.meta.etag),
        };
        *lock(&self.registry) = Some(CachedRegistry {
            registry: registry.clone(),
            etag,
            checked_at: now.unwrap_or_default(),
        });
        Ok(registry)
    }

    /// The registry entry of `id`.
    ///
    /// # Errors
    /// As [`Self::registry`]; [`Error::NotFound`] for an unknown dataset.
    pub async fn entry(&self, bucket: &dyn ReadStore, id: &str) -> Result<Entry> {
        self.registry(bucket)
            .await?
            .datasets
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no dataset {id:?}")))
    }

    /// The collection `id` belongs to (the default one once it has left the registry, for a
    /// pinned version).
    ///
    /// # Errors
    /// As [`Self::registry`].
    pub async fn collection(&self, bucket: &dyn ReadStore, id: &str) -> Result<String> {
        let registry = self.registry(bucket).await?;
        Ok(registry
            .datasets
            .get(id)
            .map_or(DEFAULT_COLLECTION, |e| e.collection.as_str())
            .to_owned())
    }

    /// The version a dataset reference names: pinned, else the registry's current one.
    ///
    /// # Errors
    /// As [`Self::entry`].
    pub async fn version(&self, bucket: &dyn ReadStore, ds: &DatasetRef) -> Result<String> {
        match &ds.version {
            Some(v) => Ok(v.clone()),
            None => Ok(self.entry(bucket, &ds.id).await?.version),
        }
    }

    /// The dataset `ds` names, its manifest read once per warm instance.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown dataset or version, [`Error::Storage`] for a
    /// manifest the registry lists but the bucket lacks, [`Error::Json`] for a malformed one.
    pub async fn dataset(&self, bucket: &dyn ReadStore, ds: &DatasetRef) -> Result<Resolved> {
        let version = self.version(bucket, ds).await?;
        self.at_version(bucket, ds, version).await
    }

    /// The dataset `ds` names at `version` (as [`Self::version`] resolved it).
    ///
    /// # Errors
    /// As [`Self::dataset`].
    pub async fn at_version(
        &self,
        bucket: &dyn ReadStore,
        ds: &DatasetRef,
        version: String,
    ) -> Result<Resolved> {
        let manifest = self
            .manifest(bucket, &ds.id, &version, ds.version.is_some())
            .await?;
        Ok(Resolved {
            id: ds.id.clone(),
            version,
            pinned: ds.version.is_some(),
            manifest,
        })
    }

    /// Every dataset's current version and manifest, from one registry.
    ///
    /// # Errors
    /// As [`Self::dataset`].
    pub async fn all(&self, bucket: &dyn ReadStore) -> Result<Vec<(Resolved, Entry)>> {
        let registry = self.registry(bucket).await?;
        let mut out = Vec::with_capacity(registry.datasets.len());
        for (id, entry) in &registry.datasets {
            let manifest = self.manifest(bucket, id, &entry.version, false).await?;
            let resolved = Resolved {
                id: id.clone(),
                version: entry.version.clone(),
                pinned: false,
                manifest,
            };
            out.push((resolved, entry.clone()));
        }
        Ok(out)
    }

    async fn manifest(
        &self,
        bucket: &dyn ReadStore,
        id: &str,
        version: &str,
        pinned: bool,
    ) -> Result<Arc<Manifest>> {
        let key = (id.to_owned(), version.to_owned());
        if let Some((m, _)) = lock(&self.manifests).lru.get(&key) {
            return Ok(m.clone());
        }
        let object = manifest_key(id, version);
        let Fetched::Object(o) = bucket.get_with(&object, &GetOptions::default()).await? else {
            return Err(if pinned {
                Error::NotFound(format!("dataset {id:?} has no version {version:?}"))
            } else {
                Error::storage(
                    object,
                    format!("the manifest of dataset {id}, which the registry lists, is missing"),
                )
            });
        };
        let m = Arc::new(Manifest::from_json(&o.bytes).map_err(|e| {
            e.at(&object)
                .context(format!("the manifest of dataset {id}"))
        })?);
        if m.id != id {
            return Err(Error::corrupt(
                object,
                format!("the manifest of dataset {id} is that of {:?}", m.id),
            ));
        }
        lock(&self.manifests).insert(key, m.clone(), o.bytes.len() as u64);
        Ok(m)
    }
}

impl Manifests {
    /// Keep `m`, dropping the least recently used over the byte bound; a manifest larger than
    /// the whole bound is used for its request only.
    fn insert(&mut self, key: (String, String), m: Arc<Manifest>, size: u64) {
        if size > self.max_bytes {
            return;
        }
        if let Some((_, (_, s))) = self.lru.push(key, (m, size)) {
            self.bytes -= s;
        }
        self.bytes += size;
        while self.bytes > self.max_bytes {
            match self.lru.pop_lru() {
                Some((_, (_, s))) => self.bytes -= s,
                None => break,
            }
        }
    }
}

/// How a chunk key is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `/kerchunk`, and the re-encoding routes where their codec passes the array through: the
    /// stored bytes of source chunk `linear`.
    Raw {
        /// Its index in the array's table.
        linear: u64,
    },
    /// `/zarr`, `/zarr3`: served chunk `idx`, assembled from the source chunks it overlaps.
    Served {
        /// Its index in the served grid (empty for a scalar).
        idx: Vec<u64>,
    },
}

/// The array `name` of `m` as `view` serves it: as stored for `/kerchunk`, as
/// [`unpack::served`] says for the re-encoding routes.
///
/// # Errors
/// [`Error::NotFound`] for an unknown array or one the view leaves out (saying why).
pub fn array<'m>(m: &'m Manifest, view: View, name: &str) -> Result<Cow<'m, ArrayMeta>> {
    let a = m.array(name)?;
    match view {
        View::Kerchunk => match &a.kerchunk_excluded {
            Some(why) => Err(Error::NotFound(format!(
                "{name:?} is not served here: {why}; see /datasets/{}/info",
                m.id
            ))),
            None => Ok(Cow::Borrowed(a)),
        },
        View::Zarr | View::Zarr3 => Ok(unpack::served(a)),
    }
}

/// The plan for chunk `idx` of array `name` (`a`, as [`array`] gives it) in `view`, whose
/// re-encoding routes serve `codec`.
///
/// # Errors
/// [`Error::BadRequest`] for a key with the wrong number of indices, [`Error::NotFound`] for a
/// chunk outside the grid.
pub fn plan(
    a: &ArrayMeta,
    view: View,
    codec: &ServedCodec,
    name: &str,
    idx: &[u64],
) -> Result<Plan> {
    let grid = match view {
        View::Kerchunk => a.grid(),
        View::Zarr | View::Zarr3 => a.served_grid(),
    };
    let grid_idx = match (a.shape.len(), view, idx) {
        (0, View::Zarr3, []) | (0, _, [0]) => &[][..],
        (0, _, _) => {
            return Err(Error::NotFound(format!(
                "{name:?} is a scalar: its only chunk is 0 (v2) or c (v3)"
            )));
        }
        (n, _, i) if i.len() == n => i,
        (n, _, i) => {
            return Err(Error::BadRequest(format!(
                "chunk key for {name:?} has {} indices; the array has {n} dimensions",
                i.len()
            )));
        }
    };
    let Some(linear) = manifest::linear_index(&grid, grid_idx) else {
        return Err(Error::NotFound(format!(
            "chunk {idx:?} of {name:?} is outside the chunk grid {grid:?}"
        )));
    };
    Ok(match view {
        // A passed-through array's served grid is its source grid.
        View::Kerchunk => Plan::Raw { linear },
        View::Zarr | View::Zarr3 if codec.passes(a) => Plan::Raw { linear },
        View::Zarr | View::Zarr3 => Plan::Served {
            idx: grid_idx.to_vec(),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_manifest_cache_drops_the_least_recently_used() {
        let mut cache = Manifests {
            lru: lru::LruCache::new(NonZeroUsize::new(MANIFESTS).unwrap()),
            bytes: 0,
            max_bytes: 30,
        };
        let m = |id: &str| Arc::new(Manifest::new(id, serde_json::Map::new()));
        let k = |id: &str| (id.to_owned(), "v".to_owned());
        for id in ["a", "b", "c"] {
            cache.insert(k(id), m(id), 10);
        }
        assert!(cache.lru.get(&k("a")).is_some());
        cache.insert(k("d"), m("d"), 10);
        let mut kept: Vec<&str> = cache.lru.iter().map(|(k, _)| k.0.as_str()).collect();
        kept.reverse();
        assert_eq!(kept, ["c", "a", "d"]);
        assert_eq!(cache.bytes, 30);
        cache.insert(k("huge"), m("huge"), 31);
        assert!(cache.lru.get(&k("huge")).is_none());
    }
}
