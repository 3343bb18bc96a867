//! Device Shadow documents (AWS IoT Core Developer Guide: "Device Shadow
//! service documents"): validating a request, merging an update into the
//! desired and reported states, per-field metadata, versions, the delta
//! between desired and reported, and the exact payloads AWS publishes on
//! `/accepted`, `/rejected`, `update/delta` and `update/documents`. No I/O.
//!
//! Timestamps are epoch seconds, as AWS's shadow payloads have them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The largest request document accepted, in bytes.
pub(crate) const MAX_REQUEST_BYTES: usize = 128 * 1024;
/// The largest state (desired and reported, without metadata) a shadow may
/// hold, in bytes of JSON.
pub(crate) const MAX_STATE_BYTES: usize = 8 * 1024;
/// How deep `desired` and `reported` may nest.
pub(crate) const MAX_DEPTH: usize = 6;
/// The longest `clientToken`.
pub(crate) const MAX_CLIENT_TOKEN: usize = 64;

/// A shadow as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Shadow {
    pub(crate) desired: Option<Map<String, Value>>,
    pub(crate) reported: Option<Map<String, Value>>,
    /// Mirrors the states: each leaf `{"timestamp": t}`.
    pub(crate) desired_metadata: Option<Map<String, Value>>,
    pub(crate) reported_metadata: Option<Map<String, Value>>,
    pub(crate) version: u64,
}

/// A refused request: its code and message, as `/rejected` carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) code: u16,
    pub(crate) message: String,
}

impl Rejection {
    fn new(code: u16, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Rejection {
        Rejection::new(400, message)
    }
}

/// The `/rejected` payload.
pub(crate) fn rejected(rejection: &Rejection, client_token: Option<&str>, now: i64) -> Value {
    let mut out = json!({
        "code": rejection.code,
        "message": rejection.message,
        "timestamp": now,
    });
    if let Some(token) = client_token {
        out["clientToken"] = json!(token);
    }
    out
}

/// 404 for a shadow that does not exist: the thing's name for the classic
/// shadow, the shadow's name for a named one.
pub(crate) fn not_found(thing: &str, shadow: &str) -> Rejection {
    let name = if shadow.is_empty() { thing } else { shadow };
    Rejection::new(404, format!("No shadow exists with name: '{name}'"))
}

/// A request's `clientToken`, if it has a valid one (read even from a
/// request refused for another reason, so the refusal can echo it).
pub(crate) fn client_token(payload: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    match value.get("clientToken")? {
        Value::String(token) if token.chars().count() <= MAX_CLIENT_TOKEN => Some(token.clone()),
        _ => None,
    }
}

/// A request document: an empty one (get and delete may have none), or a
/// JSON object with a valid `clientToken` if any.
fn parse_request(payload: &[u8]) -> Result<Map<String, Value>, Rejection> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(Rejection::new(
            413,
            "The payload exceeds the maximum size allowed",
        ));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let text = std::str::from_utf8(payload).map_err(|_| {
        Rejection::new(
            415,
            "Unsupported documented encoding; supported encoding is UTF-8",
        )
    })?;
    let Ok(Value::Object(request)) = serde_json::from_str::<Value>(text) else {
        return Err(Rejection::bad("Invalid JSON"));
    };
    match request.get("clientToken") {
        None => {}
        Some(Value::String(token)) if token.chars().count() <= MAX_CLIENT_TOKEN => {}
        Some(_) => return Err(Rejection::bad("Invalid clientToken")),
    }
    Ok(request)
}

/// How deep a value nests: a non-empty object or array is one level more
/// than its deepest member; scalars and empty containers add none.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) if !map.is_empty() => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) if !items.is_empty() => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Merges `update` into `target` (null removes a key; objects merge; any
/// other value replaces), and the matching metadata into `metadata`.
fn merge(
    target: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    update: &Map<String, Value>,
    now: i64,
) {
    for (key, value) in update {
        match value {
            Value::Null => {
                target.remove(key);
                metadata.remove(key);
            }
            Value::Object(fields) => {
                let (mut inner, existed) = match target.remove(key) {
                    Some(Value::Object(existing)) => (existing, true),
                    _ => (Map::new(), false),
                };
                let mut inner_meta = match metadata.remove(key) {
                    Some(Value::Object(existing)) if existed => existing,
                    _ => Map::new(),
                };
                merge(&mut inner, &mut inner_meta, fields, now);
                // An object emptied by deletions stays; a new one that holds
                // nothing (only nulls) is not added.
                if existed || !inner.is_empty() {
                    target.insert(key.clone(), Value::Object(inner));
                    metadata.insert(key.clone(), Value::Object(inner_meta));
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
                metadata.insert(key.clone(), stamp(other, now));
            }
        }
    }
}

/// The metadata of a value written at `now`: `{"timestamp": now}` for a
/// leaf, the same shape for an object, one entry per element for an array.
fn stamp(value: &Value, now: i64) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), stamp(v, now)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| stamp(v, now)).collect()),
        _ => json!({ "timestamp": now }),
    }
}

/// What `desired` asks that `reported` does not have: every desired key
/// whose value differs, objects compared key by key.
pub(crate) fn delta(
    desired: &Map<String, Value>,
    reported: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, wanted) in desired {
        let have = reported.and_then(|r| r.get(key));
        match (wanted, have) {
            (Value::Object(w), Some(Value::Object(h))) => {
                let inner = delta(w, Some(h));
                if !inner.is_empty() {
                    out.insert(key.clone(), Value::Object(inner));
                }
            }
            (w, Some(h)) if w == h => {}
            (w, _) => {
                out.insert(key.clone(), w.clone());
            }
        }
    }
    out
}

/// The metadata of the keys of `delta`, from `metadata`.
fn metadata_of(delta: &Map<String, Value>, metadata: Option<&Map<String, Value>>) -> Value {
    let mut out = Map::new();
    for (key, value) in delta {
        let Some(meta) = metadata.and_then(|m| m.get(key)) else {
            continue;
        };
        match (value, meta) {
            (Value::Object(inner), Value::Object(inner_meta)) => {
                out.insert(key.clone(), metadata_of(inner, Some(inner_meta)));
            }
            _ => {
                out.insert(key.clone(), meta.clone());
            }
        }
    }
    Value::Object(out)
}

/// `{"desired": ..., "reported": ...}`, each only when present.
fn sections(desired: Option<&Map<String, Value>>, reported: Option<&Map<String, Value>>) -> Value {
    let mut out = Map::new();
    for (name, section) in [("desired", desired), ("reported", reported)] {
        if let Some(section) = section {
            out.insert(name.into(), Value::Object(section.clone()));
        }
    }
    Value::Object(out)
}

impl Shadow {
    fn state_json(&self) -> Value {
        sections(self.desired.as_ref(), self.reported.as_ref())
    }

    fn metadata_json(&self) -> Value {
        sections(
            self.desired_metadata.as_ref(),
            self.reported_metadata.as_ref(),
        )
    }

    /// The whole document as `update/documents` shows it.
    fn document(&self) -> Value {
        json!({
            "state": self.state_json(),
            "metadata": self.metadata_json(),
            "version": self.version,
        })
    }

    fn delta(&self) -> Map<String, Value> {
        match &self.desired {
            Some(desired) => delta(desired, self.reported.as_ref()),
            None => Map::new(),
        }
    }

    /// Whether `desired` asks for anything `reported` does not have.
    pub(crate) fn has_delta(&self) -> bool {
        !self.delta().is_empty()
    }

    /// The shadow as a fleet index's thing document shows it (AWS IoT
    /// developer guide: "Managing fleet indexing"): its states, metadata,
    /// version and whether it has a delta.
    pub(crate) fn indexed(&self) -> Value {
        let mut out = match self.state_json() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        out.insert("metadata".into(), self.metadata_json());
        out.insert("version".into(), self.version.into());
        out.insert("hasDelta".into(), self.has_delta().into());
        Value::Object(out)
    }
}

/// An accepted update: the shadow to store and what to publish.
#[derive(Debug)]
pub(crate) struct Updated {
    pub(crate) shadow: Shadow,
    pub(crate) accepted: Value,
    pub(crate) delta: Option<Value>,
    pub(crate) documents: Value,
}

/// Applies an update request to `current` (None: no shadow yet; a shadow
/// deleted before continues from `deleted_version`, as AWS's does).
pub(crate) fn update(
    current: Option<&Shadow>,
    deleted_version: u64,
    payload: &[u8],
    now: i64,
) -> Result<Updated, Rejection> {
    let request = parse_request(payload)?;
    if request.is_empty() && payload.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::bad("Missing update payload"));
    }
    let token = request
        .get("clientToken")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let version = match request.get("version") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| Rejection::bad("Invalid version"))?,
        ),
    };
    let Some(state) = request.get("state") else {
        return Err(Rejection::bad("Missing required node: state"));
    };
    let state = match state {
        Value::Object(state) => state.clone(),
        Value::Null => {
            // `"state": null` clears both.
            let mut both = Map::new();
            both.insert("desired".into(), Value::Null);
            both.insert("reported".into(), Value::Null);
            both
        }
        _ => return Err(Rejection::bad("State node must be an object")),
    };
    for (key, value) in &state {
        match key.as_str() {
            "desired" | "reported" => {}
            other => {
                return Err(Rejection::bad(format!(
                    "State contains an invalid node: '{other}'"
                )));
            }
        }
        match value {
            Value::Object(_) | Value::Null => {}
            _ => {
                let node = if key == "desired" {
                    "Desired"
                } else {
                    "Reported"
                };
                return Err(Rejection::bad(format!("{node} node must be an object")));
            }
        }
        if depth(value) > MAX_DEPTH {
            return Err(Rejection::bad(format!(
                "JSON contains too many levels of nesting; maximum is {MAX_DEPTH}"
            )));
        }
    }
    let current_version = current.map_or(deleted_version, |s| s.version);
    if let Some(expected) = version
        && expected != current_version
    {
        return Err(Rejection::new(409, "Version conflict"));
    }

    let previous = current.cloned();
    let mut shadow = current.cloned().unwrap_or_default();
    let mut accepted_metadata = Map::new();
    for (section, value) in &state {
        let (target, metadata) = if section == "desired" {
            (&mut shadow.desired, &mut shadow.desired_metadata)
        } else {
            (&mut shadow.reported, &mut shadow.reported_metadata)
        };
        match value {
            Value::Null => {
                *target = None;
                *metadata = None;
            }
            Value::Object(fields) => {
                let target = target.get_or_insert_with(Map::new);
                let metadata = metadata.get_or_insert_with(Map::new);
                merge(target, metadata, fields, now);
                // The metadata of what this request wrote, as /accepted shows it.
                let mut written = Map::new();
                let mut written_meta = Map::new();
                merge(&mut written, &mut written_meta, fields, now);
                accepted_metadata.insert(section.clone(), Value::Object(written_meta));
            }
            _ => unreachable!("checked above"),
        }
    }
    // A section left empty is no section.
    for (section, metadata) in [
        (&mut shadow.desired, &mut shadow.desired_metadata),
        (&mut shadow.reported, &mut shadow.reported_metadata),
    ] {
        if section.as_ref().is_some_and(Map::is_empty) {
            *section = None;
            *metadata = None;
        }
    }
    // Desired and reported count, each as compact JSON; metadata does not.
    let size: usize = [&shadow.desired, &shadow.reported]
        .into_iter()
        .flatten()
        .map(|section| serde_json::to_vec(section).map_or(usize::MAX, |v| v.len()))
        .sum();
    if size > MAX_STATE_BYTES {
        return Err(Rejection::new(
            413,
            "The payload exceeds the maximum size allowed",
        ));
    }
    shadow.version = current_version + 1;

    let mut accepted = json!({
        "state": Value::Object(state.clone()),
        "metadata": Value::Object(accepted_metadata),
        "version": shadow.version,
        "timestamp": now,
    });
    // Delta: after every accepted update that leaves desired and reported
    // apart.
    let delta = Some(shadow.delta()).filter(|d| !d.is_empty()).map(|d| {
        let mut out = json!({
            "version": shadow.version,
            "timestamp": now,
            "state": Value::Object(d.clone()),
            "metadata": metadata_of(&d, shadow.desired_metadata.as_ref()),
        });
        if let Some(token) = &token {
            out["clientToken"] = json!(token);
        }
        out
    });
    let mut documents = json!({
        "previous": previous.as_ref().map_or(Value::Null, Shadow::document),
        "current": shadow.document(),
        "timestamp": now,
    });
    if let Some(token) = &token {
        accepted["clientToken"] = json!(token);
        documents["clientToken"] = json!(token);
    }
    Ok(Updated {
        shadow,
        accepted,
        delta,
        documents,
    })
}

/// The `get/accepted` payload: the whole document, with its delta.
pub(crate) fn get(
    current: Option<&Shadow>,
    thing: &str,
    shadow_name: &str,
    payload: &[u8],
    now: i64,
) -> Result<Value, Rejection> {
    let (shadow, token) = existing(current, thing, shadow_name, payload)?;
    let mut state = shadow.state_json();
    let delta = shadow.delta();
    if !delta.is_empty() {
        state["delta"] = Value::Object(delta);
    }
    let mut out = json!({
        "state": state,
        "metadata": shadow.metadata_json(),
        "version": shadow.version,
        "timestamp": now,
    });
    if let Some(token) = token {
        out["clientToken"] = token;
    }
    Ok(out)
}

/// The shadow a get or delete asks for, which must exist, and the request's
/// `clientToken` to echo.
fn existing<'a>(
    current: Option<&'a Shadow>,
    thing: &str,
    shadow_name: &str,
    payload: &[u8],
) -> Result<(&'a Shadow, Option<Value>), Rejection> {
    let request = parse_request(payload)?;
    let shadow = current.ok_or_else(|| not_found(thing, shadow_name))?;
    Ok((shadow, request.get("clientToken").cloned()))
}

/// The `delete/accepted` payload, for a shadow that exists.
pub(crate) fn delete(
    current: Option<&Shadow>,
    thing: &str,
    shadow_name: &str,
    payload: &[u8],
    now: i64,
) -> Result<Value, Rejection> {
    let (shadow, token) = existing(current, thing, shadow_name, payload)?;
    let mut out = json!({ "version": shadow.version, "timestamp": now });
    if let Some(token) = token {
        out["clientToken"] = token;
    }
    Ok(out)
}

/// A shadow name as AWS accepts it: 1 to 64 of `a-zA-Z0-9:_-`.
pub(crate) fn valid_shadow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(current: Option<&Shadow>, request: Value, now: i64) -> Updated {
        update(current, 0, request.to_string().as_bytes(), now).unwrap()
    }

    fn refused(current: Option<&Shadow>, payload: &str) -> Rejection {
        update(current, 0, payload.as_bytes(), 1).unwrap_err()
    }

    #[test]
    fn an_update_creates_the_shadow_at_version_1_with_metadata() {
        let up = ok(
            None,
            json!({"state": {"desired": {"color": "red", "light": {"on": true}}}, "clientToken": "t1"}),
            100,
        );
        assert_eq!(up.shadow.version, 1);
        assert_eq!(
            up.accepted,
            json!({
                "state": {"desired": {"color": "red", "light": {"on": true}}},
                "metadata": {"desired": {"color": {"timestamp": 100}, "light": {"on": {"timestamp": 100}}}},
                "version": 1,
                "timestamp": 100,
                "clientToken": "t1",
            })
        );
        // Nothing is reported yet: all of desired is the delta.
        assert_eq!(
            up.delta.unwrap(),
            json!({
                "version": 1,
                "timestamp": 100,
                "state": {"color": "red", "light": {"on": true}},
                "metadata": {"color": {"timestamp": 100}, "light": {"on": {"timestamp": 100}}},
                "clientToken": "t1",
            })
        );
        assert_eq!(up.documents["previous"], Value::Null);
        assert_eq!(up.documents["current"]["version"], json!(1));
    }

    #[test]
    fn reports_merge_nulls_delete_and_the_delta_holds_only_differences() {
        let first = ok(
            None,
            json!({"state": {"desired": {"color": "red", "mode": {"a": 1, "b": 2}, "list": [1, 2]}}}),
            1,
        );
        let second = ok(
            Some(&first.shadow),
            json!({"state": {"reported": {"color": "red", "mode": {"a": 1, "b": 3}, "list": [1, 2], "extra": 5}}}),
            2,
        );
        assert_eq!(second.shadow.version, 2);
        // Desired and reported still differ: the delta is published again.
        assert_eq!(second.delta.unwrap()["state"], json!({"mode": {"b": 2}}));
        let got = get(Some(&second.shadow), "t", "", b"", 3).unwrap();
        assert_eq!(got["state"]["delta"], json!({"mode": {"b": 2}}));
        assert_eq!(
            got["metadata"]["reported"]["list"],
            json!([{"timestamp": 2}, {"timestamp": 2}])
        );

        let third = ok(
            Some(&second.shadow),
            json!({"state": {"desired": {"mode": null, "color": "blue"}, "reported": {"extra": null}}}),
            4,
        );
        assert_eq!(
            third.shadow.desired,
            json!({"color": "blue", "list": [1, 2]})
                .as_object()
                .cloned()
        );
        assert!(
            !third
                .shadow
                .reported
                .as_ref()
                .unwrap()
                .contains_key("extra")
        );
        assert!(
            !third
                .shadow
                .desired_metadata
                .as_ref()
                .unwrap()
                .contains_key("mode")
        );
        assert_eq!(third.delta.unwrap()["state"], json!({"color": "blue"}));
        assert_eq!(third.documents["previous"]["version"], json!(2));
        assert_eq!(third.documents["current"]["version"], json!(3));

        // desired: null removes the section.
        let fourth = ok(Some(&third.shadow), json!({"state": {"desired": null}}), 5);
        assert!(fourth.shadow.desired.is_none());
        assert!(
            get(Some(&fourth.shadow), "t", "", b"", 6).unwrap()["state"]
                .get("delta")
                .is_none()
        );
    }

    #[test]
    fn a_shadow_made_again_after_a_delete_continues_its_version() {
        let up = update(None, 7, br#"{"state":{"reported":{"a":1}}}"#, 1).unwrap();
        assert_eq!(up.shadow.version, 8);
        // Nulls in a new object are dropped; an emptied section is none.
        let up = ok(
            None,
            json!({"state": {"reported": {"a": {"b": null}, "c": 1}}}),
            1,
        );
        assert_eq!(up.shadow.reported, json!({"c": 1}).as_object().cloned());
        let up = ok(
            Some(&up.shadow),
            json!({"state": {"reported": {"c": null}}}),
            2,
        );
        assert!(up.shadow.reported.is_none() && up.shadow.reported_metadata.is_none());
        let deep_ok = r#"{"state": {"reported": {"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}"#;
        assert!(update(None, 0, deep_ok.as_bytes(), 1).is_ok());
    }

    #[test]
    fn versions_lock_optimistically() {
        let first = ok(None, json!({"state": {"reported": {"a": 1}}}), 1);
        assert_eq!(
            update(
                Some(&first.shadow),
                0,
                br#"{"state":{"reported":{"a":2}},"version":5}"#,
                2
            )
            .unwrap_err(),
            Rejection::new(409, "Version conflict")
        );
        let second = update(
            Some(&first.shadow),
            0,
            br#"{"state":{"reported":{"a":2}},"version":1}"#,
            2,
        )
        .unwrap();
        assert_eq!(second.shadow.version, 2);
    }

    #[test]
    fn bad_requests_are_refused_with_aws_messages() {
        assert_eq!(refused(None, "not json"), Rejection::bad("Invalid JSON"));
        assert_eq!(refused(None, "[1]"), Rejection::bad("Invalid JSON"));
        assert_eq!(
            refused(None, "{}"),
            Rejection::bad("Missing required node: state")
        );
        assert_eq!(refused(None, ""), Rejection::bad("Missing update payload"));
        assert_eq!(
            refused(None, r#"{"state": 1}"#),
            Rejection::bad("State node must be an object")
        );
        assert_eq!(
            refused(None, r#"{"state": {"desired": 1}}"#),
            Rejection::bad("Desired node must be an object")
        );
        assert_eq!(
            refused(None, r#"{"state": {"reported": "x"}}"#),
            Rejection::bad("Reported node must be an object")
        );
        assert_eq!(
            refused(None, r#"{"state": {"other": {}}}"#),
            Rejection::bad("State contains an invalid node: 'other'")
        );
        assert_eq!(
            refused(None, r#"{"state": {"reported": {}}, "version": "1"}"#),
            Rejection::bad("Invalid version")
        );
        let long = "x".repeat(65);
        assert_eq!(
            refused(
                None,
                &format!(r#"{{"state": {{"reported": {{}}}}, "clientToken": "{long}"}}"#)
            ),
            Rejection::bad("Invalid clientToken")
        );
        let deep = r#"{"state": {"reported": {"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}"#;
        assert_eq!(
            refused(None, deep),
            Rejection::bad("JSON contains too many levels of nesting; maximum is 6")
        );
        let big = format!(
            r#"{{"state": {{"reported": {{"a": "{}"}}}}}}"#,
            "x".repeat(9000)
        );
        assert_eq!(refused(None, &big).code, 413);
        assert_eq!(update(None, 0, &[0xff, 0xfe], 1).unwrap_err().code, 415);
    }

    #[test]
    fn get_and_delete_of_a_missing_shadow_are_404_with_its_name() {
        assert_eq!(
            get(None, "lamp", "", b"", 1).unwrap_err(),
            Rejection::new(404, "No shadow exists with name: 'lamp'")
        );
        assert_eq!(
            delete(None, "lamp", "settings", br#"{"clientToken":"c"}"#, 1).unwrap_err(),
            Rejection::new(404, "No shadow exists with name: 'settings'")
        );
        assert_eq!(
            client_token(br#"{"clientToken":"c"}"#).as_deref(),
            Some("c")
        );
        assert_eq!(
            rejected(&not_found("lamp", ""), Some("c"), 7),
            json!({"code": 404, "message": "No shadow exists with name: 'lamp'", "timestamp": 7, "clientToken": "c"})
        );
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(8, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// No payload panics a shadow operation, and whatever is accepted
        /// stays within AWS's limits and bumps the version by one.
        #[test]
        fn any_bytes_are_answered_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = update(None, 0, &bytes, 1);
            let _ = get(None, "t", "", &bytes, 1);
            let _ = delete(None, "t", "s", &bytes, 1);
            let _ = client_token(&bytes);
        }

        #[test]
        fn accepted_updates_keep_the_limits(desired in json_value(), reported in json_value(), version in 0u64..3) {
            let request = json!({"state": {"desired": desired, "reported": reported}});
            let first = update(None, 0, request.to_string().as_bytes(), 1);
            if let Ok(first) = first {
                proptest::prop_assert_eq!(first.shadow.version, 1);
                let again = update(Some(&first.shadow), 0, json!({"state": request["state"].clone(), "version": version}).to_string().as_bytes(), 2);
                match again {
                    Ok(up) => {
                        proptest::prop_assert_eq!(version, 1);
                        proptest::prop_assert_eq!(up.shadow.version, 2);
                        for section in [&up.shadow.desired, &up.shadow.reported].into_iter().flatten() {
                            proptest::prop_assert!(depth(&Value::Object(section.clone())) <= MAX_DEPTH);
                        }
                    }
                    Err(rejection) => proptest::prop_assert!(version != 1 || rejection.code == 413, "{rejection:?}"),
                }
            }
        }
    }

    #[test]
    fn shadow_names_follow_aws_rules() {
        assert!(valid_shadow_name("settings:v1_a-b"));
        assert!(!valid_shadow_name(""));
        assert!(!valid_shadow_name("a/b"));
        assert!(!valid_shadow_name(&"a".repeat(65)));
    }
}
