//! A PostgreSQL database of the test's own, on the server that
//! `cargo xtask test` starts (or any server `HERALD_TEST_POSTGRES` names: the
//! URL of a database the test may create databases from).
//!
//! Without a server the test is skipped, with a note, unless
//! `HERALD_REQUIRE_POSTGRES=1` (as in CI), where it fails.

use std::sync::atomic::{AtomicU32, Ordering};

/// The variable naming the tests' server.
pub const SERVER_VAR: &str = "HERALD_TEST_POSTGRES";

/// Creates an empty database and returns its URL; `None` (after a note on
/// stderr) when no server is given and none is required.
pub async fn database(test: &str) -> Option<String> {
    let Ok(server) = std::env::var(SERVER_VAR) else {
        assert!(
            std::env::var("HERALD_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "{test} needs PostgreSQL: set {SERVER_VAR} (cargo xtask test does)"
        );
        eprintln!("note: {test} skipped: no PostgreSQL ({SERVER_VAR} is not set)");
        return None;
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "herald_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {server}: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    Some(url(&server, &name))
}

/// `server`'s URL with its database replaced by `name`.
fn url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Runs `sql` on the database at `url` (for a test that plays the operator).
pub async fn execute(url: &str, sql: &str) -> u64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_urls_database_is_replaced() {
        assert_eq!(
            super::url("postgres://herald@127.0.0.1:5432/postgres", "x"),
            "postgres://herald@127.0.0.1:5432/x"
        );
        assert_eq!(
            super::url("postgres://u@h:1/postgres?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(super::url("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
