//! Turning command-line source paths into indexed, published datasets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use cloudify_core::Store;
use cloudify_core::stac::CatalogInfo;
use cloudify_index::{Concat, LocalFile, Published, ServeOptions, SourceSpec, SourceState};
use cloudify_stores::LocalStore;

/// Index `sources` (paths or glob patterns) into the bucket folder as dataset `id`,
/// concatenated along `concat_dim` when there are several, and publish it.
///
/// # Errors
/// A message naming the file and fault; nothing is written then.
pub async fn index(
    bucket: &Path,
    id: &str,
    sources: &[impl AsRef<Path>],
    options: &ServeOptions,
    concat_dim: Option<&str>,
    collection: &str,
) -> anyhow::Result<Published> {
    std::fs::create_dir_all(bucket)
        .with_context(|| format!("cannot create bucket folder {}", bucket.display()))?;
    let bucket_root = bucket
        .canonicalize()
        .with_context(|| format!("bucket folder {}", bucket.display()))?;
    let store = LocalStore::new(&bucket_root);
    let mut specs = Vec::new();
    for path in expand(sources)? {
        let named = path.to_string_lossy();
        specs.push(match crate::remote::store_for(&named) {
            Some(_) => {
                let url = named.into_owned();
                tokio::task::spawn_blocking(move || crate::remote::spec(&url)).await??
            }
            None => spec(&bucket_root, &store, &path).await?,
        });
    }
    let concat = concat_dim.map(|dim| Concat {
        dim: dim.to_owned(),
        bucket_url: format!("file://{}", bucket_root.display()),
    });
    if !cloudify_core::key::is_valid_id(collection) {
        return Err(anyhow!(
            "collection id {collection:?} must be 1-128 characters of [A-Za-z0-9._-]"
        ));
    }
    let inputs = cloudify_index::inputs(&specs, options, concat.as_ref());
    if let Some(version) = cloudify_index::unchanged(&store, id, &inputs, collection).await? {
        return Ok(Published {
            version,
            objects_written: 0,
            registry_changed: false,
        });
    }
    let indexed = tokio::task::spawn_blocking({
        let id = id.to_owned();
        let options = options.clone();
        move || cloudify_index::read_dataset(&id, &specs, &options, concat.as_ref())
    })
    .await??;
    for w in &indexed.warnings {
        eprintln!("warning: {w}");
    }
    Ok(cloudify_index::publish(&store, &indexed, collection).await?)
}

/// Print each dataset's sources that changed or vanished since indexing; return their number.
///
/// # Errors
/// When the bucket's index cannot be read or a dataset is unknown.
pub async fn check(bucket: &Path, ids: &[String]) -> anyhow::Result<usize> {
    let store = LocalStore::new(bucket);
    let local: Arc<dyn Store> = Arc::new(LocalStore::new(bucket));
    let root: Arc<dyn Store> = Arc::new(LocalStore::new("/"));
    let resolve = |url: &str| -> Option<(Arc<dyn Store>, String)> {
        match url.split_once("://") {
            None => Some((local.clone(), url.to_owned())),
            Some(("file", path)) => Some((root.clone(), path.trim_start_matches('/').to_owned())),
            Some(_) => {
                let (store, key) = crate::remote::store_for(url)?;
                Some((Arc::new(store), key.to_owned()))
            }
        }
    };
    let mut bad = 0;
    for d in cloudify_index::check(&store, &resolve, ids).await? {
        let total = d.sources.len();
        let mut changed = 0;
        for (url, state) in &d.sources {
            match state {
                SourceState::Unchanged => {}
                SourceState::Changed(why) => println!("{}: {url}: changed ({why})", d.id),
                SourceState::Missing => println!("{}: {url}: missing", d.id),
            }
            changed += usize::from(*state != SourceState::Unchanged);
        }
        if changed == 0 {
            println!("{}: all {total} sources as indexed", d.id);
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
    bucket: &Path,
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
    bucket: &Path,
    public_url: Option<String>,
    given: Option<CatalogInfo>,
) -> anyhow::Result<usize> {
    let store = LocalStore::new(bucket);
    let mut info = cloudify_index::load_config(&store).await?;
    if let Some(given) = given {
        info = CatalogInfo {
            public_url: info.public_url,
            ..given
        };
    }
    if let Some(url) = public_url {
        info.public_url = url.trim_end_matches('/').to_owned();
    }
    Ok(cloudify_index::write_catalog(&store, &info).await?)
}

/// The files `sources` name: each a path, or a glob pattern matching at least one file (in
/// sorted order). The same file named twice is an error.
fn expand(sources: &[impl AsRef<Path>]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for s in sources {
        let s = s.as_ref();
        let text = s.to_string_lossy();
        let url = text.contains("://");
        if url || s.exists() || !text.contains(['*', '?', '[']) {
            out.push(s.to_owned());
            continue;
        }
        let mut matched: Vec<PathBuf> = glob::glob(&text)
            .map_err(|e| anyhow!("{text}: not a valid glob pattern: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("{text}: {e}"))?;
        if matched.is_empty() {
            return Err(anyhow!("{text}: no file matches this pattern"));
        }
        matched.sort();
        out.extend(matched);
    }
    let mut seen = std::collections::BTreeSet::new();
    let named = |p: &PathBuf| p.canonicalize().unwrap_or_else(|_| p.clone());
    if let Some(twice) = out.iter().find(|p| !seen.insert(named(p))) {
        return Err(anyhow!("{}: named twice", twice.display()));
    }
    Ok(out)
}

/// Name a source as DESIGN.md says: a key when it lives in the bucket, else a `file://` URL.
async fn spec(bucket_root: &Path, bucket: &LocalStore, path: &Path) -> anyhow::Result<SourceSpec> {
    let shown = path.display();
    let abs = path
        .canonicalize()
        .map_err(|e| anyhow!("{shown}: cannot open source: {e}"))?;
    if !abs.is_file() {
        return Err(anyhow!("{shown}: not a file"));
    }
    let reader = LocalFile::open(&abs).map_err(|e| anyhow!("{shown}: cannot read source: {e}"))?;
    let abs_str = abs
        .to_str()
        .ok_or_else(|| anyhow!("{shown}: path is not UTF-8"))?;
    let (url, meta) = match abs.strip_prefix(bucket_root) {
        Ok(rel) => {
            let key = rel
                .to_str()
                .ok_or_else(|| anyhow!("{shown}: path is not UTF-8"))?
                .to_owned();
            let meta = bucket.head(&key).await?;
            (key, meta)
        }
        Err(_) => {
            let meta = LocalStore::new("/")
                .head(abs_str.trim_start_matches('/'))
                .await?;
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
