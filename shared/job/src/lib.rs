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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloudify_core::store::ObjectMeta;
use cloudify_core::{HttpHeaders, Timeouts};
use cloudify_stores::Bucket;

/// What every step of a job needs: the bucket it writes, and the request headers and timeouts
/// of HTTP(S) sources.
pub struct Job {
    /// The bucket the index is written into.
    pub bucket: Bucket,
    /// Request headers for HTTP(S) sources, by URL prefix.
    pub headers: Arc<HttpHeaders>,
    /// How long HTTP(S) sources may take to connect and to answer.
    pub timeouts: Timeouts,
    /// What listings said of remote objects (size, tag) by URL: a listed source is not asked
    /// again, so an unchanged one costs its listing entry alone.
    listed: Mutex<HashMap<String, ObjectMeta>>,
}

/// Requests in flight while remote objects are asked for their size and tag: enough to hide
/// an object store's latency.
pub(crate) const HEADS_AT_ONCE: usize = 32;

/// A clone is the job of another run (a warm Lambda's next event): it remembers no listing,
/// what a listing said being true of its own run only.
impl Clone for Job {
    fn clone(&self) -> Self {
        Self {
            bucket: self.bucket.clone(),
            headers: self.headers.clone(),
            timeouts: self.timeouts,
            listed: Mutex::default(),
        }
    }
}

impl Job {
    /// A job on `bucket`, with no headers for HTTP(S) sources.
    pub fn new(bucket: Bucket) -> Self {
        Self {
            bucket,
            headers: Arc::default(),
            timeouts: Timeouts::default(),
            listed: Mutex::default(),
        }
    }

    /// Remember what a listing said of the objects at these URLs.
    pub(crate) fn remember(&self, listed: impl IntoIterator<Item = (String, ObjectMeta)>) {
        if let Ok(mut known) = self.listed.lock() {
            known.extend(listed);
        }
    }

    /// What a listing said of the object at `url`.
    pub(crate) fn listed(&self, url: &str) -> Option<ObjectMeta> {
        self.listed.lock().ok()?.get(url).cloned()
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
