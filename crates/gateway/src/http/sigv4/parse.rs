//! The parts of a SigV4 signature, read from the `Authorization` header or
//! from presigned query parameters, and the credential scope; what is
//! missing or malformed is an `IncompleteSignatureException`.

use std::fmt::Write as _;

use axum::http::{HeaderMap, header::AUTHORIZATION};

use super::SigError;

pub(super) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub(super) const TERMINATOR: &str = "aws4_request";
/// The longest validity of a presigned request: a week.
const MAX_EXPIRES_SECS: i64 = 7 * 24 * 60 * 60;
pub(super) const SECURITY_TOKEN_PARAM: &str = "X-Amz-Security-Token";
pub(super) const SIGNATURE_PARAM: &str = "X-Amz-Signature";

/// The signature's parts, from the header or the query.
pub(super) struct Authorization {
    pub(super) credential: String,
    pub(super) signed_headers: String,
    pub(super) signature: String,
    pub(super) amz_date: String,
    /// `X-Amz-Expires`, for the presigned form only.
    pub(super) expires: Option<i64>,
}

/// The credential scope: `akid/date/region/service/aws4_request`.
pub(super) struct Scope<'a> {
    pub(super) access_key_id: &'a str,
    pub(super) date: &'a str,
    pub(super) region: &'a str,
    pub(super) service: &'a str,
}

/// The header form: `Authorization: AWS4-HMAC-SHA256 Credential=…,
/// SignedHeaders=…, Signature=…` and `X-Amz-Date`.
pub(super) fn from_header(headers: &HeaderMap) -> Result<Authorization, SigError> {
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
pub(super) fn from_query(query: &[(Vec<u8>, Vec<u8>)]) -> Result<Authorization, SigError> {
    from_query_expiring(query, true)
}

/// [`from_query`], `X-Amz-Expires` optional unless `expires_required`
/// (the device SDKs sign MQTT over WebSockets without it: the signature is
/// then good within the clock-skew window of its date).
pub(super) fn from_query_expiring(
    query: &[(Vec<u8>, Vec<u8>)],
    expires_required: bool,
) -> Result<Authorization, SigError> {
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
        expires,
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
    let Some(expires) = expires.or((!expires_required).then(String::new)) else {
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
        _ if expires.is_empty() && !expires_required => None,
        Ok(secs) if (1..=MAX_EXPIRES_SECS).contains(&secs) => Some(secs),
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
        expires,
    })
}

pub(super) fn parse_scope(credential: &str) -> Result<Scope<'_>, SigError> {
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

/// The raw query's pairs, percent-decoded (`+` stays `+`); empty segments
/// are skipped, a pair without `=` has an empty value.
pub(super) fn parse_query(raw: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded_where_whole() {
        assert_eq!(percent_decode("a%2Fb%2"), b"a/b%2");
        assert_eq!(
            parse_query("a=%41&b&&c=1=2"),
            [
                (b"a".to_vec(), b"A".to_vec()),
                (b"b".to_vec(), b"".to_vec()),
                (b"c".to_vec(), b"1=2".to_vec()),
            ]
        );
    }
}
