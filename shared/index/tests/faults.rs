//! A store that fails, one operation at a time, under every route: whatever the fault (an
//! error, a timeout, a short read, an object truncated or replaced since it was indexed), the
//! answer is the fault-free one or an error with a JSON body; never other bytes with a 200,
//! never a panic. An operation that answers late (so that the ones started after it finish
//! first) changes nothing in the answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cloudify_core::store::{Fetched, GetOptions, Object};
use cloudify_core::{App, Error, MemoryStore, ObjectMeta, Platform, ReadStore, Result};

#[derive(Debug, Clone, Copy)]
enum Fault {
    Fails,
    TimesOut,
    ShortRead,
    Truncated,
    Replaced,
    Late,
}

const FAULTS: [Fault; 6] = [
    Fault::Fails,
    Fault::TimesOut,
    Fault::ShortRead,
    Fault::Truncated,
    Fault::Replaced,
    Fault::Late,
];

/// How late a `Late` operation answers: longer than the others of a request take.
const LATENCY: Duration = Duration::from_millis(5);

/// The bucket, with `fault` on its operation number `at` (counting from 0).
struct Faulty {
    inner: Arc<MemoryStore>,
    fault: Fault,
    at: usize,
    seen: AtomicUsize,
}

impl Faulty {
    /// Whether this operation is the one to fault; a late one has waited when this returns.
    async fn strikes(&self) -> bool {
        let strikes = self.seen.fetch_add(1, Ordering::SeqCst) == self.at;
        if strikes && matches!(self.fault, Fault::Late) {
            tokio::time::sleep(LATENCY).await;
        }
        strikes
    }

    /// The error of an operation that answers no bytes (HEAD, LIST), when it strikes and
    /// its fault is one; the others leave such an answer as it is.
    async fn failed(&self, key: &str) -> Option<Error> {
        match (self.strikes().await, self.fault) {
            (true, Fault::Fails) => Some(Error::storage(key, "injected failure")),
            (true, Fault::TimesOut) => Some(Error::timeout(key, "injected timeout")),
            _ => None,
        }
    }
}

#[async_trait]
impl ReadStore for Faulty {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        let strikes = self.strikes().await;
        let got = self.inner.get_with(key, options).await;
        if !strikes {
            return got;
        }
        let Ok(Fetched::Object(o)) = got else {
            return got;
        };
        let cut = |b: &Bytes| b.slice(..b.len().saturating_sub(1));
        match self.fault {
            Fault::Fails => Err(Error::storage(key, "injected failure")),
            Fault::TimesOut => Err(Error::timeout(key, "injected timeout")),
            Fault::Late => Ok(Fetched::Object(o)),
            // Fewer bytes than asked, the object's metadata unchanged.
            Fault::ShortRead => Ok(Fetched::Object(Object {
                bytes: cut(&o.bytes),
                meta: o.meta,
            })),
            // An object read in parts (a source, a chunk table: their sizes were recorded) is
            // a byte shorter than when it was indexed. (A document read whole is whatever the
            // bucket holds now.)
            Fault::Truncated => match &options.range {
                Some(r) if r.end >= o.meta.size => Err(Error::range(key, "past the end")),
                Some(_) => Ok(Fetched::Object(Object {
                    bytes: o.bytes,
                    meta: ObjectMeta {
                        size: o.meta.size - 1,
                        ..o.meta
                    },
                })),
                None => Ok(Fetched::Object(o)),
            },
            // Rewritten since: a read conditional on the old tag is refused; another sees a
            // new tag.
            Fault::Replaced => match options.if_match {
                Some(_) => Err(Error::changed(key, "injected rewrite")),
                None => Ok(Fetched::Object(Object {
                    bytes: o.bytes,
                    meta: ObjectMeta {
                        etag: Some("\"rewritten\"".into()),
                        ..o.meta
                    },
                })),
            },
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let failed = self.failed(key).await;
        let got = self.inner.head(key).await;
        failed.map_or(got, Err)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let failed = self.failed(prefix).await;
        let got = self.inner.list(prefix).await;
        failed.map_or(got, Err)
    }
}

async fn answer(app: &App, path: &str) -> (u16, Bytes) {
    let resp = app
        .handle(&http::Request::get(path).body(()).unwrap())
        .await;
    (resp.status().as_u16(), resp.into_body())
}

#[tokio::test]
async fn every_route_answers_right_or_fails_cleanly_under_every_fault() {
    let inner = Arc::new(MemoryStore::new());
    let version = common::index_sample(inner.as_ref()).await;
    let routes = [
        "/datasets".to_owned(),
        "/datasets/sample/info".into(),
        "/datasets/sample/stac".into(),
        format!("/datasets/sample/{version}/refs.json"),
        "/stac/catalog.json".into(),
        "/stac-collection-all.json".into(),
        "/intake.yaml".into(),
        "/datasets/sample/kerchunk/.zmetadata".into(),
        "/datasets/sample/zarr/.zmetadata".into(),
        "/datasets/sample/zarr3/tas/zarr.json".into(),
        "/datasets/sample/kerchunk/tas/1.0.0".into(),
        "/datasets/sample/zarr/tas/1.0.0".into(),
        "/datasets/sample/zarr3/tas/c/1/0/0".into(),
        "/datasets/sample/zarr/time/0".into(),
        "/datasets/sample/reduce/pr/time/mean/time/12_24".into(),
        "/datasets/sample/plot/tas/map/viridis".into(),
    ];
    let mut trials = 0;
    let mut errors = 0;
    for path in &routes {
        let clean = App::new(Platform::Native.preset(), inner.clone());
        let (status, body) = answer(&clean, path).await;
        assert_eq!(status, 200, "{path}");
        for fault in FAULTS {
            // Each operation of the request in turn, and one past the last (no fault).
            for at in 0..32 {
                let store = Arc::new(Faulty {
                    inner: inner.clone(),
                    fault,
                    at,
                    seen: AtomicUsize::new(0),
                });
                let app = App::new(Platform::Native.preset(), store.clone());
                let (got, bytes) = answer(&app, path).await;
                trials += 1;
                if matches!(fault, Fault::Late) {
                    assert_eq!((got, &bytes), (200, &body), "{path}: late operation {at}");
                } else if got == 200 {
                    assert_eq!(
                        bytes, body,
                        "{path}: {fault:?} at operation {at}: other bytes"
                    );
                } else {
                    errors += 1;
                    assert!(got >= 400, "{path}: {fault:?} at {at}: {got}");
                    let doc: serde_json::Value = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|e| panic!("{path}: {fault:?} at {at}: {e}"));
                    assert!(
                        doc["error"].is_string() && doc["detail"].is_string(),
                        "{doc}"
                    );
                }
                if store.seen.load(Ordering::SeqCst) <= at {
                    break; // the request made fewer operations: no fault struck
                }
            }
        }
    }
    assert!(
        trials > 200 && errors > 100,
        "{trials} trials, {errors} errors"
    );
}
