//! What several integration tests start from: the sample file indexed into a bucket that
//! holds it, with the static catalog.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cloudify_core::store::Precondition;
use cloudify_core::{ObjectMeta, WriteStore};
use cloudify_index::{Kept, LocalFile, ServeOptions, SourceSpec, publish, read_dataset};

/// The sample's key in the bucket.
pub const SOURCE_KEY: &str = "sources/sample.nc";

pub fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sample.nc")
}

/// Index the sample, stored in `store` at [`SOURCE_KEY`], as dataset `sample` of collection
/// `c`, and write the static catalog; the version.
pub async fn index_sample(store: &dyn WriteStore) -> String {
    let path = sample_path();
    let bytes = std::fs::read(&path).unwrap();
    let spec = SourceSpec {
        url: SOURCE_KEY.into(),
        absolute_url: format!("file://{}", path.display()),
        meta: ObjectMeta {
            size: bytes.len() as u64,
            ..ObjectMeta::default()
        },
        reader: Arc::new(LocalFile::open(&path).unwrap()),
    };
    store
        .put(SOURCE_KEY, Bytes::from(bytes), Precondition::None)
        .await
        .unwrap();
    let indexed = read_dataset(
        "sample",
        &[spec],
        &ServeOptions::default(),
        None,
        &Kept::default(),
    )
    .unwrap();
    let published = publish(store, &indexed, "c").await.unwrap();
    let info = cloudify_core::stac::CatalogInfo::default();
    cloudify_index::write_catalog(store, &info).await.unwrap();
    published.version
}
