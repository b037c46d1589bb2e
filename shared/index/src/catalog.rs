//! Writing the static STAC catalog into the bucket from `index.json` and the manifests alone,
//! so it can be regenerated without reading any source.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use cloudify_core::registry::Registry;
use cloudify_core::stac::{self, CatalogInfo};
use cloudify_core::store::{Precondition, ReadStore, ReadStoreExt, WriteStore};

use crate::error::Result;

pub use cloudify_core::stac::CONFIG_KEY;

/// The catalog configuration stored in the bucket, or the default.
///
/// # Errors
/// When the bucket cannot be read or the stored configuration is malformed.
pub async fn load_config(bucket: &dyn ReadStore) -> Result<CatalogInfo> {
    Ok(cloudify_core::api::catalog_info(bucket).await?)
}

/// Write `body` at `key` unless the bucket already holds exactly it; `true` when written.
async fn put_if_changed(bucket: &dyn WriteStore, key: &str, body: Vec<u8>) -> Result<bool> {
    if bucket.get(key).await?.is_some_and(|o| o.bytes == body) {
        return Ok(false);
    }
    bucket
        .put(key, Bytes::from(body), Precondition::None)
        .await?;
    Ok(true)
}

fn pretty(v: &impl serde::Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Regenerate every item, collection and the root catalog under `stac/`; unchanged files are
/// not rewritten. Returns the number of files written.
///
/// # Errors
/// When the bucket cannot be read or written, or a manifest is malformed.
///
/// Concurrent indexers each write the catalog after changing `index.json`. A pass is repeated
/// until `index.json` is the same after it as before it, so a pass that read an older registry
/// and overwrote (or deleted) what a newer one needs is always followed by one that restores
/// it: the last pass to end saw the last registry.
pub async fn write_catalog(bucket: &dyn WriteStore, info: &CatalogInfo) -> Result<usize> {
    let mut written = 0;
    let mut registry = Registry::load(bucket).await?;
    loop {
        written += catalog_pass(bucket, info, &registry).await?;
        let now = Registry::load(bucket).await?;
        if now == registry {
            return Ok(written);
        }
        registry = now;
    }
}

/// One pass of [`write_catalog`] over `registry`.
async fn catalog_pass(
    bucket: &dyn WriteStore,
    info: &CatalogInfo,
    registry: &Registry,
) -> Result<usize> {
    let mut written = usize::from(
        put_if_changed(
            bucket,
            CONFIG_KEY,
            pretty(&serde_json::to_value(info).unwrap_or_default()),
        )
        .await?,
    );
    let mut collections: BTreeMap<String, Vec<(String, stac::Item)>> = BTreeMap::new();
    for (id, entry) in &registry.datasets {
        let m = crate::lifecycle::manifest(bucket, id, &entry.version).await?;
        let item = stac::static_item(&m, &entry.version, &entry.collection, info);
        written += usize::from(
            put_if_changed(
                bucket,
                &stac::item_key(&entry.collection, id),
                pretty(&item),
            )
            .await?,
        );
        collections
            .entry(entry.collection.clone())
            .or_default()
            .push((format!("./{id}/{id}.json"), item));
    }
    for (id, items) in &collections {
        let nav = stac::CollectionLinks {
            root: "../catalog.json".into(),
            parent: "../catalog.json".into(),
            this: None,
        };
        let c = stac::collection(id, None, info, items, nav);
        written +=
            usize::from(put_if_changed(bucket, &stac::collection_key(id), pretty(&c)).await?);
    }
    let ids: Vec<String> = collections.keys().cloned().collect();
    written += usize::from(
        put_if_changed(
            bucket,
            stac::CATALOG_KEY,
            pretty(&stac::catalog(info, &ids)),
        )
        .await?,
    );
    // Items and collections of datasets removed or moved to another collection.
    let mut current: BTreeSet<String> = [stac::CATALOG_KEY, CONFIG_KEY]
        .into_iter()
        .map(str::to_owned)
        .collect();
    current.extend(ids.iter().map(|c| stac::collection_key(c)));
    current.extend(
        registry
            .datasets
            .iter()
            .map(|(id, e)| stac::item_key(&e.collection, id)),
    );
    for key in bucket.list("stac/").await? {
        if !current.contains(&key) && key.ends_with(".json") && bucket.delete(&key).await? {
            written += 1;
        }
    }
    Ok(written)
}
