//! SigV4 request authentication.
//!
//! Every HTTP request (the fallback and `/_herald/*` included) must carry an
//! AWS Signature Version 4, either in the `Authorization` header (what the AWS
//! CLI, boto3 and the SDKs send) or as presigned query parameters. [`verify`]
//! is the pure check, for any service name; [`authenticate`] is the axum
//! middleware around it, for the control plane (service `iot`) and the
//! device side of jobs (service `iot-jobs-data`), told apart by the service
//! the request is signed for ([`Api`]).
//!
//! The canonical request is rebuilt from the *raw* request target, as botocore
//! signs it: the already percent-encoded path is normalised and encoded again
//! (`/things/dev%201` is canonically `/things/dev%25201`), and the query pairs
//! are decoded, RFC 3986-encoded and sorted.
//!
//! Herald issues no temporary credentials: an `X-Amz-Security-Token` is not
//! validated (when signed, it is part of the signature like any header).
//!
//! - `parse`: the signature's parts, from the header or the query;
//! - `canonical`: the canonical request, the string to sign, the signing key;
//! - `verify`: the check itself.

mod canonical;
mod parse;
#[cfg(test)]
pub(super) mod testing;
mod verify;

pub(crate) use self::verify::verify;

use std::{pin::Pin, time::SystemTime};

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::{Request, State},
    http::HeaderMap,
    middleware::Next,
    response::{IntoResponse, Response},
};

use herald_runtime::partition::Partition;

use super::{ApiError, AppState, ErrorKind};

/// The signing name of the control plane.
pub(crate) const CONTROL_PLANE_SERVICE: &str = "iot";
/// The signing name of the device side of jobs.
pub(crate) const JOBS_DATA_SERVICE: &str = "iot-jobs-data";
/// The SigV4 service MQTT over WebSockets is signed for.
pub(crate) const DEVICE_GATEWAY_SERVICE: &str = "iotdevicegateway";
/// The SigV4 service of the `iot-data` API (shadows, publish, retained
/// messages).
pub(crate) const DATA_SERVICE: &str = "iotdata";

/// The API a request is for. AWS serves each on a host of its own; Herald
/// serves both on one listener and tells them apart by the service named in
/// the request's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `iot`, also for a request whose signature names no service Herald
    /// serves: its verification then says why.
    ControlPlane,
    /// `iot-jobs-data`.
    JobsData,
    /// `iot-data` (signed as `iotdata`).
    Data,
}

impl Api {
    fn service(self) -> &'static str {
        match self {
            Api::ControlPlane => CONTROL_PLANE_SERVICE,
            Api::JobsData => JOBS_DATA_SERVICE,
            Api::Data => DATA_SERVICE,
        }
    }

    /// The API whose service the request's credential scope names.
    fn of(parts: &RequestParts<'_>) -> Api {
        let auth = if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            parse::from_header(parts.headers)
        } else {
            parse::from_query(&parse::parse_query(parts.query))
        };
        let service = auth.ok().and_then(|auth| {
            parse::parse_scope(&auth.credential)
                .ok()
                .map(|scope| scope.service.to_owned())
        });
        match service.as_deref() {
            Some(JOBS_DATA_SERVICE) => Api::JobsData,
            Some(DATA_SERVICE) => Api::Data,
            _ => Api::ControlPlane,
        }
    }
}
/// The largest request body the control plane reads.
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

const MISMATCH_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// Who signed a request: inserted into the request's extensions for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub(crate) access_key_id: String,
    /// The account of the access key.
    pub(crate) account_id: String,
    /// The region the request is signed for: with the account, the
    /// partition the request acts in.
    pub(crate) region: String,
}

/// What [`verify`] reads of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestParts<'a> {
    /// The method, any case.
    pub(crate) method: &'a str,
    /// The raw path, still percent-encoded as it came on the wire.
    pub(crate) path: &'a str,
    /// The raw query, without `?` (`""` when there is none).
    pub(crate) query: &'a str,
    pub(crate) headers: &'a HeaderMap,
}

/// Why a request's signature is refused; each maps to an AWS error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SigError {
    /// No `Authorization` header and no presigned query parameters.
    #[error("Missing Authentication Token")]
    MissingToken,
    /// The signature's parts are missing or malformed.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not one of ours.
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    /// The signature does not match.
    #[error("{MISMATCH_MESSAGE}")]
    Mismatch,
    /// Well-formed but unacceptable: the scope, the time, the payload hash.
    #[error("{0}")]
    Invalid(String),
}

impl SigError {
    /// The gateway's error for this refusal.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            SigError::MissingToken => ErrorKind::MissingAuthenticationToken,
            SigError::Incomplete(_) => ErrorKind::IncompleteSignature,
            SigError::UnknownAccessKey => ErrorKind::UnrecognizedClient,
            SigError::Mismatch | SigError::Invalid(_) => ErrorKind::InvalidSignature,
        }
    }

    /// The AWS error type (`x-amzn-ErrorType`).
    pub(crate) fn code(&self) -> &'static str {
        self.kind().code()
    }

    pub(crate) fn status(&self) -> u16 {
        self.kind().status().as_u16()
    }
}

impl From<SigError> for ApiError {
    fn from(err: SigError) -> ApiError {
        ApiError::new(err.kind(), err.to_string())
    }
}

/// The middleware: reads the body, verifies the signature for the service
/// of its [`Api`] and the gateway's region, and hands the request (same
/// body) on with its [`Principal`] and [`Api`] in the extensions.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_body(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => return err.into_response(),
    };
    let request_parts = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
    };
    let api = Api::of(&request_parts);
    let verified = verify(
        &request_parts,
        &body,
        &state.access_keys,
        &state.regions,
        api.service(),
        SystemTime::now(),
    );
    match verified {
        Ok(principal) => {
            tracing::debug!(
                access_key_id = %principal.access_key_id,
                method = %parts.method,
                path = parts.uri.path(),
                "request signature verified"
            );
            let partition = Partition::new(&principal.account_id, &principal.region)
                .filter(|p| Some(p) != state.default_partition.as_ref());
            let mut request = Request::from_parts(parts, Body::from(body));
            request.extensions_mut().insert(principal);
            request.extensions_mut().insert(api);
            crate::partition::scope(partition, next.run(request)).await
        }
        Err(err) => {
            tracing::debug!(
                code = err.code(),
                error = %err,
                method = %parts.method,
                path = parts.uri.path(),
                "request signature refused"
            );
            ApiError::from(err).into_response()
        }
    }
}

/// Reads a whole body, refusing one larger than `limit`.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::RequestEntityTooLarge,
            format!("The request body is larger than {limit} bytes."),
        )
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|err| {
            ApiError::invalid(format!("The request body could not be read: {err}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        // `rest`, once started, holds `first` too.
        let held = if rest.is_empty() {
            first.as_ref().map_or(0, Bytes::len)
        } else {
            rest.len()
        };
        if held + data.len() > limit {
            return Err(too_large());
        }
        match &first {
            None => first = Some(data),
            Some(head) => {
                if rest.is_empty() {
                    rest.extend_from_slice(head);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        Bytes::from(rest)
    })
}

#[cfg(test)]
mod tests {
    use axum::{Extension, Router, middleware, routing::post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::testing::sign;
    use super::*;
    use crate::http::time::{epoch_seconds, format_amz_date};
    use crate::settings::Settings;

    /// A body of many chunks is measured once: within the limit it is read
    /// whole, one byte beyond it is 413.
    #[tokio::test]
    async fn a_body_in_many_chunks_is_measured_once() {
        let body = |chunks: usize| {
            let chunks: Vec<Result<Bytes, std::io::Error>> = (0..chunks)
                .map(|_| Ok(Bytes::from_static(&[b'a'; 300])))
                .collect();
            Body::from_stream(tokio_stream::iter(chunks))
        };
        let read = read_body(body(4), 1200).await.unwrap();
        assert_eq!(read.len(), 1200);
        let too_large = read_body(body(4), 1199).await.unwrap_err();
        assert_eq!(too_large.status, 413);
    }

    #[test]
    fn the_error_becomes_an_aws_error_response() {
        let api = ApiError::from(SigError::Mismatch);
        assert_eq!(api.status.as_u16(), 403);
        assert_eq!(api.code, "InvalidSignatureException");
        assert_eq!(api.message, MISMATCH_MESSAGE);
        let response = api.into_response();
        assert_eq!(
            response.headers()["x-amzn-ErrorType"],
            "InvalidSignatureException"
        );
    }

    // ---- The middleware, over a real connection.

    async fn echo(Extension(principal): Extension<Principal>, body: Bytes) -> String {
        format!(
            "{} {} {}",
            principal.access_key_id,
            principal.account_id,
            String::from_utf8_lossy(&body)
        )
    }

    /// Sends one HTTP/1.1 request; returns the status, the headers block
    /// (lowercase) and the body.
    async fn send(port: u16, head: &str, body: &[u8]) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        let (headers, body) = response.split_once("\r\n\r\n").unwrap();
        let status = headers[9..12].parse().unwrap();
        (status, headers.to_lowercase(), body.to_owned())
    }

    #[tokio::test]
    async fn the_middleware_guards_every_route_and_passes_the_body_on() {
        let settings = Settings::for_test("http://127.0.0.1:9", "http://127.0.0.1:9");
        let (state, _) = AppState::connect(&settings).unwrap();
        let app = Router::new()
            .route("/_herald/reset", post(echo))
            .fallback(echo)
            .layer(middleware::from_fn_with_state(state, authenticate));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let host = format!("127.0.0.1:{port}");
        let now = format_amz_date(epoch_seconds(SystemTime::now()));

        for path in ["/_herald/reset", "/things/dev%201%2Bx"] {
            // Signed: the handler sees the principal and the same body.
            let body = br#"{"a": 1}"#;
            let auth = sign(
                "POST",
                path,
                &[
                    ("host", &host),
                    ("x-amz-date", &now),
                    ("content-type", "application/json"),
                ],
                body,
                "HERALDDEVKEY",
                "herald-dev-secret",
                "us-east-1",
                "iot",
            );
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Amz-Date: {now}\r\nContent-Type: application/json\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let (status, _, text) = send(port, &head, body).await;
            assert_eq!(status, 200, "{path}: {text}");
            assert_eq!(text, r#"HERALDDEVKEY 123456789012 {"a": 1}"#);

            // Unsigned: refused before the handler.
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
            );
            let (status, headers, text) = send(port, &head, b"{}").await;
            assert_eq!(status, 403, "{path}: {text}");
            assert!(headers.contains("x-amzn-errortype: missingauthenticationtokenexception"));
            assert!(text.contains("Missing Authentication Token"), "{text}");

            // Signed with another secret.
            let auth = sign(
                "POST",
                path,
                &[("host", &host), ("x-amz-date", &now)],
                b"",
                "HERALDDEVKEY",
                "wrong",
                "us-east-1",
                "iot",
            );
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Amz-Date: {now}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let (status, headers, _) = send(port, &head, b"").await;
            assert_eq!(status, 403);
            assert!(headers.contains("x-amzn-errortype: invalidsignatureexception"));
        }

        // Too large a body.
        let head = format!(
            "POST /things/x HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let (status, headers, _) = send(port, &head, b"").await;
        assert_eq!(status, 413);
        assert!(headers.contains("x-amzn-errortype: requestentitytoolargeexception"));
        server.abort();
    }
}
