//! The one error type of the core, and the one place it becomes an HTTP status.
//!
//! Errors of storage carry two parts: the object that failed (a bucket key or a source URL:
//! the operator's business) and the fault (what went wrong, safe to show anyone). What a
//! request was doing when it failed is added as [`Error::Context`] around them. A client is
//! shown [`Error::public`]: the contexts and the fault, never an object; logs and operators
//! who ask for it get [`Error::internal`], the whole chain.

use http::StatusCode;

/// Errors a request (or the indexer's use of the core) can meet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed: a bad key, path or selection.
    #[error("{0}")]
    BadRequest(String),
    /// An unknown dataset, variable, metadata key or a chunk outside the grid.
    #[error("{0}")]
    NotFound(String),
    /// Only GET and HEAD are served.
    #[error("method {0} is not allowed; use GET or HEAD")]
    MethodNotAllowed(String),
    /// The request would read, hold or compute more than one call of the function may, or
    /// make more store reads than the platform allows.
    #[error("{0}")]
    TooLarge(String),
    /// The function's budget of bytes in flight stayed full for longer than a request may
    /// wait: try again shortly (503 with `Retry-After`).
    #[error("{0}")]
    Busy(String),
    /// A source changed since it was indexed.
    #[error("{0}")]
    Conflict(Fault),
    /// A requested byte range lies outside the object.
    #[error("{0}")]
    RangeNotSatisfiable(Fault),
    /// The storage backend failed, or an object the index names is missing.
    #[error("storage failed: {0}")]
    Storage(Fault),
    /// The storage backend did not answer in time.
    #[error("storage timed out: {0}")]
    Timeout(Fault),
    /// Bytes read from the bucket or a source are not what the index says they are.
    #[error("corrupt data: {0}")]
    Corrupt(Fault),
    /// A stored document could not be parsed.
    #[error("invalid JSON in {object}: {source}")]
    Json {
        /// The object it was read from (internal).
        object: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// What the request was doing when `source` happened (safe to show).
    #[error("{context}: {source}")]
    Context {
        /// For example `chunk [1, 0, 0] of "tas" in dataset d`.
        context: String,
        /// The error itself.
        #[source]
        source: Box<Error>,
    },
}

/// A failure of one stored object: which object (internal) and what went wrong (public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The bucket key or source URL, when one is at fault; never shown to clients.
    pub object: Option<String>,
    /// What went wrong, without naming the object.
    pub fault: String,
    /// A library's own words for it (they may name hosts or URLs); never shown to clients.
    pub detail: Option<String>,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        f.write_str(&self.fault)?;
        match &self.detail {
            Some(d) => write!(f, " ({d})"),
            None => Ok(()),
        }
    }
}

impl Fault {
    /// `fault` of `object`.
    pub fn of(object: impl Into<String>, fault: impl Into<String>) -> Self {
        Self {
            object: Some(object.into()),
            fault: fault.into(),
            detail: None,
        }
    }

    /// `fault`, with no object to name.
    pub fn bare(fault: impl Into<String>) -> Self {
        Self {
            object: None,
            fault: fault.into(),
            detail: None,
        }
    }
}

/// Result alias of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// [`Error::Storage`] of `object`.
    pub fn storage(object: impl Into<String>, fault: impl Into<String>) -> Self {
        Error::Storage(Fault::of(object, fault))
    }

    /// [`Error::Corrupt`] of `object`.
    pub fn corrupt(object: impl Into<String>, fault: impl Into<String>) -> Self {
        Error::Corrupt(Fault::of(object, fault))
    }

    /// [`Error::Corrupt`] of bytes no single object holds.
    pub fn corrupt_data(fault: impl Into<String>) -> Self {
        Error::Corrupt(Fault::bare(fault))
    }

    /// [`Error::Conflict`]: `object` changed since it was indexed.
    pub fn changed(object: impl Into<String>, fault: impl Into<String>) -> Self {
        Error::Conflict(Fault::of(object, fault))
    }

    /// [`Error::Storage`] of `object` in a library's words (`detail`), which clients are not
    /// shown: they may name hosts, URLs or paths.
    pub fn failed(
        object: impl Into<String>,
        fault: impl Into<String>,
        detail: impl ToString,
    ) -> Self {
        Error::Storage(Fault {
            detail: Some(detail.to_string()),
            ..Fault::of(object, fault)
        })
    }

    /// [`Error::Timeout`] of `object`.
    pub fn timeout(object: impl Into<String>, fault: impl Into<String>) -> Self {
        Error::Timeout(Fault::of(object, fault))
    }

    /// [`Error::RangeNotSatisfiable`] of `object`.
    pub fn range(object: impl Into<String>, fault: impl Into<String>) -> Self {
        Error::RangeNotSatisfiable(Fault::of(object, fault))
    }

    /// This error with `object` named as the one at fault, where it names none yet.
    #[must_use]
    pub fn at(self, object: &str) -> Self {
        let name = |f: Fault| Fault {
            object: f.object.or_else(|| Some(object.to_owned())),
            ..f
        };
        match self {
            Error::Conflict(f) => Error::Conflict(name(f)),
            Error::RangeNotSatisfiable(f) => Error::RangeNotSatisfiable(name(f)),
            Error::Storage(f) => Error::Storage(name(f)),
            Error::Timeout(f) => Error::Timeout(name(f)),
            Error::Corrupt(f) => Error::Corrupt(name(f)),
            Error::Context { context, source } => Error::Context {
                context,
                source: Box::new(source.at(object)),
            },
            Error::Json { source, .. } => Error::Json {
                object: object.to_owned(),
                source,
            },
            e => e,
        }
    }

    /// This error, said to have happened while doing `context`.
    #[must_use]
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The error under every context.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// The HTTP status this error is reported with.
    pub fn status(&self) -> StatusCode {
        match self.root() {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short machine-readable name for the JSON body's `error` field.
    pub fn kind(&self) -> &'static str {
        match self.root() {
            Error::BadRequest(_) => "bad request",
            Error::NotFound(_) => "not found",
            Error::MethodNotAllowed(_) => "method not allowed",
            Error::Conflict(_) => "source changed",
            Error::TooLarge(_) => "over a request budget",
            Error::Busy(_) => "busy",
            Error::RangeNotSatisfiable(_) => "range not satisfiable",
            Error::Timeout(_) => "storage timeout",
            Error::Corrupt(_) | Error::Json { .. } => "corrupt data",
            _ => "storage error",
        }
    }

    /// What a client may be told: every context and the fault, no bucket key, file path or
    /// source URL.
    pub fn public(&self) -> String {
        match self {
            Error::Context { context, source } => format!("{context}: {}", source.public()),
            Error::Conflict(f) => f.fault.clone(),
            Error::RangeNotSatisfiable(f) => format!("range not satisfiable: {}", f.fault),
            Error::Storage(f) => format!("storage failed: {}", f.fault),
            Error::Timeout(f) => format!("storage timed out: {}", f.fault),
            Error::Corrupt(f) => format!("corrupt data: {}", f.fault),
            Error::Json { .. } => "a stored document is not valid JSON".into(),
            e => e.to_string(),
        }
    }

    /// Everything known, objects included: for logs and operators.
    pub fn internal(&self) -> String {
        self.to_string()
    }

    pub(crate) fn json(object: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            object: object.into(),
            source,
        }
    }
}

/// [`Error::context`] on results.
pub trait ResultExt<T> {
    /// Say what was being done when the error happened.
    ///
    /// # Errors
    /// The error, in its context.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_see_the_context_and_the_fault_never_the_object() {
        let e = Error::storage("s3://bucket/private/tas.nc", "answered HTTP 401")
            .context("source 0")
            .context("chunk [1, 0] of \"tas\" in dataset d");
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(e.kind(), "storage error");
        assert_eq!(
            e.public(),
            "chunk [1, 0] of \"tas\" in dataset d: source 0: storage failed: answered HTTP 401"
        );
        assert!(e.internal().contains("s3://bucket/private/tas.nc"));
        let changed = Error::changed("/data/x.nc", "its size is 3 bytes, 4 when indexed");
        assert_eq!(changed.status(), StatusCode::CONFLICT);
        assert!(!changed.public().contains("/data"));
        let tls = Error::failed(
            "https://h/x.nc",
            "the request failed",
            "tls: bad cert for h",
        );
        assert_eq!(tls.public(), "storage failed: the request failed");
        assert!(tls.internal().contains("bad cert for h"));
    }
}
