//! What every answer's body shares: a 200 with the operation's output as
//! JSON, `{}` for operations without output members, timestamps as epoch
//! seconds, maps in key order, and the next page's token only when there is
//! one.
//!
//! Each output struct lists its members in the order of their JSON names,
//! the order the answers have always had; absent optional members are left
//! out.

use std::collections::{BTreeMap, HashMap};

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::ApiError;

/// A handler's answer: a JSON body, or an AWS error.
pub(crate) type ApiResult = Result<Response, ApiError>;

/// A 200 answer with `body` as JSON.
pub(crate) fn ok(body: impl Serialize) -> ApiResult {
    Ok(Json(body).into_response())
}

/// The output of operations without output members: `{}`.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// A 200 answer with `{}`.
pub(crate) fn empty() -> ApiResult {
    ok(Empty {})
}

/// An epoch-milliseconds timestamp as AWS's JSON bodies carry it: epoch seconds.
pub(crate) fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A map member, in key order.
pub(crate) fn sorted<V>(map: HashMap<String, V>) -> BTreeMap<String, V> {
    map.into_iter().collect()
}

/// A listing's `nextToken` or `nextMarker`: none on the last page (the
/// services answer an empty one).
pub(crate) fn next_page(token: String) -> Option<String> {
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_shapes() {
        assert_eq!(serde_json::to_string(&Empty {}).unwrap(), "{}");
        assert_eq!(
            serde_json::to_string(&seconds(1_715_938_200_123)).unwrap(),
            "1715938200.123"
        );
        assert_eq!(
            serde_json::to_string(&seconds(1_715_938_200_000)).unwrap(),
            "1715938200.0"
        );
        let map = HashMap::from([("b".to_owned(), 1), ("a".to_owned(), 2)]);
        assert_eq!(
            serde_json::to_string(&sorted(map)).unwrap(),
            r#"{"a":2,"b":1}"#
        );
        assert_eq!(next_page(String::new()), None);
        assert_eq!(next_page("t".into()).as_deref(), Some("t"));
    }
}
