//! The spine end to end in Rust: index the demo sample into an in-memory bucket, serve every key
//! through the core router, and count the store reads each request makes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cloudify_core::config::ErrorDetail;
use cloudify_core::store::{CountingStore, Precondition, Read};
use cloudify_core::store::{Fetched, GetOptions};
use cloudify_core::zarr_v2::chunk_key;
use cloudify_core::{App, Config, MemoryStore, ObjectMeta, Platform, ReadStore, WriteStore};
use cloudify_index::{
    Indexed, Kept, LocalFile, ServeOptions, SourceSpec, inputs, publish, read_dataset, unchanged,
};
use serde_json::Value;

const SOURCE_KEY: &str = "sources/sample.nc";

fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sample.nc")
}

fn sample_spec() -> SourceSpec {
    let path = sample_path();
    let reader = LocalFile::open(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    SourceSpec {
        url: SOURCE_KEY.into(),
        absolute_url: format!("file://{}", path.display()),
        meta: ObjectMeta {
            size,
            ..ObjectMeta::default()
        },
        reader: Arc::new(reader),
    }
}

fn index_sample(id: &str) -> Indexed {
    read_dataset(
        id,
        &[sample_spec()],
        &ServeOptions::default(),
        None,
        &Kept::default(),
    )
    .unwrap()
}

/// A bucket holding the sample as a source and its index.
async fn bucket() -> (Arc<CountingStore<MemoryStore>>, Indexed) {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let bytes = std::fs::read(sample_path()).unwrap();
    store
        .put(SOURCE_KEY, Bytes::from(bytes), Precondition::None)
        .await
        .unwrap();
    let indexed = index_sample("sample");
    publish(store.as_ref(), &indexed, "c").await.unwrap();
    store.take_reads();
    (store, indexed)
}

fn native() -> Config {
    Platform::Native.preset()
}

/// A function that has answered one request of the dataset: index.json and the manifest are
/// in its caches.
async fn warm(app: App) -> App {
    assert_eq!(get(&app, "/datasets/sample/zarr/.zmetadata").await.0, 200);
    app
}

async fn get(app: &App, path: &str) -> (u16, Bytes) {
    let req = http::Request::get(path).body(()).unwrap();
    let resp = app.handle(&req).await;
    (resp.status().as_u16(), resp.into_body())
}

#[tokio::test]
async fn every_chunk_is_one_range_read_of_its_length() {
    let (store, indexed) = bucket().await;
    let app = App::new(native(), store.clone());
    let file = std::fs::read(sample_path()).unwrap();
    let mut chunks = 0;
    for ((name, a), table) in indexed.manifest.arrays.iter().zip(&indexed.tables) {
        for (linear, c) in &table.stored {
            let (status, body) = get(
                &app,
                &format!("/datasets/sample/kerchunk/{name}/{}", chunk_key(a, *linear)),
            )
            .await;
            assert_eq!(status, 200, "{name} chunk {linear}");
            let at = c.offset as usize;
            assert_eq!(&body[..], &file[at..at + c.length as usize]);
            let source_reads: Vec<Read> = store
                .take_reads()
                .into_iter()
                .filter(|r| r.key == SOURCE_KEY)
                .collect();
            assert_eq!(
                source_reads,
                vec![Read {
                    key: SOURCE_KEY.into(),
                    range: Some(c.offset..c.offset + c.length)
                }]
            );
            chunks += 1;
        }
    }
    assert!(chunks > 40, "the sample has many chunks, saw {chunks}");
}

#[tokio::test]
async fn reencoded_aligned_chunks_are_one_source_read_each() {
    let (store, indexed) = bucket().await;
    let app = warm(App::new(native(), store.clone())).await;
    store.take_reads();
    for ((name, a), table) in indexed.manifest.arrays.iter().zip(&indexed.tables) {
        for (linear, c) in &table.stored {
            let key = chunk_key(a, *linear);
            let req = http::Request::get(format!("/datasets/sample/zarr/{name}/{key}"))
                .body(())
                .unwrap();
            let resp = app.handle(&req).await;
            assert_eq!(resp.status(), 200, "{name} {key}");
            let timing = resp.headers()["server-timing"].to_str().unwrap().to_owned();
            let source_reads: Vec<Read> = store
                .take_reads()
                .into_iter()
                .filter(|r| r.key == SOURCE_KEY)
                .collect();
            assert_eq!(source_reads.len(), 1, "{name} {key}");
            let range = source_reads[0].range.clone().unwrap();
            if a.codecs.is_empty() {
                // Uncompressed: only the part inside the shape (time's chunk of 512 holds 24).
                let inside = a
                    .shape
                    .iter()
                    .product::<u64>()
                    .min(a.chunks.iter().product())
                    * u64::from(a.item_size());
                assert_eq!(range.start, c.offset, "{name} {key}");
                assert!(
                    range.end - range.start <= c.length.min(inside),
                    "{name} {key}"
                );
            } else {
                assert_eq!(range, c.offset..c.offset + c.length, "{name} {key}");
            }
            // One table record and one source read.
            assert!(timing.contains("2 store reads"), "{timing}");
        }
    }
}

#[tokio::test]
async fn a_warm_chunk_request_reads_one_table_record() {
    let (store, _) = bucket().await;
    let app = App::new(native(), store.clone());
    assert_eq!(get(&app, "/datasets/sample/kerchunk/pr/1.2.2").await.0, 200);
    store.take_reads();
    assert_eq!(get(&app, "/datasets/sample/kerchunk/pr/0.1.0").await.0, 200);
    let reads = store.take_reads();
    let table_reads: Vec<&Read> = reads
        .iter()
        .filter(|r| r.key.contains("/tables/"))
        .collect();
    assert_eq!(table_reads.len(), 1);
    assert_eq!(
        table_reads[0].range.as_ref().map(|r| r.end - r.start),
        Some(cloudify_core::manifest::RECORD_LEN)
    );
    assert!(
        reads.iter().all(|r| !r.key.ends_with("manifest.json")),
        "manifest is cached"
    );
}

#[tokio::test]
async fn metadata_matches_the_source() {
    let (store, _) = bucket().await;
    let app = App::new(native(), store);
    let (status, body) = get(&app, "/datasets/sample/kerchunk/.zmetadata").await;
    assert_eq!(status, 200);
    let z: Value = serde_json::from_slice(&body).unwrap();
    let md = &z["metadata"];
    assert_eq!(md["tas/.zarray"]["dtype"], "<f4");
    assert_eq!(md["tas/.zarray"]["chunks"], serde_json::json!([6, 45, 90]));
    assert_eq!(md["tas/.zarray"]["compressor"]["id"], "zlib");
    assert_eq!(md["tas/.zarray"]["filters"][0]["id"], "shuffle");
    // The float32 fill value, widened exactly.
    assert_eq!(md["tas/.zarray"]["fill_value"], f64::from(1e20_f32));
    assert_eq!(
        md["tas/.zattrs"]["_ARRAY_DIMENSIONS"],
        serde_json::json!(["time", "lat", "lon"])
    );
    assert_eq!(md["pr/.zarray"]["fill_value"], -32767);
    assert_eq!(
        md["time_bnds/.zattrs"]["_ARRAY_DIMENSIONS"],
        serde_json::json!(["time", "bnds"])
    );
    assert!(
        md.get("bnds/.zarray").is_none(),
        "a dimension without variable is no array"
    );
    for internal in [
        "_Netcdf4Dimid",
        "_Netcdf4Coordinates",
        "DIMENSION_LIST",
        "CLASS",
        "NAME",
    ] {
        assert!(
            md["lat/.zattrs"].get(internal).is_none(),
            "{internal} leaked"
        );
        assert!(
            md["tas/.zattrs"].get(internal).is_none(),
            "{internal} leaked"
        );
    }
    assert!(md[".zattrs"].get("_NCProperties").is_none());
}

#[tokio::test]
async fn error_statuses() {
    let (store, _) = bucket().await;
    let config = Config {
        read_budget: 1000,
        ..native()
    };
    let app = App::new(config, store.clone());
    for (path, status) in [
        ("/datasets/nope/kerchunk/.zmetadata", 404),
        ("/datasets/sample/kerchunk/nope/.zarray", 404),
        ("/datasets/sample/kerchunk/tas/4.0.0", 404),
        ("/datasets/sample/kerchunk/tas/0.0", 400),
        ("/datasets/sample/kerchunk/tas/0.0.x", 400),
        ("/datasets/sample/kerchunk/../../index.json", 400),
        ("/datasets/sample/kerchunk/%2e%2e/%2e%2e/index.json", 400),
        ("/datasets/sample/kerchunk/tas%2f0.0.0", 400),
        ("/datasets/sample/kerchunk//sources/sample.nc", 400),
        ("/datasets/sample@0123456789/kerchunk/.zgroup", 404),
        ("/datasets/sample/kerchunk/zarr.json", 404),
        // A chunk over the budget: tas chunks are zlib streams of ~90 kB.
        ("/datasets/sample/kerchunk/tas/0.0.0", 413),
    ] {
        let (got, body) = get(&app, path).await;
        assert_eq!(got, status, "{path}: {}", String::from_utf8_lossy(&body));
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            err["error"].is_string() && err["detail"].is_string(),
            "{path}"
        );
    }
    let post = http::Request::post("/datasets").body(()).unwrap();
    let resp = app.handle(&post).await;
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD, OPTIONS");
}

#[tokio::test]
async fn missing_changed_and_corrupt_objects() {
    let indexed = index_sample("sample");
    let file = Bytes::from(std::fs::read(sample_path()).unwrap());
    let chunk = "/datasets/sample/kerchunk/tas/3.0.0";

    // The source is missing.
    let bucket = Arc::new(MemoryStore::new());
    let p = publish(bucket.as_ref(), &indexed, "c").await.unwrap();
    let config = Config {
        error_detail: ErrorDetail::Internal,
        ..native()
    };
    let app = App::new(config, bucket.clone());
    let (status, body) = get(&app, chunk).await;
    assert_eq!(status, 502);
    assert!(String::from_utf8_lossy(&body).contains(SOURCE_KEY));

    // The source is truncated: it changed since indexing.
    bucket
        .put(SOURCE_KEY, file.slice(..file.len() / 2), Precondition::None)
        .await
        .unwrap();
    let (status, body) = get(&app, chunk).await;
    assert_eq!(status, 409);
    let detail = String::from_utf8_lossy(&body);
    assert!(
        detail.contains(SOURCE_KEY) && detail.contains("reindex"),
        "{detail}"
    );

    // A chunk table is cut short.
    bucket
        .put(SOURCE_KEY, file, Precondition::None)
        .await
        .unwrap();
    let table = format!("datasets/sample/{}/tables/0.bin", p.version);
    bucket
        .put(&table, Bytes::from_static(b"CLDYTBL\0"), Precondition::None)
        .await
        .unwrap();
    let (status, _) = get(&app, "/datasets/sample/kerchunk/time/0").await;
    assert_eq!(status, 502);
    assert_eq!(get(&app, chunk).await.0, 200, "other arrays still serve");
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let (store, _) = bucket().await;
    let app = App::new(native(), store);
    let req = http::Request::head("/datasets/sample/kerchunk/tas/.zarray")
        .body(())
        .unwrap();
    let resp = app.handle(&req).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.body().is_empty());
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(len > 50);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn republishing_unchanged_writes_nothing_and_datasets_coexist() {
    let (store, indexed) = bucket().await;
    let again = publish(store.as_ref(), &indexed, "c").await.unwrap();
    assert_eq!(again.objects_written, 0);
    assert!(!again.registry_changed);
    let other = index_sample("other");
    publish(store.as_ref(), &other, "c").await.unwrap();
    let app = App::new(native(), store);
    let (_, body) = get(&app, "/datasets").await;
    let ids: Vec<String> = serde_json::from_slice(&body).unwrap();
    assert_eq!(ids, vec!["other".to_owned(), "sample".to_owned()]);
}

#[tokio::test]
async fn a_rerun_with_the_same_inputs_reads_two_objects_and_writes_none() {
    let (store, indexed) = bucket().await;
    store.take_writes();
    let options = ServeOptions::default();
    let same = inputs(&[sample_spec()], &options, None);
    let version = unchanged(store.as_ref(), "sample", &same, "c")
        .await
        .unwrap();
    assert!(version.is_some());
    assert!(store.take_writes().is_empty());
    let read: Vec<String> = store.take_reads().into_iter().map(|r| r.key).collect();
    assert_eq!(read.len(), 2, "{read:?}");
    assert!(read.iter().all(|k| !k.starts_with("sources/")));
    // Any other input (a grown source, other options, another collection) reindexes.
    let mut grown = sample_spec();
    grown.meta.size += 1;
    let other = inputs(&[grown], &options, None);
    assert_eq!(
        unchanged(store.as_ref(), "sample", &other, "c")
            .await
            .unwrap(),
        None
    );
    let zstd = ServeOptions {
        codec: cloudify_core::codecs::ServedCodec::parse("zstd").unwrap(),
        ..ServeOptions::default()
    };
    let other = inputs(&[sample_spec()], &zstd, None);
    assert_eq!(
        unchanged(store.as_ref(), "sample", &other, "c")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        unchanged(store.as_ref(), "sample", &same, "d")
            .await
            .unwrap(),
        None
    );
    assert_eq!(indexed.manifest.inputs.as_deref(), Some(same.as_str()));
}

/// A store whose writes fail from the `k`-th on: a run killed at that point.
struct FailAfter {
    inner: Arc<CountingStore<MemoryStore>>,
    left: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl ReadStore for FailAfter {
    async fn get_with(&self, key: &str, options: &GetOptions) -> cloudify_core::Result<Fetched> {
        self.inner.get_with(key, options).await
    }

    async fn head(&self, key: &str) -> cloudify_core::Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> cloudify_core::Result<Vec<String>> {
        self.inner.list(prefix).await
    }
}

#[async_trait::async_trait]
impl WriteStore for FailAfter {
    async fn put(&self, key: &str, bytes: Bytes, pre: Precondition) -> cloudify_core::Result<bool> {
        use std::sync::atomic::Ordering;
        let left = self.left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(cloudify_core::Error::storage(
                key,
                "killed before writing it",
            ));
        }
        self.left.store(left - 1, Ordering::SeqCst);
        self.inner.put(key, bytes, pre).await
    }

    async fn delete(&self, key: &str) -> cloudify_core::Result<bool> {
        self.inner.delete(key).await
    }
}

/// Every `/zarr` key of a dataset (metadata and every served chunk) with its answer.
async fn answers(app: &App, indexed: &Indexed) -> Vec<(String, (u16, Bytes))> {
    let mut paths = vec!["/datasets/sample/zarr/.zmetadata".to_owned()];
    for (name, a) in &indexed.manifest.arrays {
        let grid = a.served_grid();
        for linear in 0..grid.iter().product::<u64>() {
            let idx = cloudify_core::manifest::grid_index(&grid, linear);
            let key: Vec<String> = idx.iter().map(u64::to_string).collect();
            let key = if key.is_empty() {
                "0".to_owned()
            } else {
                key.join(".")
            };
            paths.push(format!("/datasets/sample/zarr/{name}/{key}"));
        }
    }
    let mut out = Vec::new();
    for p in paths {
        let answer = get(app, &p).await;
        out.push((p, answer));
    }
    out
}

#[tokio::test]
async fn a_run_killed_after_any_write_leaves_the_previous_version_serving() {
    // Version 2 serves other bytes (zlib where version 1 is uncompressed).
    let options = ServeOptions {
        codec: cloudify_core::codecs::ServedCodec::parse("zlib:6").unwrap(),
        ..ServeOptions::default()
    };
    let v2 = read_dataset("sample", &[sample_spec()], &options, None, &Kept::default()).unwrap();
    let (probe, _) = bucket().await;
    probe.take_writes();
    publish(probe.as_ref(), &v2, "c").await.unwrap();
    let writes = probe.take_writes().len();
    assert!(writes >= 3, "{writes} writes");
    for k in 0..writes {
        let (store, v1) = bucket().await;
        let before = answers(&App::new(native(), store.clone()), &v1).await;
        assert!(before.iter().all(|(_, (status, _))| *status == 200));
        let failing = FailAfter {
            inner: store.clone(),
            left: k.into(),
        };
        assert!(publish(&failing, &v2, "c").await.is_err(), "k = {k}");
        // A fresh function (no cached manifest) answers exactly as before.
        let after = answers(&App::new(native(), store.clone()), &v1).await;
        assert_eq!(before, after, "killed after {k} writes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_indexers_of_other_datasets_keep_each_others_work() {
    let store = Arc::new(MemoryStore::new());
    let ids: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, indexed) = (store.clone(), index_sample(id));
            tokio::spawn(async move { publish(store.as_ref(), &indexed, "c").await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let registry = cloudify_core::Registry::load(store.as_ref()).await.unwrap();
    assert_eq!(registry.datasets.keys().cloned().collect::<Vec<_>>(), ids);
}
