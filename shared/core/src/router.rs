//! The one router of every runtime: `(method, path, headers)` in, `(status, headers, body)` out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::key::{ArrayDoc, DatasetRef, GroupDoc, Route, ZarrKey, parse_path};
use crate::manifest::{self, Manifest, SourceInfo};
use crate::registry::{Registry, manifest_key, version_dir};
use crate::store::Store;
use crate::zarr_v2;

/// Default bytes one request may read from sources: well under a Lambda's buffered response
/// and a Worker's memory.
pub const DEFAULT_READ_BUDGET: u64 = 64 << 20;
/// How many parsed manifests a warm instance keeps.
const MANIFEST_CACHE: usize = 64;
/// Cache lifetime of answers that may change on reindex.
const SHORT_CACHE: &str = "public, max-age=60";
/// Cache lifetime of answers under a pinned version.
const IMMUTABLE_CACHE: &str = "public, max-age=31536000, immutable";

/// The function: a bucket holding the index, and the stores sources are read through.
pub struct App {
    bucket: Arc<dyn Store>,
    schemes: BTreeMap<String, Arc<dyn Store>>,
    read_budget: u64,
    manifests: Mutex<VecDeque<(String, Arc<Manifest>)>>,
}

impl App {
    /// A function over `bucket`; sources named by bucket-relative keys are read from it too.
    pub fn new(bucket: Arc<dyn Store>) -> Self {
        Self {
            bucket,
            schemes: BTreeMap::new(),
            read_budget: DEFAULT_READ_BUDGET,
            manifests: Mutex::new(VecDeque::new()),
        }
    }

    /// Read sources whose URL starts with `{scheme}://` through `store`; the store sees the rest
    /// of the URL, without leading slashes, as its key.
    #[must_use]
    pub fn with_scheme(mut self, scheme: &str, store: Arc<dyn Store>) -> Self {
        self.schemes.insert(scheme.to_owned(), store);
        self
    }

    /// Refuse (413) requests that would read more than `bytes` from sources.
    #[must_use]
    pub fn with_read_budget(mut self, bytes: u64) -> Self {
        self.read_budget = bytes;
        self
    }

    /// Answer one request. Never fails: errors become JSON bodies with their status.
    pub async fn handle<B>(&self, req: &Request<B>) -> Response<Bytes> {
        let head = req.method() == Method::HEAD;
        let mut resp = match *req.method() {
            Method::GET | Method::HEAD => match self.route(req.uri().path()).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            },
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
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if head {
            *resp.body_mut() = Bytes::new();
        }
        resp
    }

    async fn route(&self, path: &str) -> Result<Response<Bytes>> {
        match parse_path(path)? {
            Route::Root => Ok(json_response(&service_info(), SHORT_CACHE)),
            Route::Datasets => {
                let registry = Registry::load(self.bucket.as_ref()).await?;
                let ids: Vec<&String> = registry.datasets.keys().collect();
                Ok(json_response(&json!(ids), SHORT_CACHE))
            }
            Route::Info(ds) | Route::Kerchunk(ds, None) => {
                let (m, version) = self.manifest(&ds).await?;
                Ok(json_response(&info(&m, &version), cache_for(&ds)))
            }
            Route::Kerchunk(ds, Some(key)) => self.kerchunk(&ds, key).await,
        }
    }

    /// The manifest a dataset reference names, and its version.
    async fn manifest(&self, ds: &DatasetRef) -> Result<(Arc<Manifest>, String)> {
        let version = match &ds.version {
            Some(v) => v.clone(),
            None => Registry::load(self.bucket.as_ref())
                .await?
                .version(&ds.id)?
                .to_owned(),
        };
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
        let mut cache = self.manifests.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MANIFEST_CACHE {
            cache.pop_front();
        }
        cache.push_back((key, m.clone()));
        Ok((m, version))
    }

    fn cached(&self, key: &str) -> Option<Arc<Manifest>> {
        let cache = self.manifests.lock().unwrap_or_else(|e| e.into_inner());
        cache.iter().find(|(k, _)| k == key).map(|(_, m)| m.clone())
    }

    async fn kerchunk(&self, ds: &DatasetRef, key: ZarrKey) -> Result<Response<Bytes>> {
        let (m, version) = self.manifest(ds).await?;
        let cache = cache_for(ds);
        let served = |name: &str| {
            let a = m.array(name)?;
            match &a.kerchunk_excluded {
                Some(why) => Err(Error::NotFound(format!(
                    "{name:?} is not served raw: {why}; see /datasets/{}/info",
                    ds.id
                ))),
                None => Ok(a),
            }
        };
        let doc = match key {
            ZarrKey::Group(GroupDoc::Zgroup) => zarr_v2::zgroup(),
            ZarrKey::Group(GroupDoc::Zattrs) => Value::Object(m.attrs.clone()),
            ZarrKey::Group(GroupDoc::Zmetadata) => zarr_v2::zmetadata(&m),
            ZarrKey::Array(name, ArrayDoc::Zarray) => zarr_v2::zarray(served(&name)?),
            ZarrKey::Array(name, ArrayDoc::Zattrs) => zarr_v2::array_attrs(served(&name)?),
            ZarrKey::Chunk(name, idx) => {
                let a = served(&name)?;
                let bytes = self.raw_chunk(&m, &version, &name, a, &idx).await?;
                return Ok(bytes_response(bytes, cache));
            }
        };
        Ok(json_response(&doc, cache))
    }

    /// The stored bytes of one chunk: one record read from its table, one range read of the source.
    async fn raw_chunk(
        &self,
        m: &Manifest,
        version: &str,
        name: &str,
        a: &manifest::ArrayMeta,
        idx: &[u64],
    ) -> Result<Bytes> {
        if idx.len() != a.shape.len().max(1) || (a.shape.is_empty() && idx != [0]) {
            return Err(Error::BadRequest(format!(
                "chunk key for {name:?} has {} indices; the array has {} dimensions",
                idx.len(),
                a.shape.len()
            )));
        }
        let grid_idx = if a.shape.is_empty() { &[][..] } else { idx };
        let linear = a.linear_index(grid_idx).ok_or_else(|| {
            Error::NotFound(format!(
                "chunk {idx:?} of {name:?} is outside the chunk grid {:?}",
                a.grid()
            ))
        })?;
        let table = format!("{}/{}", version_dir(&m.id, version), a.table);
        let record = match self
            .bucket
            .get_range(&table, manifest::record_range(linear))
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Error::Storage(format!("chunk table {table} is missing"))),
            Err(Error::RangeNotSatisfiable(_)) => {
                return Err(Error::Corrupt(format!("chunk table {table} is truncated")));
            }
            Err(e) => return Err(e),
        };
        let Some(c) = manifest::decode_record(&record)? else {
            return Err(Error::NotFound(format!(
                "chunk {idx:?} of {name:?} was never written; it reads as the fill value"
            )));
        };
        let source = m.sources.get(c.source as usize).ok_or_else(|| {
            Error::Corrupt(format!("chunk table {table} names source #{}", c.source))
        })?;
        if c.length > self.read_budget {
            return Err(Error::TooLarge(format!(
                "chunk {idx:?} of {name:?} is {} bytes, over the read budget of {} bytes",
                c.length, self.read_budget
            )));
        }
        let (store, key) = self.source_store(source)?;
        match store.get_range(key, c.offset..c.offset + c.length).await {
            Ok(Some(b)) if b.len() as u64 == c.length => Ok(b),
            Ok(Some(_)) | Err(Error::RangeNotSatisfiable(_)) => Err(Error::Corrupt(format!(
                "source {} is shorter than when it was indexed; reindex the dataset",
                source.url
            ))),
            Ok(None) => Err(Error::Storage(format!(
                "source {} is missing; reindex the dataset",
                source.url
            ))),
            Err(e) => Err(e),
        }
    }

    /// The store a source URL is read through, and its key there.
    fn source_store<'a>(&'a self, source: &'a SourceInfo) -> Result<(&'a dyn Store, &'a str)> {
        match source.url.split_once("://") {
            None => Ok((self.bucket.as_ref(), source.url.as_str())),
            Some((scheme, rest)) => self
                .schemes
                .get(scheme)
                .map(|s| (s.as_ref(), rest.trim_start_matches('/')))
                .ok_or_else(|| {
                    Error::Storage(format!(
                        "this function has no store for {scheme}:// sources ({})",
                        source.url
                    ))
                }),
        }
    }
}

fn cache_for(ds: &DatasetRef) -> &'static str {
    if ds.version.is_some() {
        IMMUTABLE_CACHE
    } else {
        SHORT_CACHE
    }
}

fn service_info() -> Value {
    json!({
        "service": "cloudify",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "NetCDF/HDF5 files in object storage served as Zarr",
        "links": {
            "datasets": "/datasets",
            "info": "/datasets/{id}/info",
            "kerchunk": "/datasets/{id}/kerchunk",
        },
    })
}

/// `/datasets/{id}/info`: what is served, what is left out and why.
fn info(m: &Manifest, version: &str) -> Value {
    let variables: serde_json::Map<String, Value> = m
        .arrays
        .iter()
        .map(|(name, a)| {
            (
                name.clone(),
                json!({
                    "shape": a.shape,
                    "dims": a.dims,
                    "dtype": a.dtype,
                    "chunks": a.chunks,
                    "chunk_grid": a.grid(),
                    "stored_chunks": a.stored_chunks,
                    "codecs": a.codecs,
                }),
            )
        })
        .collect();
    let excluded: serde_json::Map<String, Value> = m
        .arrays
        .iter()
        .filter_map(|(n, a)| Some((n.clone(), json!(a.kerchunk_excluded.as_ref()?))))
        .collect();
    json!({
        "id": m.id,
        "version": version,
        "format_version": m.format_version,
        "attrs": m.attrs,
        "sources": m.sources,
        "variables": variables,
        "routes": { "kerchunk": { "excluded": excluded } },
        "skipped": m.skipped,
    })
}

fn json_response(v: &Value, cache: &'static str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(v.to_string()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn bytes_response(b: Bytes, cache: &'static str) -> Response<Bytes> {
    let mut r = Response::new(b);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn error_response(e: &Error) -> Response<Bytes> {
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
