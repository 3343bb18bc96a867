//! Verifying a SigV4 signature, header or presigned form: the scope, the
//! time, the signed headers, the key, then the signature itself over the
//! canonical request.

use std::time::SystemTime;

use axum::http::{HeaderMap, header::AUTHORIZATION};
use sha2::{Digest, Sha256};

use super::canonical::{
    canonical_headers, canonical_query, canonical_request, canonical_uri, hex, hmac, redact,
    signing_key, string_to_sign,
};
use super::parse::{
    Authorization, SECURITY_TOKEN_PARAM, SIGNATURE_PARAM, TERMINATOR, from_header,
    from_query_expiring, parse_query, parse_scope,
};
use super::{Principal, RequestParts, SigError};
use crate::http::time::{epoch_seconds, format_amz_date, parse_amz_date};
use crate::settings::AccessKey;

/// How far `X-Amz-Date` may be from the server's clock.
const MAX_SKEW_SECS: i64 = 15 * 60;
const CONTENT_SHA256: &str = "x-amz-content-sha256";

/// Verifies a request's SigV4 signature, header or presigned form, for
/// `service` in one of the served `regions` at time `now`, against `keys`.
pub(crate) fn verify(
    parts: &RequestParts<'_>,
    body: &[u8],
    keys: &[AccessKey],
    regions: &[String],
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
        from_query_expiring(&query, service != super::DEVICE_GATEWAY_SERVICE)?
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
    if !regions.iter().any(|r| r.as_str() == scope.region) {
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
    let signing_key = signing_key(&key.secret_access_key, scope.date, scope.region, service);
    let credential_scope = format!("{}/{}/{service}/{TERMINATOR}", scope.date, scope.region);
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
            region: scope.region.to_owned(),
        })
    } else {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let canonical = first_canonical.as_deref().map(redact).unwrap_or_default();
            tracing::debug!(canonical_request = ?canonical, "signature mismatch");
        }
        Err(SigError::Mismatch)
    }
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

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::http::sigv4::testing::{
        CREATE_BODY, DATE, HOST, LIST_QUERY, Req, at, boto, create_thing, dev_keys, dev_principal,
        key, list_things, sign,
    };

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
            .check(
                &dev_keys(),
                "us-east-1",
                DEVICE_GATEWAY_SERVICE,
                at(DATE, 0),
            )
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

    // ---- Presigned (query) form, as botocore's `SigV4QueryAuth` signs
    // `GET http://127.0.0.1:8443/mqtt` for `iotdevicegateway`, expires 300 s.

    /// The signing name of MQTT over WebSocket, which these presigned
    /// requests are signed for: the verifier takes any service name.
    const DEVICE_GATEWAY_SERVICE: &str = "iotdevicegateway";

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
        req.check(&dev_keys(), "us-east-1", DEVICE_GATEWAY_SERVICE, now)
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

    /// A presigned `X-Amz-Date` holding a multi-byte character where a digit
    /// should be (16 bytes, `T` and `Z` in place) once panicked while slicing
    /// the year; it is a malformed date, with any access key or none known.
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
        // The device SDKs sign MQTT over WebSockets without X-Amz-Expires,
        // so it may be absent; taken out of a URL signed with it, the
        // signature no longer matches.
        let no_expires = PRESIGNED.replace("&X-Amz-Expires=300", "");
        assert_eq!(
            check_wss(&presigned(&no_expires), at(DATE, 0)),
            Err(SigError::Mismatch)
        );
        let week = PRESIGNED.replace("X-Amz-Expires=300", "X-Amz-Expires=604801");
        assert!(
            matches!(check_wss(&presigned(&week), at(DATE, 0)), Err(SigError::Incomplete(m)) if m.contains("604800"))
        );
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

    #[test]
    fn equality_takes_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
