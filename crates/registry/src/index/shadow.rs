//! Shadows in the things index (AWS IoT developer guide: "Managing fleet
//! indexing", thing indexing mode REGISTRY_AND_SHADOW): the classic
//! shadow's fields as `shadow.reported.<path>`, `shadow.desired.<path>`,
//! `shadow.metadata.reported.<path>.timestamp`, `shadow.version` and
//! `shadow.hasDelta`, and a named shadow's as `shadow.name.<name>.` then
//! the same. An array's elements are values of one field.
//!
//! The index holds every shadow it is told of; which of them a query or a
//! search result sees is the indexing configuration's choice, a
//! [`ShadowSelection`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::domain::shadow::Shadow;

/// A shadow as the index last heard of it: its version, and the document
/// (`None` once deleted, so that an older update arriving late is ignored).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeldShadow {
    pub(crate) version: u64,
    pub(crate) shadow: Option<Shadow>,
}

impl HeldShadow {
    /// Whether `self` comes after `held`: a higher version, or the deletion
    /// of the same version.
    pub(crate) fn supersedes(&self, held: &HeldShadow) -> bool {
        (self.version, self.shadow.is_none()) > (held.version, held.shadow.is_none())
    }
}

/// A thing's shadows by name, the classic one's name empty.
pub(crate) type ThingShadows = BTreeMap<String, HeldShadow>;

/// Which shadows the indexing configuration indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShadowSelection {
    /// The classic shadow (REGISTRY_AND_SHADOW).
    pub(crate) classic: bool,
    /// The named shadows listed in the configuration's filter.
    pub(crate) named: Vec<String>,
}

impl ShadowSelection {
    /// Whether a query may see `field`: every field that is not a shadow's,
    /// and the fields of the selected shadows.
    pub(crate) fn indexes_field(&self, field: &str) -> bool {
        let Some(rest) = field.strip_prefix("shadow.") else {
            return true;
        };
        if !self.classic {
            return false;
        }
        match rest.strip_prefix("name.") {
            None => true,
            Some(named) => self.named.iter().any(|name| {
                named
                    .strip_prefix(name.as_str())
                    .is_some_and(|r| r.starts_with('.'))
            }),
        }
    }

    fn selects(&self, name: &str) -> bool {
        if name.is_empty() {
            self.classic
        } else {
            self.classic && self.named.iter().any(|n| n == name)
        }
    }

    /// A thing document's `shadow`: the selected shadows as a JSON string
    /// (the classic one's fields at the top, the named ones under `name`),
    /// or `None` when there are none.
    pub(crate) fn document(&self, shadows: Option<&ThingShadows>) -> Option<String> {
        let mut out = Map::new();
        let mut named = Map::new();
        for (name, held) in shadows.into_iter().flatten() {
            let Some(shadow) = &held.shadow else {
                continue;
            };
            if !self.selects(name) {
                continue;
            }
            match (name.is_empty(), shadow.indexed()) {
                (true, Value::Object(fields)) => out.extend(fields),
                (false, document) => {
                    named.insert(name.clone(), document);
                }
                (true, _) => {}
            }
        }
        if !named.is_empty() {
            out.insert("name".into(), Value::Object(named));
        }
        (!out.is_empty()).then(|| Value::Object(out).to_string())
    }
}

/// The fields of one classic shadow (the fuzz target's indexer).
pub(crate) fn fields_of(shadow: Shadow) -> Vec<(String, String)> {
    let version = shadow.version;
    let shadows = ThingShadows::from([(
        String::new(),
        HeldShadow {
            version,
            shadow: Some(shadow),
        },
    )]);
    let mut out = Vec::new();
    fields(&shadows, &mut out);
    let _ = ShadowSelection {
        classic: true,
        named: Vec::new(),
    }
    .document(Some(&shadows));
    out
}

/// Every field of a thing's shadows, selected or not.
pub(crate) fn fields(shadows: &ThingShadows, out: &mut Vec<(String, String)>) {
    for (name, held) in shadows {
        let Some(shadow) = &held.shadow else {
            continue;
        };
        let prefix = if name.is_empty() {
            "shadow".to_owned()
        } else {
            format!("shadow.name.{name}")
        };
        let sections = [
            ("reported", &shadow.reported),
            ("desired", &shadow.desired),
            ("metadata.reported", &shadow.reported_metadata),
            ("metadata.desired", &shadow.desired_metadata),
        ];
        for (section, state) in sections {
            if let Some(state) = state {
                flatten_object(&format!("{prefix}.{section}"), state, out);
            }
        }
        out.push((format!("{prefix}.version"), shadow.version.to_string()));
        out.push((format!("{prefix}.hasDelta"), shadow.has_delta().to_string()));
    }
}

fn flatten_object(prefix: &str, object: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (key, value) in object {
        flatten(&format!("{prefix}.{key}"), value, out);
    }
}

fn flatten(field: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((field.to_owned(), b.to_string())),
        Value::Number(n) => out.push((field.to_owned(), n.to_string())),
        Value::String(s) => out.push((field.to_owned(), s.clone())),
        Value::Array(items) => {
            for item in items {
                flatten(field, item, out);
            }
        }
        Value::Object(object) => flatten_object(field, object, out),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shadow(desired: Value, reported: Value, version: u64) -> HeldShadow {
        let map = |v: Value| match v {
            Value::Object(m) => Some(m),
            _ => None,
        };
        HeldShadow {
            version,
            shadow: Some(Shadow {
                desired: map(desired),
                reported: map(reported),
                desired_metadata: None,
                reported_metadata: map(json!({"temp": {"timestamp": 17}})),
                version,
            }),
        }
    }

    #[test]
    fn fields_flatten_objects_and_arrays_and_skip_nulls() {
        let shadows = ThingShadows::from([
            (
                String::new(),
                shadow(
                    json!({"temp": 20, "mode": {"fan": "auto"}}),
                    json!({"temp": 18, "tags": ["a", "b"], "gone": null, "ok": true}),
                    3,
                ),
            ),
            ("gps".to_owned(), shadow(json!({}), json!({"lat": 1.5}), 1)),
        ]);
        let mut out = Vec::new();
        fields(&shadows, &mut out);
        let has = |f: &str, v: &str| out.contains(&(f.to_owned(), v.to_owned()));
        assert!(has("shadow.desired.temp", "20"));
        assert!(has("shadow.desired.mode.fan", "auto"));
        assert!(has("shadow.reported.tags", "a") && has("shadow.reported.tags", "b"));
        assert!(has("shadow.reported.ok", "true"));
        assert!(!out.iter().any(|(f, _)| f == "shadow.reported.gone"));
        assert!(has("shadow.metadata.reported.temp.timestamp", "17"));
        assert!(has("shadow.version", "3") && has("shadow.hasDelta", "true"));
        assert!(has("shadow.name.gps.reported.lat", "1.5"));
        assert!(has("shadow.name.gps.hasDelta", "false"));
    }

    #[test]
    fn the_selection_decides_what_is_seen() {
        let none = ShadowSelection::default();
        assert!(none.indexes_field("attributes.room"));
        assert!(!none.indexes_field("shadow.reported.temp"));
        let classic = ShadowSelection {
            classic: true,
            named: vec!["gps".into()],
        };
        assert!(classic.indexes_field("shadow.reported.temp"));
        assert!(classic.indexes_field("shadow.name.gps.reported.lat"));
        assert!(!classic.indexes_field("shadow.name.gpsx.reported.lat"));
        assert!(!classic.indexes_field("shadow.name.other.hasDelta"));
        let shadows = ThingShadows::from([
            (String::new(), shadow(json!({"on": true}), json!({}), 2)),
            ("gps".to_owned(), shadow(json!({}), json!({"lat": 1}), 1)),
            ("other".to_owned(), shadow(json!({}), json!({"x": 1}), 1)),
        ]);
        let document: Value =
            serde_json::from_str(&classic.document(Some(&shadows)).unwrap()).unwrap();
        assert_eq!(document["desired"], json!({"on": true}));
        assert_eq!(document["hasDelta"], json!(true));
        assert_eq!(document["version"], json!(2));
        assert_eq!(document["name"]["gps"]["reported"], json!({"lat": 1}));
        assert!(document["name"].get("other").is_none());
        assert_eq!(none.document(Some(&shadows)), None);
    }

    #[test]
    fn a_deletion_beats_its_version_and_loses_to_the_next() {
        let update = |v| shadow(json!({}), json!({}), v);
        let deleted = |v| HeldShadow {
            version: v,
            shadow: None,
        };
        assert!(update(2).supersedes(&update(1)));
        assert!(!update(1).supersedes(&update(2)));
        assert!(deleted(2).supersedes(&update(2)));
        assert!(!update(2).supersedes(&deleted(2)));
        assert!(update(3).supersedes(&deleted(2)));
    }
}
