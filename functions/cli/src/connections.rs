//! The client connections of `cloudify serve`: how many are open at once, and how long each
//! may keep the server waiting.
//!
//! Without limits a client held a connection for as long as it liked (connecting and sending
//! nothing, or dripping its request headers a byte at a time). Enough of them used up the
//! process's open files; every later accept then failed at once, the accept loop spun writing
//! a line per failure, and normal requests went unanswered. So:
//!
//! - At most `cap` connections are open ([`Connections::slot`]). A newcomer past the cap
//!   closes the connection that has waited longest for a request; while every connection is
//!   handling one, the newcomer waits for a slot and later ones wait in the kernel's backlog.
//! - A new connection has `header_ms` to send a request's complete headers. After an answer a
//!   connection is kept `idle_ms` for its next request, which then has `header_ms` from its
//!   first byte. An answer has `body_ms` to be written (a client that does not read it).
//!   Handling a request has no limit here: the core's budgets bound it. (Hyper's own
//!   `header_read_timeout` restarts after every answer, so it would close a kept-alive
//!   connection after `header_ms` rather than `idle_ms`.)
//! - What ends a connection is the client's doing (a timeout, a reset), so it is logged at
//!   debug level only: a line each would let clients fill the log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use cloudify_core::Timeouts;
use cloudify_core::log::TARGET;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How often a newcomer waiting for a slot looks again for a connection to close: one that
/// was handling a request may have turned idle without ending.
const RECHECK: Duration = Duration::from_millis(100);

/// What a connection is doing, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected; the first request's headers are not complete yet.
    New,
    /// An answer written, nothing of the next request read yet.
    Idle,
    /// The next request's first bytes read, its headers not complete yet.
    Reading,
    /// A request being handled.
    Handling,
    /// An answer being written; `taken` once hyper holds all of its body.
    Answering { taken: bool },
}

impl Phase {
    /// Waiting for a request: what may be closed to make room.
    fn waiting(self) -> bool {
        matches!(self, Phase::New | Phase::Idle | Phase::Reading)
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When the phase's timeout began.
    since: Instant,
    /// When the connection last began waiting for a request: connected, or answered.
    waiting_since: Instant,
    /// Closing it to make room was asked.
    evict: bool,
    /// Wakes the connection's task, for `evict`.
    waker: Option<Waker>,
}

/// One connection's state, shared by its IO, its service, its task and the registry.
#[derive(Debug)]
struct Activity(Mutex<State>);

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self(Mutex::new(State {
            phase: Phase::New,
            since: now,
            waiting_since: now,
            evict: false,
            waker: None,
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self, phase: Phase) {
        let mut s = self.state();
        s.phase = phase;
        s.since = Instant::now();
    }

    /// Hyper dropped an answer's body: it holds all of it.
    fn taken(&self) {
        if let Phase::Answering { taken } = &mut self.state().phase {
            *taken = true;
        }
    }

    /// Hyper flushed what it buffered: after an answer's body was taken, the answer is written
    /// and the connection waits for the next request.
    fn flushed(&self) {
        let mut s = self.state();
        if s.phase == (Phase::Answering { taken: true }) {
            let now = Instant::now();
            (s.phase, s.since, s.waiting_since) = (Phase::Idle, now, now);
        }
    }

    /// Bytes arrived: on an idle connection, the next request began.
    fn read(&self) {
        let mut s = self.state();
        if s.phase == Phase::Idle {
            (s.phase, s.since) = (Phase::Reading, Instant::now());
        }
    }

    /// When the connection times out in its phase (none while a request is handled, or past
    /// what the clock can count).
    fn deadline(&self, t: &Timeouts) -> Option<(Phase, Instant)> {
        let s = self.state();
        let ms = match s.phase {
            Phase::New | Phase::Reading => t.header_ms,
            Phase::Idle => t.idle_ms,
            Phase::Answering { .. } => t.body_ms,
            Phase::Handling => return None,
        };
        Some((s.phase, s.since.checked_add(Duration::from_millis(ms))?))
    }

    /// Since when it has waited for a request, if it does and was not asked to close.
    fn idle_since(&self) -> Option<Instant> {
        let s = self.state();
        (s.phase.waiting() && !s.evict).then_some(s.waiting_since)
    }

    fn evict(&self) {
        let mut s = self.state();
        s.evict = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// Whether it was asked to close and still waits for a request; `waker` is woken by the
    /// next ask. A request that began since is not cut short: the ask is forgotten.
    fn evicted(&self, waker: &Waker) -> bool {
        let mut s = self.state();
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.waker = Some(waker.clone());
        }
        if s.evict && !s.phase.waiting() {
            s.evict = false;
        }
        s.evict
    }
}

/// The open client connections of one server, at most `cap` of them.
#[derive(Debug)]
pub struct Connections {
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    timeouts: Timeouts,
}

impl Connections {
    /// Room for `cap` connections (at least one), each held to `timeouts`.
    #[must_use]
    pub fn new(cap: usize, timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(cap.clamp(1, Semaphore::MAX_PERMITS))),
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            timeouts,
        })
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a connection just accepted. At the cap, the connection that has waited
    /// longest for a request is closed to make room; while every connection is handling one,
    /// this waits for one to end.
    pub async fn slot(self: &Arc<Self>) -> Slot {
        let permit = loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                break permit;
            }
            self.close_idlest();
            // The closed connection gives its slot back at once; if none was waiting,
            // whichever connection ends first does.
            let wait = tokio::time::timeout(RECHECK, self.slots.clone().acquire_owned());
            if let Ok(Ok(permit)) = wait.await {
                break permit;
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        self.open().insert(id, activity.clone());
        Slot {
            id,
            activity,
            connections: self.clone(),
            _permit: permit,
        }
    }

    /// Ask the connection that has waited longest for a request to close.
    fn close_idlest(&self) {
        let open = self.open();
        let idlest = open
            .values()
            .filter_map(|a| Some((a.idle_since()?, a)))
            .min_by_key(|(since, _)| *since);
        if let Some((_, activity)) = idlest {
            activity.evict();
        }
    }
}

/// A connection's place among the open ones, given back when it is dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    activity: Arc<Activity>,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open().remove(&self.id);
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// Hyper ended it: the client closed it, asked to, or sent something wrong.
    Closed(Result<(), hyper::Error>),
    /// It stayed too long in a phase.
    TimedOut(Phase),
    /// It was closed to make room for a newcomer.
    Evicted,
}

impl Slot {
    /// Serve HTTP/1.1 on `io`, answering each request with `handle`, until the client leaves,
    /// a timeout ends the connection or a newcomer needs its room.
    pub async fn serve<I, H, F>(self, io: I, handle: H)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + 'static,
        F: Future<Output = Response<Bytes>> + Send + 'static,
    {
        let activity = self.activity.clone();
        let service = service_fn(move |req| {
            activity.enter(Phase::Handling);
            // Boxed: hyper keeps room for this future in every connection, idle ones too, and
            // unboxed it would be there twice (once to move into the block, once to await).
            let answer = Box::pin(handle(req));
            let activity = activity.clone();
            async move {
                let response = answer.await;
                activity.enter(Phase::Answering { taken: false });
                let body = |body| Tracked {
                    body: Full::new(body),
                    activity,
                };
                Ok::<_, Infallible>(response.map(body))
            }
        });
        let io = TokioIo::new(Watched {
            io,
            activity: self.activity.clone(),
        });
        // Pinned here and lent to `drive`, so the task holds it once.
        let serving = pin!(http1::Builder::new().serve_connection(io, service));
        match drive(&self.activity, self.connections.timeouts, serving).await {
            End::Closed(Ok(())) => {}
            End::Closed(Err(e)) => tracing::debug!(target: TARGET, error = %e, "connection failed"),
            End::TimedOut(phase) => tracing::debug!(target: TARGET, ?phase, "connection timed out"),
            End::Evicted => tracing::debug!(target: TARGET, "connection closed to make room"),
        }
    }
}

/// Poll `serving` until it ends, the connection's phase times out or it is asked to close.
/// Every change of phase happens while `serving` is polled, so the deadline is looked at
/// again after each poll.
async fn drive(
    activity: &Activity,
    timeouts: Timeouts,
    mut serving: Pin<&mut impl Future<Output = Result<(), hyper::Error>>>,
) -> End {
    let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
    let mut armed = None;
    poll_fn(|cx| {
        if let Poll::Ready(result) = serving.as_mut().poll(cx) {
            return Poll::Ready(End::Closed(result));
        }
        if activity.evicted(cx.waker()) {
            return Poll::Ready(End::Evicted);
        }
        let Some((phase, deadline)) = activity.deadline(&timeouts) else {
            return Poll::Pending;
        };
        if armed != Some(deadline) {
            timer.as_mut().reset(deadline);
            armed = Some(deadline);
        }
        timer.as_mut().poll(cx).map(|()| End::TimedOut(phase))
    })
    .await
}

/// The client's socket, telling its connection when bytes arrive and when hyper has written
/// all it buffered.
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// Hyper flushes the socket once its own buffer is written out.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = result {
            this.activity.flushed();
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// An answer's body that tells its connection when hyper has taken all of it (drops it).
struct Tracked {
    body: Full<Bytes>,
    activity: Arc<Activity>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.activity.taken();
    }
}

/// The accept loop's pauses and log lines after failed accepts.
///
/// Out of open files (or memory), accept fails at once until a connection closes: retrying at
/// once spun a core and wrote a line per try. So each failure pauses the loop, from 50 ms
/// doubling to 1 s, and at most one line a second is written, with the count of failures
/// not written since the last.
#[derive(Debug)]
pub struct AcceptErrors {
    pause: Duration,
    logged: Option<Instant>,
    suppressed: u64,
}

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

impl Default for AcceptErrors {
    fn default() -> Self {
        Self {
            pause: FIRST_PAUSE,
            logged: None,
            suppressed: 0,
        }
    }
}

impl AcceptErrors {
    /// A connection was accepted: the next failure pauses briefly again.
    pub fn accepted(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// How long to pause after `e`, which is logged unless a line went out less than a
    /// second ago.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        // The client left before it was accepted: nothing is wrong with the server.
        if matches!(
            e.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused
        ) {
            tracing::debug!(target: TARGET, error = %e, "accept failed");
            return Duration::ZERO;
        }
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::warn!(
                target: TARGET,
                error = %e,
                suppressed = self.suppressed,
                pause_ms = self.pause.as_millis(),
                "accept failed; pausing",
            );
            (self.logged, self.suppressed) = (Some(now), 0);
        } else {
            self.suppressed += 1;
        }
        let pause = self.pause;
        self.pause = (pause * 2).min(LONGEST_PAUSE);
        pause
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    fn timeouts(header_ms: u64, idle_ms: u64, body_ms: u64) -> Timeouts {
        Timeouts {
            header_ms,
            idle_ms,
            body_ms,
            ..Timeouts::default()
        }
    }

    /// A connection on `connections` answering `answer` after `delay`, and its client end.
    async fn connect(
        connections: &Arc<Connections>,
        answer: &'static [u8],
        delay: Duration,
    ) -> (DuplexStream, JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(1024);
        let slot = connections.slot().await;
        let handle = move |_req| async move {
            tokio::time::sleep(delay).await;
            Response::new(Bytes::from_static(answer))
        };
        (client, tokio::spawn(slot.serve(server, handle)))
    }

    /// Read an answer whose body ends with `end`.
    async fn answer(client: &mut DuplexStream, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        while !got.ends_with(end) {
            let mut buf = [0; 4096];
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// How long `task` (a connection) takes to end, failing past `limit`.
    async fn ends_within(task: JoinHandle<()>, limit: Duration) -> Duration {
        let t0 = Instant::now();
        tokio::time::timeout(limit, task).await.unwrap().unwrap();
        t0.elapsed()
    }

    #[tokio::test]
    async fn a_new_connection_dripping_headers_is_closed_after_the_header_timeout() {
        let connections = Connections::new(8, timeouts(300, 5_000, 5_000));
        let (mut client, task) = connect(&connections, b"ok", Duration::ZERO).await;
        // One header byte every 20 ms, until the server closes the connection.
        let drip = tokio::spawn(async move {
            let mut sent = client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
            while sent.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                sent = client.write_all(b"x").await;
            }
        });
        let took = ends_within(task, Duration::from_secs(2)).await;
        assert!(took >= Duration::from_millis(280), "{took:?}");
        ends_within(drip, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_kept_alive_connection_is_kept_for_the_idle_timeout() {
        let connections = Connections::new(8, timeouts(200, 700, 5_000));
        let (mut client, task) = connect(&connections, b"ok", Duration::ZERO).await;
        client.write_all(REQUEST).await.unwrap();
        assert!(
            answer(&mut client, b"ok")
                .await
                .starts_with(b"HTTP/1.1 200")
        );
        let took = ends_within(task, Duration::from_secs(3)).await;
        assert!(took >= Duration::from_millis(600), "{took:?}");
    }

    #[tokio::test]
    async fn an_answer_the_client_does_not_read_is_dropped_after_the_body_timeout() {
        static BIG: [u8; 1 << 20] = [b'a'; 1 << 20];
        let connections = Connections::new(8, timeouts(5_000, 5_000, 300));
        let (mut client, task) = connect(&connections, &BIG, Duration::ZERO).await;
        client.write_all(REQUEST).await.unwrap();
        let took = ends_within(task, Duration::from_secs(3)).await;
        assert!(took >= Duration::from_millis(280), "{took:?}");
    }

    #[tokio::test]
    async fn a_request_being_handled_is_not_cut_short() {
        let connections = Connections::new(1, timeouts(100, 100, 100));
        let (mut client, _task) = connect(&connections, b"late", Duration::from_millis(600)).await;
        client.write_all(REQUEST).await.unwrap();
        // The only slot is busy: a newcomer waits for it rather than closing it.
        let newcomer = tokio::spawn({
            let connections = connections.clone();
            async move { connections.slot().await }
        });
        assert!(
            answer(&mut client, b"late")
                .await
                .starts_with(b"HTTP/1.1 200")
        );
        tokio::time::timeout(Duration::from_secs(2), newcomer)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn at_the_cap_the_connection_idle_longest_makes_room() {
        let connections = Connections::new(3, timeouts(60_000, 60_000, 60_000));
        let delay = Duration::from_millis(500);
        let (_oldest, oldest) = connect(&connections, b"ok", delay).await;
        let (mut busy, busy_task) = connect(&connections, b"busy", delay).await;
        busy.write_all(REQUEST).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_newer, newer) = connect(&connections, b"ok", delay).await;
        // Full: the oldest waiting connection goes; the busy one, older, answers.
        let (_newcomer, _) = connect(&connections, b"ok", delay).await;
        ends_within(oldest, Duration::from_secs(1)).await;
        assert!(
            answer(&mut busy, b"busy")
                .await
                .starts_with(b"HTTP/1.1 200")
        );
        assert!(!newer.is_finished() && !busy_task.is_finished());
    }

    #[test]
    fn accept_failures_pause_longer_and_are_logged_once_a_second() {
        let mut errors = AcceptErrors::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..7).map(|_| errors.failed(&emfile).as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(errors.suppressed, 6);
        errors.accepted();
        assert_eq!(errors.failed(&emfile), FIRST_PAUSE);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(errors.failed(&reset), Duration::ZERO);
    }
}
