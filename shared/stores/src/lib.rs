//! Native implementations of [`cloudify_core::Store`]: a local folder (the bucket of
//! `cloudify serve --bucket DIR`, and the reader of `file://` sources), S3 and S3-compatible
//! servers, and `http(s)://` sources.

mod http;
mod local;
mod s3;

pub use http::{HEADERS_VAR, HttpStore, headers_from_env};
pub use local::LocalStore;
pub use s3::{DEFAULT_TIMEOUT, S3Store};
