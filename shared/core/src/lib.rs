//! cloudify-core: everything a user of a cloudify function can observe, independent of runtime.
//!
//! ```text
//!  request ──► router ──► key (parse) ──► resolve (registry, manifest, chunk plan) ──► api
//!                │                              │                                     │
//!                │                              └─► Store: index.json, manifests,     │
//!                │                                  chunk tables (cached when warm)   │
//!                │                                  read ◄──────────────────────────────┘
//!                │                                   └─► sources: one ranged GET per chunk
//!                └─► respond (headers, conditional requests, errors) ──► log (one line)
//! ```
//!
//! The crate builds for `wasm32-unknown-unknown`: no tokio, threads or filesystem. All I/O goes
//! through the [`store::ReadStore`] and [`store::WriteStore`] traits, implemented natively in
//! `cloudify-stores` and on the Worker by its R2 binding; the HTTP(S) source protocol is here,
//! once ([`store::HttpSource`]), with only the transport per runtime. Every runtime builds its
//! [`App`] from one [`Config`].
//!
//! # Router form
//! The router is a plain async function over `http` types ([`App::handle`]), not an axum
//! `Router`. A Worker's JS-backed futures are not `Send`, so the core's futures are `Send` only
//! where the target allows it ([`store::MaybeSend`]); a plain function lets each adapter (hyper
//! for `cloudify serve`, `lambda_http`, workers-rs) wrap it in a couple of lines without pulling
//! axum's `Send` bounds into the core.

pub mod admit;
pub mod api;
pub mod assemble;
pub mod cftime;
pub mod codecs;
pub mod config;
pub mod decoded;
pub mod diag;
pub mod discovery;
pub mod dtype;
pub mod error;
pub mod http_headers;
pub mod key;
pub mod log;
pub mod manifest;
pub mod read;
pub mod registry;
pub mod resolve;
pub mod respond;
pub mod router;
pub mod stac;
pub mod store;
pub mod unpack;
pub mod zarr_v2;
pub mod zarr_v3;

pub use config::{Config, Platform, Timeouts};
pub use dtype::DataType;
pub use error::{Error, Result};
pub use http_headers::HttpHeaders;
pub use manifest::{ArrayMeta, ChunkRef, Codec, Manifest, SourceInfo};
pub use registry::Registry;
pub use router::App;
pub use store::{
    MemoryStore, Object, ObjectMeta, PrefixStore, ReadStore, ReadStoreExt, WriteStore,
};
