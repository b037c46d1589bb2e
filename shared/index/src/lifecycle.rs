//! Looking after a bucket between indexing runs: which sources changed (`cloudify check`),
//! removing a dataset (`cloudify rm`), and deleting what no reader needs (`cloudify gc`).

use std::collections::BTreeSet;
use std::sync::Arc;

use cloudify_core::registry::{Registry, manifest_key, version_dir};
use cloudify_core::{Manifest, ReadStore, ReadStoreExt, WriteStore};

use crate::error::Result;

/// What became of one source since it was indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Same size and tag.
    Unchanged,
    /// Another size or tag: the dataset serves 409s for its chunks until reindexed.
    Changed(String),
    /// Gone: the dataset serves 502s for its chunks until reindexed.
    Missing,
}

/// One dataset's sources and their states.
#[derive(Debug, Clone)]
pub struct DatasetCheck {
    /// The dataset.
    pub id: String,
    /// Each source's URL and state, in manifest order.
    pub sources: Vec<(String, SourceState)>,
}

/// The store a source URL is read through and its key there (as the function resolves it);
/// `None` for a scheme this process cannot read.
pub type Resolver<'a> = dyn Fn(&str) -> Option<(Arc<dyn ReadStore>, String)> + 'a;

/// Compare every source of `ids` (all datasets when empty) with what was recorded, reading
/// nothing but their sizes and tags.
///
/// # Errors
/// When `index.json` or a manifest cannot be read, or a dataset is unknown.
pub async fn check(
    bucket: &dyn ReadStore,
    resolve: &Resolver<'_>,
    ids: &[String],
) -> Result<Vec<DatasetCheck>> {
    let registry = Registry::load(bucket).await?;
    let ids: Vec<String> = if ids.is_empty() {
        registry.datasets.keys().cloned().collect()
    } else {
        ids.to_vec()
    };
    let mut out = Vec::new();
    for id in ids {
        let m = manifest(bucket, &id, registry.version(&id)?).await?;
        let mut sources = Vec::new();
        for s in &m.sources {
            let state = match resolve(&s.url) {
                None => SourceState::Changed("no store here reads this URL".into()),
                Some((store, key)) => match store.head(&key).await? {
                    None => SourceState::Missing,
                    Some(now) if now.size != s.size => {
                        SourceState::Changed(format!("{} bytes, {} when indexed", now.size, s.size))
                    }
                    Some(now) if s.etag.is_some() && now.etag != s.etag => {
                        SourceState::Changed(format!(
                            "tag {}, {} when indexed",
                            now.etag.unwrap_or_default(),
                            s.etag.clone().unwrap_or_default()
                        ))
                    }
                    Some(_) => SourceState::Unchanged,
                },
            };
            sources.push((s.url.clone(), state));
        }
        out.push(DatasetCheck { id, sources });
    }
    Ok(out)
}

/// The manifest of a version `index.json` names (or kept): missing is a storage fault.
///
/// # Errors
/// When it is missing, unreadable or malformed.
pub(crate) async fn manifest(bucket: &dyn ReadStore, id: &str, version: &str) -> Result<Manifest> {
    let key = manifest_key(id, version);
    let o = bucket
        .get(&key)
        .await?
        .ok_or_else(|| cloudify_core::Error::storage(&key, "listed in index.json but missing"))?;
    Ok(Manifest::from_json(&o.bytes).map_err(|e| e.at(&key))?)
}

/// Take `id` out of `index.json`, then delete its objects and its Icechunk repository.
/// Returns the objects deleted, or `None` for an unknown dataset.
///
/// # Errors
/// When the bucket cannot be read or written.
pub async fn remove(bucket: &dyn WriteStore, id: &str) -> Result<Option<usize>> {
    if !Registry::remove(bucket, id).await? {
        return Ok(None);
    }
    let mut deleted = 0;
    for folder in ["datasets", "icechunk"] {
        for key in bucket.list(&format!("{folder}/{id}/")).await? {
            deleted += usize::from(bucket.delete(&key).await?);
        }
    }
    Ok(Some(deleted))
}

/// What [`gc`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Version folders deleted (older than the kept ones, or left by killed runs).
    pub versions: usize,
    /// Objects deleted in all.
    pub objects: usize,
}

/// Delete every object under `datasets/` that no reader can reach: versions of a dataset
/// other than its current one and the `keep - 1` it replaced last, folders of datasets not in
/// `index.json`, and stored values no kept manifest names; and the Icechunk repositories of
/// datasets not in `index.json` (a repository's own versions are its tags, kept).
///
/// Run it when no indexer is writing: a run in progress has written objects that `index.json`
/// does not name yet.
///
/// # Errors
/// When the bucket cannot be read or written.
pub async fn gc(bucket: &dyn WriteStore, keep: usize) -> Result<Collected> {
    let registry = Registry::load(bucket).await?;
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for (id, e) in &registry.datasets {
        let versions = std::iter::once(&e.version).chain(e.previous.iter());
        for v in versions.take(keep.max(1)) {
            let dir = version_dir(id, v);
            // Stored values the kept manifests name are kept with them.
            if let Ok(m) = manifest(bucket, id, v).await {
                wanted.extend(m.sources.iter().map(|s| s.url.clone()));
            }
            wanted.insert(format!("{dir}/"));
        }
    }
    let mut done = Collected::default();
    let mut dropped_dirs = BTreeSet::new();
    for key in bucket.list("datasets/").await? {
        let reachable = wanted.contains(&key)
            || wanted
                .iter()
                .any(|w| w.ends_with('/') && key.starts_with(w.as_str()));
        if reachable {
            continue;
        }
        if bucket.delete(&key).await? {
            done.objects += 1;
            let mut parts = key.splitn(4, '/');
            if let (Some(_), Some(id), Some(v), Some(_)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
                && v != "values"
            {
                dropped_dirs.insert(format!("{id}/{v}"));
            }
        }
    }
    for key in bucket.list("icechunk/").await? {
        let id = key.split('/').nth(1).unwrap_or_default();
        if !registry.datasets.contains_key(id) && bucket.delete(&key).await? {
            done.objects += 1;
        }
    }
    done.versions = dropped_dirs.len();
    Ok(done)
}
