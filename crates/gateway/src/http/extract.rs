//! An operation's input, read where botocore's `iot` model puts it: path
//! labels ([`Path`]), query-string members ([`Query`]), headers
//! ([`header`]) and the JSON body ([`Body`]); with the paging members every
//! listing shares checked against the model's limits ([`Query::token_page`],
//! [`Query::marker_page`]). Whatever does not fit is an
//! `InvalidRequestException`, with the same message in every operation.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderMap, request::Parts},
};
use serde::de::DeserializeOwned;

use super::ApiError;

/// The page sizes a listing accepts: the model's `RegistryMaxResults`
/// (`maxResults`; AWS IoT API Reference: ListThings, ListThingTypes,
/// ListThingGroups, ListThingsInThingGroup, ListThingGroupsForThing,
/// ListThingPrincipals, ListPrincipalThings) and `PageSize` (`pageSize`;
/// ListPolicies, ListCertificates, ListAttachedPolicies, ListTargetsForPolicy,
/// ListPrincipalPolicies, ListPolicyPrincipals) are both 1 to 250.
pub(crate) const PAGE_SIZES: std::ops::RangeInclusive<i64> = 1..=250;

/// The longest `marker` the model's `Marker` allows, in characters (AWS IoT
/// API Reference: ListPolicies, ListCertificates, ...). Its pattern, base64,
/// is not checked: Herald's markers are its own paging tokens.
pub(crate) const MARKER_MAX_CHARS: usize = 1024;

/// Path labels, percent-decoded.
pub(crate) struct Path<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|err| ApiError::invalid(format!("Invalid request path: {}", err.body_text())))
    }
}

/// The query string's members by name (the last one wins when a name repeats).
pub(crate) struct Query(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Query, ApiError> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(members)| Query(members))
            .map_err(|err| ApiError::invalid(format!("Invalid query string: {}", err.body_text())))
    }
}

/// A listing's paging members, checked: the token or marker of the page
/// (empty: the first), and its size (0: the service's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paging {
    pub(crate) token: String,
    pub(crate) size: u32,
}

impl Query {
    #[cfg(test)]
    pub(crate) fn of(pairs: &[(&str, &str)]) -> Query {
        Query(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    /// Whether the member is present, with any value.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A string member.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// A boolean member: `true` or `false` in any case, empty or absent is false.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        Ok(self.optional_flag(name)?.unwrap_or(false))
    }

    /// A boolean member that may be absent, for operations whose default is
    /// `true`.
    pub(crate) fn optional_flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(value) = self.0.get(name) else {
            return Ok(None);
        };
        if value.eq_ignore_ascii_case("true") {
            Ok(Some(true))
        } else if value.eq_ignore_ascii_case("false") || value.is_empty() {
            Ok(Some(false))
        } else {
            Err(ApiError::invalid(format!(
                "{name} must be true or false, not {value:?}"
            )))
        }
    }

    /// A whole-number member (a `Long` of the model).
    pub(crate) fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.0
            .get(name)
            .map(|value| {
                value.parse::<i64>().map_err(|_| {
                    ApiError::invalid(format!("{name} must be a whole number, not {value:?}"))
                })
            })
            .transpose()
    }

    /// `nextToken` and `maxResults`, the paging of the registry's listings.
    pub(crate) fn token_page(&self) -> Result<Paging, ApiError> {
        Ok(Paging {
            token: self.string("nextToken").unwrap_or_default(),
            size: self.page_size("maxResults")?,
        })
    }

    /// `marker` and `pageSize`, the paging of the policy and certificate listings.
    pub(crate) fn marker_page(&self) -> Result<Paging, ApiError> {
        let marker = self.string("marker").unwrap_or_default();
        let chars = marker.chars().count();
        if chars > MARKER_MAX_CHARS {
            return Err(ApiError::invalid(format!(
                "marker must be at most {MARKER_MAX_CHARS} characters long, not {chars}"
            )));
        }
        Ok(Paging {
            token: marker,
            size: self.page_size("pageSize")?,
        })
    }

    /// A page size member: absent is 0, the service's default.
    fn page_size(&self, name: &str) -> Result<u32, ApiError> {
        let Some(value) = self.0.get(name) else {
            return Ok(0);
        };
        let range = || {
            format!(
                "{name} must be between {} and {}",
                PAGE_SIZES.start(),
                PAGE_SIZES.end()
            )
        };
        let number = value
            .parse::<i64>()
            .map_err(|_| ApiError::invalid(format!("{}, not {value:?}", range())))?;
        if !PAGE_SIZES.contains(&number) {
            return Err(ApiError::invalid(format!("{}, not {number}", range())));
        }
        u32::try_from(number).map_err(|_| ApiError::invalid(range()))
    }
}

/// A JSON request body, which must be an object; an empty body means every
/// member absent (boto3 and the CLI send none for some operations). Whatever
/// the `Content-Type`.
pub(crate) struct Body<T>(pub(crate) T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: DeserializeOwned + Default + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|err| ApiError::invalid(format!("Could not read the request body: {err}")))?;
        parse_body(&bytes).map(Body)
    }
}

fn parse_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => return Ok(T::default()),
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid request body: expected a JSON object",
            ));
        }
    }
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::invalid(format!("Invalid request body: {err}")))
}

/// A header member the operation requires, e.g. `x-amzn-principal`.
pub(crate) fn header(headers: &HeaderMap, name: &str, member: &str) -> Result<String, ApiError> {
    let value = headers
        .get(name)
        .ok_or_else(|| ApiError::invalid(format!("{member} (header {name}) is required")))?;
    value.to_str().map(str::to_owned).map_err(|_| {
        ApiError::invalid(format!(
            "The {name} header must be visible ASCII characters"
        ))
    })
}

/// A member the operation requires.
pub(crate) fn required<T>(value: Option<T>, name: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn refused<T: std::fmt::Debug>(result: Result<T, ApiError>) -> String {
        let err = result.unwrap_err();
        assert_eq!(err.code, "InvalidRequestException");
        assert_eq!(err.status.as_u16(), 400);
        err.message
    }

    #[test]
    fn both_page_sizes_take_1_to_250_and_absent() {
        for (name, page) in [
            ("maxResults", Query::token_page as fn(&Query) -> _),
            ("pageSize", Query::marker_page),
        ] {
            assert_eq!(page(&Query::of(&[])).unwrap().size, 0);
            for ok in ["1", "250", "037"] {
                let size = page(&Query::of(&[(name, ok)])).unwrap().size;
                assert_eq!(i64::from(size), ok.parse::<i64>().unwrap());
            }
            for (bad, message) in [
                ("0", "must be between 1 and 250, not 0"),
                ("251", "must be between 1 and 250, not 251"),
                ("-1", "must be between 1 and 250, not -1"),
                ("99999999999", "must be between 1 and 250, not 99999999999"),
                ("", r#"must be between 1 and 250, not """#),
                ("ten", r#"must be between 1 and 250, not "ten""#),
                ("1.5", r#"must be between 1 and 250, not "1.5""#),
            ] {
                assert_eq!(
                    refused(page(&Query::of(&[(name, bad)]))),
                    format!("{name} {message}")
                );
            }
        }
    }

    #[test]
    fn tokens_pass_and_markers_are_at_most_1024_characters() {
        let paging = Query::of(&[("nextToken", "h1.74")]).token_page().unwrap();
        assert_eq!(
            paging,
            Paging {
                token: "h1.74".into(),
                size: 0
            }
        );
        let longest = "é".repeat(MARKER_MAX_CHARS);
        let paging = Query::of(&[("marker", &longest)]).marker_page().unwrap();
        assert_eq!(paging.token, longest);
        let longer = format!("{longest}a");
        assert_eq!(
            refused(Query::of(&[("marker", &longer)]).marker_page()),
            "marker must be at most 1024 characters long, not 1025"
        );
    }

    #[test]
    fn flags_and_integers() {
        let query = Query::of(&[
            ("a", "true"),
            ("b", "FALSE"),
            ("c", ""),
            ("d", "yes"),
            ("n", "-3"),
            ("x", "3x"),
        ]);
        assert!(query.flag("a").unwrap());
        assert!(!query.flag("b").unwrap());
        assert!(!query.flag("c").unwrap());
        assert!(!query.flag("absent").unwrap());
        assert_eq!(
            refused(query.flag("d")),
            r#"d must be true or false, not "yes""#
        );
        assert_eq!(query.integer("n").unwrap(), Some(-3));
        assert_eq!(query.integer("absent").unwrap(), None);
        assert_eq!(
            refused(query.integer("x")),
            r#"x must be a whole number, not "3x""#
        );
        assert!(query.has("c") && !query.has("absent"));
    }

    #[derive(Debug, Default, Deserialize)]
    struct Input {
        name: Option<String>,
    }

    #[test]
    fn bodies_are_objects_or_nothing() {
        assert!(parse_body::<Input>(b"").unwrap().name.is_none());
        assert!(parse_body::<Input>(b" \r\n").unwrap().name.is_none());
        assert_eq!(
            parse_body::<Input>(br#" {"name": "n"}"#)
                .unwrap()
                .name
                .as_deref(),
            Some("n")
        );
        assert_eq!(
            refused(parse_body::<Input>(br#"["n"]"#)),
            "Invalid request body: expected a JSON object"
        );
        assert!(refused(parse_body::<Input>(b"{")).starts_with("Invalid request body: "));
    }

    #[test]
    fn headers_and_required_members() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-principal", "arn:x".parse().unwrap());
        assert_eq!(
            header(&headers, "x-amzn-principal", "principal").unwrap(),
            "arn:x"
        );
        assert_eq!(
            refused(header(&headers, "x-amzn-iot-policy", "policyName")),
            "policyName (header x-amzn-iot-policy) is required"
        );
        headers.insert(
            "x-amzn-principal",
            axum::http::HeaderValue::from_bytes("é".as_bytes()).unwrap(),
        );
        assert_eq!(
            refused(header(&headers, "x-amzn-principal", "principal")),
            "The x-amzn-principal header must be visible ASCII characters"
        );
        assert_eq!(required(Some(1), "n").unwrap(), 1);
        assert_eq!(refused(required::<u8>(None, "n")), "n is required");
    }
}
