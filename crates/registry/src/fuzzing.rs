//! The entry point of the registry's fuzz target (`crates/registry/fuzz`,
//! run by `cargo xtask fuzz`) and the test that replays its seeds on every
//! `cargo test`: a fleet indexing query from outside, a verdict out, through
//! the parser and the evaluator SearchIndex runs. It may not panic on any
//! input.

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every seed (the crashes ever found among them) runs without a panic.
    #[test]
    fn every_seed_of_the_query_corpus_returns() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/query");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{}: too few seeds", dir.display());
        let parsed = files
            .iter()
            .filter(|path| query_verdict(&std::fs::read(path).unwrap()))
            .count();
        assert!(parsed >= 5, "most seeds are valid queries");
    }
}
