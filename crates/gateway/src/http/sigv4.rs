//! SigV4 request authentication.
//!
//! Every HTTP request (the fallback and `/_herald/*` included) must carry an
//! AWS Signature Version 4, either in the `Authorization` header (what the AWS
//! CLI, boto3 and the SDKs send) or as presigned query parameters (what MQTT
//! over WebSocket uses). [`verify`] is the pure check, reusable by the
//! WebSocket listener with service [`MQTT_WSS_SERVICE`]; [`authenticate`] is
//! the axum middleware around it for the control plane (service `iot`).
//!
//! The canonical request is rebuilt from the *raw* request target, as botocore
//! signs it: the already percent-encoded path is normalised and encoded again
//! (`/things/dev%201` is canonically `/things/dev%25201`), and the query pairs
//! are decoded, RFC 3986-encoded and sorted.
//!
//! Herald issues no temporary credentials: an `X-Amz-Security-Token` is not
//! validated (when signed, it is part of the signature like any header).

use std::{
    fmt::Write as _,
    pin::Pin,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::{Request, State},
    http::{HeaderMap, header::AUTHORIZATION},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState, ErrorKind};
use crate::settings::AccessKey;

/// The signing name of the control plane.
pub(crate) const CONTROL_PLANE_SERVICE: &str = "iot";
/// The signing name of MQTT over WebSocket (the presigned `GET /mqtt`).
#[allow(dead_code)] // for the gateway's WebSocket listener
pub(crate) const MQTT_WSS_SERVICE: &str = "iotdevicegateway";
/// The largest request body the control plane reads.
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
/// How far `X-Amz-Date` may be from the server's clock.
const MAX_SKEW_SECS: i64 = 15 * 60;
/// The longest validity of a presigned request: a week.
const MAX_EXPIRES_SECS: i64 = 7 * 24 * 60 * 60;
const CONTENT_SHA256: &str = "x-amz-content-sha256";
const SECURITY_TOKEN_PARAM: &str = "X-Amz-Security-Token";
const SIGNATURE_PARAM: &str = "X-Amz-Signature";

const MISMATCH_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// Who signed a request: inserted into the request's extensions for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub(crate) access_key_id: String,
    pub(crate) account_id: String,
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

/// The middleware: reads the body, verifies the signature for service `iot`
/// and the gateway's region, and hands the request (same body) on with its
/// [`Principal`] in the extensions.
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
    let verified = verify(
        &request_parts,
        &body,
        &state.access_keys,
        &state.region,
        CONTROL_PLANE_SERVICE,
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
            let mut request = Request::from_parts(parts, Body::from(body));
            request.extensions_mut().insert(principal);
            next.run(request).await
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

/// The signature's parts, from the header or the query.
struct Authorization {
    credential: String,
    signed_headers: String,
    signature: String,
    amz_date: String,
    /// `X-Amz-Expires`, for the presigned form only.
    expires: Option<i64>,
}

/// The credential scope: `akid/date/region/service/aws4_request`.
struct Scope<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

/// Verifies a request's SigV4 signature, header or presigned form, for
/// `service` in `region` at time `now`, against `keys`.
pub(crate) fn verify(
    parts: &RequestParts<'_>,
    body: &[u8],
    keys: &[AccessKey],
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<Principal, SigError> {
    let query = parse_query(parts.query);
    let presigned = parts.headers.get(AUTHORIZATION).is_none()
        && query.iter().any(|(key, _)| {
            matches!(
                key.as_slice(),
                b"X-Amz-Algorithm" | b"X-Amz-Credential" | b"X-Amz-Signature"
            )
        });
    let auth = if presigned {
        from_query(&query)?
    } else {
        from_header(parts.headers)?
    };

    // The scope.
    let scope = parse_scope(&auth.credential)?;
    if scope.service != service {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    if scope.region != region {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            scope.region
        )));
    }

    // The time.
    let Some(signed_at) = parse_amz_date(&auth.amz_date) else {
        return Err(SigError::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
            auth.amz_date
        )));
    };
    // `parse_amz_date` accepted 16 ASCII bytes, but take the date by
    // characters all the same: nothing here slices request text by offset.
    let amz_day: String = auth.amz_date.chars().take(8).collect();
    if scope.date != amz_day {
        return Err(SigError::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{amz_day}', from 'x-amz-date'.",
            scope.date,
        )));
    }
    check_time(&auth, signed_at, epoch_seconds(now))?;

    // The signed headers.
    let signed_headers: Vec<String> = auth
        .signed_headers
        .split(';')
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(SigError::Incomplete(format!(
            "SignedHeaders is malformed: '{}'.",
            auth.signed_headers
        )));
    }
    if !signed_headers.iter().any(|name| name == "host") {
        return Err(SigError::Incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }

    // The key.
    let key = keys
        .iter()
        .find(|key| key.access_key_id == scope.access_key_id)
        .ok_or(SigError::UnknownAccessKey)?;

    // The canonical request (or requests: a presigned URL's session token may
    // have been appended after signing, as the IoT device SDKs do).
    let payload_hash = payload_hash(parts.headers, body)?;
    let canonical_uri = canonical_uri(parts.path);
    let canonical_headers = canonical_headers(parts.headers, &signed_headers);
    let signed_headers_line = signed_headers.join(";");
    let mut queries = Vec::with_capacity(2);
    if presigned {
        queries.push(canonical_query(&query, &[SIGNATURE_PARAM]));
        if query
            .iter()
            .any(|(key, _)| key.as_slice() == SECURITY_TOKEN_PARAM.as_bytes())
        {
            queries.push(canonical_query(
                &query,
                &[SIGNATURE_PARAM, SECURITY_TOKEN_PARAM],
            ));
        }
    } else {
        queries.push(canonical_query(&query, &[]));
    }
    let signing_key = signing_key(&key.secret_access_key, scope.date, region, service);
    let credential_scope = format!("{}/{region}/{service}/{TERMINATOR}", scope.date);
    let mut matched = false;
    let mut first_canonical = None;
    for canonical_query in queries {
        let canonical = canonical_request(
            parts.method,
            &canonical_uri,
            &canonical_query,
            &canonical_headers,
            &signed_headers_line,
            &payload_hash,
        );
        let expected = hex(&hmac(
            &signing_key,
            string_to_sign(&auth.amz_date, &credential_scope, &canonical).as_bytes(),
        ));
        matched |= constant_time_eq(expected.as_bytes(), auth.signature.as_bytes());
        first_canonical.get_or_insert(canonical);
    }
    if matched {
        Ok(Principal {
            access_key_id: key.access_key_id.clone(),
            account_id: key.account_id.clone(),
        })
    } else {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let canonical = first_canonical.as_deref().map(redact).unwrap_or_default();
            tracing::debug!(canonical_request = ?canonical, "signature mismatch");
        }
        Err(SigError::Mismatch)
    }
}

/// The header form: `Authorization: AWS4-HMAC-SHA256 Credential=…,
/// SignedHeaders=…, Signature=…` and `X-Amz-Date`.
fn from_header(headers: &HeaderMap) -> Result<Authorization, SigError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(SigError::MissingToken);
    };
    let value = value
        .to_str()
        .map_err(|_| SigError::Incomplete("The Authorization header is not valid ASCII.".into()))?;
    let value = value.trim();
    let (algorithm, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(SigError::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. The only supported algorithm is {ALGORITHM}."
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',') {
        let Some((name, value)) = component.trim().split_once('=') else {
            continue;
        };
        let slot = match name.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        slot.get_or_insert_with(|| value.trim().to_owned());
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned());
    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            let _ = write!(
                missing,
                "Authorization header requires '{name}' parameter. "
            );
        }
    }
    if amz_date.is_none() {
        missing.push_str("Authorization header requires existence of a 'X-Amz-Date' header. ");
    }
    match (credential, signed_headers, signature, amz_date) {
        (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) => {
            Ok(Authorization {
                credential,
                signed_headers,
                signature,
                amz_date,
                expires: None,
            })
        }
        _ => Err(SigError::Incomplete(missing.trim_end().to_owned())),
    }
}

/// The presigned form: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature`.
fn from_query(query: &[(Vec<u8>, Vec<u8>)]) -> Result<Authorization, SigError> {
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key.as_slice() == name.as_bytes())
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    let (
        Some(algorithm),
        Some(credential),
        Some(signature),
        Some(amz_date),
        Some(signed_headers),
        Some(expires),
    ) = (
        param("X-Amz-Algorithm"),
        param("X-Amz-Credential"),
        param(SIGNATURE_PARAM),
        param("X-Amz-Date"),
        param("X-Amz-SignedHeaders"),
        param("X-Amz-Expires"),
    )
    else {
        return Err(SigError::Incomplete(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders', and 'X-Amz-Expires'. Re-examine the query-string parameters.".into(),
        ));
    };
    if algorithm != ALGORITHM {
        return Err(SigError::Incomplete(format!(
            "X-Amz-Algorithm only supports '{ALGORITHM}', not '{algorithm}'."
        )));
    }
    let expires = match expires.parse::<i64>() {
        Ok(secs) if (1..=MAX_EXPIRES_SECS).contains(&secs) => secs,
        _ => {
            return Err(SigError::Incomplete(format!(
                "X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES_SECS}, not '{expires}'."
            )));
        }
    };
    Ok(Authorization {
        credential,
        signed_headers,
        signature,
        amz_date,
        expires: Some(expires),
    })
}

fn parse_scope(credential: &str) -> Result<Scope<'_>, SigError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(SigError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    };
    if terminator != TERMINATOR {
        return Err(SigError::Incomplete(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'."
        )));
    }
    if access_key_id.is_empty()
        || region.is_empty()
        || service.is_empty()
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SigError::Incomplete(format!(
            "Credential is malformed: '{credential}'."
        )));
    }
    Ok(Scope {
        access_key_id,
        date,
        region,
        service,
    })
}

/// The header form: within ±15 minutes. The presigned form: not more than 15
/// minutes ahead, and not past `X-Amz-Date + X-Amz-Expires`.
fn check_time(auth: &Authorization, signed_at: i64, now: i64) -> Result<(), SigError> {
    let skew = now - signed_at;
    if -skew > MAX_SKEW_SECS {
        return Err(SigError::Invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.); the clock skew is {} s.",
            auth.amz_date,
            format_amz_date(now + MAX_SKEW_SECS),
            format_amz_date(now),
            -skew
        )));
    }
    match auth.expires {
        None if skew > MAX_SKEW_SECS => Err(SigError::Invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.); the clock skew is {skew} s.",
            auth.amz_date,
            format_amz_date(now - MAX_SKEW_SECS),
            format_amz_date(now),
        ))),
        Some(expires) if skew > expires => Err(SigError::Invalid(format!(
            "Signature expired: the presigned request was valid until {} ({} + {expires} s), it is now {}.",
            format_amz_date(signed_at + expires),
            auth.amz_date,
            format_amz_date(now),
        ))),
        _ => Ok(()),
    }
}

/// `x-amz-content-sha256` when sent (it must match the body), else the hex
/// SHA-256 of the body.
fn payload_hash(headers: &HeaderMap, body: &[u8]) -> Result<String, SigError> {
    let computed = hex(&Sha256::digest(body));
    let Some(claimed) = headers.get(CONTENT_SHA256) else {
        return Ok(computed);
    };
    let claimed = claimed.to_str().unwrap_or_default().trim();
    if claimed.eq_ignore_ascii_case(&computed) {
        Ok(claimed.to_owned())
    } else if claimed.starts_with("UNSIGNED-PAYLOAD") || claimed.starts_with("STREAMING-") {
        Err(SigError::Invalid(format!(
            "The payload must be signed: x-amz-content-sha256 '{claimed}' is not accepted."
        )))
    } else {
        Err(SigError::Invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
        ))
    }
}

/// The canonical request, with a trailing newline after the headers block.
fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!(
        "{}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        method.to_ascii_uppercase()
    )
}

fn string_to_sign(amz_date: &str, credential_scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, TERMINATOR.as_bytes())
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The raw path, dot segments and empty segments removed (botocore's
/// `normalize_url_path`), then percent-encoded again keeping `/` and `~`.
fn canonical_uri(raw_path: &str) -> String {
    let mut normalised = String::with_capacity(raw_path.len() + 1);
    if raw_path.is_empty() {
        normalised.push('/');
    } else {
        let mut segments: Vec<&str> = Vec::new();
        for segment in raw_path.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                _ => segments.push(segment),
            }
        }
        if raw_path.starts_with('/') {
            normalised.push('/');
        }
        normalised.push_str(&segments.join("/"));
        if raw_path.ends_with('/') && !segments.is_empty() {
            normalised.push('/');
        }
    }
    let mut encoded = String::with_capacity(normalised.len() * 2);
    for &byte in normalised.as_bytes() {
        if byte == b'/' || is_unreserved(byte) {
            encoded.push(char::from(byte));
        } else {
            push_escape(&mut encoded, byte);
        }
    }
    encoded
}

/// The raw query's pairs, percent-decoded (`+` stays `+`); empty segments
/// are skipped, a pair without `=` has an empty value.
fn parse_query(raw: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// The pairs, RFC 3986-encoded, sorted by key then value, `excluded` keys left
/// out.
fn canonical_query(pairs: &[(Vec<u8>, Vec<u8>)], excluded: &[&str]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .filter(|(key, _)| {
            !excluded
                .iter()
                .any(|name| key.as_slice() == name.as_bytes())
        })
        .map(|(key, value)| (uri_encode(key), uri_encode(value)))
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (index, (key, value)) in encoded.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// `name:value\n` for each signed header, in the listed order: values
/// trimmed, inner whitespace runs collapsed, repeated headers joined by `,`.
fn canonical_headers(headers: &HeaderMap, signed: &[String]) -> String {
    let mut out = String::new();
    for name in signed {
        out.push_str(name);
        out.push(':');
        for (index, value) in headers.get_all(name.as_str()).iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let value = String::from_utf8_lossy(value.as_bytes());
            for (word_index, word) in value.split_whitespace().enumerate() {
                if word_index > 0 {
                    out.push(' ');
                }
                out.push_str(word);
            }
        }
        out.push('\n');
    }
    out
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
}

fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            push_escape(&mut out, byte);
        }
    }
    out
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as is.
fn percent_decode(text: &str) -> Vec<u8> {
    fn digit(byte: u8) -> Option<u8> {
        char::from(byte)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let (Some(high), Some(low)) = (digit(bytes[index + 1]), digit(bytes[index + 2]))
        {
            out.push(high << 4 | low);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    out
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(HEX_LOWER[usize::from(byte >> 4)]));
        out.push(char::from(HEX_LOWER[usize::from(byte & 0x0f)]));
    }
    out
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The canonical request for a debug log, a session token's value hidden.
fn redact(canonical: &str) -> String {
    canonical
        .split('\n')
        .map(|line| {
            if line.starts_with("x-amz-security-token:") {
                "x-amz-security-token:<redacted>"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn epoch_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// `yyyymmddTHHMMSSZ` to epoch seconds. Reads bytes only: the text comes
/// from the request and may hold anything (a multi-byte character where a
/// digit should be is simply not a date).
fn parse_amz_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let [
        y0,
        y1,
        y2,
        y3,
        mo0,
        mo1,
        d0,
        d1,
        b'T',
        h0,
        h1,
        mi0,
        mi1,
        s0,
        s1,
        b'Z',
    ] = *bytes
    else {
        return None;
    };
    let number = |digits: &[u8]| -> Option<i64> {
        digits.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, month, day) = (
        number(&[y0, y1, y2, y3])?,
        number(&[mo0, mo1])?,
        number(&[d0, d1])?,
    );
    let (hour, minute, second) = (number(&[h0, h1])?, number(&[mi0, mi1])?, number(&[s0, s1])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Epoch seconds to `yyyymmddTHHMMSSZ`.
fn format_amz_date(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{
        Extension, Router,
        http::{HeaderName, HeaderValue},
        middleware,
        routing::post,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::settings::Settings;

    /// A request as it arrives: method, raw target, headers, body.
    struct Req {
        method: &'static str,
        path: String,
        query: String,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Req {
        fn new(method: &'static str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Req {
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            Req {
                method,
                path: path.to_owned(),
                query: query.to_owned(),
                headers: map,
                body: body.to_vec(),
            }
        }

        fn set(mut self, name: &'static str, value: &str) -> Req {
            self.headers
                .insert(name, HeaderValue::from_str(value).unwrap());
            self
        }

        fn check(
            &self,
            keys: &[AccessKey],
            region: &str,
            service: &str,
            now: SystemTime,
        ) -> Result<Principal, SigError> {
            let parts = RequestParts {
                method: self.method,
                path: &self.path,
                query: &self.query,
                headers: &self.headers,
            };
            verify(&parts, &self.body, keys, region, service, now)
        }

        /// Verifies as the control plane does, with the dev key, at `now`.
        fn check_iot(&self, now: SystemTime) -> Result<Principal, SigError> {
            self.check(&dev_keys(), "us-east-1", "iot", now)
        }
    }

    fn key(id: &str, secret: &str) -> AccessKey {
        AccessKey {
            access_key_id: id.into(),
            secret_access_key: secret.into(),
            account_id: "123456789012".into(),
        }
    }

    fn dev_keys() -> Vec<AccessKey> {
        vec![
            key("OTHERKEY", "other-secret"),
            key("HERALDDEVKEY", "herald-dev-secret"),
        ]
    }

    fn dev_principal() -> Principal {
        Principal {
            access_key_id: "HERALDDEVKEY".into(),
            account_id: "123456789012".into(),
        }
    }

    /// `amz_date` plus `offset` seconds, as a `SystemTime`.
    fn at(amz_date: &str, offset: i64) -> SystemTime {
        let secs = parse_amz_date(amz_date).unwrap() + offset;
        UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
    }

    /// Signs with this module's own functions, every given header signed
    /// (they must include `host` and `x-amz-date`): the Authorization value.
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

    #[allow(clippy::too_many_arguments)]
    fn sign(
        method: &'static str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        access_key_id: &str,
        secret: &str,
        region: &str,
        service: &str,
    ) -> String {
        let req = Req::new(method, target, headers, body);
        let amz_date = req.headers["x-amz-date"].to_str().unwrap().to_owned();
        let mut names: Vec<String> = headers.iter().map(|(n, _)| n.to_lowercase()).collect();
        names.sort();
        names.dedup();
        let canonical = canonical_request(
            method,
            &canonical_uri(&req.path),
            &canonical_query(&parse_query(&req.query), &[]),
            &canonical_headers(&req.headers, &names),
            &names.join(";"),
            &hex(&Sha256::digest(body)),
        );
        let scope = format!("{}/{region}/{service}/aws4_request", &amz_date[..8]);
        let key = signing_key(secret, &amz_date[..8], region, service);
        let signature = hex(&hmac(
            &key,
            string_to_sign(&amz_date, &scope, &canonical).as_bytes(),
        ));
        format!(
            "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={signature}",
            names.join(";")
        )
    }

    // ---- The AWS SigV4 test suite (AKIDEXAMPLE, 2015-08-30, service `service`).

    const SUITE_DATE: &str = "20150830T123600Z";

    fn suite(method: &'static str, target: &str, signature: &str) -> Result<Principal, SigError> {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"
        );
        let keys = [key(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )];
        Req::new(
            method,
            target,
            &[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", SUITE_DATE),
                ("authorization", &authorization),
            ],
            b"",
        )
        .check(&keys, "us-east-1", "service", at(SUITE_DATE, 0))
    }

    #[test]
    fn suite_get_vanilla() {
        let signature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        assert_eq!(
            suite("GET", "/", signature).unwrap().access_key_id,
            "AKIDEXAMPLE"
        );
        let wrong = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf30";
        assert_eq!(suite("GET", "/", wrong), Err(SigError::Mismatch));
    }

    #[test]
    fn suite_get_vanilla_query_order_key_case() {
        let signature = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        assert!(suite("GET", "/?Param2=value2&Param1=value1", signature).is_ok());
    }

    #[test]
    fn suite_post_vanilla() {
        let signature = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b";
        assert!(suite("POST", "/", signature).is_ok());
        assert_eq!(suite("GET", "/", signature), Err(SigError::Mismatch));
    }

    // ---- Requests botocore 1.43.11 signed (boto3 `iot` client, endpoint
    // http://127.0.0.1:8080, HERALDDEVKEY/herald-dev-secret, us-east-1, clock
    // fixed at 2024-05-17T09:30:00Z), captured before sending.

    const DATE: &str = "20240517T093000Z";
    const HOST: &str = "127.0.0.1:8080";
    const USER_AGENT: &str = "Boto3/1.43.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18.44-fc-v657 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/Z,e,b,D,N cfg/retry-mode#legacy Botocore/1.43.11";

    fn authorization(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=HERALDDEVKEY/20240517/us-east-1/iot/aws4_request, SignedHeaders={signed_headers}, Signature={signature}"
        )
    }

    fn boto(
        method: &'static str,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
        signed_headers: &str,
        signature: &str,
    ) -> Req {
        let auth = authorization(signed_headers, signature);
        let length = body.len().to_string();
        let mut headers = vec![
            ("host", HOST),
            ("user-agent", USER_AGENT),
            ("x-amz-date", DATE),
            ("authorization", auth.as_str()),
            (
                "amz-sdk-invocation-id",
                "8af7e2d8-6eb6-4757-bad0-6650c097a0de",
            ),
            ("amz-sdk-request", "attempt=1"),
            ("content-length", length.as_str()),
        ];
        if let Some(content_type) = content_type {
            headers.push(("content-type", content_type));
        }
        Req::new(method, target, &headers, body)
    }

    const CREATE_BODY: &[u8] = br#"{"attributePayload": {"attributes": {"color": "red"}}}"#;

    /// `create_thing(thingName='dev 1+x', attributePayload=...)`.
    fn create_thing() -> Req {
        boto(
            "POST",
            "/things/dev%201%2Bx",
            Some("application/json"),
            CREATE_BODY,
            "content-type;host;x-amz-date",
            "7b0e6888afe08a564c34965c66980dd8a58b65e87644d6610332a2d0523a9e50",
        )
    }

    const LIST_QUERY: &str =
        "maxResults=5&attributeName=color&attributeValue=red%20blue&thingTypeName=t%3A1";

    /// `list_things(maxResults=5, attributeName='color', attributeValue='red
    /// blue', thingTypeName='t:1')`.
    fn list_things(query: &str) -> Req {
        boto(
            "GET",
            &format!("/things?{query}"),
            None,
            b"",
            "host;x-amz-date",
            "b4074b4892cdd98fec8d19ff2ff84f45efa165b0253e20b9e97fcdcdfa763ebd",
        )
    }

    #[test]
    fn botocore_create_thing_with_an_encoded_name_and_a_body() {
        assert_eq!(create_thing().check_iot(at(DATE, 0)), Ok(dev_principal()));
    }

    #[test]
    fn botocore_list_things_with_a_query() {
        assert_eq!(
            list_things(LIST_QUERY).check_iot(at(DATE, 0)),
            Ok(dev_principal())
        );
        // The order of the pairs on the wire does not matter.
        let reordered =
            "thingTypeName=t%3A1&attributeValue=red%20blue&maxResults=5&attributeName=color";
        assert!(list_things(reordered).check_iot(at(DATE, 0)).is_ok());
    }

    #[test]
    fn botocore_update_thing_patch_with_a_body() {
        let req = boto(
            "PATCH",
            "/things/dev-2",
            Some("application/json"),
            br#"{"attributePayload": {"attributes": {"size": "xl"}, "merge": true}, "expectedVersion": 1}"#,
            "content-type;host;x-amz-date",
            "54ca724a5252e50c6f1e74561db7a986f76a6e26c8e8c165cbe7ef0a8b2caea7",
        );
        assert_eq!(req.check_iot(at(DATE, 0)), Ok(dev_principal()));
    }

    #[test]
    fn botocore_list_attached_policies_with_an_arn_in_the_path() {
        let req = boto(
            "POST",
            "/attached-policies/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Acert%2Fabc",
            None,
            b"",
            "host;x-amz-date",
            "c390aa8e373860c28cb9a16765b8c9c6213a623610f31e5610c36ff41fcd144d",
        );
        assert_eq!(req.check_iot(at(DATE, 0)), Ok(dev_principal()));
    }

    #[test]
    fn botocore_delete_thing_with_a_query() {
        let req = boto(
            "DELETE",
            "/things/dev-3?expectedVersion=3",
            None,
            b"",
            "host;x-amz-date",
            "c8ef38c4e7fc81d9415b3c95f15bf7007284454188fde0d17aeebb245746c9ff",
        );
        assert_eq!(req.check_iot(at(DATE, 0)), Ok(dev_principal()));
    }

    #[test]
    fn botocore_with_a_signed_session_token() {
        let req = boto(
            "GET",
            "/things/dev-4",
            None,
            b"",
            "host;x-amz-date;x-amz-security-token",
            "847bdfc34dfb7d4c7282e37a2de59819fa928da70a40a2115e79f7513b839e0b",
        )
        .set("x-amz-security-token", "tok/en+=");
        assert!(req.check_iot(at(DATE, 0)).is_ok());
        let changed = req.set("x-amz-security-token", "other");
        assert_eq!(changed.check_iot(at(DATE, 0)), Err(SigError::Mismatch));
    }

    // ---- Rejections.

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        let keys = [key("HERALDDEVKEY", "not-the-secret")];
        let err = create_thing()
            .check(&keys, "us-east-1", "iot", at(DATE, 0))
            .unwrap_err();
        assert_eq!(err, SigError::Mismatch);
        assert_eq!(err.code(), "InvalidSignatureException");
        assert_eq!(err.status(), 403);
        assert!(
            err.to_string()
                .starts_with("The request signature we calculated")
        );
    }

    #[test]
    fn an_unknown_access_key_is_unrecognized() {
        let keys = [key("OTHERKEY", "herald-dev-secret")];
        let err = create_thing()
            .check(&keys, "us-east-1", "iot", at(DATE, 0))
            .unwrap_err();
        assert_eq!(err, SigError::UnknownAccessKey);
        assert_eq!(err.code(), "UnrecognizedClientException");
        assert_eq!(err.status(), 403);
        assert_eq!(
            err.to_string(),
            "The security token included in the request is invalid."
        );
    }

    #[test]
    fn a_clock_skew_over_15_minutes_is_refused() {
        let req = create_thing();
        assert!(req.check_iot(at(DATE, 15 * 60)).is_ok());
        assert!(req.check_iot(at(DATE, -15 * 60)).is_ok());
        let late = req.check_iot(at(DATE, 16 * 60)).unwrap_err();
        assert_eq!(late.code(), "InvalidSignatureException");
        assert_eq!(late.status(), 403);
        let message = late.to_string();
        assert!(message.contains("Signature expired"), "{message}");
        assert!(message.contains("20240517T093000Z is now earlier than 20240517T093100Z"));
        assert!(message.contains("960 s"), "{message}");
        let early = req.check_iot(at(DATE, -16 * 60)).unwrap_err();
        assert_eq!(early.code(), "InvalidSignatureException");
        assert!(early.to_string().contains("not yet current"), "{early}");
        assert!(early.to_string().contains("960 s"), "{early}");
    }

    #[test]
    fn the_scope_date_must_be_the_date_of_x_amz_date() {
        let req = create_thing().set("x-amz-date", "20240518T093000Z");
        let err = req.check_iot(at("20240518T093000Z", 0)).unwrap_err();
        assert!(
            matches!(&err, SigError::Invalid(m) if m.contains("'20240517' != '20240518'")),
            "{err}"
        );
        let req = create_thing().set("x-amz-date", "2024-05-17T09:30:00Z");
        assert!(
            matches!(req.check_iot(at(DATE, 0)), Err(SigError::Incomplete(m)) if m.contains("ISO-8601"))
        );
    }

    #[test]
    fn the_region_must_be_ours() {
        let err = create_thing()
            .check(&dev_keys(), "eu-west-1", "iot", at(DATE, 0))
            .unwrap_err();
        assert!(
            matches!(&err, SigError::Invalid(m) if m.contains("region, not 'us-east-1'")),
            "{err}"
        );
        assert_eq!(err.code(), "InvalidSignatureException");
    }

    #[test]
    fn the_service_must_be_the_expected_one() {
        let err = create_thing()
            .check(&dev_keys(), "us-east-1", MQTT_WSS_SERVICE, at(DATE, 0))
            .unwrap_err();
        assert!(
            matches!(&err, SigError::Invalid(m) if m.contains("'iotdevicegateway'")),
            "{err}"
        );
    }

    #[test]
    fn host_must_be_signed() {
        let headers = [("x-amz-date", DATE), ("content-type", "application/json")];
        let auth = sign(
            "POST",
            "/things/t1",
            &headers,
            b"{}",
            "HERALDDEVKEY",
            "herald-dev-secret",
            "us-east-1",
            "iot",
        );
        assert!(auth.contains("SignedHeaders=content-type;x-amz-date,"));
        let req = Req::new("POST", "/things/t1", &headers, b"{}")
            .set("host", HOST)
            .set("authorization", &auth);
        let err = req.check_iot(at(DATE, 0)).unwrap_err();
        assert!(
            matches!(&err, SigError::Incomplete(m) if m.contains("'Host'")),
            "{err}"
        );
        assert_eq!(err.code(), "IncompleteSignatureException");
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let mut req = create_thing();
        req.body = br#"{"attributePayload": {"attributes": {"color": "blue"}}}"#.to_vec();
        assert_eq!(req.check_iot(at(DATE, 0)), Err(SigError::Mismatch));
    }

    #[test]
    fn a_tampered_query_is_a_mismatch() {
        let tampered = LIST_QUERY.replace("maxResults=5", "maxResults=6");
        assert_eq!(
            list_things(&tampered).check_iot(at(DATE, 0)),
            Err(SigError::Mismatch)
        );
        let added = format!("{LIST_QUERY}&nextToken=x");
        assert_eq!(
            list_things(&added).check_iot(at(DATE, 0)),
            Err(SigError::Mismatch)
        );
    }

    #[test]
    fn a_tampered_path_or_method_is_a_mismatch() {
        let mut req = create_thing();
        req.path = "/things/dev%201%2Bx2".into();
        assert_eq!(req.check_iot(at(DATE, 0)), Err(SigError::Mismatch));
        // Decoding the path before verifying would accept this one.
        let mut req = create_thing();
        req.path = "/things/dev 1+x".into();
        assert_eq!(req.check_iot(at(DATE, 0)), Err(SigError::Mismatch));
        let mut req = create_thing();
        req.method = "PUT";
        assert_eq!(req.check_iot(at(DATE, 0)), Err(SigError::Mismatch));
    }

    #[test]
    fn a_content_sha256_header_must_match_the_body() {
        let hash = hex(&Sha256::digest(CREATE_BODY));
        // The same hash as the body's: the canonical request is unchanged.
        let req = create_thing().set(CONTENT_SHA256, &hash);
        assert_eq!(req.check_iot(at(DATE, 0)), Ok(dev_principal()));
        let req = create_thing().set(CONTENT_SHA256, &hex(&Sha256::digest(b"other")));
        assert!(
            matches!(req.check_iot(at(DATE, 0)), Err(SigError::Invalid(m)) if m.contains("x-amz-content-sha256"))
        );
        let req = create_thing().set(CONTENT_SHA256, "UNSIGNED-PAYLOAD");
        assert!(
            matches!(req.check_iot(at(DATE, 0)), Err(SigError::Invalid(m)) if m.contains("UNSIGNED-PAYLOAD"))
        );
        assert_eq!(payload_hash(&HeaderMap::new(), b"").unwrap(), EMPTY_SHA256);
    }

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn no_authorization_is_a_missing_token() {
        let req = Req::new(
            "GET",
            "/things",
            &[("host", HOST), ("x-amz-date", DATE)],
            b"",
        );
        let err = req.check_iot(at(DATE, 0)).unwrap_err();
        assert_eq!(err, SigError::MissingToken);
        assert_eq!(err.code(), "MissingAuthenticationTokenException");
        assert_eq!(err.status(), 403);
        assert_eq!(err.to_string(), "Missing Authentication Token");
        // Unrelated X-Amz-* query parameters do not make a presigned request.
        let req = Req::new("GET", "/things?X-Amz-Foo=1", &[("host", HOST)], b"");
        assert_eq!(req.check_iot(at(DATE, 0)), Err(SigError::MissingToken));
    }

    #[test]
    fn a_malformed_authorization_is_incomplete() {
        let signature = "7b0e6888afe08a564c34965c66980dd8a58b65e87644d6610332a2d0523a9e50";
        let cases = [
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential=HERALDDEVKEY/20240517/us-east-1/iot/aws4_request, Signature={signature}"
                ),
                "requires 'SignedHeaders'",
            ),
            (
                "AWS4-HMAC-SHA256 SignedHeaders=host".to_owned(),
                "requires 'Credential' parameter. Authorization header requires 'Signature'",
            ),
            (
                format!(
                    "AWS4-HMAC-SHA1 Credential=HERALDDEVKEY/20240517/us-east-1/iot/aws4_request, SignedHeaders=host, Signature={signature}"
                ),
                "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA1'",
            ),
            ("Bearer abc".to_owned(), "Unsupported AWS 'algorithm'"),
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential=HERALDDEVKEY/20240517/us-east-1/iot, SignedHeaders=host, Signature={signature}"
                ),
                "exactly 5 slash-delimited elements",
            ),
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential=HERALDDEVKEY/20240517/us-east-1/iot/aws5_request, SignedHeaders=host, Signature={signature}"
                ),
                "valid terminator",
            ),
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential=HERALDDEVKEY/2024-5-17/us-east-1/iot/aws4_request, SignedHeaders=host, Signature={signature}"
                ),
                "Credential is malformed",
            ),
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential=HERALDDEVKEY/20240517/us-east-1/iot/aws4_request, SignedHeaders=host;;x-amz-date, Signature={signature}"
                ),
                "SignedHeaders is malformed",
            ),
        ];
        for (auth, expected) in cases {
            let err = create_thing()
                .set("authorization", &auth)
                .check_iot(at(DATE, 0))
                .unwrap_err();
            assert!(
                matches!(&err, SigError::Incomplete(m) if m.contains(expected)),
                "{auth}: {err}"
            );
            assert_eq!(err.code(), "IncompleteSignatureException");
            assert_eq!(err.status(), 400);
        }
        let mut req = create_thing();
        req.headers.remove("x-amz-date");
        assert!(
            matches!(req.check_iot(at(DATE, 0)), Err(SigError::Incomplete(m)) if m.contains("'X-Amz-Date'"))
        );
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

    // ---- Presigned (query) form, as botocore's `SigV4QueryAuth` signs
    // `GET http://127.0.0.1:8443/mqtt` for `iotdevicegateway`, expires 300 s.

    const PRESIGNED: &str = "/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=HERALDDEVKEY%2F20240517%2Fus-east-1%2Fiotdevicegateway%2Faws4_request&X-Amz-Date=20240517T093000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=93fe67ecbf10a42fb2053108523bc98c726c76c4a432397aea85d18c7abd1356";

    fn presigned(target: &str) -> Req {
        Req::new(
            "GET",
            target,
            &[
                ("host", "127.0.0.1:8443"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "mqtt"),
            ],
            b"",
        )
    }

    fn check_wss(req: &Req, now: SystemTime) -> Result<Principal, SigError> {
        req.check(&dev_keys(), "us-east-1", MQTT_WSS_SERVICE, now)
    }

    #[test]
    fn a_presigned_url_is_valid_until_it_expires() {
        let req = presigned(PRESIGNED);
        assert_eq!(check_wss(&req, at(DATE, 0)), Ok(dev_principal()));
        assert!(check_wss(&req, at(DATE, 300)).is_ok());
        // Slightly ahead of the server's clock is fine, far ahead is not.
        assert!(check_wss(&req, at(DATE, -60)).is_ok());
        assert!(
            matches!(check_wss(&req, at(DATE, -16 * 60)), Err(SigError::Invalid(m)) if m.contains("not yet current"))
        );
        // Too late: X-Amz-Expires is enforced.
        let err = check_wss(&req, at(DATE, 301)).unwrap_err();
        assert!(
            matches!(&err, SigError::Invalid(m) if m.contains("Signature expired") && m.contains("20240517T093500Z")),
            "{err}"
        );
        assert_eq!(err.code(), "InvalidSignatureException");
        // The control plane's service is not this one.
        assert!(
            matches!(req.check_iot(at(DATE, 0)), Err(SigError::Invalid(m)) if m.contains("'iot'"))
        );
    }

    #[test]
    fn a_presigned_url_with_an_appended_session_token_verifies() {
        let req = presigned(&format!("{PRESIGNED}&X-Amz-Security-Token=tok%2Fen%2B%3D"));
        assert_eq!(check_wss(&req, at(DATE, 0)), Ok(dev_principal()));
    }

    /// Issue 10, item 4: a presigned `X-Amz-Date` holding a multi-byte
    /// character where a digit should be (16 bytes, `T` and `Z` in place)
    /// used to panic while slicing the year; it is a malformed date, with
    /// any access key or none known.
    #[test]
    fn a_non_ascii_presigned_date_is_malformed_not_a_panic() {
        for date in [
            "201%C3%A9517T093000Z",   // 201é517T093000Z
            "2024%C3%A917T093000Z",   // a 2-byte character across the month
            "2024051%C3%A9T09300Z",   // T out of place
            "202%EF%BF%BD17T093000Z", // U+FFFD, 3 bytes
            "2024%FF%FE17T093000Z",   // invalid UTF-8, decoded lossily
            "20240517T0%C3%A90000Z",  // in the time
            "20240517T09300%C3%A9",   // no Z
        ] {
            for key in ["HERALDDEVKEY", "UNKNOWN"] {
                let target = PRESIGNED
                    .replace("X-Amz-Date=20240517T093000Z", &format!("X-Amz-Date={date}"))
                    .replace("Credential=HERALDDEVKEY", &format!("Credential={key}"));
                let verdict = check_wss(&presigned(&target), at(DATE, 0));
                assert!(
                    matches!(&verdict, Err(SigError::Incomplete(m)) if m.contains("ISO-8601")),
                    "{date} with {key}: {verdict:?}"
                );
            }
        }
    }

    #[test]
    fn parse_amz_date_takes_any_text() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20240517T093000Z"), Some(1_715_938_200));
        for text in [
            "",
            "é",
            "201é517T093000Z",
            "2024é517T093000Z",
            "20240517T0930é0Z",
            "20240517T093000é",
            "2024051éT093000Z",
            "\u{10FFFF}0240517T09300Z",
            "20240517t093000z",
            "+2024051T093000Z",
            "2024-5-1T093000Z",
            "20241317T093000Z",
            "20240230T093000Z",
            "20240517T246000Z",
        ] {
            assert_eq!(parse_amz_date(text), None, "{text:?}");
        }
        // Every character in every position of a valid date.
        let valid: Vec<char> = "20240517T093000Z".chars().collect();
        for at in 0..valid.len() {
            for c in ['é', '\u{FFFD}', '\u{10FFFF}', '\0', ' ', '9'] {
                let mut text = valid.clone();
                text[at] = c;
                let text: String = text.into_iter().collect();
                let _ = parse_amz_date(&text);
            }
        }
    }

    #[test]
    fn a_tampered_presigned_url_is_refused() {
        let longer = PRESIGNED.replace("X-Amz-Expires=300", "X-Amz-Expires=3000");
        assert_eq!(
            check_wss(&presigned(&longer), at(DATE, 0)),
            Err(SigError::Mismatch)
        );
        let extra = format!("{PRESIGNED}&clientId=x");
        assert_eq!(
            check_wss(&presigned(&extra), at(DATE, 0)),
            Err(SigError::Mismatch)
        );
        let other_host = presigned(PRESIGNED).set("host", "127.0.0.1:8444");
        assert_eq!(check_wss(&other_host, at(DATE, 0)), Err(SigError::Mismatch));
        let no_expires = PRESIGNED.replace("&X-Amz-Expires=300", "");
        assert!(
            matches!(check_wss(&presigned(&no_expires), at(DATE, 0)), Err(SigError::Incomplete(m)) if m.contains("X-Amz-Expires"))
        );
        let week = PRESIGNED.replace("X-Amz-Expires=300", "X-Amz-Expires=604801");
        assert!(
            matches!(check_wss(&presigned(&week), at(DATE, 0)), Err(SigError::Incomplete(m)) if m.contains("604800"))
        );
    }

    // ---- The canonical parts.

    #[test]
    fn the_canonical_uri_encodes_the_raw_path_again() {
        assert_eq!(
            canonical_uri("/things/dev%201%2Bx"),
            "/things/dev%25201%252Bx"
        );
        assert_eq!(
            canonical_uri(
                "/attached-policies/arn%3Aaws%3Aiot%3Aeu-west-1%3A123456789012%3Acert%2Fabc123"
            ),
            "/attached-policies/arn%253Aaws%253Aiot%253Aeu-west-1%253A123456789012%253Acert%252Fabc123"
        );
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("//"), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/a/b/../.."), "/");
        assert_eq!(canonical_uri("/~user/a-b_c.d"), "/~user/a-b_c.d");
        assert_eq!(canonical_uri("/a:b"), "/a%3Ab");
    }

    #[test]
    fn the_canonical_query_is_decoded_encoded_and_sorted() {
        assert_eq!(
            canonical_query(&parse_query(LIST_QUERY), &[]),
            "attributeName=color&attributeValue=red%20blue&maxResults=5&thingTypeName=t%3A1"
        );
        assert_eq!(canonical_query(&parse_query(""), &[]), "");
        assert_eq!(
            canonical_query(&parse_query("b=2&a&c=&a=1&&x=%7e+%2b%zz"), &[]),
            "a=&a=1&b=2&c=&x=~%2B%2B%25zz"
        );
        assert_eq!(
            canonical_query(
                &parse_query("k=%C3%A9&X-Amz-Signature=s"),
                &[SIGNATURE_PARAM]
            ),
            "k=%C3%A9"
        );
    }

    #[test]
    fn canonical_headers_trim_collapse_and_join() {
        let req = Req::new(
            "GET",
            "/",
            &[
                ("host", "example.amazonaws.com"),
                ("my-header1", "  value1 "),
                ("my-header2", "\"a   b   c\""),
                ("my-header3", "one"),
                ("my-header3", " two  three "),
            ],
            b"",
        );
        let names: Vec<String> = ["host", "my-header1", "my-header2", "my-header3", "absent"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            canonical_headers(&req.headers, &names),
            "host:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nmy-header3:one,two three\nabsent:\n"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert_eq!(percent_decode("a%2Fb%2"), b"a/b%2");
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date(SUITE_DATE), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20240229T235959Z"), Some(1_709_251_199));
        assert_eq!(parse_amz_date("20230229T000000Z"), None);
        assert_eq!(parse_amz_date("20240517T243000Z"), None);
        assert_eq!(parse_amz_date("20240517T093000"), None);
        for date in [SUITE_DATE, DATE, "20000229T120000Z", "21001231T235959Z"] {
            assert_eq!(format_amz_date(parse_amz_date(date).unwrap()), date);
        }
        assert_eq!(epoch_seconds(at(DATE, 0)), parse_amz_date(DATE).unwrap());
        let redacted = redact(
            "GET\n/\n\nhost:h\nx-amz-security-token:secret\n\nhost;x-amz-security-token\nabc",
        );
        assert!(!redacted.contains("secret") && redacted.contains("<redacted>"));
    }

    #[test]
    fn the_test_signer_agrees_with_botocore() {
        let auth = sign(
            "POST",
            "/things/dev%201%2Bx",
            &[
                ("host", HOST),
                ("x-amz-date", DATE),
                ("content-type", "application/json"),
            ],
            CREATE_BODY,
            "HERALDDEVKEY",
            "herald-dev-secret",
            "us-east-1",
            "iot",
        );
        assert_eq!(
            auth,
            create_thing().headers["authorization"].to_str().unwrap()
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
        let state = AppState::connect(&settings).unwrap();
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
