//! Reading an Icechunk repository named as a source: one snapshot's arrays, their Zarr
//! metadata and where each chunk lives, for the indexer to turn into a manifest.

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use icechunk::Repository;
use icechunk::format::manifest::{Checksum, ChunkPayload};
use icechunk::format::snapshot::NodeData;
use icechunk::format::{ChunkIndices, SnapshotId};
use icechunk::repository::VersionInfo;
use serde_json::{Map, Value};

use crate::{Error, fail};

/// One snapshot of a repository.
#[derive(Debug)]
pub struct Snapshot {
    /// Its id, as Icechunk spells it.
    pub id: String,
    /// The root group's attributes.
    pub attrs: Map<String, Value>,
    /// Every array, by its path from the root group.
    pub arrays: Vec<Array>,
}

/// One array of a [`Snapshot`].
#[derive(Debug)]
pub struct Array {
    /// Its path from the root group (`tas`, `group/tas`).
    pub name: String,
    /// Its `zarr.json`.
    pub zarr_json: Value,
    /// Its chunks: grid position, and where the bytes are.
    pub chunks: Vec<(Vec<u64>, Payload)>,
}

/// Where one chunk's bytes are.
#[derive(Debug, Clone)]
pub enum Payload {
    /// In the repository's manifest.
    Inline(Bytes),
    /// In the repository's object `key` (relative to its root).
    Native {
        /// `chunks/{id}`.
        key: String,
        /// First byte.
        offset: u64,
        /// Bytes.
        length: u64,
    },
    /// In another object.
    Virtual {
        /// Its absolute URL.
        url: String,
        /// First byte.
        offset: u64,
        /// Bytes.
        length: u64,
        /// What the object was when referenced.
        checksum: Option<Referenced>,
    },
}

/// The state a virtual reference expects its object in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Referenced {
    /// This ETag.
    ETag(String),
    /// Last modified no later than these seconds since the epoch.
    ModifiedBy(u32),
}

/// The snapshot `reference` names in the repository at `location` (a folder, or
/// `s3://bucket/prefix`): a branch, else a tag, else a snapshot id.
///
/// # Errors
/// When the folder is no repository, the reference names nothing, or the snapshot cannot be
/// read.
pub async fn read(location: &str, reference: &str) -> Result<Snapshot, Error> {
    let shown = location;
    let storage = crate::place::storage(location).await?;
    let repo = Repository::open(storage)
        .execute()
        .await
        .map_err(|e| fail(shown)(&e))?;
    let version = if repo
        .list_branches()
        .await
        .map_err(|e| fail("branches")(&e))?
        .contains(reference)
    {
        VersionInfo::BranchTipRef(reference.to_owned())
    } else if repo
        .list_tags()
        .await
        .map_err(|e| fail("tags")(&e))?
        .contains(reference)
    {
        VersionInfo::TagRef(reference.to_owned())
    } else {
        let id = SnapshotId::try_from(reference).map_err(|_| {
            Error(format!(
                "{shown}: {reference:?} is no branch, tag or snapshot id of this repository"
            ))
        })?;
        VersionInfo::SnapshotId(id)
    };
    let session = repo
        .readonly_session(&version)
        .await
        .map_err(|e| fail(reference)(&e))?;
    let mut snapshot = Snapshot {
        id: session.snapshot_id().to_string(),
        attrs: Map::new(),
        arrays: Vec::new(),
    };
    let nodes: Vec<_> = session
        .list_nodes(&icechunk::format::Path::root())
        .await
        .map_err(|e| fail("nodes")(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail("nodes")(&e))?;
    for node in nodes {
        let path = node.path.to_string();
        let name = path.trim_start_matches('/').to_owned();
        let doc: Value = serde_json::from_slice(&node.user_data).unwrap_or(Value::Null);
        match node.node_data {
            NodeData::Group if name.is_empty() => {
                if let Some(Value::Object(a)) = doc.get("attributes") {
                    snapshot.attrs = a.clone();
                }
            }
            NodeData::Group => {}
            NodeData::Array { .. } => {
                let chunks: Vec<_> = session
                    .array_chunk_iterator(&node.path)
                    .await
                    .map_err(|e| fail(&name)(&e))
                    .and_then(|info| {
                        let payload = match info.payload {
                            ChunkPayload::Inline(bytes) => Ok(Payload::Inline(bytes)),
                            ChunkPayload::Ref(r) => Ok(Payload::Native {
                                key: format!("chunks/{}", r.id),
                                offset: r.offset,
                                length: r.length,
                            }),
                            ChunkPayload::Virtual(v) => session
                                .resolve_virtual_location(&v.location)
                                .map(|url| Payload::Virtual {
                                    url,
                                    offset: v.offset,
                                    length: v.length,
                                    checksum: v.checksum.map(|c| match c {
                                        Checksum::ETag(t) => Referenced::ETag(t.0),
                                        Checksum::LastModified(s) => Referenced::ModifiedBy(s.0),
                                    }),
                                })
                                .map_err(|e| fail(&name)(&e)),
                            other => Err(Error(format!(
                                "icechunk repository: {name}: a chunk of a kind not known \
                                 here: {other:?}"
                            ))),
                        };
                        std::future::ready(payload.map(|p| (position(&info.coord), p)))
                    })
                    .try_collect()
                    .await?;
                snapshot.arrays.push(Array {
                    name,
                    zarr_json: doc,
                    chunks,
                });
            }
        }
    }
    Ok(snapshot)
}

fn position(coord: &ChunkIndices) -> Vec<u64> {
    coord.0.iter().map(|&i| u64::from(i)).collect()
}
