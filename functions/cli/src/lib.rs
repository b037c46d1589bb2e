//! The `cloudify` command's library: the function as a local server and the demo. The
//! precompute job itself is the `cloudify-job` crate.

pub mod connections;
pub mod demo;
pub mod malloc;
pub mod serve;
