//! The one error type of the core, and the one place it becomes an HTTP status.

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
    /// A source changed since it was indexed.
    #[error("{0}")]
    Conflict(String),
    /// The request would read, hold or compute more than one call of the function may, or
    /// make more store reads than the platform allows.
    #[error("{0}")]
    TooLarge(String),
    /// A requested byte range lies outside the object.
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// The storage backend failed, or an object the index names is missing.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The storage backend did not answer in time.
    #[error("storage timed out: {0}")]
    Timeout(String),
    /// Bytes read from the bucket or a source are not what the index says they are.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A document could not be (de)serialised.
    #[error("invalid JSON in {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status this error is reported with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::Storage(_) | Error::Corrupt(_) | Error::Json { .. } => StatusCode::BAD_GATEWAY,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short machine-readable name for the JSON body's `error` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad request",
            Error::NotFound(_) => "not found",
            Error::MethodNotAllowed(_) => "method not allowed",
            Error::Conflict(_) => "source changed",
            Error::TooLarge(_) => "over a request budget",
            Error::RangeNotSatisfiable(_) => "range not satisfiable",
            Error::Storage(_) => "storage error",
            Error::Timeout(_) => "storage timeout",
            Error::Corrupt(_) | Error::Json { .. } => "corrupt data",
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            what: what.into(),
            source,
        }
    }
}
