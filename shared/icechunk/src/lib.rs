//! A virtual Icechunk repository per dataset, written by the precompute job: the arrays'
//! Zarr v3 metadata as the sources store them, and one virtual reference per stored chunk,
//! each with a checksum so a source changed after indexing is refused by Icechunk readers.
//! It also reads a repository named as a source ([`read`]). The serving functions never link
//! this crate.

mod place;
mod read;

pub use read::{Array, Payload, Referenced, Snapshot, read};

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use cloudify_core::manifest::{ArrayMeta, ChunkRef, Codec, Manifest};
use cloudify_core::{zarr_v2, zarr_v3};
use icechunk::config::Credentials;
use icechunk::config::{
    ManifestConfig, ManifestSplitCondition, ManifestSplitDim, ManifestSplitDimCondition,
    ManifestSplittingConfig,
};
use icechunk::format::ChunkIndices;
use icechunk::format::SnapshotId;
use icechunk::format::manifest::{
    Checksum, SecondsSinceEpoch, VirtualChunkLocation, VirtualChunkRef,
};
use icechunk::format::snapshot::SnapshotProperties;
use icechunk::session::Session;
use icechunk::virtual_chunks::VirtualChunkContainer;
use icechunk::{ObjectStoreConfig, Repository, RepositoryConfig, Store};
use serde_json::{Map, Value, json};
use tokio::sync::RwLock;

/// What a write failed on, named.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn fail(what: &str) -> impl Fn(&dyn std::fmt::Display) -> Error + '_ {
    move |e| Error(format!("icechunk repository: {what}: {e}"))
}

/// One source as the references name it.
#[derive(Debug, Clone)]
pub struct Source {
    /// Absolute URL (`file:///…`, `s3://…`, `https://…`).
    pub url: String,
    /// The store's ETag, where it has one.
    pub etag: Option<String>,
    /// Last modification in milliseconds since the epoch, where the store says.
    pub last_modified_ms: Option<u64>,
    /// Values the index stored in the bucket (coordinates gathered from the files), not one
    /// of the dataset's files: referenced, never named in a commit message.
    pub stored_by_index: bool,
}

impl Source {
    /// The checksum a reference to this source carries. Local files are checked by time:
    /// the ETag object_store gives a local file never matches one icechunk compares, and the
    /// time is whole seconds compared with `>` against the file's sub-second time, so it is
    /// rounded up.
    fn checksum(&self) -> Option<Checksum> {
        let by_time = || {
            self.last_modified_ms
                .and_then(|ms| u32::try_from(ms / 1000 + 1).ok())
                .map(|s| Checksum::LastModified(SecondsSinceEpoch(s)))
        };
        if self.url.starts_with("file://") {
            return by_time();
        }
        match &self.etag {
            Some(tag) => Some(Checksum::ETag(icechunk::storage::ETag(tag.clone()))),
            None => by_time(),
        }
    }

    /// What a later run compares to tell a changed source: its checksum, spelled out.
    fn state(&self) -> Value {
        match self.checksum() {
            Some(Checksum::ETag(tag)) => json!(format!("etag {}", tag.0)),
            Some(Checksum::LastModified(t)) => json!(format!("modified {}", t.0)),
            None => Value::Null,
        }
    }

    /// The virtual chunk container the source belongs to: its folder.
    fn container(&self) -> Option<String> {
        self.url.rfind('/').map(|i| self.url[..=i].to_owned())
    }
}

/// Why no repository can reference `sources`: the first source under a scheme with no
/// container here (local files, S3 and HTTP(S) objects have one).
pub fn unsupported(sources: &[Source]) -> Option<String> {
    sources
        .iter()
        .find(|s| {
            !["file://", "s3://", "http://", "https://"]
                .iter()
                .any(|p| s.url.starts_with(p))
        })
        .map(|s| {
            format!(
                "{} is not a local file, an S3 object or an HTTP(S) URL",
                s.url
            )
        })
}

/// The prefixes of the virtual chunk containers `sources` need: their folders, once each.
pub fn containers(sources: &[Source]) -> Vec<String> {
    let mut prefixes: Vec<String> = sources.iter().filter_map(Source::container).collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// The container configuration for `prefix` and the credentials that authorise it.
fn container(prefix: &str) -> Result<(VirtualChunkContainer, Option<Credentials>), Error> {
    let (store, credentials) = if let Some(path) = prefix.strip_prefix("file://") {
        (
            ObjectStoreConfig::LocalFileSystem(path.into()),
            Credentials::LocalFileSystemAccess,
        )
    } else if prefix.starts_with("s3://") {
        let options = place::s3_options();
        let store = match options.endpoint_url {
            Some(_) => ObjectStoreConfig::S3Compatible(options),
            None => ObjectStoreConfig::S3(options),
        };
        (store, place::s3_credentials())
    } else if prefix.starts_with("http://") || prefix.starts_with("https://") {
        (
            ObjectStoreConfig::Http(Default::default()),
            Credentials::HttpAccess,
        )
    } else {
        return Err(Error(format!(
            "icechunk repository: no virtual chunk container for sources under {prefix}"
        )));
    };
    let c = VirtualChunkContainer::new(prefix.to_owned(), store).map_err(|e| fail(prefix)(&e))?;
    Ok((c, Some(credentials)))
}

/// `doc` with a `configuration` on every codec: zarr-python requires one on numcodecs' codecs,
/// where the metadata writer leaves an empty one out.
fn with_configurations(mut doc: Value) -> Value {
    if let Some(Value::Array(codecs)) = doc.get_mut("codecs") {
        for c in codecs.iter_mut().filter_map(Value::as_object_mut) {
            c.entry("configuration").or_insert_with(|| json!({}));
        }
    }
    doc
}

/// Where the commit records its sources' states, for the next run to compare.
const PROPERTY: &str = "cloudify";

/// The sources' states a commit's properties record (none in a commit cloudify did not make).
fn recorded(properties: &SnapshotProperties) -> Map<String, Value> {
    properties
        .get(PROPERTY)
        .and_then(|p| p.get("sources"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The commit message: the version and the sources added, changed and removed since the
/// `before` states (by file name, the first few of each).
fn message(version: &str, before: &Map<String, Value>, now: &Map<String, Value>) -> String {
    const SHOWN: usize = 8;
    let name = |url: &str| url.rsplit('/').next().unwrap_or(url).to_owned();
    let list = |what: &str, urls: Vec<&String>| -> Option<String> {
        let (first, rest) = urls.split_at(urls.len().min(SHOWN));
        let mut names: Vec<String> = first.iter().map(|u| name(u)).collect();
        if !rest.is_empty() {
            names.push(format!("and {} more", rest.len()));
        }
        (!first.is_empty()).then(|| format!("{what} {}", names.join(", ")))
    };
    let added = now.keys().filter(|u| !before.contains_key(*u)).collect();
    let changed = (now.iter())
        .filter(|(u, s)| before.get(*u).is_some_and(|b| b != *s))
        .map(|(u, _)| u)
        .collect();
    let removed = before.keys().filter(|u| !now.contains_key(*u)).collect();
    let parts: Vec<String> = [
        list("added", added),
        list("changed", changed),
        list("removed", removed),
    ]
    .into_iter()
    .flatten()
    .collect();
    match parts.is_empty() {
        true => format!("cloudify {version}: the same sources, indexed anew"),
        false => format!("cloudify {version}: {}", parts.join("; ")),
    }
}

/// The grid position of chunk `linear` (C order) in `grid`.
fn position(linear: u64, grid: &[u64]) -> Option<ChunkIndices> {
    let mut rest = linear;
    let mut idx = vec![0u32; grid.len()];
    for (slot, &n) in idx.iter_mut().zip(grid).rev() {
        let n = n.max(1);
        *slot = u32::try_from(rest % n).ok()?;
        rest /= n;
    }
    (rest == 0).then_some(ChunkIndices(idx))
}

/// Chunk references per manifest, and at most about this many held before they are flushed:
/// the write's memory follows it, not the dataset's number of chunks.
const BATCH: u64 = 100_000;

/// The branch a run writes on before `main` moves to its one commit: a failed run leaves
/// `main` as it was.
const WORKING: &str = "cloudify-writing";

/// Manifests split along each array's first dimension into about [`BATCH`] chunks, so a
/// batch flushed adds manifests instead of rewriting the array's one manifest.
fn splitting<'a>(arrays: impl Iterator<Item = (&'a str, Vec<u64>)>) -> ManifestSplittingConfig {
    let sizes = arrays
        .map(|(name, grid)| {
            (
                ManifestSplitCondition::NameMatches {
                    regex: format!("^{}$", regex::escape(name)),
                },
                vec![ManifestSplitDim {
                    condition: ManifestSplitDimCondition::Axis(0),
                    num_chunks: u32::try_from(batch_of(&grid).0).unwrap_or(u32::MAX),
                }],
            )
        })
        .collect();
    ManifestSplittingConfig {
        split_sizes: Some(sizes),
    }
}

/// Steps of the first dimension whose chunks make about a [`BATCH`] (at least one), and
/// their chunks.
fn batch_of(grid: &[u64]) -> (u64, u64) {
    let row: u64 = grid.iter().skip(1).map(|&n| n.max(1)).product();
    let rows = (BATCH / row.max(1)).max(1);
    (rows, rows.saturating_mul(row))
}

/// A writable session on [`WORKING`] and its store, flushed as one commit amended batch by
/// batch.
struct Batches<'r> {
    repo: &'r Repository,
    session: Arc<RwLock<Session>>,
    store: Store,
    /// Chunk references set since the last flush.
    pending: u64,
    /// Whether this run has committed on [`WORKING`] (later flushes amend it).
    committed: bool,
}

impl<'r> Batches<'r> {
    async fn new(repo: &'r Repository) -> Result<Self, Error> {
        let session = repo
            .writable_session(WORKING)
            .await
            .map_err(|e| fail("session")(&e))?;
        let session = Arc::new(RwLock::new(session));
        let store = Store::from_session(Arc::clone(&session)).await;
        Ok(Self {
            repo,
            session,
            store,
            pending: 0,
            committed: false,
        })
    }

    /// Commit what is pending (amending this run's commit) and go on in a new session.
    async fn commit(
        &mut self,
        message: String,
        properties: SnapshotProperties,
    ) -> Result<SnapshotId, Error> {
        let snapshot = {
            let mut session = self.session.write().await;
            let commit = session.commit(message).properties(properties);
            match self.committed {
                true => commit.amend(),
                false => commit,
            }
            .execute()
            .await
            .map_err(|e| fail("commit")(&e))?
        };
        let committed = Self::new(self.repo).await?;
        *self = Self {
            committed: true,
            ..committed
        };
        Ok(snapshot)
    }

    /// Set `refs` of the array at `path`, flushing first when enough are pending.
    async fn set(
        &mut self,
        path: &icechunk::format::Path,
        refs: Vec<(ChunkIndices, VirtualChunkRef)>,
    ) -> Result<(), Error> {
        if self.pending >= BATCH {
            self.commit("cloudify: writing".into(), SnapshotProperties::new())
                .await?;
        }
        self.pending += refs.len() as u64;
        self.store
            .set_virtual_refs(path, true, refs)
            .await
            .map_err(|e| fail(&path.to_string())(&e))?;
        Ok(())
    }
}

/// Write `m` as a commit on `main` of the repository at `location` (a folder, or
/// `s3://bucket/prefix`), tagged `version`,
/// unless that tag is there already (a version names its content, so there is nothing to
/// write). Returns the new snapshot's id, or `None` when nothing was written. References are
/// flushed in batches of [`BATCH`] on a working branch that `main` then moves to.
///
/// # Errors
/// When the repository cannot be opened or written, or a source lies where no container can
/// be made for it.
pub async fn write<'a>(
    location: &str,
    m: &'a Manifest,
    sources: &[Source],
    version: &str,
    mut chunks: impl FnMut(&'a str) -> &'a [(u64, ChunkRef)],
) -> Result<Option<String>, Error> {
    let arrays: Vec<(&'a str, &'a ArrayMeta)> = zarr_v2::kerchunk_arrays(m)
        .map(|(name, a)| (name.as_str(), a))
        .collect();
    let mut config = RepositoryConfig {
        manifest: Some(ManifestConfig {
            splitting: Some(splitting(arrays.iter().map(|&(name, a)| (name, a.grid())))),
            ..ManifestConfig::default()
        }),
        ..RepositoryConfig::default()
    };
    let mut auth = HashMap::new();
    for prefix in &containers(sources) {
        let (c, credentials) = container(prefix)?;
        config
            .set_virtual_chunk_container(c)
            .map_err(|e| fail(prefix)(&e))?;
        auth.insert(prefix.clone(), credentials);
    }
    let storage = place::storage(location).await?;
    let repo = Repository::open_or_create(storage)
        .config(config)
        .authorize_virtual_chunk_access(auth)
        .execute()
        .await
        .map_err(|e| fail("open")(&e))?;
    if repo
        .list_tags()
        .await
        .map_err(|e| fail("tags")(&e))?
        .contains(version)
    {
        return Ok(None);
    }
    repo.save_config().await.map_err(|e| fail("config")(&e))?;
    let tip = repo
        .lookup_branch("main")
        .await
        .map_err(|e| fail("main")(&e))?;
    // A failed run's working branch goes; this run's starts at main.
    if repo
        .list_branches()
        .await
        .map_err(|e| fail("branches")(&e))?
        .contains(WORKING)
    {
        repo.delete_branch(WORKING)
            .await
            .map_err(|e| fail("branches")(&e))?;
    }
    repo.create_branch(WORKING, &tip)
        .await
        .map_err(|e| fail("branches")(&e))?;
    let mut batches = Batches::new(&repo).await?;
    // The last version's arrays go; this one's are written whole.
    let old: Vec<String> = {
        let s = batches.session.read().await;
        s.list_nodes(&icechunk::format::Path::root())
            .await
            .map_err(|e| fail("nodes")(&e))?
            .filter_map(Result::ok)
            .map(|n| n.path.to_string())
            .filter(|p| p != "/")
            .collect()
    };
    for path in old {
        batches
            .store
            .delete_dir(path.trim_start_matches('/'))
            .await
            .map_err(|e| fail(&path)(&e))?;
    }
    let root_doc = serde_json::json!({
        "zarr_format": 3, "node_type": "group", "attributes": m.attrs,
    });
    batches
        .store
        .set("zarr.json", Bytes::from(root_doc.to_string()))
        .await
        .map_err(|e| fail("zarr.json")(&e))?;
    for &(name, a) in &arrays {
        // A Fletcher-32 checksum applied last is the chunk's last 4 bytes: the references end
        // before it and the chain leaves it out. Applied before other filters, the chain
        // checks it.
        let outer_checksum = a.codecs.last() == Some(&Codec::Fletcher32);
        let mut stored = a.clone();
        if outer_checksum {
            stored.codecs.pop();
        }
        let doc = with_configurations(json!(zarr_v3::stored_array(&stored)));
        batches
            .store
            .set(&format!("{name}/zarr.json"), Bytes::from(doc.to_string()))
            .await
            .map_err(|e| fail(name)(&e))?;
        let path = icechunk::format::Path::new(&format!("/{name}")).map_err(|e| fail(name)(&e))?;
        let grid = a.grid();
        let per_batch = batch_of(&grid).1;
        let last_filter = 1u32 << a.codecs.len().saturating_sub(1).min(31);
        let mut refs = Vec::new();
        let mut split = 0;
        for &(linear, c) in chunks(name) {
            let (Some(src), Some(at)) = (sources.get(c.source as usize), position(linear, &grid))
            else {
                continue;
            };
            let checked = outer_checksum && c.filter_mask & last_filter == 0;
            let length = c.length.saturating_sub(if checked { 4 } else { 0 });
            if length == 0 {
                continue;
            }
            // A batch ends where a manifest does.
            if linear / per_batch != split {
                batches.set(&path, std::mem::take(&mut refs)).await?;
                split = linear / per_batch;
            }
            let location =
                VirtualChunkLocation::from_url(&src.url).map_err(|e| fail(&src.url)(&e))?;
            refs.push((
                at,
                VirtualChunkRef {
                    location,
                    offset: c.offset,
                    length,
                    checksum: src.checksum(),
                },
            ));
        }
        batches.set(&path, refs).await?;
    }
    let before = recorded(
        &repo
            .lookup_snapshot(&tip)
            .await
            .map_err(|e| fail("history")(&e))?
            .metadata,
    );
    let now: Map<String, Value> = (sources.iter())
        .filter(|s| !s.stored_by_index)
        .map(|s| (s.url.clone(), s.state()))
        .collect();
    let message = message(version, &before, &now);
    let properties = SnapshotProperties::from([(
        PROPERTY.to_owned(),
        json!({ "version": version, "sources": now }),
    )]);
    let snapshot = batches.commit(message, properties).await?;
    drop(batches);
    repo.reset_branch("main", &snapshot, Some(&tip))
        .await
        .map_err(|e| fail("main")(&e))?;
    repo.delete_branch(WORKING)
        .await
        .map_err(|e| fail("branches")(&e))?;
    repo.create_tag(version, &snapshot)
        .await
        .map_err(|e| fail("tag")(&e))?;
    Ok(Some(snapshot.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_placed_in_c_order_and_none_past_the_grid() {
        let at = |i| position(i, &[2, 3]).map(|c| c.0);
        assert_eq!(at(0), Some(vec![0, 0]));
        assert_eq!(at(4), Some(vec![1, 1]));
        assert_eq!(at(5), Some(vec![1, 2]));
        assert_eq!(at(6), None);
        assert_eq!(position(0, &[]).map(|c| c.0), Some(vec![]));
    }

    #[test]
    fn batches_are_whole_rows_of_the_first_dimension() {
        assert_eq!(batch_of(&[1_000_000, 1, 1]), (100_000, 100_000));
        assert_eq!(batch_of(&[1000, 1000]), (100, 100_000));
        assert_eq!(batch_of(&[3, 7]), (14_285, 99_995));
        // A row larger than a batch is one batch.
        assert_eq!(batch_of(&[10, 1_000_000]), (1, 1_000_000));
    }

    #[test]
    fn the_message_names_the_sources_added_changed_and_removed() {
        let states = |pairs: &[(&str, &str)]| -> Map<String, Value> {
            pairs
                .iter()
                .map(|(u, s)| ((*u).to_owned(), json!(s)))
                .collect()
        };
        let before = states(&[
            ("file:///d/a.nc", "modified 1"),
            ("file:///d/b.nc", "modified 1"),
        ]);
        let now = states(&[
            ("file:///d/b.nc", "modified 2"),
            ("file:///d/c.nc", "modified 1"),
        ]);
        assert_eq!(
            message("v2", &before, &now),
            "cloudify v2: added c.nc; changed b.nc; removed a.nc"
        );
        assert_eq!(
            message("v3", &now, &now),
            "cloudify v3: the same sources, indexed anew"
        );
        let many: Map<String, Value> = (0..10)
            .map(|i| (format!("https://h/f{i}.nc"), json!("etag x")))
            .collect();
        let first = message("v1", &Map::new(), &many);
        assert!(
            first.starts_with("cloudify v1: added f0.nc, f1.nc,"),
            "{first}"
        );
        assert!(first.ends_with("f7.nc, and 2 more"), "{first}");
    }

    #[test]
    fn local_files_are_checked_by_time_rounded_up_and_others_by_tag() {
        let local = Source {
            url: "file:///data/a.nc".into(),
            etag: Some("\"tag\"".into()),
            last_modified_ms: Some(1_700_000_000_500),
            stored_by_index: false,
        };
        assert!(matches!(
            local.checksum(),
            Some(Checksum::LastModified(SecondsSinceEpoch(1_700_000_001)))
        ));
        assert_eq!(local.container().as_deref(), Some("file:///data/"));
        let remote = Source {
            url: "https://host/d/b.nc".into(),
            ..local.clone()
        };
        assert!(matches!(remote.checksum(), Some(Checksum::ETag(_))));
        let s3 = Source {
            url: "s3://bucket/c.nc".into(),
            ..local.clone()
        };
        assert_eq!(unsupported(&[remote.clone(), s3.clone()]), None);
        let gcs = Source {
            url: "gs://bucket/d.nc".into(),
            ..local
        };
        assert!(
            unsupported(&[remote, s3, gcs]).is_some_and(|why| why.contains("gs://bucket/d.nc"))
        );
    }
}
