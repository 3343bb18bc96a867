//! The entry points of the registry's fuzz targets (`crates/registry/fuzz`,
//! run by `cargo xtask fuzz`) and the tests that replay their seeds on every
//! `cargo test`: a fleet indexing query from outside, a verdict out, through
//! the parser and the evaluator SearchIndex runs; and a Device Shadow
//! request document (an MQTT payload or an HTTP body), through update, get
//! and delete and, accepted, the fleet index's fields. Neither may panic on
//! any input.

use crate::domain::shadow::{self, Shadow};
use crate::index::{self, query};

/// Parses `data` (as UTF-8) as a query and, when it parses, runs it on a
/// small index. Returns whether it parsed.
pub fn query_verdict(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match query::parse(text) {
        Ok(parsed) => {
            index::evaluate_on_sample(&parsed);
            true
        }
        Err(_) => false,
    }
}

/// Applies `data` as a shadow update to no shadow and to a shadow with
/// nested state, then as get and delete requests; an accepted update's
/// document is indexed. Returns whether the first update was accepted.
pub fn shadow_verdict(data: &[u8]) -> bool {
    const NOW: i64 = 1_700_000_000;
    let existing = shadow::update(
        None,
        0,
        br#"{"state":{"desired":{"a":{"b":[1,2]},"on":true},"reported":{"a":{"b":null},"x":"y"}}}"#,
        NOW,
    )
    .map(|u| u.shadow)
    .unwrap_or_default();
    let fresh = shadow::update(None, 0, data, NOW);
    let accepted = fresh.is_ok();
    let mut shadows: Vec<Shadow> = fresh.into_iter().map(|u| u.shadow).collect();
    if let Ok(updated) = shadow::update(Some(&existing), 0, data, NOW) {
        shadows.push(updated.shadow);
    }
    let _ = shadow::get(Some(&existing), "thing", "", data, NOW);
    let _ = shadow::delete(Some(&existing), "thing", "name", data, NOW);
    let _ = shadow::client_token(data);
    for held in shadows {
        index::shadow::fields_of(held);
    }
    accepted
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The seeds of a target's corpus (at least 5), in name order.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{}: too few seeds", dir.display());
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    /// Every seed of the shadow corpus returns.
    #[test]
    fn every_seed_of_the_shadow_corpus_returns() {
        let accepted = seeds("shadow")
            .iter()
            .filter(|seed| shadow_verdict(seed))
            .count();
        assert!(accepted >= 3, "some seeds are valid updates");
    }

    /// Every seed (the crashes ever found among them) runs without a panic.
    #[test]
    fn every_seed_of_the_query_corpus_returns() {
        let parsed = seeds("query")
            .iter()
            .filter(|seed| query_verdict(seed))
            .count();
        assert!(parsed >= 5, "most seeds are valid queries");
    }
}
