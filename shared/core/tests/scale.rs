//! A dataset of 1 000 000 chunks: a cold function resolves any chunk key with one ranged read
//! of one 24-byte table record (and one read of the source), never the whole table; a warm one
//! reads no manifest again, nor a record it has read, and holds a bounded number of records.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use cloudify_core::codecs::ServedCodec;
use cloudify_core::manifest::{RECORD_LEN, TABLE_HEADER_LEN, encode_table};
use cloudify_core::registry::{Registry, manifest_key, version_dir};
use cloudify_core::store::{CountingStore, Precondition};
use cloudify_core::{
    App, ArrayMeta, ChunkRef, Config, DataType, Manifest, MemoryStore, Platform, SourceInfo,
    WriteStore,
};
use futures_executor::block_on;
use serde_json::{Map, Value};

const CHUNKS: u64 = 1_000_000;
const SOURCE: &str = "src.bin";

/// A 1000 x 1000 grid of one-value float32 chunks; chunk `i` holds the value `i` at byte 4i.
fn bucket() -> Arc<CountingStore<MemoryStore>> {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let source: Vec<u8> = (0..CHUNKS).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let stored: Vec<(u64, ChunkRef)> = (0..CHUNKS)
        .map(|i| {
            let c = ChunkRef {
                source: 0,
                filter_mask: 0,
                offset: 4 * i,
                length: 4,
            };
            (i, c)
        })
        .collect();
    let mut m = Manifest::new("big", Map::new());
    m.codec = ServedCodec::None;
    m.sources = vec![SourceInfo {
        url: SOURCE.into(),
        size: source.len() as u64,
        etag: None,
    }];
    m.arrays.insert(
        "v".into(),
        ArrayMeta {
            shape: vec![1000, 1000],
            dims: vec!["y".into(), "x".into()],
            dtype: DataType::F4,
            chunks: vec![1, 1],
            served_chunks: vec![1, 1],
            fill_value: Value::Null,
            attrs: Map::new(),
            codecs: vec![],
            table: "tables/0.bin".into(),
            records: CHUNKS,
            table_records: CHUNKS,
            stored_chunks: CHUNKS,
            kerchunk_excluded: None,
            unpacked_dtype: None,
            unpack: None,
            irregular: None,
        },
    );
    block_on(async {
        let table = encode_table(&stored);
        assert_eq!(table.len() as u64, TABLE_HEADER_LEN + CHUNKS * RECORD_LEN);
        for (key, bytes) in [
            (SOURCE.to_owned(), source),
            (format!("{}/tables/0.bin", version_dir("big", "v1")), table),
            (manifest_key("big", "v1"), serde_json::to_vec(&m).unwrap()),
        ] {
            store
                .put(&key, Bytes::from(bytes), Precondition::None)
                .await
                .unwrap();
        }
        Registry::publish(store.as_ref(), "big", "v1", "c", false)
            .await
            .unwrap();
    });
    store.take_reads();
    store
}

#[test]
fn any_of_a_million_chunks_is_one_record_read_and_one_source_read() {
    let store = bucket();
    let table = format!("{}/tables/0.bin", version_dir("big", "v1"));
    // A deterministic spread of keys (an LCG), the corners included.
    let mut x: u64 = 12345;
    let mut picks = vec![0, CHUNKS - 1];
    picks.extend((0..200).map(|_| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (x >> 33) % CHUNKS
    }));
    for (n, linear) in picks.into_iter().enumerate() {
        // A cold function per key; its second request (the other view) finds the manifest.
        // index.json is revalidated on every request here.
        let config = Config {
            index_ttl_ms: 0,
            ..Platform::Native.preset()
        };
        let app = App::new(config, store.clone());
        let (i, j) = (linear / 1000, linear % 1000);
        for view in ["kerchunk", "zarr"] {
            let req = http::Request::get(format!("/datasets/big/{view}/v/{i}.{j}"))
                .body(())
                .unwrap();
            let resp = block_on(app.handle(&req));
            assert_eq!(resp.status(), 200, "{linear}");
            assert_eq!(
                resp.body().as_ref(),
                (linear as f32).to_le_bytes(),
                "{linear}"
            );
            let reads = store.take_reads();
            let record = TABLE_HEADER_LEN + linear * RECORD_LEN;
            let cold = view == "kerchunk";
            let table_reads: Vec<_> = reads.iter().filter(|r| r.key == table).collect();
            // Cold: the record; warm (the second view): it is cached.
            assert_eq!(table_reads.len(), usize::from(cold), "{n}: {reads:?}");
            if cold {
                assert_eq!(table_reads[0].range, Some(record..record + RECORD_LEN));
            }
            let source_reads: Vec<_> = reads.iter().filter(|r| r.key == SOURCE).collect();
            assert_eq!(source_reads.len(), 1);
            assert_eq!(source_reads[0].range, Some(4 * linear..4 * linear + 4));
            // Cold: index.json and the manifest too; warm: index.json only.
            let others = reads.len() - source_reads.len() - table_reads.len();
            assert_eq!(others, if cold { 2 } else { 1 }, "{reads:?}");
        }
    }
}

#[test]
fn a_warm_function_holds_a_bounded_number_of_records_least_recently_used_out() {
    let store = bucket();
    let table = format!("{}/tables/0.bin", version_dir("big", "v1"));
    let config = Config {
        record_cache: 100,
        ..Platform::Native.preset()
    };
    let app = App::new(config, store.clone());
    let get = |linear: u64| {
        let req = http::Request::get(format!(
            "/datasets/big/zarr/v/{}.{}",
            linear / 1000,
            linear % 1000
        ))
        .body(())
        .unwrap();
        let resp = block_on(app.handle(&req));
        assert_eq!(resp.status(), 200);
        store.take_reads().iter().filter(|r| r.key == table).count()
    };
    for linear in 0..300 {
        assert_eq!(get(linear * 3331), 1);
    }
    assert_eq!(app.cached_records(), 100);
    // The last hundred are held; the first was dropped.
    assert_eq!(get(299 * 3331), 0);
    assert_eq!(get(200 * 3331), 0);
    assert_eq!(get(0), 1);
}
