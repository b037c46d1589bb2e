//! What each route answers, as typed values: documents to serialise, bytes of chunks and
//! files. [`crate::router`] picks the function and turns its answer into an HTTP response.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::admit::Counts;
use crate::codecs::ServedCodec;
use crate::config::Config;
use crate::discovery;
use crate::error::{Error, Result};
use crate::key::{ArrayDoc, GroupDoc, View, ZarrKey};
use crate::manifest::{ArrayMeta, Codec, SourceInfo};
use crate::read::Reader;
use crate::registry::{Registry, version_dir};
use crate::resolve::{self, Plan, Resolved};
use crate::stac;
use crate::store::{ReadStore, ReadStoreExt};
use crate::{zarr_v2, zarr_v3};

/// `GET /`: what this is and where to go.
#[derive(Debug, Serialize)]
pub struct ServiceInfo {
    /// Always `cloudify`.
    pub service: &'static str,
    /// The crate version.
    pub version: &'static str,
    /// One line.
    pub description: &'static str,
    /// The platform and the budgets requests are held to.
    pub config: Value,
    /// The budget of bytes in flight: what it holds now, its peak, and the requests that
    /// waited for room or gave up.
    pub in_flight: Counts,
    /// Route templates by name.
    pub links: Map<String, Value>,
}

/// `GET /`.
pub fn service_info(config: &Config, in_flight: Counts) -> ServiceInfo {
    let links = [
        ("openapi", "/openapi.json"),
        ("stac", "/stac/catalog.json"),
        ("stac_collection", "/stac-collection-all.json"),
        ("intake", "/intake.yaml"),
        ("datasets", "/datasets"),
        ("info", "/datasets/{id}/info"),
        ("kerchunk", "/datasets/{id}/kerchunk"),
        ("zarr", "/datasets/{id}/zarr"),
        ("zarr3", "/datasets/{id}/zarr3"),
    ];
    ServiceInfo {
        service: "cloudify",
        version: env!("CARGO_PKG_VERSION"),
        description: "NetCDF/HDF5 files in object storage served as Zarr",
        config: config.summary(),
        in_flight,
        links: links
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect(),
    }
}

/// `GET /datasets`: the id of every dataset the function serves.
pub fn datasets(registry: &Registry) -> Vec<&str> {
    (registry.datasets.iter())
        .filter(|(_, e)| !e.catalog_only)
        .map(|(id, _)| id.as_str())
        .collect()
}

/// One variable of `/info`: xpublish's fields, then how it is stored and served.
#[derive(Debug, Serialize)]
pub struct VariableInfo<'a> {
    /// NumPy's name of the type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Dimension names.
    pub dimensions: &'a [String],
    /// Attributes.
    pub attributes: &'a Map<String, Value>,
    /// Elements per dimension.
    pub shape: &'a [u64],
    /// Dimension names (again, as the manifest names them).
    pub dims: &'a [String],
    /// NumPy type string.
    pub dtype: String,
    /// Source chunk shape.
    pub chunks: &'a [u64],
    /// Source chunks per dimension.
    pub chunk_grid: Vec<u64>,
    /// The re-encoding routes' chunk shape.
    pub served_chunks: &'a [u64],
    /// Chunks stored.
    pub stored_chunks: u64,
    /// Source codecs in pipeline order.
    pub codecs: &'a [Codec],
}

/// What one route leaves out.
#[derive(Debug, Serialize)]
pub struct RouteInfo {
    /// Variable → why.
    pub excluded: Map<String, Value>,
}

/// A source as `/info` names it: its URL only where [`SourceInfo::published_url`] allows.
#[derive(Debug, Serialize)]
pub struct PublishedSource<'a> {
    /// The file's name (the last segment of its key or URL).
    pub name: &'a str,
    /// Its bucket key, or its URL (no query string) where the operator publishes sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<&'a str>,
    /// Size in bytes when indexed.
    pub size: u64,
    /// Tag when indexed.
    pub etag: Option<&'a str>,
}

impl<'a> PublishedSource<'a> {
    fn of(s: &'a SourceInfo, publish: bool) -> Self {
        let path = crate::manifest::strip_query(&s.url);
        Self {
            name: path.rsplit('/').next().unwrap_or(path),
            url: s.published_url(publish),
            size: s.size,
            etag: s.etag.as_deref(),
        }
    }
}

/// `GET /datasets/{id}/info`: what is served, what is left out and why.
#[derive(Debug, Serialize)]
pub struct Info<'a> {
    /// Dataset id.
    pub id: &'a str,
    /// Version served.
    pub version: &'a str,
    /// Manifest format.
    pub format_version: u32,
    /// Dimension → length.
    pub dimensions: Map<String, Value>,
    /// Global attributes (xpublish's name).
    pub global_attributes: &'a Map<String, Value>,
    /// Global attributes.
    pub attrs: &'a Map<String, Value>,
    /// Source files, as answers may name them.
    pub sources: Vec<PublishedSource<'a>>,
    /// The re-encoding routes' codec.
    pub codec: &'a ServedCodec,
    /// Variables by name.
    pub variables: Map<String, Value>,
    /// Per route (and the job's Icechunk repository): what it leaves out.
    pub routes: Map<String, Value>,
    /// Variables the indexer could not serve, and why.
    pub skipped: &'a Map<String, Value>,
}

fn variable_info(a: &ArrayMeta) -> VariableInfo<'_> {
    VariableInfo {
        kind: a.dtype.numpy_name(),
        dimensions: &a.dims,
        attributes: &a.attrs,
        shape: &a.shape,
        dims: &a.dims,
        dtype: a.dtype.v2(),
        chunks: &a.chunks,
        chunk_grid: a.grid(),
        served_chunks: &a.served_chunks,
        stored_chunks: a.stored_chunks,
        codecs: &a.codecs,
    }
}

/// `GET /datasets/{id}/info`.
pub fn info(r: &Resolved, publish_sources: bool) -> Info<'_> {
    let m = &*r.manifest;
    let route = |excluded: Map<String, Value>| json!(RouteInfo { excluded });
    let kerchunk: Map<String, Value> = m
        .arrays
        .iter()
        .filter_map(|(n, a)| Some((n.clone(), json!(a.kerchunk_excluded.as_ref()?))))
        .collect();
    let mut routes = Map::new();
    // The virtual Icechunk repository the job writes holds the arrays `/kerchunk` serves: both
    // reference the source's chunks as they are.
    routes.insert("icechunk".into(), route(kerchunk.clone()));
    routes.insert("kerchunk".into(), route(kerchunk));
    routes.insert("zarr".into(), route(Map::new()));
    routes.insert("zarr3".into(), route(Map::new()));
    Info {
        id: &m.id,
        version: &r.version,
        format_version: m.format_version,
        dimensions: discovery::dims(m),
        global_attributes: &m.attrs,
        attrs: &m.attrs,
        sources: m
            .sources
            .iter()
            .map(|s| PublishedSource::of(s, publish_sources))
            .collect(),
        codec: &m.codec,
        variables: m
            .arrays
            .iter()
            .map(|(n, a)| (n.clone(), json!(variable_info(a))))
            .collect(),
        routes,
        skipped: &m.skipped,
    }
}

/// A Zarr key's answer.
pub enum ZarrAnswer {
    /// A metadata document.
    Document(Value),
    /// Chunk bytes.
    Chunk(Bytes),
}

/// `GET /datasets/{id}/{view}/{key}`.
///
/// # Errors
/// [`Error::NotFound`] for keys the view does not have, and the errors of reading, decoding
/// and encoding chunks.
pub async fn zarr(
    reader: &Reader<'_>,
    r: &Resolved,
    view: View,
    key: ZarrKey,
) -> Result<ZarrAnswer> {
    let m = &*r.manifest;
    let served = (view != View::Kerchunk).then_some(&m.codec);
    let doc = match (view, key) {
        (View::Zarr3, ZarrKey::Group(GroupDoc::ZarrJson)) => json!(zarr_v3::root(m)),
        (View::Zarr3, ZarrKey::Array(name, ArrayDoc::ZarrJson)) => {
            json!(zarr_v3::array(&*resolve::array(m, view, &name)?, &m.codec))
        }
        (_, ZarrKey::Group(GroupDoc::Zgroup)) => json!(zarr_v2::ZGROUP),
        (_, ZarrKey::Group(GroupDoc::Zattrs)) => Value::Object(m.attrs.clone()),
        (_, ZarrKey::Group(GroupDoc::Zmetadata)) => json!(zarr_v2::zmetadata(m, served)),
        (_, ZarrKey::Array(name, ArrayDoc::Zarray)) => {
            json!(zarr_v2::view_zarray(
                &*resolve::array(m, view, &name)?,
                served
            ))
        }
        (_, ZarrKey::Array(name, ArrayDoc::Zattrs)) => {
            Value::Object(zarr_v2::array_attrs(&*resolve::array(m, view, &name)?))
        }
        (_, ZarrKey::Chunk(name, idx)) => {
            let a = resolve::array(m, view, &name)?;
            let what = || format!("chunk {idx:?} of {name:?} in dataset {}", m.id);
            let bytes = match resolve::plan(&a, view, &m.codec, &name, &idx)? {
                Plan::Raw { linear } => reader
                    .raw_chunk(m, &r.version, &name, &a, linear)
                    .await
                    .map_err(|e| e.context(what()))?,
                Plan::Served { idx } => {
                    let decoded = reader
                        .served_chunk(m, &r.version, &name, &a, &idx)
                        .await
                        .map_err(|e| e.context(what()))?;
                    let v3 = view == View::Zarr3;
                    let codec = m.codec.reencoding_for(&a);
                    Bytes::from(reader.encode(move || codec.encode(&decoded, v3)).await?)
                }
            };
            return Ok(ZarrAnswer::Chunk(reader.hold(bytes)));
        }
        (_, key) => {
            return Err(Error::NotFound(format!(
                "{key:?} is not a key of this view"
            )));
        }
    };
    Ok(ZarrAnswer::Document(doc))
}

/// `GET /datasets/{id}/stac`: the dataset's item, linked on the function at `base`, naming
/// sources outside the bucket where `publish_sources`.
pub fn item(r: &Resolved, collection: &str, base: &str, publish_sources: bool) -> stac::Item {
    stac::function_item(&r.manifest, &r.version, collection, base, publish_sources)
}

/// `GET /stac-collection-all.json`: a collection of every dataset's item on the function.
pub fn collection_all(
    all: &[(Resolved, String)],
    info: &stac::CatalogInfo,
    base: &str,
    publish_sources: bool,
) -> Value {
    let items: Vec<(String, stac::Item)> = all
        .iter()
        .map(|(r, collection)| {
            let href = format!("{base}/datasets/{}/stac", r.id);
            (href, item(r, collection, base, publish_sources))
        })
        .collect();
    let links = stac::CollectionLinks {
        root: format!("{base}/stac/catalog.json"),
        parent: format!("{base}/stac/catalog.json"),
        this: Some(format!("{base}/stac-collection-all.json")),
    };
    json!(stac::collection(
        "all",
        Some("All datasets"),
        info,
        &items,
        links
    ))
}

/// `GET /intake.yaml`.
pub fn intake(all: &[Resolved], base: &str) -> String {
    let ids: Vec<(String, Option<String>)> = (all.iter())
        .filter(|r| !r.manifest.catalog_only)
        .map(|r| {
            let title = r.manifest.attrs.get("title").and_then(Value::as_str);
            (r.id.clone(), title.map(str::to_owned))
        })
        .collect();
    discovery::intake(&ids, base)
}

/// `GET /datasets/{id}/{version}/refs.json` or `.../refs.parq/{key}`: the kerchunk export.
///
/// # Errors
/// [`Error::NotFound`] for the other format's path or a missing file.
///
/// The references name sources by URL (never with a query string: the indexer leaves it
/// out). Where the operator publishes sources they are served as stored; otherwise each
/// chunk's reference becomes the function's own `/kerchunk` URL of that chunk (the same bytes,
/// passed through), and Parquet references, which cannot be rewritten here, are not served.
pub async fn refs(
    bucket: &dyn ReadStore,
    r: &Resolved,
    file: &str,
    base: &str,
    publish_sources: bool,
) -> Result<Bytes> {
    let parquet = zarr_v2::kerchunk_as_parquet(&r.manifest);
    if parquet == (file == "refs.json") {
        return Err(Error::NotFound(if parquet {
            "this dataset's kerchunk references are Parquet, under refs.parq/".into()
        } else {
            "this dataset's kerchunk references are JSON, in refs.json".into()
        }));
    }
    if parquet && !publish_sources {
        return Err(Error::NotFound(
            "kerchunk Parquet references name the sources, which this function does not \
             publish (PUBLISH_SOURCES); /kerchunk serves the same chunks"
                .into(),
        ));
    }
    let key = format!("{}/{file}", version_dir(&r.id, &r.version));
    let stored = bucket
        .get(&key)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no {file} in version {} of {}", r.version, r.id)))?
        .bytes;
    if publish_sources {
        return Ok(stored);
    }
    let chunks = format!("{base}/datasets/{}@{}/kerchunk", r.id, r.version);
    zarr_v2::refs_through(&stored, &chunks).map_err(|e| Error::json(&key, e))
}

/// `GET /stac/{path}`: a file of the static catalog.
///
/// # Errors
/// [`Error::NotFound`] for files not in the catalog.
pub async fn static_stac(bucket: &dyn ReadStore, path: &str) -> Result<Bytes> {
    if format!("stac/{path}") == stac::CONFIG_KEY {
        return Err(Error::NotFound(
            "stac/config.json is not part of the catalog".into(),
        ));
    }
    Ok(bucket
        .get(&format!("stac/{path}"))
        .await?
        .ok_or_else(|| Error::NotFound(format!("no stac/{path} in the static catalog")))?
        .bytes)
}

/// The catalog configuration kept in the bucket, or the default.
///
/// # Errors
/// When the bucket cannot be read or the configuration is malformed.
pub async fn catalog_info(bucket: &dyn ReadStore) -> Result<stac::CatalogInfo> {
    match bucket.get(stac::CONFIG_KEY).await? {
        None => Ok(stac::CatalogInfo::default()),
        Some(o) => serde_json::from_slice(&o.bytes).map_err(|e| Error::json(stac::CONFIG_KEY, e)),
    }
}
