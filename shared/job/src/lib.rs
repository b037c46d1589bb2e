//! cloudify-job: the precompute job as a library. It turns what a user names (paths, glob
//! patterns, `s3://` prefixes, `http(s)://` URLs, a `cloudify.toml`) into sources, indexes them
//! with `cloudify-index` and publishes the result into a bucket. The `cloudify` command and
//! the reindex Lambda are thin callers; the serving functions link none of it.

/// Print a line on standard output; a reader that has gone (`cloudify ... | head -1`) is not
/// an error, where `println!` would panic on the broken pipe.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod config;
pub mod discover;
pub mod laid;
pub mod listing;
pub mod publish;
pub mod remote;
pub mod sources;

use std::sync::Arc;

use cloudify_core::{HttpHeaders, Timeouts};
use cloudify_stores::Bucket;

/// What every step of a job needs: the bucket it writes, and the request headers and timeouts
/// of HTTP(S) sources.
#[derive(Clone)]
pub struct Job {
    /// The bucket the index is written into.
    pub bucket: Bucket,
    /// Request headers for HTTP(S) sources, by URL prefix.
    pub headers: Arc<HttpHeaders>,
    /// How long HTTP(S) sources may take to connect and to answer.
    pub timeouts: Timeouts,
}

impl Job {
    /// A job on `bucket`, with no headers for HTTP(S) sources.
    pub fn new(bucket: Bucket) -> Self {
        Self {
            bucket,
            headers: Arc::default(),
            timeouts: Timeouts::default(),
        }
    }

    /// Send `headers` to the HTTP(S) sources under their prefixes.
    #[must_use]
    pub fn with_headers(mut self, headers: Arc<HttpHeaders>) -> Self {
        self.headers = headers;
        self
    }

    /// Wait for HTTP(S) sources as long as `timeouts` says.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}
