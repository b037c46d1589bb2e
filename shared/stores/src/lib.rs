//! Native implementations of [`cloudify_core::Store`]: a local folder (the bucket of
//! `cloudify serve --bucket DIR`, and the reader of `file://` sources) and `http(s)://` sources.

mod http;
mod local;

pub use http::HttpStore;
pub use local::LocalStore;
