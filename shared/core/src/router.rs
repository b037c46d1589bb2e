//! The one function of every runtime: `(method, path, headers)` in, `(status, headers, body)`
//! out. A request is parsed into a [`Route`], its dataset resolved once, and the route's answer
//! asked of [`crate::api`]; [`crate::respond`] turns it into a response.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};

use crate::admit::{Admission, Sleep};
use crate::api::{self, ZarrAnswer};
use crate::config::Config;
use crate::decoded::DecodedCache;
use crate::diag;
use crate::discovery;
use crate::error::{Error, Result};
use crate::key::{Route, ZarrKey, parse_path};
use crate::log::{self, RequestLine};
use crate::read::{Clock, Offload, Reader, Sources, Stats};
use crate::resolve::{Resolved, Resolver};
use crate::respond::{self, GEO_JSON, HTML, JSON, Lifetime, OCTETS, PARQUET, Reply, YAML};
use crate::store::{Counted, MaybeSend, ReadStore};

/// A cache of chunk answers beside the function (a Worker's Cache API), keyed by the dataset
/// version they were read from, so a reindex never serves stale bytes.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait ChunkCache: MaybeSend {
    /// The answer kept under `key`.
    async fn get(&self, key: &str) -> Option<Response<Bytes>>;
    /// Keep `answer` under `key`.
    async fn put(&self, key: &str, answer: &Response<Bytes>);
}

/// The function: a bucket holding the index, the stores sources are read through, and the
/// caches of a warm instance.
pub struct App {
    config: Config,
    bucket: Arc<dyn ReadStore>,
    sources: Sources,
    resolver: Resolver,
    decoded: DecodedCache,
    admission: Arc<Admission>,
    sleep: Option<Sleep>,
    offload: Option<Offload>,
    clock: Clock,
}

/// Milliseconds since the first call: the clock of `Server-Timing` and of the registry's
/// lifetime, where the platform has one.
#[cfg(not(target_arch = "wasm32"))]
pub fn monotonic_ms() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1000.0
}

/// The platform's clock: the monotonic one natively, none on wasm32 (a Worker gives its own).
fn default_clock() -> Clock {
    #[cfg(not(target_arch = "wasm32"))]
    return Some(monotonic_ms);
    #[cfg(target_arch = "wasm32")]
    return None;
}

/// What one request is answered with, and what its log line says beyond the response.
struct Answered {
    response: Response<Bytes>,
    version: Option<String>,
    cache: Option<&'static str>,
    error: Option<Error>,
}

impl Answered {
    /// A successful answer.
    fn of(response: Response<Bytes>, version: Option<String>, cache: Option<&'static str>) -> Self {
        Self {
            response,
            version,
            cache,
            error: None,
        }
    }
}

/// What the route of a request needs of it.
struct Cx<'a> {
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    stats: &'a Stats,
    bucket: Counted<'a>,
    base: String,
}

impl App {
    /// A function configured by `config` over `bucket`; sources named by bucket-relative keys
    /// are read from it too.
    pub fn new(config: Config, bucket: Arc<dyn ReadStore>) -> Self {
        let clock = default_clock();
        Self {
            resolver: resolver(&config, clock),
            decoded: DecodedCache::new(config.decoded_cache_bytes),
            admission: Admission::new(config.in_flight_budget()),
            sleep: None,
            offload: None,
            config,
            bucket,
            sources: Sources::new(),
            clock,
        }
    }

    /// Read sources whose URL starts with `{scheme}://` through `store`; the store sees the rest
    /// of the URL, without leading slashes, as its key.
    #[must_use]
    pub fn with_source(mut self, scheme: &str, store: Arc<dyn ReadStore>) -> Self {
        self.sources.insert(scheme.to_owned(), store);
        self
    }

    /// Use `now` (milliseconds) for `Server-Timing` and the registry's lifetime.
    #[must_use]
    pub fn with_clock(mut self, now: fn() -> f64) -> Self {
        self.clock = Some(now);
        self.resolver = resolver(&self.config, self.clock);
        self
    }

    /// Time the wait for room in the budget of bytes in flight with `sleep` (milliseconds), so
    /// a request waiting past `QUEUE_TIMEOUT_SECONDS` is answered 503; without it, requests
    /// wait until there is room.
    #[must_use]
    pub fn with_sleep(mut self, sleep: Sleep) -> Self {
        self.sleep = Some(sleep);
        self
    }

    /// Decode and encode chunks through `offload` (natively, a pool of threads), so requests
    /// use every core; without it they run in the request's task.
    #[must_use]
    pub fn with_offload(mut self, offload: Offload) -> Self {
        self.offload = Some(offload);
        self
    }

    /// The budget of bytes in flight shared by concurrent requests.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Chunk-table records held between requests.
    pub fn cached_records(&self) -> usize {
        self.resolver.records().len()
    }

    /// Decoded source chunks held between requests, and decodes made through them.
    pub fn decoded_cache(&self) -> &DecodedCache {
        &self.decoded
    }

    /// The key a response cache keeps `path`'s answer under: the path with the dataset version
    /// it resolves to (and this crate's version), so a reindex never serves stale bytes. `None`
    /// for anything but chunk keys, the only answers worth caching beside the function.
    ///
    /// # Errors
    /// As resolving the dataset: unknown dataset, unreadable `index.json`.
    pub async fn chunk_cache_key(&self, path: &str) -> Result<Option<String>> {
        let Ok(Route::Zarr(ds, _, Some(ZarrKey::Chunk(..)))) = parse_path(path) else {
            return Ok(None);
        };
        let version = self.resolver.version(self.bucket.as_ref(), &ds).await?;
        Ok(Some(cache_key(&version, path)))
    }

    /// Answer one request. Never fails: errors become JSON bodies with their status.
    pub async fn handle<B>(&self, req: &Request<B>) -> Response<Bytes> {
        self.handle_cached(req, None).await
    }

    /// [`Self::handle`], keeping chunk answers in `cache` (when the configuration says so).
    pub async fn handle_cached<B>(
        &self,
        req: &Request<B>,
        cache: Option<&dyn ChunkCache>,
    ) -> Response<Bytes> {
        let t0 = self.clock.map(|now| now());
        let stats = Stats::default();
        let head = req.method() == Method::HEAD;
        let cache = cache.filter(|_| self.config.cache_chunks);
        let mut a = match *req.method() {
            Method::GET | Method::HEAD => {
                let uri = req.uri();
                let cx = Cx {
                    path: uri.path(),
                    query: uri.query(),
                    headers: req.headers(),
                    stats: &stats,
                    bucket: Counted::new(self.bucket.as_ref(), stats.counter()),
                    base: self
                        .config
                        .public_url
                        .clone()
                        .unwrap_or_else(|| respond::base_url(req.headers())),
                };
                self.answer(&cx, cache.filter(|_| !head)).await
            }
            Method::OPTIONS => Answered::of(respond::preflight(), None, None),
            ref m => self.failed(Error::MethodNotAllowed(m.to_string()), None),
        };
        // HEAD answers carry no body, so no limit on it applies.
        if let Some(max) = self.config.max_response.filter(|_| !head)
            && a.response.body().len() as u64 > max
        {
            a = self.failed(
                respond::over_max_response(a.response.body().len(), max),
                a.version,
            );
        }
        respond::finish(&mut a.response, &stats, head);
        if let Some(c) = a.cache {
            a.response
                .headers_mut()
                .insert("x-cloudify-cache", http::HeaderValue::from_static(c));
        }
        log::request(&RequestLine {
            method: req.method().as_str(),
            path: req.uri().path(),
            status: a.response.status().as_u16(),
            bytes_out: a.response.body().len() as u64,
            ops: stats.ops(),
            duration_ms: self.clock.zip(t0).map(|(now, t0)| now() - t0),
            version: a.version.as_deref(),
            cache: a.cache,
            error: a.error.as_ref(),
        });
        a.response
    }

    fn failed(&self, e: Error, version: Option<String>) -> Answered {
        Answered {
            response: respond::error_response(&e, self.config.error_detail),
            version,
            cache: None,
            error: Some(e),
        }
    }

    async fn answer(&self, cx: &Cx<'_>, cache: Option<&dyn ChunkCache>) -> Answered {
        let route = match parse_path(cx.path) {
            Ok(r) => r,
            Err(e) => return self.failed(e, None),
        };
        let ds = match &route {
            Route::Root => {
                let info = api::service_info(&self.config, self.admission.counts());
                // It reports the function's state: never kept by caches.
                let reply = Reply::json(&info).map(|mut r| {
                    r.lifetime = Lifetime::NoStore;
                    r
                });
                return self.done(reply);
            }
            Route::OpenApi => return self.done(Reply::json(&discovery::openapi())),
            Route::Datasets => {
                let registry = self.resolver.registry(&cx.bucket).await;
                return self.done(registry.and_then(|r| Reply::json(&api::datasets(&r))));
            }
            Route::Intake => return self.done(self.intake(cx).await),
            Route::CollectionAll => return self.done(self.collection_all(cx).await),
            Route::StaticStac(path) => {
                let file = api::static_stac(&cx.bucket, path).await;
                return self.done(file.map(|b| Reply::bytes(b, JSON)));
            }
            Route::Conformance => return self.done(self.conformance(cx).await),
            Route::Info(ds)
            | Route::Summary(ds)
            | Route::Keys(ds)
            | Route::Dict(ds)
            | Route::Item(ds)
            | Route::Refs(ds, _)
            | Route::Zarr(ds, _, _)
            | Route::Diagnostic(ds, _) => ds.clone(),
        };
        // The version alone names every answer: a revalidation and a cached chunk need no
        // manifest.
        let version = match self.resolver.version(&cx.bucket, &ds).await {
            Ok(v) => v,
            Err(e) => return self.failed(e, None),
        };
        // A strong tag per version and route. A diagnostic's query string changes its answer.
        let tagged = match (&route, cx.query) {
            (Route::Diagnostic(..), Some(q)) => format!("{}?{q}", cx.path),
            _ => cx.path.to_owned(),
        };
        let etag = respond::etag(&version, &tagged);
        let lifetime = if ds.version.is_some() {
            Lifetime::Immutable
        } else {
            Lifetime::Short
        };
        if respond::is_current(cx.headers, &etag) {
            let response = Reply::not_modified(etag, lifetime).into_response();
            return Answered::of(response, Some(version), None);
        }
        let chunk = matches!(route, Route::Zarr(_, _, Some(ZarrKey::Chunk(..))));
        let key = cache_key(&version, cx.path);
        let cache = cache.filter(|_| chunk);
        if let Some(c) = cache
            && let Some(hit) = c.get(&key).await
        {
            return Answered::of(hit, Some(version), Some("hit"));
        }
        let resolved = self.resolver.at_version(&cx.bucket, &ds, version.clone());
        let answered = match resolved.await {
            Ok(r) => self.dataset_route(cx, &r, route).await,
            Err(e) => Err(e),
        };
        match answered {
            // `If-None-Match: *` matches any current representation: one that exists.
            Ok(_) if respond::wants_any(cx.headers) => {
                let response = Reply::not_modified(etag, lifetime).into_response();
                Answered::of(response, Some(version), None)
            }
            Ok(reply) => {
                let response = reply.tagged(lifetime, etag).into_response();
                let stored = match cache {
                    Some(c) => {
                        c.put(&key, &response).await;
                        Some("miss")
                    }
                    None => None,
                };
                Answered::of(response, Some(version), stored)
            }
            Err(e) => self.failed(e, Some(version)),
        }
    }

    fn done(&self, reply: Result<Reply>) -> Answered {
        match reply {
            Ok(r) => Answered::of(r.into_response(), None, None),
            Err(e) => self.failed(e, None),
        }
    }

    /// The answer of a route of one dataset, `r`.
    async fn dataset_route(&self, cx: &Cx<'_>, r: &Resolved, route: Route) -> Result<Reply> {
        let m = &*r.manifest;
        if m.catalog_only && !matches!(route, Route::Item(_)) {
            return Err(Error::NotFound(format!(
                "dataset {:?} is catalogued, not served (serve = false): its STAC item, \
                 /datasets/{}/stac, names where to read it",
                r.id, r.id
            )));
        }
        match route {
            Route::Zarr(_, view, Some(key)) => {
                let reader = self.reader(cx);
                match api::zarr(&reader, r, view, key).await? {
                    ZarrAnswer::Document(doc) => Reply::json(&doc),
                    ZarrAnswer::Chunk(bytes) => Ok(Reply::bytes(bytes, OCTETS)),
                }
            }
            Route::Diagnostic(_, d) => {
                let d = d.with_query(cx.query)?;
                let reader = self.reader(cx);
                let url = format!("{}{}", cx.base, cx.path);
                let html = respond::accepts_html(cx.headers);
                Ok(
                    match diag::answer(&reader, m, &r.version, &d, html, &url).await? {
                        diag::Rendered::Json(v) => Reply::json(&v)?,
                        diag::Rendered::Html(page) => Reply::text(page, HTML),
                        diag::Rendered::Bytes(b, media) => Reply::bytes(Bytes::from(b), media),
                    },
                )
            }
            Route::Keys(_) => Reply::json(&discovery::keys(m)),
            Route::Dict(_) => Reply::json(&discovery::dict(m)),
            Route::Summary(_) if respond::accepts_html(cx.headers) => {
                Ok(Reply::text(discovery::html(m, &r.version, &cx.base), HTML))
            }
            Route::Item(_) => {
                let collection = self.resolver.collection(&cx.bucket, &r.id).await?;
                Reply::json_as(
                    &api::item(r, &collection, &cx.base, self.config.publish_sources),
                    GEO_JSON,
                )
            }
            Route::Refs(_, file) => {
                let publish = self.config.publish_sources;
                let body = api::refs(&cx.bucket, r, &file, &cx.base, publish).await?;
                let kind = if file.ends_with(".parq") {
                    PARQUET
                } else {
                    JSON
                };
                Ok(Reply::bytes(body, kind))
            }
            _ => Reply::json(&api::info(r, self.config.publish_sources)),
        }
    }

    /// The conformance suite's reads on the bucket (`?store=bucket`) or a source store
    /// (`?store=SCHEME`), of the fixture below `?prefix=`: `{"store": ..., "failures": [...]}`.
    async fn conformance(&self, cx: &Cx<'_>) -> Result<Reply> {
        if !self.config.self_test {
            return Err(Error::NotFound(format!("no route for {}", cx.path)));
        }
        let param = |name: &str| {
            cx.query?.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
        };
        let store_name = param("store").unwrap_or_else(|| "bucket".into());
        let prefix = param("prefix").unwrap_or_else(|| "conformance".into());
        let store: &dyn crate::store::ReadStore = match store_name.as_str() {
            "bucket" => self.bucket.as_ref(),
            scheme => self
                .sources
                .get(scheme)
                .ok_or_else(|| Error::BadRequest(format!("no store for {scheme}://")))?
                .as_ref(),
        };
        let listable = !matches!(store_name.as_str(), "http" | "https");
        let fixture = crate::store::Fixture::new(&prefix, listable);
        let failures: Vec<String> = match crate::store::check_reads(store, &fixture).await {
            Ok(()) => Vec::new(),
            Err(f) => f.lines().map(str::to_owned).collect(),
        };
        let mut reply =
            Reply::json(&serde_json::json!({ "store": store_name, "failures": failures }))?;
        reply.lifetime = Lifetime::NoStore;
        Ok(reply)
    }

    async fn intake(&self, cx: &Cx<'_>) -> Result<Reply> {
        let all: Vec<Resolved> = self
            .resolver
            .all(&cx.bucket)
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        Ok(Reply::text(api::intake(&all, &cx.base), YAML))
    }

    async fn collection_all(&self, cx: &Cx<'_>) -> Result<Reply> {
        let all: Vec<(Resolved, String)> = self
            .resolver
            .all(&cx.bucket)
            .await?
            .into_iter()
            .map(|(r, e)| (r, e.collection))
            .collect();
        let info = api::catalog_info(&cx.bucket).await?;
        Reply::json(&api::collection_all(
            &all,
            &info,
            &cx.base,
            self.config.publish_sources,
        ))
    }

    fn reader<'a>(&'a self, cx: &'a Cx<'a>) -> Reader<'a> {
        Reader {
            bucket: &cx.bucket,
            record_cache: self.resolver.records(),
            decoded: &self.decoded,
            sources: &self.sources,
            budget: self.config.read_budget,
            limits: self.config.limits,
            concurrency: self.config.concurrency,
            merge_cap: self.config.merge_cap,
            clock: self.clock,
            stats: cx.stats,
            admission: &self.admission,
            queue: (self.sleep.as_ref()).map(|s| (s, self.config.queue_timeout_ms)),
            grant: Mutex::default(),
            offload: self.offload.as_ref(),
        }
    }
}

fn cache_key(version: &str, path: &str) -> String {
    format!("{version}/{}{path}", env!("CARGO_PKG_VERSION"))
}

fn resolver(config: &Config, clock: Clock) -> Resolver {
    Resolver::new(
        config.manifest_cache_bytes,
        config.record_cache,
        config.index_ttl_ms,
        clock,
    )
}
