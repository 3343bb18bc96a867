//! Runs sessions and waits for them at shutdown: [`Sessions`] spawns a
//! [`session::run`] per accepted stream (plain TCP here through
//! [`serve_tcp`], TLS streams from the TLS listener with their certificate's
//! [`Principal`]), and [`SessionsFinished`] resolves once every one of them
//! has ended and published its `disconnected` event.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::limits::{ConnectionLimit, Limited};

use super::session::{self, Authenticator, Principal, SessionContext};

/// Spawns sessions. Cheap to clone; [`SessionsFinished::wait`] returns once
/// every clone is dropped and every session it spawned has ended.
#[derive(Clone)]
pub struct Sessions {
    ctx: SessionContext,
    authenticate: Authenticator,
    shutdown: CancellationToken,
    /// Each running session holds a clone; the receiver sees `None` once
    /// all are gone.
    alive: mpsc::Sender<()>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// Resolves when all sessions of a [`Sessions`] have ended.
#[derive(Debug)]
pub struct SessionsFinished(mpsc::Receiver<()>);

impl SessionsFinished {
    /// Waits until every [`Sessions`] clone is dropped and every session
    /// has ended. Sessions end on their own once the shutdown token is
    /// cancelled (`SERVER_INITIATED_DISCONNECT`).
    pub async fn wait(mut self) {
        while self.0.recv().await.is_some() {}
    }
}

impl Sessions {
    /// Sessions in `ctx`, authenticated by `authenticate`, ended by
    /// `shutdown`.
    pub fn new(
        ctx: SessionContext,
        authenticate: Authenticator,
        shutdown: CancellationToken,
    ) -> (Sessions, SessionsFinished) {
        let (alive, finished) = mpsc::channel(1);
        (
            Sessions {
                ctx,
                authenticate,
                shutdown,
                alive,
            },
            SessionsFinished(finished),
        )
    }

    /// Runs a session on `stream` in a task of its own. `transport` is the
    /// principal the transport established (the TLS client certificate,
    /// see [`Principal::certificate`]); `None` for plain TCP.
    pub fn spawn<S>(&self, stream: S, peer: SocketAddr, transport: Option<Principal>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.spawn_in(self.ctx.clone(), stream, peer, transport);
    }

    /// [`Sessions::spawn`] in `ctx` rather than the one given at creation
    /// (the partition the client's certificate is registered in).
    pub fn spawn_in<S>(
        &self,
        ctx: SessionContext,
        stream: S,
        peer: SocketAddr,
        transport: Option<Principal>,
    ) where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        tokio::spawn(session::run(
            stream,
            peer,
            transport,
            ctx,
            self.authenticate.clone(),
            self.shutdown.clone(),
            self.alive.clone(),
        ));
    }
}

/// Serves MQTT 3.1.1 on `listener` until `shutdown` is cancelled; then
/// stops accepting and waits for every session to end (each sends its
/// `disconnected` event with `SERVER_INITIATED_DISCONNECT`).
pub async fn serve_tcp(
    listener: TcpListener,
    ctx: SessionContext,
    authenticate: Authenticator,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let limit = ConnectionLimit::unlimited("mqtt");
    serve_tcp_limited(listener, ctx, authenticate, limit, shutdown).await
}

/// [`serve_tcp`] holding at most `limit` connections at once: at the cap
/// the loop stops accepting, and further clients wait in the kernel's
/// accept queue until a session ends.
pub(crate) async fn serve_tcp_limited(
    listener: TcpListener,
    ctx: SessionContext,
    authenticate: Authenticator,
    limit: ConnectionLimit,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("read the MQTT listen address")?;
    tracing::info!(%addr, "mqtt listening");
    let (sessions, finished) = Sessions::new(ctx, authenticate, shutdown.clone());
    while let Some((stream, peer, permit)) = limit.accept(&listener, &shutdown).await {
        sessions.spawn(Limited::new(stream, permit), peer, None);
    }
    drop(listener);
    drop(sessions);
    finished.wait().await;
    tracing::info!(%addr, "mqtt stopped");
    Ok(())
}
