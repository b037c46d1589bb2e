//! Zarr stores and Icechunk repositories named as sources: their metadata and chunk references
//! read into a [`Laid`] dataset, every chunk a reference into the object that holds it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use cloudify_core::manifest::{ChunkRef, StoreSource};
use cloudify_core::store::{ObjectMeta, PrefixStore, ReadStore, ReadStoreExt};
use cloudify_index::{Laid, LaidArray, RangeRead, SourceSpec, StoreArray};
use cloudify_stores::LocalStore;
use serde_json::{Map, Value};

use crate::{HEADS_AT_ONCE, Job};

/// What a store named as a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// An Icechunk repository (its `repo` object).
    Icechunk,
    /// A Zarr v3 store (`zarr.json`).
    ZarrV3,
    /// A Zarr v2 store (`.zgroup`, `.zmetadata`).
    ZarrV2,
}

/// The layout of `named` (a folder, or an `s3://` or `http(s)://` prefix) if it is a store.
///
/// # Errors
/// When a remote prefix cannot be addressed.
pub async fn layout(named: &str, job: &Job) -> anyhow::Result<Option<Layout>> {
    let remote = crate::remote::is_remote(named);
    if !remote && !Path::new(named).is_dir() {
        return Ok(None);
    }
    // A store's keys are appended to its path: a URL with a query, or one that is itself an
    // object (unless it ends in `/`, which a web server may answer with a listing), is a file.
    if remote && (named.contains('?') || !named.ends_with('/') && is_object(named, job).await) {
        return Ok(None);
    }
    let place = Place::new(job, named).await?;
    for (name, layout) in [
        ("repo", Layout::Icechunk),
        ("zarr.json", Layout::ZarrV3),
        (".zgroup", Layout::ZarrV2),
        (".zmetadata", Layout::ZarrV2),
    ] {
        if place.store.head(name).await.ok().flatten().is_some() {
            return Ok(Some(layout));
        }
    }
    Ok(None)
}

/// Whether the remote `url` names an object (an unanswered HEAD says no: the checks for a
/// store's objects then say why it is neither). A listed one is; what a HEAD says of one is
/// remembered, so indexing it asks no more.
async fn is_object(url: &str, job: &Job) -> bool {
    if job.listed(url).is_some() {
        return true;
    }
    let Ok((store, key)) = crate::remote::store_for(url, job).await else {
        return false;
    };
    match store.head(key).await {
        Ok(Some(meta)) => {
            job.remember([(url.to_owned(), meta)]);
            true
        }
        _ => false,
    }
}

/// Where a store lives, its objects sources: a local folder or an `s3://` or `http(s)://`
/// prefix, its objects named by bucket key when it lies in the bucket, else by URL.
struct Place {
    /// Its objects, by key relative to it.
    store: Arc<dyn ReadStore>,
    /// Its absolute URL, without a trailing slash.
    url: String,
    /// Its key prefix in the bucket (empty: the bucket itself).
    in_bucket: Option<String>,
    /// Its folder, when local.
    local: Option<PathBuf>,
    job: Job,
}

impl Place {
    async fn new(job: &Job, named: &str) -> anyhow::Result<Self> {
        if crate::remote::is_remote(named) {
            let url = named.trim_end_matches('/').to_owned();
            let (objects, prefix) = crate::remote::store_for(&url, job).await?;
            return Ok(Self {
                store: Arc::new(PrefixStore::new(objects, prefix)),
                in_bucket: job.bucket.key_of(&url).map(str::to_owned),
                url,
                local: None,
                job: job.clone(),
            });
        }
        let abs = Path::new(named)
            .canonicalize()
            .with_context(|| format!("{named}: cannot open"))?;
        let in_bucket = (job.bucket.root())
            .and_then(|root| abs.strip_prefix(root).ok())
            .and_then(|rel| rel.to_str())
            .map(str::to_owned);
        Ok(Self {
            store: Arc::new(LocalStore::new(&abs)),
            url: format!("file://{}", abs.display()),
            in_bucket,
            local: Some(abs),
            job: job.clone(),
        })
    }

    /// Whether its objects can be listed: not over HTTP.
    fn listable(&self) -> bool {
        !self.url.starts_with("http")
    }

    /// The AWS region of an `s3://` place.
    fn region(&self) -> Option<String> {
        self.url
            .starts_with("s3://")
            .then(cloudify_stores::s3_region)
    }

    /// How errors and messages name it: its path or URL.
    fn shown(&self) -> &str {
        self.url.strip_prefix("file://").unwrap_or(&self.url)
    }

    /// The store as the manifest names a source: its key in the bucket, else its URL.
    fn name(&self) -> String {
        match &self.in_bucket {
            Some(prefix) => prefix.clone(),
            None => self.url.clone(),
        }
    }

    /// Object `key` as a source (local files read lazily: a store may hold many).
    async fn spec(&self, key: &str, meta: ObjectMeta) -> anyhow::Result<SourceSpec> {
        let absolute_url = format!("{}/{key}", self.url);
        let Some(dir) = &self.local else {
            return crate::remote::spec_as(&absolute_url, meta, &self.job).await;
        };
        Ok(SourceSpec {
            url: match &self.in_bucket {
                Some(prefix) if prefix.is_empty() => key.to_owned(),
                Some(prefix) => format!("{prefix}/{key}"),
                None => absolute_url.clone(),
            },
            absolute_url,
            reader: Arc::new(LazyFile {
                path: dir.join(key),
                size: meta.size,
            }),
            meta,
        })
    }

    #[cfg(feature = "icechunk")]
    async fn meta(&self, key: &str) -> anyhow::Result<ObjectMeta> {
        self.store
            .head(key)
            .await
            .map_err(|e| anyhow!("{}/{key}: {e}", self.shown()))?
            .ok_or_else(|| anyhow!("{}/{key}: vanished while indexing", self.shown()))
    }

    async fn json(&self, key: &str) -> anyhow::Result<Option<Value>> {
        let Some(o) =
            (self.store.get(key).await).map_err(|e| anyhow!("{}/{key}: {e}", self.shown()))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&o.bytes)
            .map(Some)
            .map_err(|e| anyhow!("{}/{key}: not JSON: {e}", self.shown()))
    }
}

/// A local file opened at each read: a store's chunks are too many to hold open.
struct LazyFile {
    path: PathBuf,
    size: u64,
}

impl RangeRead for LazyFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let file = std::fs::File::open(&self.path)?;
        std::os::unix::fs::FileExt::read_exact_at(&file, buf, offset)
    }
}

/// Sources in reference order, each named once.
#[derive(Default)]
struct Sources {
    specs: Vec<SourceSpec>,
    by_name: HashMap<String, u32>,
}

impl Sources {
    /// The source a reference names by `name` (its key or URL), if added.
    #[cfg(feature = "icechunk")]
    fn index_of(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    fn add(&mut self, name: String, spec: SourceSpec) -> u32 {
        let i = self.specs.len() as u32;
        self.by_name.insert(name, i);
        self.specs.push(spec);
        i
    }
}

/// The Zarr store at `named` (a folder, or an `s3://` or `http(s)://` prefix).
///
/// # Errors
/// When its metadata cannot be read; arrays that cannot be served are skipped with the reason.
pub async fn zarr(job: &Job, named: &str, v3: bool) -> anyhow::Result<Laid> {
    let place = Place::new(job, named).await?;
    let listed = match place.listable() {
        true => Some((place.store.list("").await).map_err(|e| anyhow!("{}: {e}", place.shown()))?),
        false => None,
    };
    let mut laid = Laid {
        name: place.shown().to_owned(),
        store: Some(StoreSource {
            url: place.name(),
            kind: "zarr".into(),
            zarr_format: if v3 { 3 } else { 2 },
            region: place.region(),
        }),
        ..Laid::default()
    };
    let keys = listed.as_deref().unwrap_or_default();
    let arrays = if v3 {
        zarr_v3(&place, keys, &mut laid).await?
    } else {
        zarr_v2(&place, keys, &mut laid).await?
    };
    let objects = match listed {
        Some(keys) => objects(&place, keys, true).await?,
        None if arrays.is_empty() && laid.skipped.is_empty() => {
            return Err(anyhow!(
                "{}: a Zarr store that cannot be listed (behind HTTP) is read through its \
                 consolidated metadata, and it has none",
                place.shown()
            ));
        }
        // Every key of each array's grid is asked for: a missing one is a chunk never written.
        None => {
            let mut keys = vec![if v3 { "zarr.json" } else { ".zmetadata" }.to_owned()];
            for (name, a) in &arrays {
                let grid = a.meta.grid();
                let count = a.meta.grid_records().unwrap_or(0);
                keys.extend((0..count).map(|linear| {
                    let idx = cloudify_core::manifest::grid_index(&grid, linear);
                    format!("{name}/{}", a.keys.key(&idx))
                }));
            }
            objects(&place, keys, false).await?
        }
    };
    let by_name: HashMap<&str, usize> = arrays
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut stored: Vec<Vec<(u64, ChunkRef)>> = vec![Vec::new(); arrays.len()];
    let mut sources = Sources::default();
    for (key, meta) in objects {
        // Every object counts, metadata included: a rewritten array is a new state.
        let _ = writeln!(laid.state, "{key}\0{}\0{:?}", meta.size, meta.etag);
        let Some((i, rest)) = key
            .split_once('/')
            .and_then(|(name, rest)| Some((*by_name.get(name)?, rest)))
        else {
            continue;
        };
        let a = &arrays[i].1;
        // Objects no chunk key names, or past the grid (left by a shrunk array), are not chunks.
        let Some(linear) =
            (a.keys.position(rest, a.meta.shape.len())).and_then(|idx| a.meta.linear_index(&idx))
        else {
            continue;
        };
        let length = meta.size;
        let source = sources.add(key.clone(), place.spec(&key, meta).await?);
        stored[i].push((
            linear,
            ChunkRef {
                source,
                filter_mask: 0,
                offset: 0,
                length,
            },
        ));
    }
    laid.arrays = arrays
        .into_iter()
        .zip(stored)
        .map(|((name, a), stored)| LaidArray {
            name,
            meta: a.meta,
            stored,
        })
        .collect();
    laid.sources = sources.specs;
    Ok(laid)
}

/// The size and tag of each of `keys` that exists; a missing one is an error when `listed`
/// (it vanished since the listing).
async fn objects(
    place: &Place,
    keys: Vec<String>,
    listed: bool,
) -> anyhow::Result<Vec<(String, ObjectMeta)>> {
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::iter(keys)
        .map(|key| async move {
            let meta = (place.store.head(&key).await)
                .map_err(|e| anyhow!("{}/{key}: {e}", place.shown()))?;
            match (meta, listed) {
                (Some(meta), _) => Ok(Some((key, meta))),
                (None, false) => Ok(None),
                (None, true) => Err(anyhow!("{}/{key}: vanished while indexing", place.shown())),
            }
        })
        .buffered(HEADS_AT_ONCE)
        .try_filter_map(|found| async move { Ok(found) })
        .try_collect()
        .await
}

/// A store array's outcome: served, or skipped with the reason.
fn sort_out(
    laid: &mut Laid,
    arrays: &mut Vec<(String, StoreArray)>,
    name: &str,
    array: Result<StoreArray, String>,
) {
    match array {
        Ok(a) => arrays.push((name.to_owned(), a)),
        Err(why) => laid.skipped.push((name.to_owned(), why)),
    }
}

/// The root group's attributes and arrays of a v3 store: from its consolidated metadata when
/// the root `zarr.json` has it, else from each array's `zarr.json`.
async fn zarr_v3(
    place: &Place,
    keys: &[String],
    laid: &mut Laid,
) -> anyhow::Result<Vec<(String, StoreArray)>> {
    let root = place.json("zarr.json").await?.unwrap_or(Value::Null);
    if let Some(Value::Object(a)) = root.get("attributes") {
        laid.attrs = a.clone();
    }
    let mut docs: Vec<(String, Value)> = match root.pointer("/consolidated_metadata/metadata") {
        Some(Value::Object(all)) => all.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => {
            let mut docs = Vec::new();
            for key in keys {
                if let Some(name) = key.strip_suffix("/zarr.json") {
                    let doc = place.json(key).await?.unwrap_or(Value::Null);
                    docs.push((name.to_owned(), doc));
                }
            }
            docs
        }
    };
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut arrays = Vec::new();
    for (name, doc) in docs {
        if doc.get("node_type").and_then(Value::as_str) != Some("array") {
            continue;
        }
        let array = match name.contains('/') {
            true => Err(cloudify_index::IN_SUBGROUP.to_owned()),
            false => cloudify_index::array_v3(&doc),
        };
        sort_out(laid, &mut arrays, &name, array);
    }
    Ok(arrays)
}

/// The root group's attributes and arrays of a v2 store: from `.zmetadata` when consolidated,
/// else from each array's `.zarray` and `.zattrs`.
async fn zarr_v2(
    place: &Place,
    keys: &[String],
    laid: &mut Laid,
) -> anyhow::Result<Vec<(String, StoreArray)>> {
    let mut docs: HashMap<String, Value> = match place.json(".zmetadata").await? {
        Some(Value::Object(mut m)) => match m.remove("metadata") {
            Some(Value::Object(all)) => all.into_iter().collect(),
            _ => HashMap::new(),
        },
        _ => {
            let mut docs = HashMap::new();
            for key in keys
                .iter()
                .filter(|k| k.ends_with(".zarray") || k.ends_with(".zattrs"))
            {
                docs.insert(key.clone(), place.json(key).await?.unwrap_or(Value::Null));
            }
            docs
        }
    };
    let attrs_of = |docs: &mut HashMap<String, Value>, key: &str| match docs.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    laid.attrs = attrs_of(&mut docs, ".zattrs");
    let mut names: Vec<String> = docs
        .keys()
        .filter_map(|k| k.strip_suffix("/.zarray"))
        .map(str::to_owned)
        .collect();
    names.sort();
    let mut arrays = Vec::new();
    for name in names {
        let zarray = docs
            .remove(&format!("{name}/.zarray"))
            .unwrap_or(Value::Null);
        let attrs = attrs_of(&mut docs, &format!("{name}/.zattrs"));
        let array = match name.contains('/') {
            true => Err(cloudify_index::IN_SUBGROUP.to_owned()),
            false => cloudify_index::array_v2(&zarray, attrs),
        };
        sort_out(laid, &mut arrays, &name, array);
    }
    Ok(arrays)
}

/// The snapshot `reference` names (default: the `main` branch) of the Icechunk repository at
/// `named` (a place, or an `s3://` prefix), as dataset `id`: native chunks read from the repository's chunk objects,
/// inline chunks stored in the bucket, virtual chunks read from their sources.
///
/// # Errors
/// When the repository or reference cannot be read, or a virtual reference's source is missing
/// or has changed since the repository referenced it.
#[cfg(feature = "icechunk")]
pub async fn icechunk(
    job: &Job,
    id: &str,
    named: &str,
    reference: Option<&str>,
) -> anyhow::Result<Laid> {
    use cloudify_icechunk::Payload;

    let place = Place::new(job, named).await?;
    let reference = reference.unwrap_or("main");
    let snapshot = cloudify_icechunk::read(&place.url, reference).await?;
    let mut laid = Laid {
        name: format!("{}@{reference}", place.shown()),
        attrs: snapshot.attrs,
        state: format!("icechunk {} {}", place.shown(), snapshot.id),
        store: Some(StoreSource {
            url: place.name(),
            kind: "icechunk".into(),
            zarr_format: 3,
            region: place.region(),
        }),
        ..Laid::default()
    };
    let mut sources = Sources::default();
    let mut prefixes = std::collections::BTreeSet::new();
    for array in snapshot.arrays {
        let a = match array.name.contains('/') {
            true => Err(cloudify_index::IN_SUBGROUP.to_owned()),
            false => cloudify_index::array_v3(&array.zarr_json),
        };
        let a = match a {
            Ok(a) => a.meta,
            Err(why) => {
                laid.skipped.push((array.name, why));
                continue;
            }
        };
        let mut stored = Vec::with_capacity(array.chunks.len());
        for (idx, payload) in array.chunks {
            let Some(linear) = a.linear_index(&idx) else {
                continue;
            };
            let (source, offset, length) = match payload {
                Payload::Inline(bytes) => {
                    let length = bytes.len() as u64;
                    let spec = SourceSpec::stored_values(id, job.bucket.url(), bytes.to_vec());
                    let source = match sources.index_of(&spec.url) {
                        Some(i) => i,
                        None => {
                            laid.inline.push((spec.url.clone(), bytes.to_vec()));
                            sources.add(spec.url.clone(), spec)
                        }
                    };
                    (source, 0, length)
                }
                Payload::Native {
                    key,
                    offset,
                    length,
                } => {
                    let source = match sources.index_of(&key) {
                        Some(i) => i,
                        None => {
                            let meta = place.meta(&key).await?;
                            sources.add(key.clone(), place.spec(&key, meta).await?)
                        }
                    };
                    (source, offset, length)
                }
                Payload::Virtual {
                    url,
                    offset,
                    length,
                    checksum,
                } => {
                    let source = match sources.index_of(&url) {
                        Some(i) => i,
                        None => {
                            prefixes.insert(url[..=url.rfind('/').unwrap_or(0)].to_owned());
                            let spec = virtual_source(job, &url).await?;
                            unchanged(&url, &spec.meta, checksum.as_ref())?;
                            sources.add(url.clone(), spec)
                        }
                    };
                    (source, offset, length)
                }
            };
            stored.push((
                linear,
                ChunkRef {
                    source,
                    filter_mask: 0,
                    offset,
                    length,
                },
            ));
        }
        laid.arrays.push(LaidArray {
            name: array.name,
            meta: a,
            stored,
        });
    }
    laid.icechunk = Some(cloudify_core::manifest::IcechunkRepo {
        href: format!("{}/", place.url),
        in_bucket: place.in_bucket.is_some(),
        snapshot: Some(snapshot.id),
        virtual_prefixes: prefixes.into_iter().collect(),
        region: place.region(),
    });
    laid.sources = sources.specs;
    Ok(laid)
}

/// The source a virtual chunk points into: a local file, or an `s3://` or `http(s)://` object.
#[cfg(feature = "icechunk")]
async fn virtual_source(job: &Job, url: &str) -> anyhow::Result<SourceSpec> {
    match url.strip_prefix("file://") {
        Some(path) => crate::sources::spec(&job.bucket, Path::new(path)).await,
        None if crate::remote::is_remote(url) => crate::remote::spec(url, job).await,
        None => Err(anyhow!(
            "{url}: a virtual chunk's source under a scheme cloudify does not read"
        )),
    }
}

/// Refuse a virtual chunk's source that changed after the repository referenced it, as
/// Icechunk's own readers would: modified after the time the reference allows, or (where the
/// store's tags are the ones Icechunk recorded: not local files) with another ETag.
#[cfg(feature = "icechunk")]
fn unchanged(
    url: &str,
    now: &ObjectMeta,
    expected: Option<&cloudify_icechunk::Referenced>,
) -> anyhow::Result<()> {
    use cloudify_icechunk::Referenced;
    let bare = |t: &str| t.trim_start_matches("W/").trim_matches('"').to_owned();
    let changed = match expected {
        Some(Referenced::ModifiedBy(s)) => now
            .last_modified
            .filter(|ms| ms / 1000 > u64::from(*s))
            .map(|ms| {
                format!(
                    "modified at {} s, after the {s} s it was referenced at",
                    ms / 1000
                )
            }),
        Some(Referenced::ETag(tag)) if !url.starts_with("file://") => (now.etag.as_deref())
            .filter(|t| bare(t) != bare(tag))
            .map(|t| format!("its ETag is {t}, not the {tag} it was referenced with")),
        _ => None,
    };
    match changed {
        Some(why) => Err(anyhow!(
            "{url}: changed since the Icechunk repository referenced it ({why}); its chunks \
             would not be the repository's"
        )),
        None => Ok(()),
    }
}
