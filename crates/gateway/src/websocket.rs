//! MQTT over WebSockets (AWS IoT Core Developer Guide: "MQTT over WebSocket
//! protocol", "Signature Version 4 signing for WebSocket connections"): a
//! TLS listener with the Herald server certificate (no client
//! certificate), the WebSocket upgrade on path `/mqtt` with subprotocol
//! `mqtt`, authenticated by a SigV4 presigned query for service
//! `iotdevicegateway` (a session token appended after signing, as the
//! device SDKs do, is allowed), against Herald's access keys. The
//! connection then runs the same MQTT session layer as the other
//! listeners, in the partition of the key's account and the signed region,
//! as the key's principal: the IoT policy named after the access key id
//! applies.
//!
//! It imports both `http` (the SigV4 verifier) and `mqtt` (the session
//! layer), which do not import each other.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use futures_util::{Sink, Stream};
use herald_runtime::partition::Partition;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
};
use tokio_rustls::rustls::ServerConfig;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        handshake::server::{ErrorResponse, Request, Response},
        http::{HeaderValue, StatusCode},
    },
};
use tokio_util::{bytes::Bytes, sync::CancellationToken};

use crate::{
    http::sigv4::{self, RequestParts},
    limits::{ConnectionLimit, Limited},
    mqtt::{partitions::MqttPartitions, server::Sessions, session::Principal},
    settings::AccessKey,
};

/// The path AWS IoT serves MQTT over WebSockets on.
const PATH: &str = "/mqtt";
/// The WebSocket subprotocol of MQTT.
const SUBPROTOCOL: &str = "mqtt";

/// What the WebSocket listener needs.
pub(crate) struct WebSockets {
    pub(crate) tls: Arc<ServerConfig>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) access_keys: Arc<[AccessKey]>,
    pub(crate) regions: Arc<[String]>,
    pub(crate) partitions: MqttPartitions,
    pub(crate) sessions: Sessions,
    pub(crate) limit: ConnectionLimit,
}

/// Serves MQTT over WebSockets on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    setup: WebSockets,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("read the WebSocket listen address")?;
    tracing::info!(%addr, "mqtt websocket listening");
    let setup = Arc::new(setup);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&setup.tls));
    while let Some((stream, peer, permit)) = setup.limit.accept(&listener, &shutdown).await {
        let setup = Arc::clone(&setup);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let upgraded = tokio::time::timeout(setup.handshake_timeout, async {
                let tls = acceptor.accept(stream).await?;
                upgrade(tls, &setup).await
            })
            .await;
            match upgraded {
                Ok(Ok((ws, principal, partition))) => {
                    let world = match setup.partitions.world_of(partition.as_ref()).await {
                        Ok(world) => world,
                        Err(e) => {
                            tracing::warn!(error = e, "no MQTT side for the signed partition");
                            return;
                        }
                    };
                    let stream = Limited::new(WsStream::new(ws), permit);
                    setup
                        .sessions
                        .spawn_in(world.ctx, stream, peer, Some(principal));
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "websocket upgrade refused"),
                Err(_) => tracing::debug!(%peer, "websocket handshake timed out"),
            }
        });
    }
    tracing::info!(%addr, "mqtt websocket stopped");
    Ok(())
}

/// The WebSocket upgrade, checked: its path, its subprotocol, and its
/// SigV4 signature. Returns the stream, the principal, and the partition
/// (`None`: the gateway's own is the one signed for).
// The refusal type is the WebSocket library's (its handshake callback's).
#[allow(clippy::result_large_err)]
async fn upgrade<S>(
    stream: S,
    setup: &WebSockets,
) -> io::Result<(WebSocketStream<S>, Principal, Option<Partition>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut verified = None;
    let check = |request: &Request, mut response: Response| {
        let refuse = |status: StatusCode, message: String| {
            let mut refusal = ErrorResponse::new(Some(message));
            *refusal.status_mut() = status;
            refusal
        };
        if request.uri().path() != PATH {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("MQTT is served on {PATH}"),
            ));
        }
        let offers_mqtt = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
        if !offers_mqtt {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the subprotocol must be mqtt".into(),
            ));
        }
        let parts = RequestParts {
            method: request.method().as_str(),
            path: request.uri().path(),
            query: request.uri().query().unwrap_or(""),
            headers: request.headers(),
        };
        match sigv4::verify(
            &parts,
            b"",
            &setup.access_keys,
            &setup.regions,
            sigv4::DEVICE_GATEWAY_SERVICE,
            SystemTime::now(),
        ) {
            Ok(principal) => {
                verified = Some(principal);
                response.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static(SUBPROTOCOL),
                );
                Ok(response)
            }
            Err(e) => {
                tracing::info!(error = %e, "websocket signature refused");
                Err(refuse(StatusCode::FORBIDDEN, e.to_string()))
            }
        }
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, check)
        .await
        .map_err(io::Error::other)?;
    let signed = verified.ok_or_else(|| io::Error::other("not verified"))?;
    let partition = Partition::new(&signed.account_id, &signed.region);
    Ok((ws, Principal::access_key(&signed.access_key_id), partition))
}

/// A WebSocket as the byte stream MQTT runs on: binary messages in and
/// out; pings are answered by the WebSocket layer, a close is the end.
struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message read.
    pending: Bytes,
}

impl<S> WsStream<S> {
    fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            pending: Bytes::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(Message::Binary(data)))) => self.pending = data,
                Poll::Ready(Some(Ok(Message::Close(_)))) | Poll::Ready(None) => {
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Ok(Message::Text(_)))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT over WebSockets is carried in binary messages",
                    )));
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.ws).poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            Poll::Pending => return Poll::Pending,
        }
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}
