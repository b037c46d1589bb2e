//! The `cloudify` command's library: the precompute job over a bucket (a local folder or S3),
//! the function as a local server, and the demo. The Lambda's reindex function runs the same
//! job through it.

pub mod bucket;
pub mod config;
pub mod demo;
pub mod remote;
pub mod serve;
pub mod sources;

pub use bucket::Bucket;
