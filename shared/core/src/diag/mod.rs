//! Diagnostics on demand: groupby, reductions and plots of one variable, computed inside one
//! function call.
//!
//! The Python seed builds an expression string from the URL and `eval`s it on a dask cluster.
//! Here the URL is parsed into a closed set of operations ([`request`]), resolved against the
//! manifest ([`compute::Plan`]), checked against the request's budgets, and streamed over the
//! variable's chunks into running accumulators ([`accumulate`]), so memory does not grow with
//! the length of the record. Results are JSON, a small Zarr store ([`output`]) or a PNG
//! ([`plot`]).

pub mod accumulate;
pub mod blocks;
pub mod colormap;
pub mod compute;
pub mod output;
pub mod plot;
pub mod request;
pub mod select;
pub mod values;

use serde_json::Value;

use crate::error::Result;
use crate::key::ZarrKey::Chunk;
use crate::manifest::Manifest;
use crate::read::Reader;

pub use request::Diagnostic;
use request::{Op, Output};

/// A diagnostic's answer before HTTP headers.
pub enum Rendered {
    /// A JSON document.
    Json(Value),
    /// An HTML page.
    Html(String),
    /// Binary bytes (a Zarr chunk, a PNG) and their media type.
    Bytes(Vec<u8>, &'static str),
}

/// Compute and render diagnostic `d` of dataset `m` at `version`. `html`: the client prefers
/// HTML; `url`: the route's own address, linked from the HTML page.
///
/// # Errors
/// [`crate::Error::BadRequest`] for names the dataset does not have, [`crate::Error::TooLarge`]
/// over a budget, and the errors of reading and decoding.
pub async fn answer(
    reader: &Reader<'_>,
    m: &Manifest,
    version: &str,
    d: &Diagnostic,
    html: bool,
    url: &str,
) -> Result<Rendered> {
    if let Op::Plot(kind, cmap, options) = &d.op {
        let png = plot::draw(reader, m, version, d, *kind, *cmap, options).await?;
        return Ok(Rendered::Bytes(png, "image/png"));
    }
    let plan = compute::Plan::new(reader, m, version, d).await?;
    match &d.output {
        Output::Zarr(key) => {
            // Only the variable's chunk needs the data; metadata and coordinates need the plan.
            let data = matches!(key, Some(Chunk(name, _)) if *name == d.var);
            let outcome = if data {
                plan.run(reader, version).await?
            } else {
                plan.skeleton()
            };
            Ok(
                match output::zarr_key(&outcome, &m.attrs, &m.codec, key.as_ref())? {
                    output::ZarrAnswer::Json(v) => Rendered::Json(v),
                    output::ZarrAnswer::Bytes(b) => Rendered::Bytes(b, "application/octet-stream"),
                },
            )
        }
        Output::Document => {
            let outcome = plan.run(reader, version).await?;
            if html {
                let title = url.rsplit("/datasets/").next().unwrap_or(url);
                let zarr = format!("{}/zarr", url.trim_end_matches('/'));
                Ok(Rendered::Html(output::html(&outcome, title, &zarr)))
            } else {
                Ok(Rendered::Json(output::to_json(&outcome)))
            }
        }
    }
}
