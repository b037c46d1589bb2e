//! cloudify as a Cloudflare Worker: the core router over an R2 binding (the index and the
//! sources it names by key) and `fetch` with Range (sources named by `http(s)://` URLs).
//!
//! The adapter is thin: it turns the Worker's request into the core's, keeps one [`App`] per
//! isolate (so parsed manifests survive between requests), and puts chunk answers in the
//! Cache API under the dataset version they were read from.
#![cfg(target_arch = "wasm32")]

mod http_source;
mod r2;
mod settings;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use cloudify_core::{App, PrefixStore};
use worker::{Cache, Context, Env, Headers, Request, Response, ResponseBuilder, event};

use crate::http_source::HttpSource;
use crate::r2::R2Store;
use crate::settings::{BUCKET_BINDING, Settings};

thread_local! {
    /// The isolate's function, built by its first request.
    static APP: RefCell<Option<(Rc<App>, Settings)>> = const { RefCell::new(None) };
}

/// Headers a cached copy keeps the original values of: it is stored as immutable (its key
/// names the version) and without `Vary` (its key already names everything it varies on).
const KEPT: [(&str, &str); 2] = [
    ("cache-control", "x-cloudify-cache-control"),
    ("vary", "x-cloudify-vary"),
];

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    match serve(&req, &env, &ctx).await {
        Ok(r) => Ok(r),
        Err(why) => error(500, "worker error", &why),
    }
}

/// Milliseconds for `Server-Timing` (it advances across I/O, not during computation).
fn now_ms() -> f64 {
    worker::js_sys::Date::now()
}

// The core shares stores as `Arc<dyn Store>` on every target; a Worker has one thread, and
// JS-backed values are neither Send nor Sync.
#[expect(clippy::arc_with_non_send_sync)]
fn app(env: &Env) -> Result<(Rc<App>, Settings), String> {
    if let Some(built) = APP.with(|a| a.borrow().clone()) {
        return Ok(built);
    }
    let settings = Settings::from_env(env)?;
    let bucket = env
        .bucket(BUCKET_BINDING)
        .map_err(|e| format!("no R2 binding named {BUCKET_BINDING} ({e}); see wrangler.toml"))?;
    let index = Arc::new(PrefixStore::new(
        Arc::new(R2Store::new(bucket)),
        &settings.index_prefix,
    ));
    let mut app = App::new(index)
        .with_scheme(
            "https",
            Arc::new(HttpSource::new("https", &settings.http_headers)),
        )
        .with_scheme(
            "http",
            Arc::new(HttpSource::new("http", &settings.http_headers)),
        )
        .with_read_budget(settings.read_budget)
        .with_limits(settings.limits)
        .with_manifest_cache_bytes(settings.manifest_cache_bytes)
        .with_clock(now_ms);
    if let Some(url) = &settings.public_url {
        app = app.with_public_url(url);
    }
    let built = (Rc::new(app), settings);
    APP.with(|a| *a.borrow_mut() = Some(built.clone()));
    Ok(built)
}

async fn serve(req: &Request, env: &Env, ctx: &Context) -> Result<Response, String> {
    let (app, settings) = app(env)?;
    let request = to_core(req)?;
    let path = request.uri().path().to_owned();
    let cacheable = settings.cache_chunks
        && request.method() == http::Method::GET
        && !request.headers().contains_key(http::header::IF_NONE_MATCH);
    // An error resolving the key is left for the router to report.
    let key = if cacheable {
        app.chunk_cache_key(&path).await.ok().flatten()
    } else {
        None
    };
    let cache = Cache::default();
    if let Some(k) = &key
        && let Ok(Some(hit)) = cache.get(cache_url(k), false).await
    {
        return restore(hit).await;
    }
    let resp = app.handle(&request).await;
    let mut out = from_core(&resp)?;
    if let Some(k) = key
        && resp.status() == http::StatusCode::OK
    {
        let copy = to_cached(&resp)?;
        ctx.wait_until(async move {
            if let Err(e) = cache.put(cache_url(&k), copy).await {
                worker::console_warn!("cache put failed: {e}");
            }
        });
        set(out.headers_mut(), "x-cloudify-cache", "miss")?;
    }
    Ok(out)
}

fn cache_url(key: &str) -> String {
    format!("https://cloudify.cache.invalid/{key}")
}

/// The core's request from the Worker's: method, path and query, headers (the body is unused).
fn to_core(req: &Request) -> Result<http::Request<()>, String> {
    let url = req.url().map_err(|e| e.to_string())?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let method =
        http::Method::from_bytes(req.inner().method().as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = http::Request::builder().method(method).uri(target);
    for (k, v) in req.headers().entries() {
        builder = builder.header(k, v);
    }
    builder.body(()).map_err(|e| e.to_string())
}

fn from_core(resp: &http::Response<Bytes>) -> Result<Response, String> {
    let headers = Headers::new();
    for (k, v) in resp.headers() {
        if let Ok(v) = v.to_str() {
            set(&headers, k.as_str(), v)?;
        }
    }
    Ok(ResponseBuilder::new()
        .with_status(resp.status().as_u16())
        .with_headers(headers)
        .fixed(resp.body().to_vec()))
}

/// The copy of a chunk answer the Cache API keeps.
fn to_cached(resp: &http::Response<Bytes>) -> Result<Response, String> {
    let out = from_core(resp)?;
    let h = out.headers();
    for (header, kept) in KEPT {
        if let Ok(Some(v)) = h.get(header) {
            set(h, kept, &v)?;
        }
        h.delete(header).map_err(|e| e.to_string())?;
    }
    set(h, "cache-control", "public, max-age=31536000, immutable")?;
    h.delete("server-timing").map_err(|e| e.to_string())?;
    Ok(out)
}

/// A cache hit as the router would have answered it (a matched response's headers are
/// immutable, so it is rebuilt).
async fn restore(mut hit: Response) -> Result<Response, String> {
    let headers = Headers::new();
    for (k, v) in hit.headers().entries() {
        match KEPT.iter().find(|(_, kept)| *kept == k) {
            Some((original, _)) => set(&headers, original, &v)?,
            None if KEPT.iter().any(|(original, _)| *original == k) => {}
            None => set(&headers, &k, &v)?,
        }
    }
    set(&headers, "x-cloudify-cache", "hit")?;
    let body = hit.bytes().await.map_err(|e| e.to_string())?;
    Ok(ResponseBuilder::new()
        .with_status(hit.status_code())
        .with_headers(headers)
        .fixed(body))
}

fn set(h: &Headers, name: &str, value: &str) -> Result<(), String> {
    h.set(name, value).map_err(|e| e.to_string())
}

/// A JSON error body, as the router gives for its own errors.
fn error(status: u16, kind: &str, detail: &str) -> worker::Result<Response> {
    let body = serde_json::json!({ "error": kind, "detail": detail });
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("access-control-allow-origin", "*")?;
    Ok(ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .fixed(body.to_string().into_bytes()))
}
