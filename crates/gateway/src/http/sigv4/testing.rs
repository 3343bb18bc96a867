//! What the SigV4 tests share: requests as they arrive, the keys, a clock,
//! a signer built from the canonical functions, and requests botocore signed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::canonical::{
    canonical_headers, canonical_query, canonical_request, canonical_uri, hex, hmac, signing_key,
    string_to_sign,
};
use super::parse::parse_query;
use super::{Principal, RequestParts, SigError, verify};
use crate::http::time::parse_amz_date;
use crate::settings::AccessKey;

/// A request as it arrives: method, raw target, headers, body.
pub(super) struct Req {
    pub(super) method: &'static str,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Req {
    pub(super) fn new(
        method: &'static str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Req {
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

    pub(super) fn set(mut self, name: &'static str, value: &str) -> Req {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        self
    }

    pub(super) fn check(
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
        verify(&parts, &self.body, keys, &[region.to_owned()], service, now)
    }

    /// Verifies as the control plane does, with the dev key, at `now`.
    pub(super) fn check_iot(&self, now: SystemTime) -> Result<Principal, SigError> {
        self.check(&dev_keys(), "us-east-1", "iot", now)
    }
}

pub(super) fn key(id: &str, secret: &str) -> AccessKey {
    AccessKey {
        access_key_id: id.into(),
        secret_access_key: secret.into(),
        account_id: "123456789012".into(),
    }
}

pub(super) fn dev_keys() -> Vec<AccessKey> {
    vec![
        key("OTHERKEY", "other-secret"),
        key("HERALDDEVKEY", "herald-dev-secret"),
    ]
}

pub(super) fn dev_principal() -> Principal {
    Principal {
        access_key_id: "HERALDDEVKEY".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
    }
}

/// `amz_date` plus `offset` seconds, as a `SystemTime`.
pub(crate) fn at(amz_date: &str, offset: i64) -> SystemTime {
    let secs = parse_amz_date(amz_date).unwrap() + offset;
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

/// Signs with the canonical functions, every given header signed (they
/// must include `host` and `x-amz-date`): the Authorization value.
#[allow(clippy::too_many_arguments)]
pub(super) fn sign(
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

// ---- Requests botocore 1.43.11 signed (boto3 `iot` client, endpoint
// http://127.0.0.1:8080, HERALDDEVKEY/herald-dev-secret, us-east-1, clock
// fixed at 2024-05-17T09:30:00Z), captured before sending.

pub(crate) const DATE: &str = "20240517T093000Z";
pub(super) const HOST: &str = "127.0.0.1:8080";
pub(super) const USER_AGENT: &str = "Boto3/1.43.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18.44-fc-v657 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/Z,e,b,D,N cfg/retry-mode#legacy Botocore/1.43.11";

pub(super) fn authorization(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=HERALDDEVKEY/20240517/us-east-1/iot/aws4_request, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

pub(super) fn boto(
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

pub(super) const CREATE_BODY: &[u8] = br#"{"attributePayload": {"attributes": {"color": "red"}}}"#;

/// `create_thing(thingName='dev 1+x', attributePayload=...)`.
pub(super) fn create_thing() -> Req {
    boto(
        "POST",
        "/things/dev%201%2Bx",
        Some("application/json"),
        CREATE_BODY,
        "content-type;host;x-amz-date",
        "7b0e6888afe08a564c34965c66980dd8a58b65e87644d6610332a2d0523a9e50",
    )
}

pub(super) const LIST_QUERY: &str =
    "maxResults=5&attributeName=color&attributeValue=red%20blue&thingTypeName=t%3A1";

/// `list_things(maxResults=5, attributeName='color', attributeValue='red
/// blue', thingTypeName='t:1')`.
pub(super) fn list_things(query: &str) -> Req {
    boto(
        "GET",
        &format!("/things?{query}"),
        None,
        b"",
        "host;x-amz-date",
        "b4074b4892cdd98fec8d19ff2ff84f45efa165b0253e20b9e97fcdcdfa763ebd",
    )
}
