//! Errors of the precompute job; each names the file (and variable) at fault.

/// An indexing failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A source could not be opened or is not NetCDF4/HDF5.
    #[error("{file}: {fault}")]
    Source {
        /// The source as given.
        file: String,
        /// What is wrong with it.
        fault: String,
    },
    /// One variable of a source cannot be indexed.
    #[error("{file}: variable {variable:?}: {fault}")]
    Variable {
        /// The source as given.
        file: String,
        /// The variable.
        variable: String,
        /// What is wrong with it.
        fault: String,
    },
    /// The request itself is invalid (a bad dataset id, no source).
    #[error("{0}")]
    Invalid(String),
    /// Writing to the bucket failed.
    #[error("bucket: {0}")]
    Store(#[from] cloudify_core::Error),
}

/// Result alias of the indexer.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
