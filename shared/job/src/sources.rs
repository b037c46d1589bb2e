//! Turning command-line source paths into indexed, published datasets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use cloudify_core::ReadStore;
use cloudify_core::stac::CatalogInfo;
use cloudify_index::{Concat, LocalFile, Published, ServeOptions, SourceSpec, SourceState};
use cloudify_stores::{Bucket, LocalStore, s3_sources};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::laid::{self, Layout};
use crate::{Job, remote};

/// Index `sources` (paths, glob patterns, `http(s)://` URLs, `s3://` objects, prefixes ending
/// in `/` and patterns) into the bucket as dataset `id`, concatenated along `concat_dim` when
/// there are several, and publish it. One folder or `s3://` prefix holding a Zarr store or an
/// Icechunk repository (at `reference`, default its `main` branch) is a dataset too.
///
/// # Errors
/// A message naming the file and fault; nothing is written then.
pub async fn index(
    job: &Job,
    id: &str,
    sources: &[impl AsRef<str>],
    options: &ServeOptions,
    concat_dim: Option<&str>,
    collection: &str,
    reference: Option<&str>,
) -> anyhow::Result<Published> {
    if !cloudify_core::key::is_valid_id(collection) {
        return Err(anyhow!(
            "collection id {collection:?} must be 1-128 characters of [A-Za-z0-9._-]"
        ));
    }
    // A store is a dataset alone: only a single source is looked at (an S3 prefix costs HEADs).
    let store = match sources {
        [one] => laid::layout(one.as_ref(), job)
            .await?
            .map(|layout| (one.as_ref(), layout)),
        _ => None,
    };
    match store {
        Some((named, layout)) => {
            index_store(job, id, named, layout, reference, options, collection).await
        }
        None if reference.is_some() => Err(anyhow!(
            "--ref names a branch, tag or snapshot of an Icechunk repository, and no source is one"
        )),
        None => index_files(job, id, sources, options, concat_dim, collection).await,
    }
}

/// [`index`] of files.
async fn index_files(
    job: &Job,
    id: &str,
    sources: &[impl AsRef<str>],
    options: &ServeOptions,
    concat_dim: Option<&str>,
    collection: &str,
) -> anyhow::Result<Published> {
    let bucket = &job.bucket;
    // Asked for their size and tag many at a time (a listed one is not asked again), in order.
    let specs: Vec<SourceSpec> = stream::iter(expand(sources, job).await?)
        .map(|named| async move {
            match remote::is_remote(&named) {
                true => remote::spec(&named, job).await,
                false => spec(bucket, Path::new(&named)).await,
            }
        })
        .buffered(crate::HEADS_AT_ONCE)
        .try_collect()
        .await?;
    let concat = concat_dim.map(|dim| Concat {
        dim: dim.to_owned(),
        bucket_url: bucket.url().to_owned(),
    });
    let store = bucket.store();
    let inputs = cloudify_index::inputs(&specs, options, concat.as_ref());
    if let Some(unchanged) = unchanged(store, id, &inputs, collection, specs.len()).await? {
        return Ok(unchanged);
    }
    // Sources indexed by the last run, unchanged since, are not read again.
    let kept = match (&concat, specs.len()) {
        (Some(_), 2..) => cloudify_index::Kept::load(store, id).await?,
        _ => cloudify_index::Kept::default(),
    };
    let indexed = tokio::task::spawn_blocking({
        let id = id.to_owned();
        let options = options.clone();
        move || cloudify_index::read_dataset(&id, &specs, &options, concat.as_ref(), &kept)
    })
    .await??;
    publish(job, indexed, collection, true).await
}

/// [`index`] of the Zarr store or Icechunk repository at `named`.
async fn index_store(
    job: &Job,
    id: &str,
    named: &str,
    layout: Layout,
    reference: Option<&str>,
    options: &ServeOptions,
    collection: &str,
) -> anyhow::Result<Published> {
    let shown = named;
    let laid = match layout {
        #[cfg(feature = "icechunk")]
        Layout::Icechunk => laid::icechunk(job, id, named, reference).await?,
        #[cfg(not(feature = "icechunk"))]
        Layout::Icechunk => {
            return Err(anyhow!(
                "{shown}: an Icechunk repository, which this build of cloudify does not read"
            ));
        }
        _ if reference.is_some() => {
            return Err(anyhow!(
                "{shown}: --ref names a snapshot of an Icechunk repository; this is a Zarr store"
            ));
        }
        Layout::ZarrV3 => laid::zarr(job, named, true).await?,
        Layout::ZarrV2 => laid::zarr(job, named, false).await?,
    };
    let inputs = cloudify_index::laid_inputs(&laid.state, options);
    let store = job.bucket.store();
    if let Some(unchanged) = unchanged(store, id, &inputs, collection, laid.sources.len()).await? {
        return Ok(unchanged);
    }
    let indexed = tokio::task::spawn_blocking({
        let id = id.to_owned();
        let options = options.clone();
        move || cloudify_index::read_laid(&id, laid, &options)
    })
    .await??;
    // An Icechunk repository is its own; a virtual one beside it would only point back.
    publish(job, indexed, collection, layout != Layout::Icechunk).await
}

/// The published dataset `id` when it was indexed from exactly `inputs` into `collection`.
async fn unchanged(
    store: &dyn cloudify_core::store::WriteStore,
    id: &str,
    inputs: &str,
    collection: &str,
    sources: usize,
) -> anyhow::Result<Option<Published>> {
    let version = cloudify_index::unchanged(store, id, inputs, collection).await?;
    Ok(version.map(|version| Published {
        version,
        objects_written: 0,
        registry_changed: false,
        sources,
        sources_read: 0,
    }))
}

/// Publish `indexed` into the bucket, with its virtual Icechunk repository when `repository`.
async fn publish(
    job: &Job,
    #[allow(unused_mut)] mut indexed: cloudify_index::Indexed,
    collection: &str,
    repository: bool,
) -> anyhow::Result<Published> {
    for w in &indexed.warnings {
        eprintln!("warning: {w}");
    }
    let bucket = &job.bucket;
    // A catalogued-only dataset is read where it lies: no repository is made for it.
    let repository = repository && !indexed.manifest.catalog_only;
    #[cfg(feature = "icechunk")]
    let repo = match repository {
        true => icechunk_sources(bucket, &mut indexed),
        false => None,
    };
    #[cfg(not(feature = "icechunk"))]
    let _ = repository;
    let published = cloudify_index::publish(bucket.store(), &indexed, collection).await?;
    #[cfg(feature = "icechunk")]
    if let Some((location, sources)) = repo {
        let m = &indexed.manifest;
        cloudify_icechunk::write(&location, m, &sources, &published.version, |name| {
            indexed.stored(name)
        })
        .await
        .with_context(|| format!("dataset {}", m.id))?;
    }
    Ok(published)
}

/// Where the dataset's virtual Icechunk repository goes (`icechunk/{id}` in the bucket) and
/// the sources it references, unless some source has no container; an S3 bucket's repository
/// is named in the manifest, for catalogs (a folder's would name a local path).
#[cfg(feature = "icechunk")]
fn icechunk_sources(
    bucket: &cloudify_stores::Bucket,
    indexed: &mut cloudify_index::Indexed,
) -> Option<(String, Vec<cloudify_icechunk::Source>)> {
    let m = &indexed.manifest;
    let sources: Vec<cloudify_icechunk::Source> = (m.sources.iter())
        .zip(&indexed.absolute_urls)
        .map(|(s, url)| cloudify_icechunk::Source {
            // As kerchunk's references: never a query string (where tokens live).
            url: cloudify_core::manifest::strip_query(url).to_owned(),
            etag: s.etag.clone(),
            last_modified_ms: url
                .strip_prefix("file://")
                .and_then(|p| std::fs::metadata(p).ok())
                .and_then(|md| md.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_millis()).ok()),
            stored_by_index: s.stored_by_index(),
        })
        .collect();
    if let Some(why) = cloudify_icechunk::unsupported(&sources) {
        eprintln!("warning: dataset {}: no Icechunk repository: {why}", m.id);
        return None;
    }
    let location = format!("{}/icechunk/{}", bucket.url(), m.id);
    if bucket.root().is_none() {
        indexed.manifest.icechunk = Some(cloudify_core::manifest::IcechunkRepo {
            href: format!("{location}/"),
            in_bucket: true,
            snapshot: None,
            virtual_prefixes: cloudify_icechunk::containers(&sources),
            region: Some(cloudify_stores::s3_region()),
        });
    }
    Some((location, sources))
}

/// Print each dataset's sources that changed or vanished since indexing; return their number.
///
/// # Errors
/// When the bucket's index cannot be read or a dataset is unknown.
pub async fn check(job: &Job, ids: &[String]) -> anyhow::Result<usize> {
    let bucket = &job.bucket;
    let local = bucket.reader();
    let root: Arc<dyn ReadStore> = Arc::new(LocalStore::new("/"));
    let s3: Arc<dyn ReadStore> = Arc::new(s3_sources().await.clone());
    let resolve = |url: &str| -> Option<(Arc<dyn ReadStore>, String)> {
        match url.split_once("://") {
            None => Some((local.clone(), url.to_owned())),
            Some(("file", path)) => Some((root.clone(), path.trim_start_matches('/').to_owned())),
            Some(("s3", key)) => Some((s3.clone(), key.to_owned())),
            Some(_) => {
                let (store, key) = remote::http_store_for(url, &job.headers, job.timeouts)?;
                Some((store, key.to_owned()))
            }
        }
    };
    let mut bad = 0;
    for d in cloudify_index::check(bucket.store(), &resolve, ids).await? {
        let total = d.sources.len();
        let mut changed = 0;
        for (url, state) in &d.sources {
            match state {
                SourceState::Unchanged => {}
                SourceState::Changed(why) => say!("{}: {url}: changed ({why})", d.id),
                SourceState::Missing => say!("{}: {url}: missing", d.id),
            }
            changed += usize::from(*state != SourceState::Unchanged);
        }
        if changed == 0 {
            say!("{}: all {total} sources as indexed", d.id);
        }
        bad += changed;
    }
    Ok(bad)
}

/// Regenerate the bucket's static STAC catalog, first storing a new public URL or catalog
/// configuration (a JSON file) when given.
///
/// # Errors
/// When the configuration file is unreadable or the bucket cannot be written.
pub async fn catalog(
    bucket: &Bucket,
    public_url: Option<String>,
    config: Option<PathBuf>,
) -> anyhow::Result<usize> {
    let given = match config {
        None => None,
        Some(path) => {
            let text = std::fs::read(&path)
                .with_context(|| format!("catalog config {}", path.display()))?;
            Some(
                serde_json::from_slice(&text)
                    .with_context(|| format!("catalog config {}", path.display()))?,
            )
        }
    };
    catalog_with(bucket, public_url, given).await
}

/// Regenerate the static STAC catalog with the stored configuration, replaced by `given` (its
/// public URL aside) and `public_url` when given.
///
/// # Errors
/// When the bucket cannot be read or written.
pub async fn catalog_with(
    bucket: &Bucket,
    public_url: Option<String>,
    given: Option<CatalogInfo>,
) -> anyhow::Result<usize> {
    let store = bucket.store();
    let mut info = cloudify_index::load_config(store).await?;
    if let Some(given) = given {
        info = CatalogInfo {
            public_url: info.public_url,
            ..given
        };
    }
    if let Some(url) = public_url {
        info.public_url = cloudify_core::config::check_public_url(&url)
            .map_err(|e| anyhow!("--public-url: {e}"))?;
    }
    Ok(cloudify_index::write_catalog(store, &info).await?)
}

/// The sources `sources` name: each a path or URL, a local glob pattern matching at least one
/// file (in sorted order), or an `s3://` prefix or pattern. The same source twice is an error.
async fn expand(sources: &[impl AsRef<str>], job: &Job) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for s in sources {
        let text = s.as_ref();
        if text.starts_with("s3://") {
            out.extend(remote::expand_s3(text, job).await?);
            continue;
        }
        if text.contains("://") || Path::new(text).exists() || !text.contains(['*', '?', '[']) {
            out.push(text.to_owned());
            continue;
        }
        let mut matched: Vec<PathBuf> = glob::glob(text)
            .map_err(|e| anyhow!("{text}: not a valid glob pattern: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("{text}: {e}"))?;
        if matched.is_empty() {
            return Err(anyhow!("{text}: no file matches this pattern"));
        }
        matched.sort();
        for m in matched {
            let m = m
                .into_os_string()
                .into_string()
                .map_err(|p| anyhow!("{}: path is not UTF-8", Path::new(&p).display()))?;
            out.push(m);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let named = |p: &String| {
        Path::new(p)
            .canonicalize()
            .map_or_else(|_| p.clone(), |c| c.to_string_lossy().into_owned())
    };
    if let Some(twice) = out.iter().find(|p| !seen.insert(named(p))) {
        return Err(anyhow!("{twice}: named twice"));
    }
    Ok(out)
}

/// Name a local source as DESIGN.md says: a key when it lives in the (local) bucket, else a
/// `file://` URL.
pub(crate) async fn spec(bucket: &Bucket, path: &Path) -> anyhow::Result<SourceSpec> {
    let shown = path.display();
    let abs = path
        .canonicalize()
        .map_err(|e| anyhow!("{shown}: cannot open source: {e}"))?;
    if abs.is_dir() {
        return Err(anyhow!(
            "{shown}: a folder, not a file (a Zarr store or Icechunk repository is a dataset \
             alone, its one source)"
        ));
    }
    if !abs.is_file() {
        return Err(anyhow!("{shown}: not a file"));
    }
    let reader = LocalFile::open(&abs).map_err(|e| anyhow!("{shown}: cannot read source: {e}"))?;
    let abs_str = abs
        .to_str()
        .ok_or_else(|| anyhow!("{shown}: path is not UTF-8"))?;
    let inside = bucket.root().and_then(|root| abs.strip_prefix(root).ok());
    let (url, meta) = match inside {
        Some(rel) => {
            let key = rel
                .to_str()
                .ok_or_else(|| anyhow!("{shown}: path is not UTF-8"))?
                .to_owned();
            let meta = bucket
                .store()
                .head(&key)
                .await
                .map_err(|e| anyhow!("{shown}: {e}"))?;
            (key, meta)
        }
        None => {
            let meta = LocalStore::new("/")
                .head(abs_str.trim_start_matches('/'))
                .await
                .map_err(|e| anyhow!("{shown}: {e}"))?;
            (format!("file://{abs_str}"), meta)
        }
    };
    let meta = meta.ok_or_else(|| anyhow!("{shown}: source vanished while indexing"))?;
    Ok(SourceSpec {
        url,
        absolute_url: format!("file://{abs_str}"),
        meta,
        reader: Arc::new(reader),
    })
}
