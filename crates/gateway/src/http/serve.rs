//! The HTTP listener: HTTP/1.1 through hyper, with the limits `axum::serve`
//! does not set.
//!
//! - A cap on concurrent connections ([`ConnectionLimit`]): the loop takes
//!   a place before it accepts, so a flood waits in the kernel's accept
//!   queue instead of taking the process's file descriptors.
//! - A header-read timeout: a connection must send a whole request head
//!   within `header_read_timeout` of being accepted or of its previous
//!   response; otherwise it is closed. So an idle keep-alive connection,
//!   or a slowloris one that trickles its head, frees its place in time.
//! - A write timeout: a response whose writing makes no progress for
//!   `write_timeout` (a client that stopped reading, or pipelines requests
//!   without reading the answers) closes the connection ([`WriteDeadline`]).
//!   A request body is bounded by the request timeout (`guard`).
//! - HTTP/2 is not served: a client that opens with the HTTP/2 connection
//!   preface (prior knowledge) gets a SETTINGS frame and a GOAWAY with
//!   `HTTP_1_1_REQUIRED` (RFC 9113 §7), then the connection is closed.
//! - The 400, 414 and 431 answers hyper gives to a request head it cannot
//!   parse carry AWS's error shape, like every other error
//!   ([`AwsShapedErrors`]).
//!
//! On shutdown the loop stops accepting, every connection finishes its
//! request in flight and closes, and [`serve`] returns once all have.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use super::{ApiError, ErrorKind};
use crate::limits::{ConnectionLimit, Limited};

/// The start of the HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// An empty SETTINGS frame, then GOAWAY (last stream 0, `HTTP_1_1_REQUIRED`).
const H2_REFUSAL: &[u8] = &[
    0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS, no parameters
    0, 0, 8, 7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes, stream 0
    0, 0, 0, 0, // last stream id
    0, 0, 0, 0x0d, // HTTP_1_1_REQUIRED
];

/// How the listener serves.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    pub(crate) limit: ConnectionLimit,
    pub(crate) header_read_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits
/// for every connection to finish its request in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    while let Some((tcp, peer, permit)) = options.limit.accept(&listener, &shutdown).await {
        let stream = Limited::new(tcp, permit);
        tokio::spawn(serve_connection(
            stream,
            app.clone(),
            options.clone(),
            shutdown.clone(),
        ));
        tracing::trace!(%peer, "http connection accepted");
    }
    drop(listener);
    options.limit.drained().await;
    Ok(())
}

async fn serve_connection(
    mut stream: Limited<TcpStream>,
    app: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let header_read_timeout = options.header_read_timeout;
    // The first bytes tell HTTP/2 with prior knowledge apart.
    let mut first = [0u8; H2_PREFACE_START.len()];
    let peeked = tokio::select! {
        () = shutdown.cancelled() => return,
        peeked = tokio::time::timeout(header_read_timeout, stream.get_ref().peek(&mut first)) => peeked,
    };
    match peeked {
        Err(_) | Ok(Err(_) | Ok(0)) => return, // silent, failed or closed
        Ok(Ok(n)) if first[..n] == H2_PREFACE_START[..n] && n == H2_PREFACE_START.len() => {
            tracing::debug!("an HTTP/2 connection preface: answered HTTP_1_1_REQUIRED");
            let _ = tokio::time::timeout(options.write_timeout, async {
                let _ = stream.write_all(H2_REFUSAL).await;
                let _ = stream.shutdown().await;
            })
            .await;
            return;
        }
        Ok(Ok(_)) => {}
    }
    let io = TokioIo::new(AwsShapedErrors::new(WriteDeadline::new(
        stream,
        options.write_timeout,
    )));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(io, TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "http connection ended");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// The statuses hyper answers on its own to a request head it cannot
/// parse, with the gateway's error for each.
const AUTOMATIC_ERRORS: &[(&[u8], ErrorKind, &str)] = &[
    (
        b"HTTP/1.1 400 ",
        ErrorKind::BadRequest,
        "The request could not be parsed as HTTP/1.1.",
    ),
    (
        b"HTTP/1.1 414 ",
        ErrorKind::UriTooLong,
        "The request URI is too long.",
    ),
    (
        b"HTTP/1.1 431 ",
        ErrorKind::RequestHeaderFieldsTooLarge,
        "The request headers are too large.",
    ),
];

/// A stream that rewrites hyper's own error answers (empty bodies) into
/// AWS-shaped ones: `x-amzn-ErrorType`, `x-amzn-RequestId` and a JSON body
/// with `message`. Answers from the API always carry `x-amzn-RequestId`
/// and pass through unchanged.
struct AwsShapedErrors<S> {
    inner: S,
    /// A rewritten answer still to be written.
    pending: Vec<u8>,
    written: usize,
}

impl<S> AwsShapedErrors<S> {
    fn new(inner: S) -> AwsShapedErrors<S> {
        AwsShapedErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The AWS-shaped replacement for `head`, if it is one of hyper's automatic
/// error answers.
fn rewrite_automatic_error(head: &[u8]) -> Option<Vec<u8>> {
    let (_, kind, message) = AUTOMATIC_ERRORS
        .iter()
        .find(|(start, ..)| head.starts_with(start))?;
    let lower = head.to_ascii_lowercase();
    if lower
        .windows(b"x-amzn-requestid".len())
        .any(|w| w == b"x-amzn-requestid")
    {
        return None;
    }
    let error = ApiError::new(*kind, *message);
    let body = serde_json::to_string(&error.body()).ok()?;
    let (status, code) = (error.status.as_u16(), error.code);
    let reason = error.status.canonical_reason().unwrap_or("");
    let id = uuid::Uuid::new_v4();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nx-amzn-errortype: {code}\r\nx-amzn-requestid: {id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncWrite + Unpin> AwsShapedErrors<S> {
    /// Writes what is pending; ready once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AwsShapedErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AwsShapedErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(replacement) = rewrite_automatic_error(buf) {
            self.pending = replacement;
            self.written = 0;
            // The replacement is written now or on the next flush; hyper's
            // bytes count as written.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream whose writes fail with `TimedOut` once one has made no progress
/// for `timeout`: hyper has no write timeout, and a peer that never reads
/// would otherwise hold its connection (and its place under the cap) for
/// good. Reads pass through.
struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Set while a write (or flush, or shutdown) is pending.
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, timeout: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            timeout,
            stalled_since: None,
        }
    }

    /// Passes `poll`'s answer on, starting the clock when it is pending and
    /// stopping it when it is not; past the deadline, `TimedOut`.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled_since = None;
            return poll;
        }
        let timeout = self.timeout;
        let deadline = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing of its answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_answers_get_the_aws_shape() {
        let rewritten = rewrite_automatic_error(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        let text = String::from_utf8(rewritten).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("x-amzn-errortype: RequestHeaderFieldsTooLargeException\r\n"));
        assert!(text.contains("x-amzn-requestid: "));
        assert!(
            text.ends_with(r#""message":"The request headers are too large."}"#)
                || text.contains(r#""message":"#)
        );
    }

    #[test]
    fn api_answers_pass_unchanged() {
        assert!(
            rewrite_automatic_error(
                b"HTTP/1.1 400 Bad Request\r\nx-amzn-RequestId: 1\r\ncontent-length: 2\r\n\r\n{}"
            )
            .is_none()
        );
        assert!(rewrite_automatic_error(b"HTTP/1.1 200 OK\r\n\r\n").is_none());
    }
}
