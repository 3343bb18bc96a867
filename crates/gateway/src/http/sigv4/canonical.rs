//! The canonical request of SigV4, the string to sign and the signing key
//! (AWS General Reference: Signature Version 4 signing process), rebuilt from
//! the raw request target as botocore signs it.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::parse::{ALGORITHM, TERMINATOR};

/// The canonical request, with a trailing newline after the headers block.
pub(super) fn canonical_request(
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

pub(super) fn string_to_sign(
    amz_date: &str,
    credential_scope: &str,
    canonical_request: &str,
) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

pub(super) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, TERMINATOR.as_bytes())
}

pub(super) fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The raw path, dot segments and empty segments removed (botocore's
/// `normalize_url_path`), then percent-encoded again keeping `/` and `~`.
pub(super) fn canonical_uri(raw_path: &str) -> String {
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

/// The pairs, RFC 3986-encoded, sorted by key then value, `excluded` keys left
/// out.
pub(super) fn canonical_query(pairs: &[(Vec<u8>, Vec<u8>)], excluded: &[&str]) -> String {
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
pub(super) fn canonical_headers(headers: &HeaderMap, signed: &[String]) -> String {
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

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(HEX_LOWER[usize::from(byte >> 4)]));
        out.push(char::from(HEX_LOWER[usize::from(byte & 0x0f)]));
    }
    out
}

/// The canonical request for a debug log, a session token's value hidden.
pub(super) fn redact(canonical: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::sigv4::parse::{SIGNATURE_PARAM, parse_query};
    use crate::http::sigv4::testing::{LIST_QUERY, Req};

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
    fn hex_and_redaction() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        let redacted = redact(
            "GET\n/\n\nhost:h\nx-amz-security-token:secret\n\nhost;x-amz-security-token\nabc",
        );
        assert!(!redacted.contains("secret") && redacted.contains("<redacted>"));
    }
}
