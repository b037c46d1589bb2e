//! The one router of every runtime: `(method, path, headers)` in, `(status, headers, body)` out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::key::{ArrayDoc, DatasetRef, GroupDoc, Route, View, ZarrKey, parse_path};
use crate::manifest::{self, ArrayMeta, Manifest};
use crate::read::{self, Clock, Reader, Stats};
use crate::registry::{Entry, Registry, manifest_key, version_dir};
use crate::store::Store;
use crate::{diag, discovery, stac, zarr_v2, zarr_v3};

/// Default bytes one request may read from sources (and hold decoded): well under a Lambda's
/// memory and a Worker's 128 MB isolate.
pub const DEFAULT_READ_BUDGET: u64 = 64 << 20;
/// How many parsed manifests a warm instance keeps.
const MANIFEST_CACHE: usize = 64;
/// Bytes of manifest JSON a warm instance keeps parsed (a Worker isolate has 128 MB in all).
pub const DEFAULT_MANIFEST_CACHE_BYTES: u64 = 16 << 20;
/// Cache lifetime of answers that may change on reindex.
const SHORT_CACHE: &str = "public, max-age=60";
/// Cache lifetime of answers under a pinned version.
const IMMUTABLE_CACHE: &str = "public, max-age=31536000, immutable";

/// The function: a bucket holding the index, and the stores sources are read through.
pub struct App {
    bucket: Arc<dyn Store>,
    schemes: BTreeMap<String, Arc<dyn Store>>,
    read_budget: u64,
    limits: read::Limits,
    concurrency: usize,
    merge_cap: u64,
    clock: Clock,
    public_url: Option<String>,
    manifests: Mutex<ManifestCache>,
    records: read::RecordCache,
}

/// Parsed manifests, least recently used first, with the size of the JSON each was parsed
/// from: a warm function instance keeps the datasets it is asked for.
#[derive(Default)]
struct ManifestCache {
    entries: VecDeque<(String, Arc<Manifest>, u64)>,
    bytes: u64,
    max_bytes: u64,
}

/// A successful answer before headers: its body, content type and cache lifetime.
struct Answer {
    body: Bytes,
    content_type: &'static str,
    cache: &'static str,
    etag: Option<String>,
}

impl App {
    /// A function over `bucket`; sources named by bucket-relative keys are read from it too.
    pub fn new(bucket: Arc<dyn Store>) -> Self {
        Self {
            bucket,
            schemes: BTreeMap::new(),
            read_budget: DEFAULT_READ_BUDGET,
            limits: read::Limits::default(),
            concurrency: read::DEFAULT_CONCURRENCY,
            merge_cap: read::DEFAULT_MERGE_CAP,
            clock: None,
            public_url: None,
            manifests: Mutex::new(ManifestCache {
                max_bytes: DEFAULT_MANIFEST_CACHE_BYTES,
                ..ManifestCache::default()
            }),
            records: read::RecordCache::default(),
        }
    }

    /// Refuse (413) requests that would make more store reads or decode and re-encode more
    /// bytes than `limits` allow: a Worker's subrequest and CPU limits.
    #[must_use]
    pub fn with_limits(mut self, limits: read::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Link documents to `url` (the function's public address, no trailing slash) rather than
    /// to the host a request names.
    #[must_use]
    pub fn with_public_url(mut self, url: &str) -> Self {
        self.public_url = Some(url.trim_end_matches('/').to_owned());
        self
    }

    /// Keep at most `records` chunk-table records between requests (about 150 bytes each).
    #[must_use]
    pub fn with_record_cache(mut self, records: usize) -> Self {
        self.records = read::RecordCache::new(records);
        self
    }

    /// Chunk-table records held between requests.
    pub fn cached_records(&self) -> usize {
        self.records.len()
    }

    /// Keep at most `bytes` of manifest JSON parsed between requests.
    #[must_use]
    pub fn with_manifest_cache_bytes(self, bytes: u64) -> Self {
        self.cache().max_bytes = bytes;
        self
    }

    /// The key a response cache may store `path`'s answer under: the path with the dataset
    /// version it resolves to, so a reindex never serves stale bytes. `None` for anything but
    /// chunk keys, which are the only answers worth caching beside the function.
    ///
    /// # Errors
    /// As resolving the dataset: unknown dataset, unreadable `index.json`.
    pub async fn chunk_cache_key(&self, path: &str) -> Result<Option<String>> {
        let Ok(Route::Zarr(ds, _, Some(ZarrKey::Chunk(..)))) = parse_path(path) else {
            return Ok(None);
        };
        let version = self.version(&ds).await?;
        Ok(Some(format!(
            "{version}/{}{path}",
            env!("CARGO_PKG_VERSION")
        )))
    }

    /// Read sources whose URL starts with `{scheme}://` through `store`; the store sees the rest
    /// of the URL, without leading slashes, as its key.
    #[must_use]
    pub fn with_scheme(mut self, scheme: &str, store: Arc<dyn Store>) -> Self {
        self.schemes.insert(scheme.to_owned(), store);
        self
    }

    /// Refuse (413) requests that would read or hold more than `bytes`.
    #[must_use]
    pub fn with_read_budget(mut self, bytes: u64) -> Self {
        self.read_budget = bytes;
        self
    }

    /// How many reads one request may have in flight, and the largest merged read.
    #[must_use]
    pub fn with_reads(mut self, concurrency: usize, merge_cap: u64) -> Self {
        self.concurrency = concurrency;
        self.merge_cap = merge_cap;
        self
    }

    /// A millisecond clock for `Server-Timing` durations (none: counts only).
    #[must_use]
    pub fn with_clock(mut self, now: fn() -> f64) -> Self {
        self.clock = Some(now);
        self
    }

    /// Answer one request. Never fails: errors become JSON bodies with their status.
    pub async fn handle<B>(&self, req: &Request<B>) -> Response<Bytes> {
        let head = req.method() == Method::HEAD;
        let stats = Stats::default();
        let mut resp = match *req.method() {
            Method::GET | Method::HEAD => {
                let uri = req.uri();
                match self
                    .route(uri.path(), uri.query(), req.headers(), &stats)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => error_response(&e),
                }
            }
            Method::OPTIONS => preflight(),
            ref m => {
                let mut r = error_response(&Error::MethodNotAllowed(m.to_string()));
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                r
            }
        };
        let len = resp.body().len() as u64;
        let bodiless = matches!(
            resp.status(),
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag, Server-Timing"),
        );
        if !bodiless {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        // Links in some documents follow the host the request reached, and a dataset's summary
        // follows Accept: caches must key on them.
        h.insert(
            header::VARY,
            HeaderValue::from_static("Accept, Host, X-Forwarded-Host, X-Forwarded-Proto"),
        );
        if let Ok(v) = HeaderValue::from_str(&stats.header()) {
            h.insert("server-timing", v);
        }
        if head {
            *resp.body_mut() = Bytes::new();
        }
        resp
    }

    async fn route(
        &self,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        stats: &Stats,
    ) -> Result<Response<Bytes>> {
        let base = self.public_url.clone().unwrap_or_else(|| base_url(headers));
        let (ds, view, key) = match parse_path(path)? {
            Route::Root => return Ok(json_response(&service_info(), SHORT_CACHE)),
            Route::OpenApi => return Ok(json_response(&discovery::openapi(), SHORT_CACHE)),
            Route::Datasets => {
                let registry = Registry::load(self.bucket.as_ref()).await?;
                let ids: Vec<&String> = registry.datasets.keys().collect();
                return Ok(json_response(&json!(ids), SHORT_CACHE));
            }
            Route::Intake => {
                let ids: Vec<(String, Option<String>)> = self
                    .all_manifests()
                    .await?
                    .into_iter()
                    .map(|(m, _)| {
                        let title = m.attrs.get("title").and_then(Value::as_str);
                        (m.id.clone(), title.map(str::to_owned))
                    })
                    .collect();
                return Ok(text_answer(discovery::intake(&ids, &base), "text/yaml").into_response());
            }
            Route::CollectionAll => {
                let c = self.collection_all(&base).await?;
                return Ok(json_response(&c, SHORT_CACHE));
            }
            Route::StaticStac(rest) => {
                if rest == "config.json" {
                    return Err(Error::NotFound(
                        "stac/config.json is not part of the catalog".into(),
                    ));
                }
                let key = format!("stac/{rest}");
                let body =
                    self.bucket.get(&key).await?.ok_or_else(|| {
                        Error::NotFound(format!("no {key} in the static catalog"))
                    })?;
                let mut a = bytes_answer(body);
                a.content_type = "application/json";
                return Ok(a.into_response());
            }
            Route::Info(ds) => (ds, None, Some(Extra::Info)),
            Route::Summary(ds) => (ds, None, Some(Extra::Summary)),
            Route::Keys(ds) => (ds, None, Some(Extra::Keys)),
            Route::Dict(ds) => (ds, None, Some(Extra::Dict)),
            Route::Item(ds) => (ds, None, Some(Extra::Item)),
            Route::Refs(ds, file) => (ds, None, Some(Extra::Refs(file))),
            Route::Zarr(ds, view, key) => (ds, Some(view), key.map(Extra::Key)),
            Route::Diagnostic(ds, d) => (
                ds,
                None,
                Some(Extra::Diagnostic(Box::new(d.with_query(query)?))),
            ),
        };
        let (m, version) = self.manifest(&ds).await?;
        // A strong tag per version and route: a client revalidates without the function
        // reading anything but index.json.
        // The server's own version is in the tag too, so a release that changes how bytes are
        // served is not hidden behind clients' 304s.
        // A diagnostic's query string changes its answer, so it is part of the tag.
        let tagged = match (&key, query) {
            (Some(Extra::Diagnostic(_)), Some(q)) => {
                format!("{}|{path}?{q}", env!("CARGO_PKG_VERSION"))
            }
            _ => format!("{}|{path}", env!("CARGO_PKG_VERSION")),
        };
        let etag = format!("\"{version}-{:016x}\"", fnv1a(tagged.as_bytes()));
        let cache = if ds.version.is_some() {
            IMMUTABLE_CACHE
        } else {
            SHORT_CACHE
        };
        if if_none_match(headers, &etag) {
            let mut r = Response::new(Bytes::new());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            set_cache(r.headers_mut(), cache, Some(&etag));
            return Ok(r);
        }
        let reader = Reader {
            bucket: self.bucket.as_ref(),
            record_cache: &self.records,
            schemes: &self.schemes,
            budget: self.read_budget,
            limits: self.limits,
            concurrency: self.concurrency,
            merge_cap: self.merge_cap,
            clock: self.clock,
            stats,
        };
        let mut answer = match (view, key) {
            (Some(view), Some(Extra::Key(key))) => {
                self.zarr(&reader, &m, &version, &ds, view, key).await?
            }
            (_, Some(Extra::Diagnostic(d))) => {
                let url = format!("{base}{path}");
                match diag::answer(&reader, &m, &version, &d, accepts_html(headers), &url).await? {
                    diag::Rendered::Json(v) => json_answer(&v),
                    diag::Rendered::Html(page) => text_answer(page, "text/html; charset=utf-8"),
                    diag::Rendered::Bytes(b, media) => {
                        let mut a = bytes_answer(Bytes::from(b));
                        a.content_type = media;
                        a
                    }
                }
            }
            (_, Some(Extra::Keys)) => json_answer(&discovery::keys(&m)),
            (_, Some(Extra::Dict)) => json_answer(&discovery::dict(&m)),
            (_, Some(Extra::Summary)) if accepts_html(headers) => text_answer(
                discovery::html(&m, &version, &base),
                "text/html; charset=utf-8",
            ),
            (_, Some(Extra::Item)) => {
                let registry = Registry::load(self.bucket.as_ref()).await?;
                let collection = registry
                    .datasets
                    .get(&m.id)
                    .map_or(crate::registry::DEFAULT_COLLECTION, |e| {
                        e.collection.as_str()
                    });
                let mut a = json_answer(&Self::item(&m, &version, collection, &base));
                a.content_type = "application/geo+json";
                a
            }
            (_, Some(Extra::Refs(file))) => {
                let parquet = zarr_v2::kerchunk_as_parquet(&m);
                if parquet == (file == "refs.json") {
                    return Err(Error::NotFound(if parquet {
                        "this dataset's kerchunk references are Parquet, under refs.parq/".into()
                    } else {
                        "this dataset's kerchunk references are JSON, in refs.json".into()
                    }));
                }
                let key = format!("{}/{file}", version_dir(&m.id, &version));
                let body = self
                    .bucket
                    .get(&key)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no {key}")))?;
                let mut a = bytes_answer(body);
                a.content_type = if file.ends_with(".parq") {
                    "application/vnd.apache.parquet"
                } else {
                    "application/json"
                };
                a
            }
            _ => json_answer(&info(&m, &version)),
        };
        answer.cache = cache;
        answer.etag = Some(etag);
        Ok(answer.into_response())
    }

    /// The version a dataset reference names: pinned, else the current one in `index.json`.
    async fn version(&self, ds: &DatasetRef) -> Result<String> {
        match &ds.version {
            Some(v) => Ok(v.clone()),
            None => Ok(Registry::load(self.bucket.as_ref())
                .await?
                .version(&ds.id)?
                .to_owned()),
        }
    }

    /// The manifest a dataset reference names, and its version.
    async fn manifest(&self, ds: &DatasetRef) -> Result<(Arc<Manifest>, String)> {
        let version = self.version(ds).await?;
        let key = manifest_key(&ds.id, &version);
        if let Some(m) = self.cached(&key) {
            return Ok((m, version));
        }
        let bytes = self
            .bucket
            .get(&key)
            .await?
            .ok_or_else(|| match &ds.version {
                Some(v) => Error::NotFound(format!("dataset {:?} has no version {v:?}", ds.id)),
                None => Error::Storage(format!("{key} is listed in index.json but missing")),
            })?;
        let m = Arc::new(Manifest::from_json(&bytes)?);
        self.cache().insert(key, m.clone(), bytes.len() as u64);
        Ok((m, version))
    }

    /// The catalog configuration kept in the bucket, or the default.
    async fn catalog_info(&self) -> Result<stac::CatalogInfo> {
        match self.bucket.get(stac::CONFIG_KEY).await? {
            None => Ok(stac::CatalogInfo::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| Error::json(stac::CONFIG_KEY, e)),
        }
    }

    /// Every dataset's current manifest and registry entry, from one read of `index.json`.
    async fn all_manifests(&self) -> Result<Vec<(Arc<Manifest>, Entry)>> {
        let registry = Registry::load(self.bucket.as_ref()).await?;
        let mut out = Vec::with_capacity(registry.datasets.len());
        for (id, entry) in registry.datasets {
            let pinned = DatasetRef {
                id,
                version: Some(entry.version.clone()),
            };
            out.push((self.manifest(&pinned).await?.0, entry));
        }
        Ok(out)
    }

    /// A dataset's STAC item with hrefs on the function at `base`.
    fn item(m: &Manifest, version: &str, collection: &str, base: &str) -> Value {
        let hrefs = stac::Hrefs {
            function: base.to_owned(),
            bucket: format!("{base}/"),
        };
        let mut item = stac::item(m, version, collection, &hrefs);
        item["links"] = json!([
            { "rel": "self", "href": format!("{base}/datasets/{}/stac", m.id), "type": "application/geo+json" },
            { "rel": "root", "href": format!("{base}/stac/catalog.json"), "type": "application/json" },
            { "rel": "collection", "href": format!("{base}/stac/{collection}/collection.json"), "type": "application/json" },
        ]);
        item
    }

    /// A collection linking every dataset's item on the function.
    async fn collection_all(&self, base: &str) -> Result<Value> {
        let items: Vec<(String, Value)> = self
            .all_manifests()
            .await?
            .into_iter()
            .map(|(m, e)| {
                let href = format!("{base}/datasets/{}/stac", m.id);
                (href, Self::item(&m, &e.version, &e.collection, base))
            })
            .collect();
        let info = self.catalog_info().await?;
        let mut c = stac::collection("all", &info, &items);
        c["title"] = json!("All datasets");
        if let Some(links) = c["links"].as_array_mut() {
            for l in links
                .iter_mut()
                .filter(|l| l["rel"] == "root" || l["rel"] == "parent")
            {
                l["href"] = json!(format!("{base}/stac/catalog.json"));
            }
            links.push(json!({ "rel": "self", "href": format!("{base}/stac-collection-all.json"), "type": "application/json" }));
        }
        Ok(c)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ManifestCache> {
        // A poisoned lock only means a panic elsewhere; the cache is still consistent.
        self.manifests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, key: &str) -> Option<Arc<Manifest>> {
        self.cache().get(key)
    }

    async fn zarr(
        &self,
        reader: &Reader<'_>,
        m: &Manifest,
        version: &str,
        ds: &DatasetRef,
        view: View,
        key: ZarrKey,
    ) -> Result<Answer> {
        let array = |name: &str| -> Result<&ArrayMeta> {
            let a = m.array(name)?;
            let why = match view {
                View::Kerchunk => a.kerchunk_excluded.clone(),
                View::Zarr3 if zarr_v3::data_type(&a.dtype).is_none() => {
                    Some(format!("Zarr v3 has no data type for {}", a.dtype))
                }
                _ => None,
            };
            match why {
                Some(why) => Err(Error::NotFound(format!(
                    "{name:?} is not served here: {why}; see /datasets/{}/info",
                    ds.id
                ))),
                None => Ok(a),
            }
        };
        let codec = (view != View::Kerchunk).then_some(&m.codec);
        let doc = match (view, key) {
            (View::Zarr3, ZarrKey::Group(GroupDoc::ZarrJson)) => zarr_v3::root(m),
            (View::Zarr3, ZarrKey::Array(name, ArrayDoc::ZarrJson)) => {
                zarr_v3::array(array(&name)?, &m.codec)
                    .ok_or_else(|| Error::NotFound(format!("{name:?} has no v3 type")))?
            }
            (_, ZarrKey::Group(GroupDoc::Zgroup)) => zarr_v2::zgroup(),
            (_, ZarrKey::Group(GroupDoc::Zattrs)) => Value::Object(m.attrs.clone()),
            (_, ZarrKey::Group(GroupDoc::Zmetadata)) => zarr_v2::zmetadata(m, codec),
            (View::Kerchunk, ZarrKey::Array(name, ArrayDoc::Zarray)) => {
                zarr_v2::zarray(array(&name)?)
            }
            (_, ZarrKey::Array(name, ArrayDoc::Zarray)) => {
                zarr_v2::served_zarray(array(&name)?, &m.codec)
            }
            (_, ZarrKey::Array(name, ArrayDoc::Zattrs)) => zarr_v2::array_attrs(array(&name)?),
            (View::Kerchunk, ZarrKey::Chunk(name, idx)) => {
                let a = array(&name)?;
                let body = raw_chunk(reader, m, version, &name, a, &idx).await?;
                return Ok(bytes_answer(body));
            }
            (_, ZarrKey::Chunk(name, idx)) => {
                let a = array(&name)?;
                let grid_idx = check_index(&name, a.shape.len(), &a.served_grid(), &idx, view)?;
                let decoded = reader.served_chunk(m, version, &name, a, grid_idx).await?;
                let v3 = view == View::Zarr3;
                let body = read::timed(reader.clock, reader.stats_encode(), || {
                    m.codec.encode(&decoded, v3)
                })?;
                return Ok(bytes_answer(Bytes::from(body)));
            }
            (_, key) => {
                return Err(Error::NotFound(format!(
                    "{key:?} is not a key of this view"
                )));
            }
        };
        Ok(json_answer(&doc))
    }
}

impl ManifestCache {
    /// The manifest under `key`, which becomes the most recently used.
    fn get(&mut self, key: &str) -> Option<Arc<Manifest>> {
        let i = self.entries.iter().position(|(k, _, _)| k == key)?;
        let entry = self.entries.remove(i)?;
        let m = entry.1.clone();
        self.entries.push_back(entry);
        Some(m)
    }

    /// Keep `m`, dropping the least recently used entries over the count or byte bound; a
    /// manifest larger than the whole bound is used for this request only.
    fn insert(&mut self, key: String, m: Arc<Manifest>, size: u64) {
        if size > self.max_bytes || self.entries.iter().any(|(k, _, _)| *k == key) {
            return;
        }
        while self.entries.len() >= MANIFEST_CACHE || self.bytes + size > self.max_bytes {
            match self.entries.pop_front() {
                Some((_, _, s)) => self.bytes -= s,
                None => break,
            }
        }
        self.bytes += size;
        self.entries.push_back((key, m, size));
    }
}

/// What a dataset route asks for besides a Zarr view's root.
enum Extra {
    Key(ZarrKey),
    Diagnostic(Box<diag::Diagnostic>),
    Info,
    Summary,
    Keys,
    Dict,
    Item,
    Refs(String),
}

/// The base URL the request reached the function at: `X-Forwarded-Proto` (else http) and
/// `Host`, so documents link back to the function wherever it is deployed.
fn base_url(headers: &HeaderMap) -> String {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let proto = get("x-forwarded-proto")
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let host = get("x-forwarded-host")
        .or_else(|| get(header::HOST.as_str()))
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{proto}://{host}")
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Check a chunk index against an array's grid; return the grid index (empty for a scalar,
/// whose one chunk is `0` in v2 and `c` in v3).
fn check_index<'a>(
    name: &str,
    ndim: usize,
    grid: &[u64],
    idx: &'a [u64],
    view: View,
) -> Result<&'a [u64]> {
    let grid_idx = match (ndim, view, idx) {
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
    if manifest::linear_index(grid, grid_idx).is_none() {
        return Err(Error::NotFound(format!(
            "chunk {idx:?} of {name:?} is outside the chunk grid {grid:?}"
        )));
    }
    Ok(grid_idx)
}

/// The stored bytes of one source chunk: one table record, one source range read.
async fn raw_chunk(
    reader: &Reader<'_>,
    m: &Manifest,
    version: &str,
    name: &str,
    a: &ArrayMeta,
    idx: &[u64],
) -> Result<Bytes> {
    let grid = a.grid();
    let grid_idx = check_index(name, a.shape.len(), &grid, idx, View::Kerchunk)?;
    let linear = manifest::linear_index(&grid, grid_idx).unwrap_or_default();
    let record = reader.records(m, version, a, &[linear]).await?;
    let Some(Some(c)) = record.get(&linear).copied() else {
        return Err(Error::NotFound(format!(
            "chunk {idx:?} of {name:?} was never written; it reads as the fill value"
        )));
    };
    let what = format!("chunk {idx:?} of {name:?}");
    let mut read = reader
        .source_ranges(m, vec![(c.source, c.offset..c.offset + c.length)], &what)
        .await?;
    read.pop()
        .map(|(_, _, b)| b)
        .ok_or_else(|| Error::Corrupt(format!("{what}: the read returned nothing")))
}

/// 64-bit FNV-1a: a stable, dependency-free hash for ETags (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().trim_start_matches("W/") == etag)
}

fn service_info() -> Value {
    json!({
        "service": "cloudify",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "NetCDF/HDF5 files in object storage served as Zarr",
        "links": {
            "openapi": "/openapi.json",
            "stac": "/stac/catalog.json",
            "stac_collection": "/stac-collection-all.json",
            "intake": "/intake.yaml",
            "datasets": "/datasets",
            "info": "/datasets/{id}/info",
            "kerchunk": "/datasets/{id}/kerchunk",
            "zarr": "/datasets/{id}/zarr",
            "zarr3": "/datasets/{id}/zarr3",
        },
    })
}

/// `/datasets/{id}/info`: what is served, what is left out and why.
fn info(m: &Manifest, version: &str) -> Value {
    let variables: serde_json::Map<String, Value> = m
        .arrays
        .iter()
        .map(|(name, a)| {
            // xpublish's fields (type, dimensions, attributes), then the storage details.
            let mut v = discovery::info_variable(a);
            for (k, x) in [
                ("shape", json!(a.shape)),
                ("dims", json!(a.dims)),
                ("dtype", json!(a.dtype)),
                ("chunks", json!(a.chunks)),
                ("chunk_grid", json!(a.grid())),
                ("served_chunks", json!(a.served_chunks)),
                ("stored_chunks", json!(a.stored_chunks)),
                ("codecs", json!(a.codecs)),
            ] {
                v.insert(k.into(), x);
            }
            (name.clone(), Value::Object(v))
        })
        .collect();
    let excluded = |why: &dyn Fn(&ArrayMeta) -> Option<String>| -> serde_json::Map<String, Value> {
        m.arrays
            .iter()
            .filter_map(|(n, a)| Some((n.clone(), json!(why(a)?))))
            .collect()
    };
    json!({
        "id": m.id,
        "version": version,
        "format_version": m.format_version,
        "dimensions": discovery::dims(m),
        "global_attributes": m.attrs,
        "attrs": m.attrs,
        "sources": m.sources,
        "codec": m.codec,
        "variables": variables,
        "routes": {
            "kerchunk": { "excluded": excluded(&|a| a.kerchunk_excluded.clone()) },
            "zarr": { "excluded": {} },
            "zarr3": { "excluded": excluded(&|a| zarr_v3::data_type(&a.dtype)
                .is_none()
                .then(|| format!("Zarr v3 has no data type for {}", a.dtype))) },
        },
        "skipped": m.skipped,
    })
}

impl Answer {
    fn into_response(self) -> Response<Bytes> {
        let mut r = Response::new(self.body);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        set_cache(h, self.cache, self.etag.as_deref());
        r
    }
}

fn set_cache(h: &mut HeaderMap, cache: &'static str, etag: Option<&str>) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        h.insert(header::ETAG, v);
    }
}

fn json_answer(v: &Value) -> Answer {
    Answer {
        body: Bytes::from(v.to_string()),
        content_type: "application/json",
        cache: SHORT_CACHE,
        etag: None,
    }
}

fn text_answer(body: String, content_type: &'static str) -> Answer {
    Answer {
        body: Bytes::from(body),
        content_type,
        cache: SHORT_CACHE,
        etag: None,
    }
}

fn bytes_answer(body: Bytes) -> Answer {
    Answer {
        body,
        content_type: "application/octet-stream",
        cache: SHORT_CACHE,
        etag: None,
    }
}

fn json_response(v: &Value, cache: &'static str) -> Response<Bytes> {
    let mut a = json_answer(v);
    a.cache = cache;
    a.into_response()
}

/// The answer to a failed request, as every runtime gives it: the error's status and a JSON
/// body naming the problem.
pub fn error_response(e: &Error) -> Response<Bytes> {
    let body = json!({ "error": e.kind(), "detail": e.to_string() });
    let mut r = json_response(&body, "no-store");
    *r.status_mut() = e.status();
    r
}

fn preflight() -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_cache_drops_the_least_recently_used() {
        let mut cache = ManifestCache {
            max_bytes: 30,
            ..ManifestCache::default()
        };
        let m = |id: &str| Arc::new(Manifest::new(id, serde_json::Map::new()));
        for id in ["a", "b", "c"] {
            cache.insert(id.to_owned(), m(id), 10);
        }
        assert!(cache.get("a").is_some());
        cache.insert("d".to_owned(), m("d"), 10);
        let kept: Vec<&str> = cache.entries.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(kept, ["c", "a", "d"]);
        assert_eq!(cache.bytes, 30);
        cache.insert("huge".to_owned(), m("huge"), 31);
        assert!(cache.get("huge").is_none());
    }
}
