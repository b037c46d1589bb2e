//! Store reads per served chunk, counted through an instrumented store: one read per aligned
//! chunk; adjacent ranges merged into one read, gaps not merged, the merge cap honoured; and
//! the room concurrent requests take in the budget of bytes in flight, counted.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use cloudify_core::codecs::ServedCodec;
use cloudify_core::manifest::encode_table;
use cloudify_core::read::Limits;
use cloudify_core::registry::{Registry, manifest_key, version_dir};
use cloudify_core::store::{CountingStore, Precondition, Read};
use cloudify_core::{
    App, ArrayMeta, ChunkRef, Codec, Config, DataType, Manifest, MemoryStore, Platform, SourceInfo,
    WriteStore,
};
use futures_executor::block_on;
use serde_json::{Map, Value};

const SOURCE: &str = "src.bin";

fn native() -> Config {
    Platform::Native.preset()
}

/// A bucket with a 40-element float32 array stored as four uncompressed 10-element chunks at
/// `offsets` of `src.bin`, served in chunks of `served`.
fn bucket(offsets: [u64; 4], served: u64) -> Arc<CountingStore<MemoryStore>> {
    bucket_with(offsets, served, None)
}

/// [`bucket`], its chunks compressed with zlib at `level` when given.
fn bucket_with(
    offsets: [u64; 4],
    served: u64,
    zlib: Option<u32>,
) -> Arc<CountingStore<MemoryStore>> {
    use std::io::Write;
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let mut source = vec![0u8; 200];
    let mut stored = Vec::new();
    for (chunk, at) in offsets.iter().enumerate() {
        let mut bytes: Vec<u8> = (0..10)
            .flat_map(|k| ((chunk * 10 + k) as f32).to_le_bytes())
            .collect();
        if let Some(level) = zlib {
            let mut e =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(&bytes).unwrap();
            bytes = e.finish().unwrap();
        }
        let p = *at as usize;
        source[p..p + bytes.len()].copy_from_slice(&bytes);
        let c = ChunkRef {
            source: 0,
            filter_mask: 0,
            offset: *at,
            length: bytes.len() as u64,
        };
        stored.push((chunk as u64, c));
    }
    let array = ArrayMeta {
        shape: vec![40],
        dims: vec!["x".into()],
        dtype: DataType::F4,
        chunks: vec![10],
        served_chunks: vec![served],
        fill_value: Value::Null,
        attrs: Map::new(),
        codecs: zlib
            .map(|level| Codec::Zlib { level })
            .into_iter()
            .collect(),
        table: "tables/0.bin".into(),
        records: 4,
        table_records: 4,
        stored_chunks: 4,
        kerchunk_excluded: None,
        unpacked_dtype: None,
        unpack: None,
        irregular: None,
    };
    let mut m = Manifest::new("d", Map::new());
    m.codec = ServedCodec::None;
    m.sources = vec![SourceInfo {
        url: SOURCE.into(),
        size: 200,
        etag: None,
    }];
    m.arrays.insert("x".into(), array);
    block_on(async {
        let put = |k: String, b: Vec<u8>| {
            let store = store.clone();
            async move {
                store
                    .put(&k, Bytes::from(b), Precondition::None)
                    .await
                    .unwrap()
            }
        };
        put(SOURCE.into(), source).await;
        put(
            format!("{}/tables/0.bin", version_dir("d", "v1")),
            encode_table(&stored),
        )
        .await;
        put(manifest_key("d", "v1"), serde_json::to_vec(&m).unwrap()).await;
        Registry::publish(store.as_ref(), "d", "v1", "c", false)
            .await
            .unwrap();
    });
    store.take_reads();
    store
}

/// GET a served chunk; return its values and the source reads it made.
fn served(app: &App, store: &CountingStore<MemoryStore>, key: &str) -> (Vec<f32>, Vec<Read>) {
    let req = http::Request::get(format!("/datasets/d/zarr/x/{key}"))
        .body(())
        .unwrap();
    let resp = block_on(app.handle(&req));
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let values = resp
        .body()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let reads = store
        .take_reads()
        .into_iter()
        .filter(|r| r.key == SOURCE)
        .collect();
    (values, reads)
}

fn ranges(reads: &[Read]) -> Vec<std::ops::Range<u64>> {
    reads.iter().map(|r| r.range.clone().unwrap()).collect()
}

#[test]
fn aligned_chunks_are_one_read_each() {
    let store = bucket([0, 40, 80, 120], 10);
    let app = App::new(native(), store.clone());
    for i in 0..4u64 {
        let (values, reads) = served(&app, &store, &i.to_string());
        assert_eq!(
            values,
            (i * 10..i * 10 + 10).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert_eq!(ranges(&reads), vec![i * 40..i * 40 + 40]);
    }
}

#[test]
fn adjacent_ranges_merge_into_one_read() {
    let store = bucket([0, 40, 80, 120], 30);
    let app = App::new(native(), store.clone());
    let (values, reads) = served(&app, &store, "0");
    assert_eq!(values, (0..30).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(ranges(&reads), vec![0..120]);
    // The edge chunk: elements 30..40 and 20 elements of padding.
    let (values, reads) = served(&app, &store, "1");
    assert_eq!(
        &values[..10],
        &(30..40).map(|v| v as f32).collect::<Vec<_>>()[..]
    );
    assert_eq!(values.len(), 30);
    assert_eq!(ranges(&reads), vec![120..160]);
}

#[test]
fn a_finer_grid_decodes_each_source_chunk_once_for_concurrent_requests() {
    // Served chunks of 5 use half of a 10-element source chunk each; every served chunk is
    // asked for three times at once.
    let store = bucket_with([0, 50, 100, 150], 5, Some(6));
    let app = App::new(native(), store.clone());
    let requests: Vec<_> = (0..8).flat_map(|i| [i, i, i]).collect();
    let answers = block_on(futures_util::future::join_all(requests.iter().map(|i| {
        let req = http::Request::get(format!("/datasets/d/zarr/x/{i}"))
            .body(())
            .unwrap();
        let app = &app;
        async move { app.handle(&req).await }
    })));
    for (i, resp) in requests.iter().zip(&answers) {
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
        let values: Vec<f32> = resp
            .body()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let want: Vec<f32> = (i * 5..i * 5 + 5).map(|v| v as f32).collect();
        assert_eq!(values, want, "chunk {i}");
    }
    assert_eq!(app.decoded_cache().decodes(), 4);
    let reads = store.take_reads();
    assert_eq!(reads.iter().filter(|r| r.key == SOURCE).count(), 4);
    // Kept: asking again reads and decodes nothing.
    let (values, reads) = served(&app, &store, "3");
    assert_eq!(values, [15.0, 16.0, 17.0, 18.0, 19.0]);
    assert!(reads.is_empty());
    assert_eq!(app.decoded_cache().decodes(), 4);
}

#[test]
fn gaps_are_not_merged() {
    let store = bucket([0, 50, 100, 150], 30);
    let app = App::new(native(), store.clone());
    let (values, reads) = served(&app, &store, "0");
    assert_eq!(values, (0..30).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(ranges(&reads), vec![0..40, 50..90, 100..140]);
}

#[test]
fn the_merge_cap_is_honoured() {
    let store = bucket([0, 40, 80, 120], 30);
    let config = Config {
        concurrency: 6,
        merge_cap: 80,
        ..native()
    };
    let app = App::new(config, store.clone());
    let (values, reads) = served(&app, &store, "0");
    assert_eq!(values, (0..30).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(ranges(&reads), vec![0..80, 80..120]);
}

#[test]
fn a_served_chunk_reads_only_the_bytes_it_needs_of_uncompressed_chunks() {
    // Served chunks of 15 straddle source chunks: chunk 1 is elements 15..30.
    let store = bucket([0, 40, 80, 120], 15);
    let app = App::new(native(), store.clone());
    let (values, reads) = served(&app, &store, "1");
    assert_eq!(values, (15..30).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(ranges(&reads), vec![60..120]);
}

#[test]
fn over_the_budget_is_413_before_any_source_read() {
    let store = bucket([0, 40, 80, 120], 30);
    let config = Config {
        read_budget: 100,
        ..native()
    };
    let app = App::new(config, store.clone());
    let req = http::Request::get("/datasets/d/zarr/x/0").body(()).unwrap();
    let resp = block_on(app.handle(&req));
    assert_eq!(resp.status(), 413);
    assert!(store.take_reads().iter().all(|r| r.key != SOURCE));
}

#[test]
fn over_the_read_limit_is_413_before_any_source_read() {
    // Served chunk 1 of 15 elements spans source chunks 1 and 2 at distant offsets: one table
    // read plus two source reads.
    let store = bucket([0, 40, 120, 160], 15);
    let limited = |reads| {
        let limits = Limits {
            reads,
            work: u64::MAX,
        };
        App::new(Config { limits, ..native() }, store.clone())
    };
    let req = http::Request::get("/datasets/d/zarr/x/1").body(()).unwrap();
    let resp = block_on(limited(2).handle(&req));
    assert_eq!(resp.status(), 413);
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert!(body["detail"].as_str().unwrap().contains("limit of 2"));
    assert!(store.take_reads().iter().all(|r| r.key != SOURCE));
    let resp = block_on(limited(3).handle(&req));
    assert_eq!(resp.status(), 200);
}

#[test]
fn over_the_cpu_budget_is_413_before_any_source_read() {
    // A served chunk of 30 float32s is 120 bytes to re-encode; the source is uncompressed.
    let store = bucket([0, 40, 80, 120], 30);
    let limited = |work| {
        let limits = Limits {
            reads: u64::MAX,
            work,
        };
        App::new(Config { limits, ..native() }, store.clone())
    };
    let req = http::Request::get("/datasets/d/zarr/x/0").body(()).unwrap();
    let resp = block_on(limited(119).handle(&req));
    assert_eq!(resp.status(), 413);
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("CPU budget of 119 bytes")
    );
    assert!(store.take_reads().iter().all(|r| r.key != SOURCE));
    assert_eq!(block_on(limited(120).handle(&req)).status(), 200);
}

#[test]
fn a_public_url_replaces_the_request_host_in_links() {
    let store = bucket([0, 40, 80, 120], 10);
    let config = Config {
        public_url: Some("https://data.example.org/cloudify".into()),
        ..native()
    };
    let app = App::new(config, store);
    let req = http::Request::get("/intake.yaml")
        .header("host", "internal:8080")
        .body(())
        .unwrap();
    let body = String::from_utf8(block_on(app.handle(&req)).into_body().to_vec()).unwrap();
    assert!(body.contains("https://data.example.org/cloudify/datasets/d/"));
    assert!(!body.contains("internal:8080"));
}

#[test]
fn chunk_cache_keys_name_the_version_and_only_chunks_have_one() {
    let store = bucket([0, 40, 80, 120], 10);
    let app = App::new(native(), store.clone());
    let version = block_on(Registry::load(store.as_ref()))
        .unwrap()
        .version("d")
        .unwrap()
        .to_owned();
    let key = block_on(app.chunk_cache_key("/datasets/d/zarr/x/1")).unwrap();
    assert_eq!(
        key.unwrap(),
        format!(
            "{version}/{}/datasets/d/zarr/x/1",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        block_on(app.chunk_cache_key("/datasets/d/zarr/.zmetadata")).unwrap(),
        None
    );
    assert!(block_on(app.chunk_cache_key("/datasets/nope/zarr/x/1")).is_err());
}

/// Let the other futures of the executor run once before going on.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// A store whose source reads wait: once (`Pause::Once`), so concurrent requests interleave, or
/// until the end (`Pause::Forever`), so a request keeps its room.
struct Paused {
    inner: Arc<CountingStore<MemoryStore>>,
    pause: Pause,
}

#[derive(Clone, Copy)]
enum Pause {
    Once,
    Forever,
}

#[async_trait::async_trait]
impl cloudify_core::ReadStore for Paused {
    async fn get_with(
        &self,
        key: &str,
        options: &cloudify_core::store::GetOptions,
    ) -> cloudify_core::Result<cloudify_core::store::Fetched> {
        if key == SOURCE {
            match self.pause {
                Pause::Once => yield_once().await,
                Pause::Forever => std::future::pending::<()>().await,
            }
        }
        self.inner.get_with(key, options).await
    }

    async fn head(&self, key: &str) -> cloudify_core::Result<Option<cloudify_core::ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> cloudify_core::Result<Vec<String>> {
        self.inner.list(prefix).await
    }
}

/// The native preset with `in_flight` bytes for requests and no caches beside them.
fn with_in_flight(in_flight: u64) -> Config {
    Config {
        memory: Platform::Native.reserve() + in_flight,
        manifest_cache_bytes: 0,
        decoded_cache_bytes: 0,
        ..native()
    }
}

#[test]
fn requests_in_flight_hold_at_most_the_budget_and_wait_in_turn() {
    // A served chunk of 10 float32 reads 40 bytes and holds 40 more: 80 bytes a request, so
    // two fit in 160 bytes at once.
    let store = bucket([0, 40, 80, 120], 10);
    let paused = Arc::new(Paused {
        inner: store,
        pause: Pause::Once,
    });
    let app = App::new(with_in_flight(160), paused);
    let answers = block_on(futures_util::future::join_all((0..16).map(|i| {
        let req = http::Request::get(format!("/datasets/d/zarr/x/{}", i % 4))
            .body(())
            .unwrap();
        let app = &app;
        // The answer's bytes hold the room until dropped: only the values are kept.
        async move {
            let resp = app.handle(&req).await;
            let values: Vec<f32> = (resp.body().chunks(4))
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (i % 4, resp.status(), values)
        }
    })));
    for (i, status, values) in answers {
        assert_eq!(status, 200);
        let want: Vec<f32> = (i * 10..i * 10 + 10).map(|v| v as f32).collect();
        assert_eq!(values, want, "chunk {i}");
    }
    let c = app.admission().counts();
    assert_eq!(app.admission().budget(), 160);
    assert_eq!((c.granted, c.held, c.timed_out), (16, 0, 0));
    assert_eq!(c.peak, 160, "two requests at once, never more");
    assert!(c.waited >= 7, "{c:?}");
}

#[test]
fn a_request_waiting_past_the_queue_time_is_503_with_retry_after() {
    let store = bucket([0, 40, 80, 120], 10);
    let stalled = Arc::new(Paused {
        inner: store.clone(),
        pause: Pause::Forever,
    });
    // The timer ends every wait at once: a request is admitted only if there is room now.
    let sleep: cloudify_core::admit::Sleep =
        Arc::new(|_| Box::pin(futures_util::future::ready(())));
    let app = App::new(with_in_flight(100), stalled).with_sleep(sleep);
    let get = |i: u32| {
        http::Request::get(format!("/datasets/d/zarr/x/{i}"))
            .body(())
            .unwrap()
    };
    let (first, second) = (get(0), get(1));
    let mut holding = Box::pin(app.handle(&first));
    assert!(futures_util::FutureExt::now_or_never(&mut holding).is_none());
    assert_eq!(app.admission().counts().held, 80);
    let busy = block_on(app.handle(&second));
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(busy.body()).unwrap();
    assert_eq!(body["error"], "busy");
    assert!(
        body["detail"].as_str().unwrap().contains("waited"),
        "{body}"
    );
    assert_eq!(app.admission().counts().timed_out, 1);
    // The stalled request gone, its room is free again.
    drop(holding);
    assert_eq!(app.admission().counts().held, 0);
    // One request larger than the whole budget is refused outright.
    let small = App::new(with_in_flight(60), store);
    let refused = block_on(small.handle(&get(2)));
    assert_eq!(refused.status(), 413);
    let body: Value = serde_json::from_slice(refused.body()).unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("MEMORY_BYTES"),
        "{body}"
    );
}

#[test]
fn the_source_chunks_of_a_served_chunk_are_decoded_at_once_through_the_runtimes_offload() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A served chunk of 20 spans two zlib source chunks of 10.
    let store = bucket_with([0, 50, 100, 150], 20, Some(6));
    // The runtime's pool stands in: each job waits a turn before it runs, counting the jobs
    // started and not yet run.
    static WAITING: AtomicUsize = AtomicUsize::new(0);
    static MOST: AtomicUsize = AtomicUsize::new(0);
    static JOBS: AtomicUsize = AtomicUsize::new(0);
    let offload: cloudify_core::read::Offload = Arc::new(|job| {
        Box::pin(async move {
            JOBS.fetch_add(1, Ordering::SeqCst);
            let now = WAITING.fetch_add(1, Ordering::SeqCst) + 1;
            MOST.fetch_max(now, Ordering::SeqCst);
            yield_once().await;
            WAITING.fetch_sub(1, Ordering::SeqCst);
            job()
        })
    });
    let app = App::new(native(), store.clone()).with_offload(offload);
    let (values, _) = served(&app, &store, "1");
    assert_eq!(values, (20..40).map(|v| v as f32).collect::<Vec<_>>());
    // Two decodes, both under way at once, then the encoding.
    assert_eq!(JOBS.load(Ordering::SeqCst), 3);
    assert_eq!(MOST.load(Ordering::SeqCst), 2);
}
