//! `cloudify demo`: the main job on the embedded default — a sample NetCDF4 file in a local
//! bucket folder, indexed and served, with the line to paste into Python.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, anyhow};
use cloudify_core::Platform;
use cloudify_job::Job;
use cloudify_job::say;
use cloudify_stores::Bucket;

/// A small multi-variable NetCDF4 file (monthly temperature and precipitation on a 4° grid),
/// written by `tests/data/make_sample.py`.
const SAMPLE: &[u8] = include_bytes!("../../../tests/data/sample.nc");
/// Where the sample goes inside the bucket, so the index names it by a bucket-relative key.
const SAMPLE_KEY: &str = "sources/sample.nc";
/// Its dataset id.
const DATASET: &str = "sample";

/// Write, index and serve the sample.
///
/// # Errors
/// When the bucket folder cannot be written or the address bound.
pub async fn run(bucket: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let source = bucket.join(SAMPLE_KEY);
    if let Some(dir) = source.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if std::fs::read(&source).ok().as_deref() != Some(SAMPLE) {
        std::fs::write(&source, SAMPLE)
            .with_context(|| format!("cannot write {}", source.display()))?;
    }
    let opened = Bucket::open(&bucket.to_string_lossy(), true)
        .await
        .map_err(|e| anyhow!(e))?;
    let job = Job::new(opened.clone());
    let published = cloudify_job::sources::index(
        &job,
        DATASET,
        &[source.to_string_lossy()],
        &Default::default(),
        None,
        "demo",
        None,
    )
    .await?;
    cloudify_job::sources::catalog(&opened, Some(format!("http://{addr}")), None).await?;
    say!(
        "indexed {} as dataset {DATASET} (version {})",
        source.display(),
        published.version
    );
    crate::serve::run(&opened, addr, Platform::Native.preset(), |bound| {
        say!("open it with xarray:");
        say!(
            "  import xarray as xr; ds = xr.open_dataset(\"http://{bound}/datasets/{DATASET}/zarr\", engine=\"zarr\")"
        );
        say!("(/kerchunk serves the source's own chunks; /zarr3 is Zarr v3)");
        say!(
            "diagnostics: http://{bound}/datasets/{DATASET}/groupby/tas/time.season/mean (and /zarr), \
             http://{bound}/datasets/{DATASET}/plot/tas/map/viridis"
        );
        say!("STAC catalog: http://{bound}/stac/catalog.json · API: http://{bound}/openapi.json");
    })
    .await
}
