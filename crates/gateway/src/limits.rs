//! Connection limits: how many connections each listener holds at once, and
//! the file descriptors they may use.
//!
//! Every listener (HTTP, plain MQTT, MQTT over TLS) has its own
//! [`ConnectionLimit`]. An accept loop takes a [`ConnectionPermit`] *before*
//! it accepts, and the permit lives as long as the connection (wrapped with
//! the stream in [`Limited`]). A listener at its cap stops accepting: further
//! clients wait in the kernel's accept queue, and the other listeners are not
//! affected, since each cap is its own.
//!
//! The caps are file descriptor reservations: at start the gateway raises
//! its soft `RLIMIT_NOFILE` to the hard limit ([`raise_nofile_limit`]), then
//! [`fit_caps`] checks that the caps plus [`RESERVED_DESCRIPTORS`] (gRPC
//! clients, the stores, logs, the process itself) fit the limit. If they do
//! not, the caps are lowered in proportion, with a warning: the gateway
//! still starts on a machine with a small limit, and no listener's flood can
//! take the descriptors another listener or the gateway itself needs.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::sync::CancellationToken;

/// Descriptors kept out of every listener's reach: gRPC channels to the
/// registry and the config service, sled's files, logs, the listeners.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 512;

/// How often a listener at its cap says so in the log, at most.
const FULL_WARNING_PERIOD: Duration = Duration::from_secs(10);
/// How long a listener waits after a failed accept.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The cap on one listener's concurrent connections.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimit {
    name: &'static str,
    max: usize,
    semaphore: Arc<Semaphore>,
    last_warned: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// One connection's place under its listener's cap; released when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
    listener: &'static str,
}

impl ConnectionPermit {
    /// A place on `listener`, counted in `herald_gateway_connections` while
    /// it is held.
    fn new(permit: OwnedSemaphorePermit, listener: &'static str) -> ConnectionPermit {
        metrics::gauge!("herald_gateway_connections", "listener" => listener).increment(1.0);
        ConnectionPermit {
            _permit: permit,
            listener,
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        metrics::gauge!("herald_gateway_connections", "listener" => self.listener).decrement(1.0);
    }
}

impl ConnectionLimit {
    /// At most `max` (at least 1) connections at once on the listener `name`.
    pub(crate) fn new(name: &'static str, max: usize) -> ConnectionLimit {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionLimit {
            name,
            max,
            semaphore: Arc::new(Semaphore::new(max)),
            last_warned: Arc::default(),
        }
    }

    /// No practical cap (for tests and tools that run a listener alone).
    pub(crate) fn unlimited(name: &'static str) -> ConnectionLimit {
        ConnectionLimit::new(name, u32::MAX as usize)
    }

    /// How many connections hold a permit now.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }

    /// Waits for a free place, or `None` once `shutdown` is cancelled.
    pub(crate) async fn acquire(&self, shutdown: &CancellationToken) -> Option<ConnectionPermit> {
        if shutdown.is_cancelled() {
            return None;
        }
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Some(ConnectionPermit::new(permit, self.name));
        }
        self.warn_full();
        tokio::select! {
            () = shutdown.cancelled() => None,
            permit = self.semaphore.clone().acquire_owned() => {
                permit.ok().map(|permit| ConnectionPermit::new(permit, self.name))
            }
        }
    }

    /// The next client of `listener`, with its place under this limit
    /// (`None` once `shutdown` is cancelled): waits for a place, then for a
    /// client; a failed accept (out of descriptors, say) is logged and
    /// retried after [`ACCEPT_ERROR_BACKOFF`]. Nagle is off: the
    /// protocols' packets are small and latency matters more.
    pub(crate) async fn accept(
        &self,
        listener: &tokio::net::TcpListener,
        shutdown: &CancellationToken,
    ) -> Option<(
        tokio::net::TcpStream,
        std::net::SocketAddr,
        ConnectionPermit,
    )> {
        loop {
            let permit = self.acquire(shutdown).await?;
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return None,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer, permit));
                }
                Err(e) => {
                    tracing::warn!(listener = self.name, error = %e, "accept failed");
                    drop(permit);
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                    }
                }
            }
        }
    }

    fn warn_full(&self) {
        let mut last = self
            .last_warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= FULL_WARNING_PERIOD) {
            *last = Some(Instant::now());
            tracing::warn!(
                listener = self.name,
                max_connections = self.max,
                "listener at its connection cap; new connections wait in the accept queue"
            );
        }
    }

    /// Waits until every permit is back (every connection has closed).
    pub(crate) async fn drained(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.semaphore.acquire_many(all).await;
    }
}

/// A stream that holds its listener's [`ConnectionPermit`] as long as it
/// lives.
#[derive(Debug)]
pub(crate) struct Limited<S> {
    inner: S,
    _permit: ConnectionPermit,
}

impl<S> Limited<S> {
    pub(crate) fn new(inner: S, permit: ConnectionPermit) -> Limited<S> {
        Limited {
            inner,
            _permit: permit,
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit in force afterwards (`None`: unlimited or unknown).
#[cfg(unix)]
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(
                error = %e,
                soft = ?before.current,
                hard = ?before.maximum,
                "raising the file descriptor limit failed"
            );
        }
    }
    let after = getrlimit(Resource::Nofile);
    tracing::info!(
        soft_before = ?before.current,
        soft = ?after.current,
        hard = ?after.maximum,
        "file descriptor limit"
    );
    after.current
}

/// The soft `RLIMIT_NOFILE` in force (`None`: unlimited or unknown).
#[cfg(unix)]
pub(crate) fn nofile_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
pub fn raise_nofile_limit() -> Option<u64> {
    None
}

#[cfg(not(unix))]
pub fn nofile_limit() -> Option<u64> {
    None
}

/// Makes the listeners' caps fit the descriptor limit `limit` minus
/// [`RESERVED_DESCRIPTORS`]: if their sum does not, each is lowered in
/// proportion (each keeps at least one), with a warning. Returns whether
/// they were lowered.
pub(crate) fn fit_caps(caps: &mut [(&'static str, &mut usize)], limit: Option<u64>) -> bool {
    let Some(limit) = limit else {
        return false;
    };
    let budget = limit
        .saturating_sub(RESERVED_DESCRIPTORS)
        .max(caps.len() as u64);
    let sum: u64 = caps.iter().map(|(_, cap)| **cap as u64).sum();
    if sum <= budget {
        return false;
    }
    for (name, cap) in caps.iter_mut() {
        let lowered = ((**cap as u128 * budget as u128) / sum as u128).max(1) as usize;
        tracing::warn!(
            listener = *name,
            configured = **cap,
            lowered,
            descriptor_limit = limit,
            reserved = RESERVED_DESCRIPTORS,
            "the connection caps do not fit the file descriptor limit; lowering this one"
        );
        **cap = lowered;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_are_kept() {
        let (mut a, mut b) = (100, 200);
        assert!(!fit_caps(
            &mut [("a", &mut a), ("b", &mut b)],
            Some(300 + RESERVED_DESCRIPTORS)
        ));
        assert_eq!((a, b), (100, 200));
        assert!(!fit_caps(&mut [("a", &mut a)], None));
    }

    #[test]
    fn caps_that_do_not_fit_are_lowered_in_proportion() {
        let (mut a, mut b, mut c) = (1_024, 4_096, 16_384);
        assert!(fit_caps(
            &mut [("a", &mut a), ("b", &mut b), ("c", &mut c)],
            Some(1_024)
        ));
        assert!(a + b + c <= 1_024 - RESERVED_DESCRIPTORS as usize);
        assert!(a >= 1 && b > a && c > b, "{a} {b} {c}");
        let mut d = 10;
        fit_caps(&mut [("d", &mut d)], Some(3));
        assert_eq!(d, 1);
    }

    #[tokio::test]
    async fn a_full_limit_waits_for_a_permit_back() {
        let limit = ConnectionLimit::new("test", 2);
        let shutdown = CancellationToken::new();
        let first = limit.acquire(&shutdown).await.unwrap();
        let _second = limit.acquire(&shutdown).await.unwrap();
        assert_eq!(limit.in_use(), 2);
        let waiting = tokio::spawn({
            let (limit, shutdown) = (limit.clone(), shutdown.clone());
            async move { limit.acquire(&shutdown).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        assert!(waiting.await.unwrap());
        shutdown.cancel();
        assert!(limit.acquire(&shutdown).await.is_none());
    }
}
