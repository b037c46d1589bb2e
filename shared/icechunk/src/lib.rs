//! A virtual Icechunk repository per dataset, written by the precompute job: the arrays'
//! Zarr v3 metadata as the sources store them, and one virtual reference per stored chunk,
//! each with a checksum so a source changed after indexing is refused by Icechunk readers.
//! The serving functions never link this crate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use cloudify_core::manifest::{ChunkRef, Codec, Manifest};
use cloudify_core::{zarr_v2, zarr_v3};
use icechunk::config::Credentials;
use icechunk::format::ChunkIndices;
use icechunk::format::manifest::{
    Checksum, SecondsSinceEpoch, VirtualChunkLocation, VirtualChunkRef,
};
use icechunk::virtual_chunks::VirtualChunkContainer;
use icechunk::{
    ObjectStoreConfig, Repository, RepositoryConfig, Store, new_local_filesystem_storage,
};
use serde_json::{Value, json};
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

    /// The virtual chunk container the source belongs to: its folder.
    fn container(&self) -> Option<String> {
        self.url.rfind('/').map(|i| self.url[..=i].to_owned())
    }
}

/// Why no repository can reference `sources` yet: the first source under a scheme with no
/// container here (only local files and HTTP(S) sources for now).
pub fn unsupported(sources: &[Source]) -> Option<String> {
    sources
        .iter()
        .find(|s| {
            !["file://", "http://", "https://"]
                .iter()
                .any(|p| s.url.starts_with(p))
        })
        .map(|s| format!("{} is not a local file or an HTTP(S) URL", s.url))
}

/// The container configuration for `prefix` and the credentials that authorise it.
fn container(prefix: &str) -> Result<(VirtualChunkContainer, Option<Credentials>), Error> {
    let (store, credentials) = if let Some(path) = prefix.strip_prefix("file://") {
        (
            ObjectStoreConfig::LocalFileSystem(path.into()),
            Credentials::LocalFileSystemAccess,
        )
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

/// Write `m` as a commit on `main` of the repository in folder `root`, tagged `version`,
/// unless that tag is there already (a version names its content, so there is nothing to
/// write). Returns the new snapshot's id, or `None` when nothing was written.
///
/// # Errors
/// When the repository cannot be opened or written, or a source lies where no container can
/// be made for it.
pub async fn write<'a>(
    root: &Path,
    m: &'a Manifest,
    sources: &[Source],
    version: &str,
    mut chunks: impl FnMut(&'a str) -> &'a [(u64, ChunkRef)],
) -> Result<Option<String>, Error> {
    let mut config = RepositoryConfig::default();
    let mut auth = HashMap::new();
    let mut prefixes: Vec<String> = sources.iter().filter_map(Source::container).collect();
    prefixes.sort();
    prefixes.dedup();
    for prefix in &prefixes {
        let (c, credentials) = container(prefix)?;
        config
            .set_virtual_chunk_container(c)
            .map_err(|e| fail(prefix)(&e))?;
        auth.insert(prefix.clone(), credentials);
    }
    std::fs::create_dir_all(root).map_err(|e| fail(&root.display().to_string())(&e))?;
    let storage = new_local_filesystem_storage(root)
        .await
        .map_err(|e| fail("storage")(&e))?;
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
    let session = repo
        .writable_session("main")
        .await
        .map_err(|e| fail("session")(&e))?;
    let session = Arc::new(RwLock::new(session));
    let store = Store::from_session(Arc::clone(&session)).await;
    // The last version's arrays go; this one's are written whole.
    let old: Vec<String> = {
        let s = session.read().await;
        s.list_nodes(&icechunk::format::Path::root())
            .await
            .map_err(|e| fail("nodes")(&e))?
            .filter_map(Result::ok)
            .map(|n| n.path.to_string())
            .filter(|p| p != "/")
            .collect()
    };
    for path in old {
        store
            .delete_dir(path.trim_start_matches('/'))
            .await
            .map_err(|e| fail(&path)(&e))?;
    }
    let root_doc = serde_json::json!({
        "zarr_format": 3, "node_type": "group", "attributes": m.attrs,
    });
    store
        .set("zarr.json", Bytes::from(root_doc.to_string()))
        .await
        .map_err(|e| fail("zarr.json")(&e))?;
    for (name, a) in zarr_v2::kerchunk_arrays(m) {
        // A Fletcher-32 checksum applied last is the chunk's last 4 bytes: the references end
        // before it and the chain leaves it out. Applied before other filters, the chain
        // checks it.
        let outer_checksum = a.codecs.last() == Some(&Codec::Fletcher32);
        let mut stored = a.clone();
        if outer_checksum {
            stored.codecs.pop();
        }
        let doc = with_configurations(json!(zarr_v3::stored_array(&stored)));
        store
            .set(&format!("{name}/zarr.json"), Bytes::from(doc.to_string()))
            .await
            .map_err(|e| fail(name)(&e))?;
        let grid = a.grid();
        let last_filter = 1u32 << a.codecs.len().saturating_sub(1).min(31);
        let mut refs = Vec::new();
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
        let path = icechunk::format::Path::new(&format!("/{name}")).map_err(|e| fail(name)(&e))?;
        store
            .set_virtual_refs(&path, true, refs)
            .await
            .map_err(|e| fail(name)(&e))?;
    }
    let message = format!("cloudify {version}: {} sources", sources.len());
    let snapshot = session
        .write()
        .await
        .commit(message)
        .execute()
        .await
        .map_err(|e| fail("commit")(&e))?;
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
    fn local_files_are_checked_by_time_rounded_up_and_others_by_tag() {
        let local = Source {
            url: "file:///data/a.nc".into(),
            etag: Some("\"tag\"".into()),
            last_modified_ms: Some(1_700_000_000_500),
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
            ..local
        };
        assert!(unsupported(&[remote, s3]).is_some_and(|why| why.contains("s3://bucket/c.nc")));
    }
}
