//! Native implementations of [`cloudify_core::Store`]: a local folder (the bucket of
//! `cloudify serve --bucket DIR`, and the reader of `file://` sources).

mod local;

pub use local::LocalStore;
