//! cloudify as a Cloudflare Worker: the core router over an R2 binding (the index and the
//! sources it names by key) and `fetch` with Range (sources named by `http(s)://` URLs).
//!
//! The adapter is thin: it reads the core's [`Config`] from `[vars]` and secrets (the paid
//! plan's preset unless `PLATFORM` says otherwise), keeps one [`App`] per isolate (so parsed
//! manifests survive between requests), turns the Worker's request into the core's and back,
//! and gives the core the Cache API for chunk answers and the console for its log.
#![cfg(target_arch = "wasm32")]

mod cache;
mod console;
mod fetch;
mod r2;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use cloudify_core::store::HttpSource;
use cloudify_core::{App, Config, Platform, PrefixStore};
use worker::{Context, Env, Headers, Request, Response, ResponseBuilder, event};

use crate::cache::CacheApi;
use crate::fetch::Fetch;
use crate::r2::R2Store;

/// Name of the R2 binding that holds the index and the sources it names by key.
const BUCKET_BINDING: &str = "BUCKET";

thread_local! {
    /// The isolate's function, built by its first request.
    static APP: RefCell<Option<Rc<App>>> = const { RefCell::new(None) };
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    match serve(&req, &env, &ctx).await {
        Ok(r) => Ok(r),
        Err(why) => error(500, "worker error", &why),
    }
}

/// Milliseconds for `Server-Timing` and the registry's lifetime (the clock advances across
/// I/O, not during computation).
fn now_ms() -> f64 {
    worker::js_sys::Date::now()
}

/// The core's configuration from `[vars]`, and `HTTP_HEADERS` from a secret (or a var in local
/// development).
fn config(env: &Env) -> Result<Config, String> {
    let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
    Config::from_lookup(Platform::WorkerPaid, |name| match name {
        "HTTP_HEADERS" => env
            .secret(name)
            .ok()
            .map(|v| v.to_string())
            .or_else(|| var(name)),
        _ => var(name),
    })
}

/// The isolate's function: built by its first request, kept for the others.
fn app(env: &Env) -> Result<Rc<App>, String> {
    if let Some(built) = APP.with(|a| a.borrow().clone()) {
        return Ok(built);
    }
    let config = config(env)?;
    console::init(config.log_format);
    let bucket = env
        .bucket(BUCKET_BINDING)
        .map_err(|e| format!("no R2 binding named {BUCKET_BINDING} ({e}); see wrangler.toml"))?;
    let index = Arc::new(PrefixStore::new(
        Arc::new(R2Store::new(bucket)),
        &config.index_prefix,
    ));
    let headers = config.http_headers.clone();
    let fetch = || Fetch {
        timeout_ms: config.timeouts.source_ms,
    };
    let (https, http) = (fetch(), fetch());
    let app = App::new(config, index)
        .with_source(
            "https",
            Arc::new(HttpSource::new("https", https, headers.clone())),
        )
        .with_source("http", Arc::new(HttpSource::new("http", http, headers)))
        .with_clock(now_ms)
        .with_sleep(Arc::new(|ms| {
            Box::pin(worker::Delay::from(std::time::Duration::from_millis(ms)))
        }));
    let app = Rc::new(app);
    APP.with(|a| *a.borrow_mut() = Some(app.clone()));
    Ok(app)
}

async fn serve(req: &Request, env: &Env, ctx: &Context) -> Result<Response, String> {
    let app = app(env)?;
    let request = to_core(req)?;
    let cache = CacheApi::new(ctx);
    let resp = app.handle_cached(&request, Some(&cache)).await;
    from_core(&resp)
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

/// The Worker's response from the core's.
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
