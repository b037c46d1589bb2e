//! Counting store operations: [`Counted`] counts a request's operations for `Server-Timing`
//! and the request log; [`CountingStore`] records every operation with its key, the instrument
//! behind the tests of "one range read per chunk" and "no change, no write".

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Fetched, GetOptions, ObjectMeta, Precondition, ReadStore, WriteStore};
use crate::error::{Error, Result};

/// The kinds of store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A read of a whole object.
    Get,
    /// A read of a byte range.
    RangedGet,
    /// Metadata only.
    Head,
    /// A listing.
    List,
}

/// Operations of each kind, and the bytes read.
#[derive(Debug, Default)]
pub struct OpCounter {
    get: AtomicU64,
    ranged_get: AtomicU64,
    head: AtomicU64,
    list: AtomicU64,
    bytes: AtomicU64,
}

/// A snapshot of an [`OpCounter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Whole-object reads.
    pub get: u64,
    /// Ranged reads.
    pub ranged_get: u64,
    /// HEADs.
    pub head: u64,
    /// Listings.
    pub list: u64,
    /// Bytes of object bodies read.
    pub bytes: u64,
}

impl OpCounts {
    /// Every operation.
    pub fn total(&self) -> u64 {
        self.get + self.ranged_get + self.head + self.list
    }
}

impl OpCounter {
    /// Count one operation of `kind` that read `bytes`.
    pub fn record(&self, kind: OpKind, bytes: u64) {
        let slot = match kind {
            OpKind::Get => &self.get,
            OpKind::RangedGet => &self.ranged_get,
            OpKind::Head => &self.head,
            OpKind::List => &self.list,
        };
        slot.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn counts(&self) -> OpCounts {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OpCounts {
            get: n(&self.get),
            ranged_get: n(&self.ranged_get),
            head: n(&self.head),
            list: n(&self.list),
            bytes: n(&self.bytes),
        }
    }
}

fn kind_of(options: &GetOptions) -> OpKind {
    if options.range.is_some() {
        OpKind::RangedGet
    } else {
        OpKind::Get
    }
}

/// A store seen by one request: every operation is counted into `counter`, and every read's
/// length checked, so a store that answers short (a dropped connection, a truncated object
/// under its old size) is an error here rather than bytes served as if whole.
pub struct Counted<'a> {
    inner: &'a dyn ReadStore,
    counter: &'a OpCounter,
}

impl<'a> Counted<'a> {
    /// Count `inner`'s operations into `counter`.
    pub fn new(inner: &'a dyn ReadStore, counter: &'a OpCounter) -> Self {
        Self { inner, counter }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ReadStore for Counted<'_> {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        let got = self.inner.get_with(key, options).await;
        let bytes = match &got {
            Ok(Fetched::Object(o)) => o.bytes.len() as u64,
            _ => 0,
        };
        self.counter.record(kind_of(options), bytes);
        if let Ok(Fetched::Object(o)) = &got {
            let want = options
                .range
                .as_ref()
                .map_or(o.meta.size, |r| r.end.saturating_sub(r.start));
            if bytes != want {
                return Err(Error::storage(
                    key,
                    format!("answered {bytes} bytes where {want} were asked for"),
                ));
            }
        }
        got
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.counter.record(OpKind::Head, 0);
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.counter.record(OpKind::List, 0);
        self.inner.list(prefix).await
    }
}

/// One operation a [`CountingStore`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// What it was.
    pub kind: OpKind,
    /// The key (or listing prefix).
    pub key: String,
}

/// One read a [`CountingStore`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The object read.
    pub key: String,
    /// The byte range, or `None` for a whole-object read.
    pub range: Option<Range<u64>>,
}

/// A decorator that records every operation passed to the inner store.
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    ops: Mutex<Vec<Op>>,
    reads: Mutex<Vec<Read>>,
    writes: Mutex<Vec<String>>,
}

fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
}

fn push<T>(m: &Mutex<Vec<T>>, t: T) {
    m.lock().unwrap_or_else(|e| e.into_inner()).push(t);
}

impl<S> CountingStore<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            ops: Mutex::new(Vec::new()),
            reads: Mutex::new(Vec::new()),
            writes: Mutex::new(Vec::new()),
        }
    }

    /// The keys of every write and delete attempted so far, oldest first; clears the log.
    pub fn take_writes(&self) -> Vec<String> {
        take(&self.writes)
    }

    /// Every read (whole or ranged) so far, oldest first; clears the log.
    pub fn take_reads(&self) -> Vec<Read> {
        take(&self.reads)
    }

    /// Every read-side operation (GET, ranged GET, HEAD, LIST) so far, oldest first; clears
    /// the log.
    pub fn take_ops(&self) -> Vec<Op> {
        take(&self.ops)
    }

    fn op(&self, kind: OpKind, key: &str) {
        push(
            &self.ops,
            Op {
                kind,
                key: key.to_owned(),
            },
        );
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<S: ReadStore> ReadStore for CountingStore<S> {
    async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Fetched> {
        self.op(kind_of(options), key);
        push(
            &self.reads,
            Read {
                key: key.to_owned(),
                range: options.range.clone(),
            },
        );
        self.inner.get_with(key, options).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.op(OpKind::Head, key);
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.op(OpKind::List, prefix);
        self.inner.list(prefix).await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<S: WriteStore> WriteStore for CountingStore<S> {
    async fn put(&self, key: &str, bytes: Bytes, precondition: Precondition) -> Result<bool> {
        push(&self.writes, key.to_owned());
        self.inner.put(key, bytes, precondition).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        push(&self.writes, key.to_owned());
        self.inner.delete(key).await
    }
}
