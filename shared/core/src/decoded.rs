//! Decoded source chunks a warm function keeps, so a served grid finer than the source's
//! decodes each source chunk about once rather than once per served chunk overlapping it.
//!
//! Bounded in bytes, least recently used out first, and shared by concurrent requests: those
//! asking for a chunk being decoded wait for that one decode (async-lock's `OnceCell`, which
//! hands the work to a waiter when the request doing it is dropped).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_lock::OnceCell;
use bytes::Bytes;

use crate::error::Result;

/// A stored chunk: its source's URL (or key), byte offset and length.
pub type Key = (Arc<str>, u64, u64);

/// One decode under way, or done and not yet in the cache.
type Flight = Arc<OnceCell<Bytes>>;

/// The cache. A chunk larger than the bound is decoded and used but not kept.
pub struct DecodedCache {
    state: Mutex<State>,
    max_bytes: u64,
    decodes: AtomicU64,
}

struct State {
    lru: lru::LruCache<Key, Bytes>,
    bytes: u64,
    flights: HashMap<Key, Flight>,
}

impl DecodedCache {
    /// A cache of at most `max_bytes` decoded bytes (0: none kept; concurrent requests still
    /// share a decode).
    pub fn new(max_bytes: u64) -> Self {
        Self {
            state: Mutex::new(State {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
                flights: HashMap::new(),
            }),
            max_bytes,
            decodes: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the cache is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Decodes run since the cache was made: what the cache saves is counted here.
    pub fn decodes(&self) -> u64 {
        self.decodes.load(Ordering::Relaxed)
    }

    /// The decoded chunk `key`: kept, being decoded by another request (then waited for), or
    /// decoded now by `decode`.
    ///
    /// # Errors
    /// `decode`'s; a failed decode is not shared: a request waiting for it decodes itself.
    pub async fn get_or_decode<F, Fut>(&self, key: Key, decode: F) -> Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>>>,
    {
        let flight = {
            let mut s = self.lock();
            if let Some(v) = s.lru.get(&key) {
                return Ok(v.clone());
            }
            flight(&mut s, &key)
        };
        let decoded = flight
            .get_or_try_init(|| async {
                self.decodes.fetch_add(1, Ordering::Relaxed);
                decode().await.map(Bytes::from)
            })
            .await
            .cloned();
        let mut s = self.lock();
        // The first request to finish moves the chunk from its flight into the cache.
        if s.flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            s.flights.remove(&key);
            if let Ok(v) = &decoded {
                s.keep(key, v.clone(), self.max_bytes);
            }
        }
        decoded
    }
}

/// The decode the requests for `key` share. On a Worker each request decodes alone (the last
/// one's result is kept): a request waiting for another's decode would be woken inside the
/// other's I/O context, where its own reads fail once that request ends.
fn flight(s: &mut State, key: &Key) -> Flight {
    if cfg!(target_arch = "wasm32") {
        let own = Flight::default();
        s.flights.insert(key.clone(), own.clone());
        return own;
    }
    s.flights.entry(key.clone()).or_default().clone()
}

impl State {
    fn keep(&mut self, key: Key, value: Bytes, max_bytes: u64) {
        let len = value.len() as u64;
        if len > max_bytes {
            return;
        }
        while self.bytes + len > max_bytes {
            match self.lru.pop_lru() {
                Some((_, old)) => self.bytes -= old.len() as u64,
                None => break,
            }
        }
        self.bytes += len;
        if let Some(old) = self.lru.put(key, value) {
            self.bytes -= old.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::Error;
    use futures_util::future::join_all;

    fn key(i: u64) -> Key {
        ("s3://b/f.nc".into(), i * 100, 100)
    }

    /// Lets the other futures of a `join_all` run once.
    async fn yield_now() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await;
    }

    #[test]
    fn one_decode_serves_concurrent_requests() {
        let cache = DecodedCache::new(1 << 20);
        let answers = futures_executor::block_on(join_all((0..16).map(|_| {
            cache.get_or_decode(key(0), || async {
                for _ in 0..4 {
                    yield_now().await;
                }
                Ok(vec![7u8; 100])
            })
        })));
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().unwrap()[..] == [7u8; 100])
        );
        assert_eq!(cache.decodes(), 1);
        // Kept: a later request decodes nothing.
        let again = futures_executor::block_on(
            cache.get_or_decode(key(0), || async { Ok(vec![0u8; 100]) }),
        );
        assert_eq!(again.unwrap()[0], 7);
        assert_eq!(cache.decodes(), 1);
    }

    #[test]
    fn a_failed_decode_is_retried_not_shared() {
        let cache = DecodedCache::new(1 << 20);
        let failed = futures_executor::block_on(cache.get_or_decode(key(1), || async {
            Err::<Vec<u8>, _>(Error::corrupt_data("bad stream"))
        }));
        assert!(matches!(failed, Err(Error::Corrupt(_))));
        let ok =
            futures_executor::block_on(cache.get_or_decode(key(1), || async { Ok(vec![1u8; 10]) }));
        assert_eq!(ok.unwrap().len(), 10);
        assert_eq!(cache.decodes(), 2);
        assert!(cache.lock().flights.is_empty());
    }

    #[test]
    fn never_holds_more_than_its_bound() {
        let cache = DecodedCache::new(350);
        for i in 0..20 {
            let held = futures_executor::block_on(
                cache.get_or_decode(key(i), || async { Ok(vec![0u8; 100]) }),
            );
            assert_eq!(held.unwrap().len(), 100);
            assert!(cache.bytes() <= 350, "{} after {i}", cache.bytes());
        }
        assert_eq!(cache.bytes(), 300);
        // The most recent are kept; a chunk over the bound is used, not kept.
        let s = cache.lock();
        assert!(s.lru.contains(&key(19)) && !s.lru.contains(&key(16)));
        drop(s);
        let big = futures_executor::block_on(
            cache.get_or_decode(key(99), || async { Ok(vec![0u8; 351]) }),
        );
        assert_eq!(big.unwrap().len(), 351);
        assert_eq!(cache.bytes(), 300);
    }
}
