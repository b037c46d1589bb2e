//! `cloudify index --config cloudify.toml`: every dataset a file lists, read a few at a time,
//! with one catalog update at the end.
//!
//! ```toml
//! [catalog]                       # optional: the STAC catalog (as --catalog-config's JSON)
//! title = "Model output"
//! public_url = "https://example.org/cloudify"
//!
//! [datasets.tas]                  # one table per dataset id
//! sources = ["data/tas_*.nc"]     # paths and globs, relative to this file; URLs
//!                                 # (https://…, s3://bucket/tas/, s3://bucket/tas_*.nc)
//! concat_dim = "time"             # with several sources
//! codec = "auto"                  # optional, as --codec
//! chunks = "time=12"              # optional, as --chunks
//! collection = "cmip6"            # optional, as --collection
//!
//! [datasets.gfs]
//! sources = ["stores/gfs.icechunk"] # one Zarr store or Icechunk repository folder
//! ref = "v2"                      # optional, as --ref: a branch, tag or snapshot id
//!
//! [datasets.era5]
//! sources = ["s3://public/era5.zarr/"]
//! serve = false                   # catalogued only: its STAC item names the store itself
//! ```
//!
//! A top-level `targets = ["lambda", "worker-free"]` names the platforms the bucket is served
//! from, as `--target` does. `[[discover]]` tables find datasets under prefixes (see
//! [`crate::discover`]); a dataset a prefix no longer holds leaves `index.json` and the catalog.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, anyhow};
use cloudify_core::Platform;
use cloudify_core::codecs::ServedCodec;
use cloudify_core::stac::CatalogInfo;
use cloudify_index::{Published, ServeOptions};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::Job;
use crate::discover::{Found, Record, Rule, discover};
use cloudify_core::registry::Registry;

/// Datasets indexed at once, each reading its sources on blocking threads: sized for an
/// object store's latency (an archive of many small datasets waits on requests, not cores).
const CONCURRENT: usize = 8;

/// The file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where it was read from, for errors.
    #[serde(skip)]
    origin: String,
    catalog: Option<toml::Table>,
    /// The platforms the bucket is served from (`--target` overrides it).
    targets: Option<Vec<String>>,
    #[serde(default)]
    datasets: BTreeMap<String, Dataset>,
    /// Prefixes whose stores and grouped files are datasets too.
    #[serde(default)]
    discover: Vec<Rule>,
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
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// `false`: catalogued only, its item naming the store or files (default `true`).
    serve: Option<bool>,
}

impl Dataset {
    /// A dataset `rule` found.
    fn found(rule: &Rule, found: Found) -> Self {
        let concat_dim = match found.store || found.sources.len() < 2 {
            true => None,
            false => Some(rule.concat_dim.clone().unwrap_or_else(|| "time".into())),
        };
        Self {
            sources: found.sources,
            concat_dim,
            codec: rule.codec.clone(),
            chunks: rule.chunks.clone(),
            collection: rule.collection.clone(),
            reference: None,
            serve: rule.serve,
        }
    }
}

impl ConfigFile {
    /// Parse the text of a config file; `origin` names it in errors.
    ///
    /// # Errors
    /// When it is not TOML of this shape.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let mut config: Self = toml::from_str(text).with_context(|| format!("config {origin}"))?;
        config.origin = origin.to_owned();
        Ok(config)
    }

    /// Every dataset id, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.datasets.keys().cloned().collect()
    }

    /// The datasets a source at `url` belongs to, or would by its name: those listing it, a
    /// prefix of it ending in `/`, or a glob pattern it matches.
    pub fn datasets_of(&self, url: &str) -> Vec<String> {
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let names = |s: &String| {
            s == url
                || (s.ends_with('/') && url.starts_with(s.as_str()))
                || glob::Pattern::new(s).is_ok_and(|p| p.matches_with(url, options))
        };
        self.datasets
            .iter()
            .filter(|(_, d)| d.sources.iter().any(names))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The platforms the file names, `None` when it names none.
    ///
    /// # Errors
    /// An unknown platform.
    pub fn targets(&self) -> anyhow::Result<Option<Vec<Platform>>> {
        self.targets
            .as_ref()
            .map(|t| {
                ServeOptions::parse_targets(&t.join(","))
                    .with_context(|| format!("config {}: targets", self.origin))
            })
            .transpose()
    }
}

/// How a run of a config file goes, dataset by dataset, for whoever shows it.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The run starts with this many datasets.
    Started(usize),
    /// One dataset is done (its summary line), or failed.
    Done {
        /// The dataset id.
        id: &'a str,
        /// A line saying what happened.
        line: &'a str,
        /// Whether it failed.
        failed: bool,
    },
    /// Every dataset is done.
    Finished,
    /// A line beside the datasets': a discovery that failed, a dataset a prefix lost.
    Note(&'a str),
    /// The catalog is updated: this many files written.
    Catalog(usize),
}

/// What a run is asked to do beyond the file.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Only these datasets, when given.
    pub only: Option<&'a [String]>,
    /// The catalog's public URL (`--public-url`), over the file's.
    pub public_url: Option<String>,
    /// The platforms served from (`--target`), over the file's.
    pub targets: Option<Vec<Platform>>,
}

/// Index every dataset `path` lists into the job's bucket, then update the catalog once.
/// Returns the datasets that failed (each reported with its error), sorted.
///
/// # Errors
/// When the file cannot be read or parsed, or the catalog cannot be written.
pub async fn run(
    job: &Job,
    path: &Path,
    options: RunOptions<'_>,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("config {}", path.display()))?;
    let config = ConfigFile::parse(&text, &path.display().to_string())?;
    let base = path.parent().unwrap_or(Path::new("."));
    run_config(job, config, base, options, progress).await
}

/// Index the datasets of `config` (those in `only` when given) into `bucket`, with relative
/// source paths below `base`, then update the catalog once. Returns the datasets that failed.
///
/// # Errors
/// When the catalog cannot be written.
pub async fn run_config(
    job: &Job,
    mut config: ConfigFile,
    base: &Path,
    options: RunOptions<'_>,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> anyhow::Result<Vec<String>> {
    let targets = match options.targets {
        Some(t) => t,
        None => config.targets()?.unwrap_or_else(|| vec![Platform::Native]),
    };
    let store = job.bucket.store();
    let mut record = Record::load(store).await?;
    let recorded = record.clone();
    let mut gone: Vec<(String, String)> = Vec::new();
    let mut discovery_failed = Vec::new();
    for rule in &config.discover {
        let found = match discover(rule, base, job).await {
            Ok(found) => found,
            Err(e) => {
                // Nothing found is nothing gone: the last run's datasets stay.
                progress(Progress::Note(&format!(
                    "discover {}: error: {e:#}",
                    rule.under
                )));
                discovery_failed.push(rule.under.clone());
                continue;
            }
        };
        let ids: BTreeSet<String> = found.iter().map(|f| f.id.clone()).collect();
        let before = record.found.insert(rule.under.clone(), ids.clone());
        gone.extend(
            (before.unwrap_or_default().difference(&ids))
                .map(|id| (id.clone(), rule.under.clone())),
        );
        for f in found {
            // A dataset the file lists is the file's.
            if !config.datasets.contains_key(&f.id) {
                config
                    .datasets
                    .insert(f.id.clone(), Dataset::found(rule, f));
            }
        }
    }
    // A rule taken out of the file takes its datasets with it.
    let dropped: Vec<String> = (record.found.keys())
        .filter(|under| !config.discover.iter().any(|r| &r.under == *under))
        .cloned()
        .collect();
    for under in dropped {
        let ids = record.found.remove(&under).unwrap_or_default();
        gone.extend(ids.into_iter().map(|id| (id, under.clone())));
    }
    if let Some(only) = options.only {
        config.datasets.retain(|id, _| only.contains(id));
    }
    progress(Progress::Started(config.datasets.len()));
    let jobs = config.datasets.iter().map(|(id, d)| {
        let targets = targets.clone();
        async move {
            let outcome = one(job, base, id, d, targets).await;
            let line = match &outcome {
                Ok(p) if p.objects_written == 0 && !p.registry_changed => {
                    format!("dataset {id}: version {} unchanged", p.version)
                }
                Ok(p) => format!("dataset {id}: version {} ({})", p.version, p.summary()),
                Err(e) => format!("dataset {id}: error: {e:#}"),
            };
            progress(Progress::Done {
                id,
                line: &line,
                failed: outcome.is_err(),
            });
            outcome.is_err().then(|| id.clone())
        }
    });
    let mut failed: Vec<String> = futures_util::stream::iter(jobs)
        .buffer_unordered(CONCURRENT)
        .filter_map(std::future::ready)
        .collect()
        .await;
    failed.extend(discovery_failed);
    failed.sort();
    progress(Progress::Finished);
    if options.only.is_none() && (!gone.is_empty() || !config.discover.is_empty()) {
        for (id, under) in gone {
            if config.datasets.contains_key(&id) || !Registry::remove(store, &id).await? {
                continue;
            }
            progress(Progress::Note(&format!(
                "dataset {id}: no longer under {under}: out of index.json and the catalog (its \
                 objects are left for cloudify gc)"
            )));
        }
        if record != recorded {
            record.save(store).await?;
        }
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
        .with_context(|| format!("config {}: [catalog]", config.origin))?;
    let written =
        crate::sources::catalog_with(&job.bucket, options.public_url.or(file_url), info).await?;
    progress(Progress::Catalog(written));
    Ok(failed)
}

async fn one(
    job: &Job,
    base: &Path,
    id: &str,
    d: &Dataset,
    targets: Vec<Platform>,
) -> anyhow::Result<Published> {
    let options = ServeOptions {
        codec: d
            .codec
            .as_deref()
            .map_or(Ok(ServedCodec::default()), ServedCodec::parse)?,
        chunks: ServeOptions::parse_chunks(d.chunks.as_deref().unwrap_or(""))?,
        targets,
        serve: d.serve.unwrap_or(true),
    };
    if d.sources.is_empty() {
        return Err(anyhow!("no sources listed"));
    }
    let sources: Vec<String> = d
        .sources
        .iter()
        .map(|s| match s.contains("://") {
            true => s.clone(),
            false => base.join(s).to_string_lossy().into_owned(),
        })
        .collect();
    let collection = d
        .collection
        .as_deref()
        .unwrap_or(cloudify_core::registry::DEFAULT_COLLECTION);
    crate::sources::index(
        job,
        id,
        &sources,
        &options,
        d.concat_dim.as_deref(),
        collection,
        d.reference.as_deref(),
    )
    .await
}
