//! cloudify-core: everything a user of a cloudify function can observe, independent of runtime.
//!
//! ```text
//!  HTTP request ──► router ──► key ──► resolver ──► Store (bucket: index.json, manifests, tables)
//!                    │                     │
//!                    │                     └──► Store (sources: one range read per chunk)
//!                    └──► zarr_v2 (metadata documents built from the manifest)
//! ```
//!
//! The crate builds for `wasm32-unknown-unknown`: no tokio, threads or filesystem. All I/O goes
//! through the [`store::Store`] trait, implemented natively in `cloudify-stores` and on the
//! Worker by its R2/fetch bindings.
//!
//! # Router form
//! The router is a plain async function over `http` types ([`router::App::handle`]), not an axum
//! `Router`. A Worker's JS-backed futures are not `Send`, so the core's futures are `Send` only
//! where the target allows it ([`store::MaybeSend`]); a plain function lets each adapter (hyper
//! for `cloudify serve`, `lambda_http`, workers-rs) wrap it in a couple of lines without pulling
//! axum's `Send` bounds into the core.

pub mod assemble;
pub mod cftime;
pub mod codecs;
pub mod diag;
pub mod discovery;
pub mod error;
pub mod http_headers;
pub mod key;
pub mod manifest;
pub mod read;
pub mod registry;
pub mod router;
pub mod stac;
pub mod store;
pub mod unpack;
pub mod zarr_v2;
pub mod zarr_v3;

pub use error::{Error, Result};
pub use http_headers::HttpHeaders;
pub use manifest::{ArrayMeta, ChunkRef, Codec, Manifest, SourceInfo};
pub use registry::Registry;
pub use router::App;
pub use store::{MemoryStore, ObjectMeta, PrefixStore, Store};
