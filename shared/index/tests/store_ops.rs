//! Every route's exact store operations (GET, ranged GET, HEAD, LIST), cold and warm, counted
//! by a store wrapper that sees them all, and `Server-Timing` reporting the same numbers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use cloudify_core::store::{CountingStore, OpKind};
use cloudify_core::{App, Config, MemoryStore, Platform};

/// GET, ranged GET, HEAD, LIST.
type Counts = [usize; 4];

/// The sample indexed into a bucket that holds it, with the static catalog; the version.
async fn bucket() -> (Arc<CountingStore<MemoryStore>>, String) {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let version = common::index_sample(store.as_ref()).await;
    store.take_ops();
    (store, version)
}

fn counts(store: &CountingStore<MemoryStore>) -> Counts {
    let mut c = [0; 4];
    for op in store.take_ops() {
        c[match op.kind {
            OpKind::Get => 0,
            OpKind::RangedGet => 1,
            OpKind::Head => 2,
            OpKind::List => 3,
        }] += 1;
    }
    c
}

/// The counts `Server-Timing` reports: `N store reads (a GET, b ranged GET, c HEAD, d LIST)`.
fn reported(timing: &str) -> Counts {
    let inner = timing
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no counts in {timing}"));
    let n: Vec<usize> = inner
        .split(',')
        .map(|p| p.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    [n[0], n[1], n[2], n[3]]
}

async fn ops(app: &App, store: &CountingStore<MemoryStore>, path: &str) -> (u16, Counts) {
    let resp = app
        .handle(&http::Request::get(path).body(()).unwrap())
        .await;
    let seen = counts(store);
    let timing = resp.headers()["server-timing"].to_str().unwrap();
    assert_eq!(reported(timing), seen, "{path}: {timing}");
    let total: usize = seen.iter().sum();
    assert!(timing.contains(&format!("{total} store reads")), "{timing}");
    (resp.status().as_u16(), seen)
}

#[tokio::test]
async fn every_route_makes_exactly_its_store_operations_cold_and_warm() {
    let (store, version) = bucket().await;
    let v = version.as_str();
    // Cold (a new instance: nothing cached), then warm (the same request again).
    let routes: Vec<(String, Counts, Counts)> = vec![
        ("/".into(), [0, 0, 0, 0], [0, 0, 0, 0]),
        ("/openapi.json".into(), [0, 0, 0, 0], [0, 0, 0, 0]),
        ("/datasets".into(), [1, 0, 0, 0], [0, 0, 0, 0]),
        ("/datasets/sample/info".into(), [2, 0, 0, 0], [0, 0, 0, 0]),
        ("/datasets/sample/".into(), [2, 0, 0, 0], [0, 0, 0, 0]),
        ("/datasets/sample/keys".into(), [2, 0, 0, 0], [0, 0, 0, 0]),
        ("/datasets/sample/dict".into(), [2, 0, 0, 0], [0, 0, 0, 0]),
        ("/datasets/sample/stac".into(), [2, 0, 0, 0], [0, 0, 0, 0]),
        // A pinned version never reads index.json; the file itself is read each time.
        (
            format!("/datasets/sample/{v}/refs.json"),
            [2, 0, 0, 0],
            [1, 0, 0, 0],
        ),
        (
            format!("/datasets/sample@{v}/info"),
            [1, 0, 0, 0],
            [0, 0, 0, 0],
        ),
        ("/stac/catalog.json".into(), [1, 0, 0, 0], [1, 0, 0, 0]),
        // index.json, the manifest, the catalog configuration.
        (
            "/stac-collection-all.json".into(),
            [3, 0, 0, 0],
            [1, 0, 0, 0],
        ),
        ("/intake.yaml".into(), [2, 0, 0, 0], [0, 0, 0, 0]),
        (
            "/datasets/sample/kerchunk/.zmetadata".into(),
            [2, 0, 0, 0],
            [0, 0, 0, 0],
        ),
        (
            "/datasets/sample/zarr/.zmetadata".into(),
            [2, 0, 0, 0],
            [0, 0, 0, 0],
        ),
        (
            "/datasets/sample/zarr3/zarr.json".into(),
            [2, 0, 0, 0],
            [0, 0, 0, 0],
        ),
        // A chunk: one table record and one source range; warm, the record is cached.
        (
            "/datasets/sample/kerchunk/tas/1.0.0".into(),
            [2, 2, 0, 0],
            [0, 1, 0, 0],
        ),
        (
            "/datasets/sample/zarr/tas/1.0.0".into(),
            [2, 2, 0, 0],
            [0, 1, 0, 0],
        ),
        (
            "/datasets/sample/zarr3/tas/c/1/0/0".into(),
            [2, 2, 0, 0],
            [0, 1, 0, 0],
        ),
        // Diagnostics read the coordinates they need (a table record and a range each) and
        // the variable's chunks (records in runs, one range per chunk). pr is 2 x 3 x 3
        // chunks of (12, 15, 30): the last 12 steps are 9 chunks in one run of records, and
        // the result's coordinates are lat and lon.
        (
            "/datasets/sample/reduce/pr/time/mean/time/12_24".into(),
            [2, 2 + 2 + 1 + 9, 0, 0],
            [0, 2 + 9, 0, 0],
        ),
        // tas is 4 chunks of (6, 45, 90); seasons need the time values, the result lat, lon.
        (
            "/datasets/sample/groupby/tas/time.season/mean".into(),
            [2, 6 + 1 + 4, 0, 0],
            [0, 3 + 4, 0, 0],
        ),
        // A map of the last step: lat, lon and time (for the title), and tas's last chunk.
        (
            "/datasets/sample/plot/tas/map/viridis".into(),
            [2, 6 + 2, 0, 0],
            [0, 3 + 1, 0, 0],
        ),
        // Errors read what they must to know, and no more.
        ("/datasets/nope/info".into(), [1, 0, 0, 0], [0, 0, 0, 0]),
        (
            "/datasets/sample/zarr/nope/.zarray".into(),
            [2, 0, 0, 0],
            [0, 0, 0, 0],
        ),
        (
            "/datasets/sample/zarr/tas/9.0.0".into(),
            [2, 0, 0, 0],
            [0, 0, 0, 0],
        ),
        ("/datasets/../x".into(), [0, 0, 0, 0], [0, 0, 0, 0]),
        (
            "/__self-test/conformance".into(),
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ),
    ];
    for (path, cold, warm) in routes {
        let app = App::new(Platform::Native.preset(), store.clone());
        let (status, seen) = ops(&app, &store, &path).await;
        assert_eq!(seen, cold, "{path} cold (status {status})");
        let (again, seen) = ops(&app, &store, &path).await;
        assert_eq!(again, status, "{path}");
        assert_eq!(seen, warm, "{path} warm");
    }
}

#[tokio::test]
async fn index_json_is_revalidated_once_its_lifetime_is_over() {
    let (store, _) = bucket().await;
    let config = Config {
        index_ttl_ms: 0,
        ..Platform::Native.preset()
    };
    let app = App::new(config, store.clone());
    let path = "/datasets/sample/zarr/.zmetadata";
    assert_eq!(ops(&app, &store, path).await, (200, [2, 0, 0, 0]));
    // One conditional GET, answered 'not modified': no body read.
    let resp = app
        .handle(&http::Request::get(path).body(()).unwrap())
        .await;
    assert_eq!(counts(&store), [1, 0, 0, 0]);
    let timing = resp.headers()["server-timing"].to_str().unwrap();
    assert!(timing.contains(", 0 bytes"), "{timing}");
    // A reindex (a new index.json) is seen at once.
    cloudify_core::Registry::publish(store.as_ref(), "other", "v0", "c", false)
        .await
        .unwrap();
    store.take_ops();
    let (_, seen) = ops(&app, &store, "/datasets").await;
    assert_eq!(seen, [1, 0, 0, 0]);
    let ids: Vec<String> = serde_json::from_slice(
        app.handle(&http::Request::get("/datasets").body(()).unwrap())
            .await
            .body(),
    )
    .unwrap();
    assert_eq!(ids, ["other", "sample"]);
}

#[tokio::test]
async fn an_answer_over_the_largest_response_is_a_413_that_says_why() {
    let (store, _) = bucket().await;
    let config = Config {
        max_response: Some(63),
        ..Platform::Native.preset()
    };
    let app = App::new(config, store);
    let big = app
        .handle(&http::Request::get("/openapi.json").body(()).unwrap())
        .await;
    assert_eq!(big.status(), 413);
    let v: serde_json::Value = serde_json::from_slice(big.body()).unwrap();
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("at most 63"), "{detail}");
    let small = app
        .handle(&http::Request::get("/datasets").body(()).unwrap())
        .await;
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn if_none_match_star_matches_only_what_exists() {
    let (store, _) = bucket().await;
    let app = App::new(Platform::Native.preset(), store);
    let get = |path: &str| {
        http::Request::get(path)
            .header("if-none-match", "*")
            .body(())
            .unwrap()
    };
    let there = app.handle(&get("/datasets/sample/zarr/tas/.zarray")).await;
    assert_eq!(there.status(), 304);
    assert!(there.headers().contains_key("etag"));
    let absent = app.handle(&get("/datasets/sample/zarr/nope/.zarray")).await;
    assert_eq!(absent.status(), 404);
    let bad = app.handle(&get("/datasets/sample/zarr/tas/0.x.0")).await;
    assert_eq!(bad.status(), 400);
}
