//! The Cache API as the core's [`ChunkCache`]: chunk answers kept beside the Worker under
//! keys naming the dataset version, so a reindex never serves stale bytes.

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::router::ChunkCache;
use worker::{Cache, Context, Headers, Response, ResponseBuilder};

/// Headers a cached copy keeps the original values of: it is stored as immutable (its key
/// names the version) and without `Vary` (its key already names everything it varies on).
const KEPT: [(&str, &str); 2] = [
    ("cache-control", "x-cloudify-cache-control"),
    ("vary", "x-cloudify-vary"),
];

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
        match KEPT.iter().find(|(original, _)| *original == k.as_str()) {
            Some((_, kept)) => h.set(kept, v)?,
            None if k == "server-timing" => {}
            None => h.set(k.as_str(), v)?,
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
        match KEPT.iter().find(|(_, kept)| *kept == k) {
            Some((original, _)) => out = out.header(*original, v),
            None if KEPT.iter().any(|(original, _)| *original == k) => {}
            None => out = out.header(k, v),
        }
    }
    let body = hit.bytes().await?;
    out.body(Bytes::from(body))
        .map_err(|e| worker::Error::RustError(e.to_string()))
}
