//! The Cache API as the core's [`ChunkCache`]: chunk answers kept beside the Worker under
//! keys naming the dataset version, so a reindex never serves stale bytes.

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::router::ChunkCache;
use worker::{Cache, Context, Headers, Response, ResponseBuilder};

/// Where a cached copy keeps the answer's `Cache-Control`: the copy itself is stored as
/// immutable (its key names the version). The router puts answers here before it adds the
/// headers every answer carries (`Vary`, `Server-Timing`), and adds them again to a hit.
const KEPT_CACHE_CONTROL: &str = "x-cloudify-cache-control";

/// The default cache, with the request's context to finish writes after the answer.
pub struct CacheApi<'a> {
    ctx: &'a Context,
}

impl<'a> CacheApi<'a> {
    /// The cache of the request with context `ctx`.
    pub fn new(ctx: &'a Context) -> Self {
        Self { ctx }
    }
}

fn cache_url(key: &str) -> String {
    format!("https://cloudify.cache.invalid/{key}")
}

#[async_trait(?Send)]
impl ChunkCache for CacheApi<'_> {
    async fn get(&self, key: &str) -> Option<http::Response<Bytes>> {
        let hit = Cache::default().get(cache_url(key), false).await.ok()??;
        restore(hit).await.ok()
    }

    async fn put(&self, key: &str, answer: &http::Response<Bytes>) {
        let Ok(copy) = to_cached(answer) else {
            return;
        };
        let url = cache_url(key);
        self.ctx.wait_until(async move {
            if let Err(e) = Cache::default().put(url, copy).await {
                worker::console_warn!("cache put failed: {e}");
            }
        });
    }
}

/// The copy of a chunk answer the Cache API keeps.
fn to_cached(resp: &http::Response<Bytes>) -> worker::Result<Response> {
    let h = Headers::new();
    for (k, v) in resp.headers() {
        let Ok(v) = v.to_str() else { continue };
        if k == http::header::CACHE_CONTROL {
            h.set(KEPT_CACHE_CONTROL, v)?;
        } else {
            h.set(k.as_str(), v)?;
        }
    }
    h.set("cache-control", "public, max-age=31536000, immutable")?;
    Ok(ResponseBuilder::new()
        .with_status(resp.status().as_u16())
        .with_headers(h)
        .fixed(resp.body().to_vec()))
}

/// A cache hit as the router answered it first.
async fn restore(mut hit: Response) -> worker::Result<http::Response<Bytes>> {
    let mut out = http::Response::builder().status(hit.status_code());
    for (k, v) in hit.headers().entries() {
        match k.as_str() {
            KEPT_CACHE_CONTROL => out = out.header(http::header::CACHE_CONTROL, v),
            "cache-control" => {}
            _ => out = out.header(k, v),
        }
    }
    let body = hit.bytes().await?;
    out.body(Bytes::from(body))
        .map_err(|e| worker::Error::RustError(e.to_string()))
}
