//! The Worker's settings, from `[vars]` in wrangler.toml and secrets (all optional).

use cloudify_core::HttpHeaders;
use cloudify_core::read::Limits;
use worker::Env;

/// Name of the R2 binding that holds the index and the sources it names by key.
pub const BUCKET_BINDING: &str = "BUCKET";

/// What the Worker is configured to do; defaults fit the paid plan.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Folder of the bucket holding `index.json` (empty: the bucket's root).
    pub index_prefix: String,
    /// Public address documents link to, else the address a request reached.
    pub public_url: Option<String>,
    /// Bytes one request may read from sources and hold decoded.
    pub read_budget: u64,
    /// Subrequests and CPU (as bytes decoded and re-encoded) one request may use.
    pub limits: Limits,
    /// Bytes of parsed manifests kept per isolate.
    pub manifest_cache_bytes: u64,
    /// Whether chunk answers go through the Cache API.
    pub cache_chunks: bool,
    /// Request headers for HTTP(S) sources, by URL prefix (the `HTTP_HEADERS` secret, JSON).
    pub http_headers: HttpHeaders,
}

impl Default for Settings {
    /// The paid plan: 16 MiB read per request (a request holds its reads, the decoded chunk and
    /// its encoding, so about three times that, inside a 128 MB isolate), 1000 of the 10 000
    /// subrequests, and 1 GiB of decoding and encoding (seconds of the default 30 s of CPU).
    fn default() -> Self {
        Self {
            index_prefix: String::new(),
            public_url: None,
            read_budget: 16 << 20,
            limits: Limits {
                reads: 1000,
                work: 1 << 30,
            },
            manifest_cache_bytes: 16 << 20,
            cache_chunks: true,
            http_headers: HttpHeaders::default(),
        }
    }
}

impl Settings {
    /// Read `[vars]`; a malformed value is an error naming the variable.
    ///
    /// # Errors
    /// A message naming the variable and what it must be.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let var = |name: &str| {
            env.var(name)
                .ok()
                .map(|v| v.to_string())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}"))
            })
        };
        let d = Self::default();
        Ok(Self {
            index_prefix: var("INDEX_PREFIX").unwrap_or_default(),
            public_url: var("PUBLIC_URL"),
            read_budget: number("READ_BUDGET_BYTES", d.read_budget)?,
            limits: Limits {
                reads: number("MAX_READS", d.limits.reads)?,
                work: number("CPU_BUDGET_BYTES", d.limits.work)?,
            },
            manifest_cache_bytes: number("MANIFEST_CACHE_BYTES", d.manifest_cache_bytes)?,
            cache_chunks: match var("CACHE_CHUNKS").as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("CACHE_CHUNKS must be true or false, not {v:?}")),
            },
            // A secret (`wrangler secret put HTTP_HEADERS`), or a var in local development.
            http_headers: match env
                .secret("HTTP_HEADERS")
                .map(|v| v.to_string())
                .ok()
                .or_else(|| var("HTTP_HEADERS"))
            {
                Some(json) => {
                    HttpHeaders::parse(&json).map_err(|e| format!("HTTP_HEADERS: {e}"))?
                }
                None => HttpHeaders::default(),
            },
        })
    }
}
