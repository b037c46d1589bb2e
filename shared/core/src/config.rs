//! One configuration for every runtime: a [`Platform`] preset, then variables read through a
//! lookup function (the environment natively and on Lambda, `[vars]` and secrets on a Worker,
//! flags of `cloudify serve`). The indexer knows the presets too, so a bucket indexed for a
//! platform never holds a chunk that platform must refuse.

use std::sync::Arc;

use crate::http_headers::HttpHeaders;
use crate::manifest::ArrayMeta;
use crate::read::{Cost, Limits};

/// Where a function runs: each platform's limits give its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// `cloudify serve`: a process on a machine.
    Native,
    /// AWS Lambda behind a Function URL.
    Lambda,
    /// A Cloudflare Worker on the free plan: 10 ms of CPU and 50 subrequests per request.
    WorkerFree,
    /// A Cloudflare Worker on the paid plan: 30 s of CPU and 10 000 subrequests per request.
    WorkerPaid,
}

impl Platform {
    /// Every platform, in the order their names are listed.
    pub const ALL: [Platform; 4] = [
        Platform::Native,
        Platform::Lambda,
        Platform::WorkerFree,
        Platform::WorkerPaid,
    ];

    /// The name used by `PLATFORM`, `--target` and the config file.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Native => "native",
            Platform::Lambda => "lambda",
            Platform::WorkerFree => "worker-free",
            Platform::WorkerPaid => "worker-paid",
        }
    }

    /// The platform called `name`.
    ///
    /// # Errors
    /// A message listing the names.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                format!("unknown platform {name:?}: one of {}", names.join(", "))
            })
    }

    /// What the runtime holds beside the caches and the requests in flight: its code,
    /// connections, parsed documents and the allocator's slack. A server busy with hundreds of
    /// connections holds 40 to 70 MiB beyond the bytes it counts, partly freed chunk buffers
    /// malloc keeps (the load benchmark in bench/RESULTS.md); a Lambda serves one request at a
    /// time; a Worker's isolate holds the wasm module and the JavaScript heap.
    pub fn reserve(self) -> u64 {
        match self {
            Platform::Native => 96 << 20,
            Platform::Lambda => 64 << 20,
            Platform::WorkerFree | Platform::WorkerPaid => 32 << 20,
        }
    }

    /// The platform's defaults.
    pub fn preset(self) -> Config {
        let native = Config {
            platform: self,
            index_prefix: String::new(),
            public_url: None,
            read_budget: 64 << 20,
            limits: Limits::default(),
            concurrency: 6,
            merge_cap: 16 << 20,
            manifest_cache_bytes: 32 << 20,
            record_cache: 16_384,
            decoded_cache_bytes: 64 << 20,
            memory: 256 << 20,
            queue_timeout_ms: 30_000,
            index_ttl_ms: 60_000,
            error_detail: ErrorDetail::Public,
            log_format: LogFormat::Text,
            max_response: None,
            stream: false,
            cache_chunks: false,
            http_headers: Arc::default(),
            bucket: None,
            config_key: "cloudify.toml".into(),
            self_test: false,
            timeouts: Timeouts::default(),
            max_connections: 4096,
            publish_sources: false,
        };
        match self {
            Platform::Native => native,
            Platform::Lambda => Config {
                log_format: LogFormat::Json,
                max_response: Some(BUFFERED_MAX),
                ..native
            },
            // A request holds its reads, the decoded chunk and its encoding, about three times
            // the read budget, inside an isolate of 128 MB shared by concurrent requests.
            Platform::WorkerPaid => Config {
                read_budget: 16 << 20,
                limits: Limits {
                    reads: 1000,
                    work: 1 << 30,
                },
                manifest_cache_bytes: 16 << 20,
                decoded_cache_bytes: 16 << 20,
                memory: ISOLATE_MEMORY,
                cache_chunks: true,
                log_format: LogFormat::Json,
                ..native
            },
            // CPU time is budgeted from bytes (a Worker's clock stands still while it
            // computes); 40 of the 50 subrequests leave room for index.json and a manifest.
            Platform::WorkerFree => Config {
                read_budget: 4 << 20,
                limits: Limits {
                    reads: 40,
                    work: 512 << 10,
                },
                manifest_cache_bytes: 16 << 20,
                decoded_cache_bytes: 4 << 20,
                memory: ISOLATE_MEMORY,
                cache_chunks: true,
                log_format: LogFormat::Json,
                ..native
            },
        }
    }
}

/// A Worker isolate's memory, shared by the requests it serves at once.
pub const ISOLATE_MEMORY: u64 = 128 << 20;

/// A buffered Function URL's 6 MB payload holds this much binary once base64-encoded, with
/// room for the headers.
pub const BUFFERED_MAX: u64 = 4_400_000;
/// A streamed Function URL answer may be 200 MB.
pub const STREAMED_MAX: u64 = 200_000_000;

/// How long the network may keep a function waiting, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to an HTTP(S) source (`CONNECT_TIMEOUT_SECONDS`).
    pub connect_ms: u64,
    /// One request to a source, its answer's body included (`SOURCE_TIMEOUT_SECONDS`).
    pub source_ms: u64,
    /// A client's request headers, from its connection or from the first byte of a kept-alive
    /// connection's next request (`HEADER_TIMEOUT_SECONDS`, `cloudify serve`).
    pub header_ms: u64,
    /// A kept-alive connection with no request (`IDLE_TIMEOUT_SECONDS`, `cloudify serve`).
    pub idle_ms: u64,
    /// Sending one answer to a client that reads slowly (`BODY_TIMEOUT_SECONDS`, `cloudify
    /// serve`).
    pub body_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: 10_000,
            source_ms: 60_000,
            header_ms: 10_000,
            idle_ms: 60_000,
            body_ms: 120_000,
        }
    }
}

/// How much an error body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDetail {
    /// What failed and why, never a bucket key, file path or source URL.
    Public,
    /// Everything, objects included: for operators debugging their own deployment.
    Internal,
}

/// How the request log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (CloudWatch, log shippers).
    Json,
    /// Human-readable lines.
    Text,
}

/// Everything a function is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The preset it started from.
    pub platform: Platform,
    /// Folder of the bucket holding `index.json` (`INDEX_PREFIX`; empty: the root).
    pub index_prefix: String,
    /// Address documents link to (`PUBLIC_URL`), else the address a request reached.
    pub public_url: Option<String>,
    /// Bytes one request may read from sources and hold decoded (`READ_BUDGET_BYTES`).
    pub read_budget: u64,
    /// Store reads and bytes of decoding per request (`MAX_READS`, `CPU_BUDGET_BYTES`).
    pub limits: Limits,
    /// Reads one request has in flight (`READ_CONCURRENCY`).
    pub concurrency: usize,
    /// Largest read that merging adjacent ranges makes (`MERGE_CAP_BYTES`; 0: never merge).
    pub merge_cap: u64,
    /// Bytes of parsed manifests kept between requests (`MANIFEST_CACHE_BYTES`).
    pub manifest_cache_bytes: u64,
    /// Chunk-table records kept between requests (`RECORD_CACHE`).
    pub record_cache: usize,
    /// Bytes of decoded source chunks kept between requests (`DECODED_CACHE_BYTES`): those a
    /// served grid finer than the source's uses in part.
    pub decoded_cache_bytes: u64,
    /// Bytes the process or isolate may use (`MEMORY_BYTES`, `cloudify serve --memory`; a
    /// Lambda's configured memory): the caches, [`Platform::reserve`] and the budget of requests
    /// in flight ([`Self::in_flight_budget`]) share it.
    pub memory: u64,
    /// How long a request waits for room in the budget of requests in flight before it is
    /// answered 503 (`QUEUE_TIMEOUT_SECONDS`).
    pub queue_timeout_ms: u64,
    /// How long `index.json` is trusted before it is revalidated (`INDEX_TTL_SECONDS`): the
    /// max-age unpinned answers carry.
    pub index_ttl_ms: u64,
    /// What error bodies say (`ERROR_DETAIL`: `public` or `internal`).
    pub error_detail: ErrorDetail,
    /// How requests are logged (`LOG_FORMAT`: `json` or `text`).
    pub log_format: LogFormat,
    /// Largest answer body (`MAX_RESPONSE_BYTES`); a larger one is a 413 saying why.
    pub max_response: Option<u64>,
    /// Whether answers are streamed (`RESPONSE_STREAM`, a Lambda Function URL's
    /// `InvokeMode: RESPONSE_STREAM`).
    pub stream: bool,
    /// Whether chunk answers go through the platform's cache (`CACHE_CHUNKS`, Workers).
    pub cache_chunks: bool,
    /// Request headers for HTTP(S) sources, by URL prefix (`HTTP_HEADERS`, JSON).
    pub http_headers: Arc<HttpHeaders>,
    /// The bucket holding the index (`BUCKET`), where the runtime is not given it otherwise.
    pub bucket: Option<String>,
    /// The reindex function's config file, a key below the index prefix (`CONFIG_KEY`).
    pub config_key: String,
    /// Whether `/__self-test/conformance` runs the store conformance suite (`SELF_TEST`), for
    /// checking a deployment's stores; off by default.
    pub self_test: bool,
    /// Network timeouts: sources, and the connections of `cloudify serve`.
    pub timeouts: Timeouts,
    /// Client connections `cloudify serve` holds at once (`MAX_CONNECTIONS`); at the limit the
    /// connection idle longest is closed to make room.
    pub max_connections: usize,
    /// Whether answers may name sources outside the bucket by URL (`PUBLISH_SOURCES`): `/info`,
    /// the STAC item's source assets and kerchunk references as stored. Off, they name only
    /// bucket keys and the function's own URLs. Query strings are never published.
    pub publish_sources: bool,
}

impl Config {
    /// The configuration `var` gives, starting from the preset it names in `PLATFORM`, else
    /// `platform`'s. Unset and empty variables keep the preset's value.
    ///
    /// # Errors
    /// A message naming the variable and what it must be (never a secret's value).
    pub fn from_lookup(
        platform: Platform,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let platform = match var("PLATFORM") {
            Some(p) => Platform::parse(&p).map_err(|e| format!("PLATFORM: {e}"))?,
            None => platform,
        };
        let d = platform.preset();
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}"))
            })
        };
        let flag = |name: &str, default: bool| -> Result<bool, String> {
            match var(name).as_deref().map(str::trim) {
                None => Ok(default),
                Some("true" | "1") => Ok(true),
                Some("false" | "0") => Ok(false),
                Some(v) => Err(format!("{name} must be true or false, not {v:?}")),
            }
        };
        let stream = flag("RESPONSE_STREAM", d.stream)?;
        let max_response = match (var("MAX_RESPONSE_BYTES"), platform, stream) {
            (Some(_), ..) => Some(number("MAX_RESPONSE_BYTES", 0)?),
            (None, Platform::Lambda, true) => Some(STREAMED_MAX),
            (None, ..) => d.max_response,
        };
        let seconds = |name: &str, default_ms: u64| -> Result<u64, String> {
            let s = number(name, default_ms / 1000)?;
            match s {
                0 => Err(format!("{name} must be at least 1 second")),
                s => Ok(s.saturating_mul(1000)),
            }
        };
        let t = d.timeouts;
        let timeouts = Timeouts {
            connect_ms: seconds("CONNECT_TIMEOUT_SECONDS", t.connect_ms)?,
            source_ms: seconds("SOURCE_TIMEOUT_SECONDS", t.source_ms)?,
            header_ms: seconds("HEADER_TIMEOUT_SECONDS", t.header_ms)?,
            idle_ms: seconds("IDLE_TIMEOUT_SECONDS", t.idle_ms)?,
            body_ms: seconds("BODY_TIMEOUT_SECONDS", t.body_ms)?,
        };
        // A Lambda is given its memory in megabytes.
        let lambda_mb = (platform == Platform::Lambda)
            .then(|| number("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0))
            .transpose()?
            .filter(|mb| *mb > 0);
        let memory = number("MEMORY_BYTES", lambda_mb.map_or(d.memory, |mb| mb << 20))?;
        let public_url = match var("PUBLIC_URL") {
            None => d.public_url,
            Some(u) => Some(check_public_url(&u)?),
        };
        Ok(Self {
            platform,
            index_prefix: var("INDEX_PREFIX")
                .map(|p| p.trim_matches('/').to_owned())
                .unwrap_or(d.index_prefix),
            public_url,
            read_budget: number("READ_BUDGET_BYTES", d.read_budget)?,
            limits: Limits {
                reads: number("MAX_READS", d.limits.reads)?,
                work: number("CPU_BUDGET_BYTES", d.limits.work)?,
            },
            concurrency: usize::try_from(number("READ_CONCURRENCY", d.concurrency as u64)?)
                .unwrap_or(usize::MAX)
                .max(1),
            merge_cap: number("MERGE_CAP_BYTES", d.merge_cap)?,
            manifest_cache_bytes: number("MANIFEST_CACHE_BYTES", d.manifest_cache_bytes)?,
            record_cache: usize::try_from(number("RECORD_CACHE", d.record_cache as u64)?)
                .unwrap_or(usize::MAX),
            decoded_cache_bytes: number("DECODED_CACHE_BYTES", d.decoded_cache_bytes)?,
            memory,
            queue_timeout_ms: seconds("QUEUE_TIMEOUT_SECONDS", d.queue_timeout_ms)?,
            index_ttl_ms: number("INDEX_TTL_SECONDS", d.index_ttl_ms / 1000)?.saturating_mul(1000),
            error_detail: match var("ERROR_DETAIL").as_deref().map(str::trim) {
                None => d.error_detail,
                Some("public") => ErrorDetail::Public,
                Some("internal") => ErrorDetail::Internal,
                Some(v) => {
                    return Err(format!(
                        "ERROR_DETAIL must be public or internal, not {v:?}"
                    ));
                }
            },
            log_format: match var("LOG_FORMAT").as_deref().map(str::trim) {
                None => d.log_format,
                Some("json") => LogFormat::Json,
                Some("text") => LogFormat::Text,
                Some(v) => return Err(format!("LOG_FORMAT must be json or text, not {v:?}")),
            },
            max_response,
            stream,
            cache_chunks: flag("CACHE_CHUNKS", d.cache_chunks)?,
            http_headers: match var("HTTP_HEADERS") {
                None => d.http_headers,
                Some(json) => {
                    Arc::new(HttpHeaders::parse(&json).map_err(|e| format!("HTTP_HEADERS: {e}"))?)
                }
            },
            bucket: var("BUCKET").or(d.bucket),
            config_key: var("CONFIG_KEY").unwrap_or(d.config_key),
            self_test: flag("SELF_TEST", d.self_test)?,
            timeouts,
            max_connections: usize::try_from(number("MAX_CONNECTIONS", d.max_connections as u64)?)
                .unwrap_or(usize::MAX)
                .max(1),
            publish_sources: flag("PUBLISH_SOURCES", d.publish_sources)?,
        })
    }

    /// Bytes the requests in flight may hold at once: what the memory leaves beside the caches
    /// and the platform's [`Platform::reserve`], or where it leaves nothing (a 128 MB Lambda,
    /// whose caches fill only as far as it serves) a quarter of it. A request needing more is
    /// refused (413); others wait for room.
    pub fn in_flight_budget(&self) -> u64 {
        match self
            .memory
            .saturating_sub(self.manifest_cache_bytes)
            .saturating_sub(self.decoded_cache_bytes)
            .saturating_sub(self.platform.reserve())
        {
            0 => self.memory / 4,
            left => left,
        }
    }

    /// The largest decoded served chunk this configuration answers: over the read budget, the
    /// CPU budget or the largest answer, every request for it would be a 413.
    pub fn served_chunk_budget(&self) -> u64 {
        self.read_budget
            .min(self.limits.work)
            .min(self.max_response.unwrap_or(u64::MAX))
    }

    /// What `GET /` reports of this configuration: the platform and its budgets, so a client
    /// (or a test) can see what a deployment answers.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "platform": self.platform.name(),
            "read_budget_bytes": self.read_budget,
            "max_reads": (self.limits.reads != u64::MAX).then_some(self.limits.reads),
            "cpu_budget_bytes": (self.limits.work != u64::MAX).then_some(self.limits.work),
            "max_response_bytes": self.max_response,
            "manifest_cache_bytes": self.manifest_cache_bytes,
            "record_cache": self.record_cache,
            "decoded_cache_bytes": self.decoded_cache_bytes,
            "memory_bytes": self.memory,
            "in_flight_budget_bytes": self.in_flight_budget(),
            "queue_timeout_seconds": self.queue_timeout_ms / 1000,
            "index_ttl_seconds": self.index_ttl_ms / 1000,
            "read_concurrency": self.concurrency,
            "merge_cap_bytes": self.merge_cap,
            "cache_chunks": self.cache_chunks,
            "source_timeout_seconds": self.timeouts.source_ms / 1000,
        })
    }
}

/// A public URL documents may link to: `http(s)://` and a host, no trailing slash.
///
/// # Errors
/// A message naming `PUBLIC_URL` and what it must be.
pub fn check_public_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !url.contains(['"', '<', '>', ' ', '\\']) => Ok(url.to_owned()),
        _ => Err(format!(
            "PUBLIC_URL must be an http(s)://HOST[/PATH] address, not {url:?}"
        )),
    }
}

impl Config {
    /// Why every request for the costliest served chunk of `a` (as served) would be refused
    /// here, if it would: what it needs against which budget.
    pub fn refusal(&self, a: &ArrayMeta) -> Option<String> {
        let cost = Cost::worst(a);
        let read = self.read_budget;
        if cost.out > self.served_chunk_budget() {
            return Some(format!(
                "a served chunk {:?} is {} bytes, over the {} budget of {} bytes per request",
                a.served_chunks,
                cost.out,
                self.platform.name(),
                self.served_chunk_budget()
            ));
        }
        if cost.out + cost.largest > read {
            return Some(format!(
                "a served chunk of {} bytes decodes source chunks of {} bytes: {} bytes, over \
                 the {} read budget of {read} bytes",
                cost.out,
                cost.largest,
                cost.out + cost.largest,
                self.platform.name()
            ));
        }
        if cost.out + cost.decoded > self.limits.work {
            return Some(format!(
                "a served chunk {:?} decodes up to {} bytes of source chunks and encodes {}: \
                 {} bytes, over the {} CPU budget of {} bytes per request",
                a.served_chunks,
                cost.decoded,
                cost.out,
                cost.decoded + cost.out,
                self.platform.name(),
                self.limits.work
            ));
        }
        if cost.reads > self.limits.reads {
            return Some(format!(
                "a served chunk {:?} needs up to {} store reads, over the {} limit of {} per \
                 request",
                a.served_chunks,
                cost.reads,
                self.platform.name(),
                self.limits.reads
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(platform: Platform, vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_lookup(platform, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_budget_in_flight_is_the_memory_less_the_caches_and_the_reserve() {
        let native = config(Platform::Native, &[]).unwrap();
        assert_eq!(native.in_flight_budget(), (256 - 32 - 64 - 96) << 20);
        let paid = config(Platform::WorkerPaid, &[]).unwrap();
        assert_eq!(paid.in_flight_budget(), (128 - 16 - 16 - 32) << 20);
        // A Lambda's memory is its own, in megabytes; MEMORY_BYTES overrides it.
        let lambda = config(
            Platform::Lambda,
            &[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")],
        );
        assert_eq!(lambda.unwrap().memory, 1024 << 20);
        let set = [
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
            ("MEMORY_BYTES", "300000000"),
        ];
        assert_eq!(config(Platform::Lambda, &set).unwrap().memory, 300_000_000);
        // A small function keeps a quarter of its memory for requests.
        let small = config(
            Platform::Lambda,
            &[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")],
        );
        assert_eq!(small.unwrap().in_flight_budget(), 32 << 20);
        let bad = config(Platform::Native, &[("QUEUE_TIMEOUT_SECONDS", "0")]).unwrap_err();
        assert!(bad.contains("QUEUE_TIMEOUT_SECONDS"), "{bad}");
    }

    #[test]
    fn presets_then_variables() {
        let free = config(Platform::WorkerPaid, &[("PLATFORM", "worker-free")]).unwrap();
        assert_eq!(free.platform, Platform::WorkerFree);
        assert_eq!(free.limits.reads, 40);
        assert_eq!(free.served_chunk_budget(), 512 << 10);
        let lambda = config(Platform::Lambda, &[("RESPONSE_STREAM", "true")]).unwrap();
        assert_eq!(lambda.max_response, Some(STREAMED_MAX));
        assert_eq!(
            config(Platform::Lambda, &[]).unwrap().max_response,
            Some(BUFFERED_MAX)
        );
        let native = config(
            Platform::Native,
            &[("READ_BUDGET_BYTES", "1000"), ("INDEX_PREFIX", "/idx/")],
        )
        .unwrap();
        assert_eq!(native.read_budget, 1000);
        assert_eq!(native.index_prefix, "idx");
        assert_eq!(native.max_response, None);
    }

    #[test]
    fn errors_name_the_variable_and_never_a_secret() {
        for (k, v) in [
            ("READ_BUDGET_BYTES", "lots"),
            ("RESPONSE_STREAM", "yes"),
            ("PLATFORM", "mainframe"),
            ("ERROR_DETAIL", "all"),
            ("PUBLIC_URL", "javascript:alert(1)"),
        ] {
            let e = config(Platform::Native, &[(k, v)]).unwrap_err();
            assert!(e.contains(k), "{e}");
        }
        let e = config(
            Platform::Native,
            &[("HTTP_HEADERS", r#"{"https://x": {"A": "secret1"}}"#)],
        )
        .unwrap_err();
        assert!(e.contains("HTTP_HEADERS") && !e.contains("secret1"), "{e}");
    }
}
