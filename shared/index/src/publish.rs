//! Writing an indexed dataset into a bucket: new objects first, `index.json` last.

use bytes::Bytes;
use cloudify_core::registry::{Registry, VERSION_LEN, manifest_key, version_dir};
use cloudify_core::store::{Precondition, ReadStore, ReadStoreExt, WriteStore};
use cloudify_core::zarr_v2;
use sha2::{Digest, Sha256};

use crate::concat::Concat;
use crate::error::Result;
use crate::kept::KEPT_FILE;
use crate::netcdf4::{Indexed, ServeOptions};
use crate::parquet_refs::kerchunk_parquet;
use crate::source::SourceSpec;

/// The outcome of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The dataset's version: the content hash of its manifest and tables.
    pub version: String,
    /// Objects written (0 when the bucket already held this version).
    pub objects_written: usize,
    /// Whether `index.json` changed.
    pub registry_changed: bool,
    /// Sources the dataset has.
    pub sources: usize,
    /// Sources whose metadata this run read (the others were unchanged since the last run).
    pub sources_read: usize,
}

impl Published {
    /// What the run did, for a summary line: sources read, objects written, the registry.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} sources read, {} objects written, index.json {}",
            self.sources_read,
            self.sources,
            self.objects_written,
            if self.registry_changed {
                "updated"
            } else {
                "unchanged"
            }
        )
    }
}

/// The version of an indexed dataset: a hash over its manifest and every table.
fn version_of(manifest_json: &[u8], indexed: &Indexed) -> String {
    let mut h = Sha256::new();
    h.update(manifest_json);
    for table in &indexed.tables {
        h.update(&table.bytes);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..VERSION_LEN].to_owned()
}

/// What a run of the indexer reads, as a hash: every source's URL, size and tag, the serving
/// options, the concatenation and the indexer's version. Equal inputs index to equal datasets.
pub fn inputs(sources: &[SourceSpec], options: &ServeOptions, concat: Option<&Concat>) -> String {
    hashed(options, concat.map(|c| c.dim.as_str()), |h| {
        for s in sources {
            h.update(format!("\0{}\0{}\0{:?}", s.url, s.meta.size, s.meta.etag));
        }
    })
}

/// [`inputs`] of a dataset another store lays out, whose `state` (an Icechunk snapshot, a
/// listing's hash) names everything it holds.
pub fn laid_inputs(state: &str, options: &ServeOptions) -> String {
    hashed(options, None, |h| h.update(format!("\0laid\0{state}")))
}

fn hashed(
    options: &ServeOptions,
    concat: Option<&str>,
    sources: impl FnOnce(&mut Sha256),
) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(cloudify_core::manifest::FORMAT_VERSION.to_le_bytes());
    sources(&mut h);
    h.update(format!(
        "\0{:?}\0{:?}\0{:?}\0{:?}",
        options.codec, options.chunks, concat, options.targets
    ));
    // Only when set, so the datasets indexed before the option keep their inputs.
    if !options.serve {
        h.update("\0catalog-only");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The current version of `id` when it was indexed from exactly `inputs` into `collection`:
/// then a rerun has nothing to read or write. Reads `index.json` and one manifest.
///
/// # Errors
/// When the bucket cannot be read.
pub async fn unchanged(
    bucket: &dyn ReadStore,
    id: &str,
    inputs: &str,
    collection: &str,
) -> Result<Option<String>> {
    let registry = Registry::load(bucket).await?;
    let Some(entry) = registry
        .datasets
        .get(id)
        .filter(|e| e.collection == collection)
    else {
        return Ok(None);
    };
    let Some(o) = bucket.get(&manifest_key(id, &entry.version)).await? else {
        return Ok(None);
    };
    let same = cloudify_core::Manifest::from_json(&o.bytes)
        .ok()
        .and_then(|m| m.inputs)
        .is_some_and(|i| i == inputs);
    Ok(same.then(|| entry.version.clone()))
}

/// Write `indexed` under its version and point `index.json` at it. Objects that already exist
/// are not rewritten (a version's content is fixed by its hash), so a rerun with no change
/// writes nothing; a failure before the registry update leaves the last good index serving.
///
/// # Errors
/// [`crate::IndexError::Store`] when a write fails.
pub async fn publish(
    bucket: &dyn WriteStore,
    indexed: &Indexed,
    collection: &str,
) -> Result<Published> {
    let m = &indexed.manifest;
    let manifest_json = serde_json::to_vec_pretty(m)
        .map_err(|e| cloudify_core::Error::corrupt_data(format!("manifest of {}: {e}", m.id)))?;
    let version = version_of(&manifest_json, indexed);
    let dir = version_dir(&m.id, &version);

    let stored = |name: &str| indexed.stored(name);
    // Computed values first (content-addressed, shared by versions), then the version's own.
    let mut objects: Vec<(String, Bytes)> = indexed
        .inline
        .iter()
        .map(|(key, b)| (key.clone(), Bytes::from(b.clone())))
        .collect();
    objects.extend(
        m.arrays
            .values()
            .zip(&indexed.tables)
            .map(|(a, t)| (format!("{dir}/{}", a.table), Bytes::from(t.bytes.clone()))),
    );
    // kerchunk's references: JSON, or Parquet for a large dataset. They are for clients, so
    // they never carry a source URL's query string (where tokens live).
    let urls: Vec<String> = indexed
        .absolute_urls
        .iter()
        .map(|u| cloudify_core::manifest::strip_query(u).to_owned())
        .collect();
    if zarr_v2::kerchunk_as_parquet(m) {
        let files = kerchunk_parquet(m, &urls, stored)?;
        objects.extend(
            files
                .into_iter()
                .map(|(key, b)| (format!("{dir}/refs.parq/{key}"), Bytes::from(b))),
        );
    } else {
        let refs = zarr_v2::kerchunk_refs(m, &urls, stored);
        objects.push((format!("{dir}/refs.json"), Bytes::from(refs.to_string())));
    }
    if let Some(kept) = &indexed.kept {
        objects.push((format!("{dir}/{KEPT_FILE}"), Bytes::from(kept.encode()?)));
    }
    // The manifest last: a version folder with a manifest is complete.
    objects.push((manifest_key(&m.id, &version), Bytes::from(manifest_json)));

    let mut objects_written = 0;
    for (key, body) in objects {
        if bucket.put(&key, body, Precondition::Absent).await? {
            objects_written += 1;
        }
    }
    let registry_changed =
        Registry::publish(bucket, &m.id, &version, collection, m.catalog_only).await?;
    Ok(Published {
        version,
        objects_written,
        registry_changed,
        sources: indexed
            .absolute_urls
            .len()
            .saturating_sub(indexed.inline.len()),
        sources_read: indexed.sources_read,
    })
}
