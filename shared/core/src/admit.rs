//! Admission control: one budget of bytes in flight (read, decoded and encoded) per process or
//! isolate, shared by its concurrent requests. A request asks for what it will hold before it
//! reads; when the budget is taken it waits, first come first served, and its grant is given
//! back when its answer's bytes are dropped (sent).
//!
//! Written here rather than taken from a crate: async-lock's semaphore grants one permit at a
//! time, and the weighted first-come-first-served one in wide use is tokio's, which the core
//! (built for wasm32) does not depend on.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// The runtime's timer, in milliseconds (tokio natively, the Workers runtime's on a Worker):
/// how a waiting request gives up after the queue time. The core has no timer of its own.
#[cfg(not(target_arch = "wasm32"))]
pub type Sleep = Arc<dyn Fn(u64) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;
/// The runtime's timer, in milliseconds (a Worker's futures are not `Send`).
#[cfg(target_arch = "wasm32")]
pub type Sleep =
    Arc<dyn Fn(u64) -> futures_util::future::LocalBoxFuture<'static, ()> + Send + Sync>;

/// The budget and the requests waiting for room in it.
#[derive(Debug)]
pub struct Admission {
    budget: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: u64,
    next_ticket: u64,
    queue: VecDeque<Waiter>,
    counts: Counts,
}

#[derive(Debug)]
struct Waiter {
    ticket: u64,
    waker: Waker,
}

/// What admission has done since the function started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Bytes granted and not yet given back.
    pub held: u64,
    /// The most bytes ever held at once.
    pub peak: u64,
    /// Grants made.
    pub granted: u64,
    /// Requests that had to wait for room.
    pub waited: u64,
    /// Requests that gave up waiting (answered 503).
    pub timed_out: u64,
}

impl Admission {
    /// A budget of `budget` bytes in flight.
    pub fn new(budget: u64) -> Arc<Self> {
        Arc::new(Self {
            budget,
            state: Mutex::default(),
        })
    }

    /// The budget, in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the counts are still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What admission has done so far.
    pub fn counts(&self) -> Counts {
        let s = self.lock();
        Counts {
            held: s.held,
            ..s.counts
        }
    }

    /// Count a request that gave up waiting.
    pub(crate) fn timed_out(&self) {
        self.lock().counts.timed_out += 1;
    }

    /// Wait for `bytes` of the budget (at most the whole budget: a larger request is refused
    /// by its caller), after every request that asked earlier.
    pub fn acquire(self: &Arc<Self>, bytes: u64) -> Acquire {
        Acquire {
            admission: self.clone(),
            bytes: bytes.min(self.budget),
            ticket: None,
        }
    }

    fn release(&self, bytes: u64) {
        let mut s = self.lock();
        s.held = s.held.saturating_sub(bytes);
        wake_first(&s);
    }
}

/// The first waiter is the one that may fit now.
fn wake_first(s: &State) {
    if let Some(w) = s.queue.front() {
        w.waker.wake_by_ref();
    }
}

/// A request waiting for room: resolves to its [`Grant`]. Dropped while waiting, it leaves the
/// queue.
#[derive(Debug)]
pub struct Acquire {
    admission: Arc<Admission>,
    bytes: u64,
    ticket: Option<u64>,
}

impl Future for Acquire {
    type Output = Grant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Grant> {
        let this = &mut *self;
        let admission = this.admission.clone();
        let mut s = admission.lock();
        let first = match this.ticket {
            None => s.queue.is_empty(),
            Some(t) => s.queue.front().is_some_and(|w| w.ticket == t),
        };
        if first && s.held + this.bytes <= admission.budget {
            if this.ticket.take().is_some() {
                s.queue.pop_front();
            }
            s.held += this.bytes;
            s.counts.peak = s.counts.peak.max(s.held);
            s.counts.granted += 1;
            // The next in line may fit beside this one.
            wake_first(&s);
            return Poll::Ready(Grant {
                admission: this.admission.clone(),
                bytes: this.bytes,
            });
        }
        match this.ticket {
            Some(t) => {
                if let Some(w) = s.queue.iter_mut().find(|w| w.ticket == t) {
                    w.waker.clone_from(cx.waker());
                }
            }
            None => {
                let ticket = s.next_ticket;
                s.next_ticket += 1;
                s.counts.waited += 1;
                s.queue.push_back(Waiter {
                    ticket,
                    waker: cx.waker().clone(),
                });
                this.ticket = Some(ticket);
            }
        }
        Poll::Pending
    }
}

impl Acquire {
    /// The grant, or `None` when `ms` milliseconds of `sleep` pass first.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn within(self, sleep: &Sleep, ms: u64) -> Option<Grant> {
        use futures_util::future::{Either, select};
        match select(self, sleep(ms)).await {
            Either::Left((grant, _)) => Some(grant),
            Either::Right(_) => None,
        }
    }

    /// The grant, or `None` when `ms` milliseconds of `sleep` pass first. A Worker's request
    /// may not be woken by another one: it would go on inside the other's I/O context, where
    /// its own reads fail once that request ends. So it keeps its place in the queue and looks
    /// again on its own timer.
    #[cfg(target_arch = "wasm32")]
    pub async fn within(mut self, sleep: &Sleep, ms: u64) -> Option<Grant> {
        const TICK_MS: u64 = 5;
        let mut waited = 0;
        loop {
            let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
            if let Poll::Ready(grant) = Pin::new(&mut self).poll(&mut cx) {
                return Some(grant);
            }
            if waited >= ms {
                return None;
            }
            sleep(TICK_MS).await;
            waited += TICK_MS;
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            let mut s = self.admission.lock();
            s.queue.retain(|w| w.ticket != t);
            wake_first(&s);
        }
    }
}

/// Bytes of the budget a request holds; given back when dropped.
#[derive(Debug)]
pub struct Grant {
    admission: Arc<Admission>,
    bytes: u64,
}

impl Grant {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hold `bytes` in all if the budget has room for the difference now; `false` if not.
    /// An admitted request that finds it needs more does not wait: waiting while it holds room
    /// could wait on itself.
    pub fn grow(&mut self, bytes: u64) -> bool {
        let mut s = self.admission.lock();
        let more = bytes.saturating_sub(self.bytes);
        if s.held + more > self.admission.budget {
            return false;
        }
        s.held += more;
        s.counts.peak = s.counts.peak.max(s.held);
        self.bytes += more;
        true
    }

    /// Give back all but `bytes` (an answer holds less than its request did).
    pub fn shrink(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.admission.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.admission.release(self.bytes);
    }
}

/// An answer's bytes holding their grant: the room is given back when the runtime has sent
/// them and drops the last copy.
struct Held {
    body: bytes::Bytes,
    _grant: Grant,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// `body`, holding `grant` (shrunk to the body's size) until its last copy is dropped.
pub fn hold(body: bytes::Bytes, mut grant: Grant) -> bytes::Bytes {
    grant.shrink(body.len() as u64);
    bytes::Bytes::from_owner(Held {
        body,
        _grant: grant,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_executor::block_on;
    use futures_util::FutureExt;

    #[test]
    fn waiters_are_served_in_order_and_never_past_the_budget() {
        let a = Admission::new(100);
        let first = block_on(a.acquire(60));
        // 50 does not fit; 10 would, but waits behind it (first come, first served).
        let mut big = a.acquire(50);
        let mut small = a.acquire(10);
        assert!((&mut big).now_or_never().is_none());
        assert!((&mut small).now_or_never().is_none());
        assert_eq!(a.counts().waited, 2);
        drop(first);
        let big = (&mut big).now_or_never().unwrap();
        let small = (&mut small).now_or_never().unwrap();
        assert_eq!(a.counts().held, 60);
        drop((big, small));
        let c = a.counts();
        assert_eq!((c.held, c.peak, c.granted), (0, 60, 3));
    }

    #[test]
    fn a_dropped_waiter_leaves_the_queue() {
        let a = Admission::new(10);
        let held = block_on(a.acquire(10));
        let mut gone = a.acquire(5);
        assert!((&mut gone).now_or_never().is_none());
        let mut next = a.acquire(5);
        assert!((&mut next).now_or_never().is_none());
        drop(gone);
        drop(held);
        assert!(next.now_or_never().is_some());
    }

    #[test]
    fn an_answer_holds_its_bytes_until_dropped() {
        let a = Admission::new(100);
        let grant = block_on(a.acquire(80));
        let body = hold(bytes::Bytes::from(vec![7u8; 30]), grant);
        assert_eq!(a.counts().held, 30);
        let copy = body.clone();
        drop(body);
        assert_eq!((a.counts().held, copy.len()), (30, 30));
        drop(copy);
        assert_eq!(a.counts().held, 0);
    }

    #[test]
    fn an_admitted_request_grows_only_into_room_there_is() {
        let a = Admission::new(100);
        let mut grant = block_on(a.acquire(40));
        let other = block_on(a.acquire(30));
        assert!(grant.grow(70));
        assert!(!grant.grow(71));
        assert_eq!((grant.bytes(), a.counts().held), (70, 100));
        drop(other);
        assert!(grant.grow(90));
        assert_eq!(a.counts().peak, 100);
    }
}
