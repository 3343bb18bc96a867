//! Entry points for the gateway's fuzz targets (`crates/gateway/fuzz`, run
//! by `cargo xtask fuzz`) and for the tests that replay their corpora on
//! every `cargo test`: bytes a client could send in, a verdict out, through
//! the same code the listeners run. None of them may panic, on any input.
//!
//! - [`sigv4_verdict`]: a raw HTTP/1.1 request (head and body) verified by
//!   the SigV4 verifier, with a fixed key and clock ([`SIGV4_ACCESS_KEY_ID`],
//!   [`SIGV4_NOW`]);
//! - [`mqtt_decode`]: a byte stream decoded into MQTT packets by the
//!   sessions' reader, MQTT 3.1.1 or 5.

use std::time::{Duration, UNIX_EPOCH};

use axum::{
    http::{HeaderMap, HeaderName, HeaderValue},
    response::IntoResponse as _,
};

use crate::http::{
    ApiError,
    sigv4::{self, RequestParts},
};
use crate::mqtt::session::{self, SessionSettings};
use crate::settings::AccessKey;

/// The one access key [`sigv4_verdict`] knows.
pub const SIGV4_ACCESS_KEY_ID: &str = "HERALDDEVKEY";
/// Its secret.
pub const SIGV4_SECRET_ACCESS_KEY: &str = "herald-dev-secret";
/// The region requests must be signed for.
pub const SIGV4_REGION: &str = "us-east-1";
/// The verifier's clock: 2024-05-17T09:30:00Z, in epoch seconds.
pub const SIGV4_NOW: u64 = 1_715_938_200;

/// What the verifier made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigV4Verdict {
    /// Not even a request line.
    Unparsed,
    /// Signed by the known key.
    Accepted {
        /// The key that signed it.
        access_key_id: String,
    },
    /// Refused: the HTTP status and the AWS error type of the answer.
    Refused {
        status: u16,
        error_type: &'static str,
    },
}

/// Parses `data` leniently as an HTTP/1.1 request (request line, header
/// lines up to an empty line, the rest is the body), then verifies its
/// signature, header or presigned form, for the control plane (service
/// `iot`), and renders the refusal as the HTTP answer would. Header lines
/// that are not valid HTTP are skipped, as the HTTP server would refuse
/// them before the verifier runs.
pub fn sigv4_verdict(data: &[u8]) -> SigV4Verdict {
    let Some(request) = RawRequest::parse(data) else {
        return SigV4Verdict::Unparsed;
    };
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    let parts = RequestParts {
        method: &request.method,
        path,
        query,
        headers: &request.headers,
    };
    let keys = [AccessKey {
        access_key_id: SIGV4_ACCESS_KEY_ID.to_owned(),
        secret_access_key: SIGV4_SECRET_ACCESS_KEY.to_owned(),
        account_id: "123456789012".to_owned(),
    }];
    let now = UNIX_EPOCH + Duration::from_secs(SIGV4_NOW);
    match sigv4::verify(
        &parts,
        request.body,
        &keys,
        &[SIGV4_REGION.to_owned()],
        sigv4::CONTROL_PLANE_SERVICE,
        now,
    ) {
        Ok(principal) => SigV4Verdict::Accepted {
            access_key_id: principal.access_key_id,
        },
        Err(err) => {
            let (status, error_type) = (err.status(), err.code());
            let _ = ApiError::from(err).into_response();
            SigV4Verdict::Refused { status, error_type }
        }
    }
}

/// A request as [`sigv4_verdict`] reads it.
struct RawRequest<'a> {
    method: String,
    target: String,
    headers: HeaderMap,
    body: &'a [u8],
}

impl<'a> RawRequest<'a> {
    fn parse(data: &'a [u8]) -> Option<RawRequest<'a>> {
        let (head, body) = match find(data, b"\r\n\r\n") {
            Some(at) => (&data[..at], &data[at + 4..]),
            None => match find(data, b"\n\n") {
                Some(at) => (&data[..at], &data[at + 2..]),
                None => (data, &data[data.len()..]),
            },
        };
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
        let request_line = lines.next()?;
        let mut words = request_line
            .split(|&b| b == b' ')
            .filter(|word| !word.is_empty());
        let method = String::from_utf8_lossy(words.next()?).into_owned();
        let target = String::from_utf8_lossy(words.next()?).into_owned();
        let mut headers = HeaderMap::new();
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.trim_ascii()),
                HeaderValue::from_bytes(value.trim_ascii()),
            ) else {
                continue;
            };
            headers.append(name, value);
        }
        Some(RawRequest {
            method,
            target,
            headers,
            body,
        })
    }
}

/// Where `needle` first starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Which codec [`mqtt_decode`] reads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttLevel {
    /// As a new connection does: from the CONNECT's protocol level.
    FromConnect,
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.
    V5,
}

/// What [`mqtt_decode`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttDecoded {
    /// Each packet read, in `Debug` form.
    pub packets: Vec<String>,
    /// Why reading stopped before the end, if it did.
    pub error: Option<String>,
}

/// Decodes `data` as a client's byte stream, with the sessions' reader and
/// their default packet size limit.
pub fn mqtt_decode(data: &[u8], level: MqttLevel) -> MqttDecoded {
    let v5 = match level {
        MqttLevel::FromConnect => None,
        MqttLevel::V311 => Some(false),
        MqttLevel::V5 => Some(true),
    };
    let (packets, error) =
        session::decode_stream(data, v5, SessionSettings::default().max_packet_size);
    MqttDecoded {
        packets: packets.iter().map(|p| format!("{p:?}")).collect(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{}: too few seeds", dir.display());
        files
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect()
    }

    /// Every input of the SigV4 corpus (the crashes ever found among
    /// them) gets a verdict, without a panic.
    #[test]
    fn the_sigv4_corpus_replays() {
        let mut accepted = 0;
        for (path, bytes) in corpus("sigv4") {
            let verdict = std::panic::catch_unwind(|| sigv4_verdict(&bytes)).unwrap_or_else(|_| {
                panic!("{} panicked", path.display());
            });
            if matches!(verdict, SigV4Verdict::Accepted { .. }) {
                accepted += 1;
            }
        }
        assert!(accepted >= 1, "no seed is a correctly signed request");
    }

    /// Every input of the MQTT corpus decodes (or is refused) at both
    /// protocol levels and as a new connection, without a panic.
    #[test]
    fn the_mqtt_corpus_replays() {
        let mut decoded = 0;
        for (path, bytes) in corpus("mqtt") {
            for level in [MqttLevel::FromConnect, MqttLevel::V311, MqttLevel::V5] {
                let read = std::panic::catch_unwind(|| mqtt_decode(&bytes, level))
                    .unwrap_or_else(|_| panic!("{} ({level:?}) panicked", path.display()));
                decoded += read.packets.len();
            }
        }
        assert!(decoded >= 1, "no seed decodes to a packet");
    }

    /// The crash that started the SigV4 corpus: a presigned request whose
    /// `X-Amz-Date` holds a multi-byte character, with any access key.
    #[test]
    fn a_non_ascii_presigned_date_is_refused() {
        let request = b"GET /mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ANYKEY%2F20240517%2Fus-east-1%2Fiot%2Faws4_request&X-Amz-Date=201%C3%A9517T093000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        assert_eq!(
            sigv4_verdict(request),
            SigV4Verdict::Refused {
                status: 400,
                error_type: "IncompleteSignatureException"
            }
        );
    }

    #[test]
    fn a_signed_request_is_accepted_and_a_tampered_one_refused() {
        let signed = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/sigv4/signed-list-things.http"),
        )
        .unwrap();
        assert_eq!(
            sigv4_verdict(&signed),
            SigV4Verdict::Accepted {
                access_key_id: SIGV4_ACCESS_KEY_ID.to_owned()
            }
        );
        let tampered = String::from_utf8(signed)
            .unwrap()
            .replace("maxResults=2", "maxResults=3");
        assert_eq!(
            sigv4_verdict(tampered.as_bytes()),
            SigV4Verdict::Refused {
                status: 403,
                error_type: "InvalidSignatureException"
            }
        );
        assert_eq!(sigv4_verdict(b""), SigV4Verdict::Unparsed);
    }

    #[test]
    fn mqtt_decode_reads_a_connect_at_either_level() {
        // CONNECT, MQTT 3.1.1, clean session, keep-alive 60, client id "c".
        let v311 = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c";
        let read = mqtt_decode(v311, MqttLevel::FromConnect);
        assert_eq!((read.packets.len(), &read.error), (1, &None), "{read:?}");
        assert!(read.packets[0].starts_with("Connect"), "{read:?}");
        // The same at level 5, with an empty property block.
        let v5 = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c";
        let read = mqtt_decode(v5, MqttLevel::FromConnect);
        assert_eq!((read.packets.len(), &read.error), (1, &None), "{read:?}");
        // Garbage is an error, not a packet.
        let read = mqtt_decode(b"\xf0\x00", MqttLevel::V311);
        assert!(read.packets.is_empty() && read.error.is_some(), "{read:?}");
    }
}
