//! `cloudify index --config cloudify.toml`: every dataset a file lists, read a few at a time,
//! with one catalog update at the end.
//!
//! ```toml
//! [catalog]                       # optional: the STAC catalog (as --catalog-config's JSON)
//! title = "Model output"
//! public_url = "https://example.org/cloudify"
//!
//! [datasets.tas]                  # one table per dataset id
//! sources = ["data/tas_*.nc"]     # paths and globs, relative to this file
//! concat_dim = "time"             # with several sources
//! codec = "zlib:1"                # optional, as --codec
//! chunks = "time=12"              # optional, as --chunks
//! collection = "cmip6"            # optional, as --collection
//! ```

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use cloudify_core::codecs::ServedCodec;
use cloudify_core::stac::CatalogInfo;
use cloudify_index::ServeOptions;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

/// Datasets indexed at once: each reads its sources on a blocking thread.
const CONCURRENT: usize = 2;

/// The file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    catalog: Option<toml::Table>,
    #[serde(default)]
    datasets: BTreeMap<String, Dataset>,
}

/// One dataset's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dataset {
    sources: Vec<String>,
    concat_dim: Option<String>,
    codec: Option<String>,
    chunks: Option<String>,
    collection: Option<String>,
}

/// Index every dataset `path` lists into `bucket`, then update the catalog once. Returns the
/// datasets that failed (each reported with its error), sorted.
///
/// # Errors
/// When the file cannot be read or parsed, or the catalog cannot be written.
pub async fn run(
    bucket: &Path,
    path: &Path,
    public_url: Option<String>,
) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("config {}", path.display()))?;
    let config: Config =
        toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(config.datasets.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} datasets {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let jobs = config.datasets.iter().map(|(id, d)| {
        let bar = bar.clone();
        async move {
            let outcome = one(bucket, base, id, d).await;
            let line = match &outcome {
                Ok(p) if p.objects_written == 0 && !p.registry_changed => {
                    format!("dataset {id}: version {} unchanged", p.version)
                }
                Ok(p) => format!(
                    "dataset {id}: version {} ({} objects written)",
                    p.version, p.objects_written
                ),
                Err(e) => format!("dataset {id}: error: {e:#}"),
            };
            match &bar {
                Some(b) => {
                    b.inc(1);
                    if outcome.is_err() {
                        b.println(&line);
                    }
                    b.set_message(id.clone());
                }
                None => println!("{line}"),
            }
            outcome.is_err().then(|| id.clone())
        }
    });
    let mut failed: Vec<String> = futures_util::stream::iter(jobs)
        .buffer_unordered(CONCURRENT)
        .filter_map(std::future::ready)
        .collect()
        .await;
    failed.sort();
    if let Some(b) = bar {
        b.finish_with_message("done");
    }
    // The catalog's public URL: --public-url, else the file's, else the one stored before.
    let file_url = config
        .catalog
        .as_ref()
        .and_then(|c| c.get("public_url")?.as_str().map(str::to_owned));
    let info: Option<CatalogInfo> = config
        .catalog
        .map(toml::Table::try_into)
        .transpose()
        .with_context(|| format!("config {}: [catalog]", path.display()))?;
    let written = crate::sources::catalog_with(bucket, public_url.or(file_url), info).await?;
    println!("STAC catalog: {written} files written");
    Ok(failed)
}

async fn one(
    bucket: &Path,
    base: &Path,
    id: &str,
    d: &Dataset,
) -> anyhow::Result<cloudify_index::Published> {
    let options = ServeOptions {
        codec: d
            .codec
            .as_deref()
            .map_or(Ok(ServedCodec::default()), ServedCodec::parse)?,
        chunks: ServeOptions::parse_chunks(d.chunks.as_deref().unwrap_or(""))?,
    };
    if d.sources.is_empty() {
        return Err(anyhow!("no sources listed"));
    }
    let sources: Vec<PathBuf> = d.sources.iter().map(|s| base.join(s)).collect();
    let collection = d
        .collection
        .as_deref()
        .unwrap_or(cloudify_core::registry::DEFAULT_COLLECTION);
    crate::sources::index(
        bucket,
        id,
        &sources,
        &options,
        d.concat_dim.as_deref(),
        collection,
    )
    .await
}
