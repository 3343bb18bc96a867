//! `cargo xtask test`: everything CI checks, in order, stopping at the first failure.

use std::path::PathBuf;

use crate::{
    e2e::{self, Build},
    gen_operations,
    postgres::{self, Postgres},
    util::{self, Result},
};

/// The variable that gives the tests a PostgreSQL server: the URL of its
/// `postgres` database (each test makes a database of its own there).
const POSTGRES_VAR: &str = "HERALD_TEST_POSTGRES";

pub(crate) fn run() -> Result<()> {
    let root = util::project_root();
    util::run(util::cargo(&root).args(["fmt", "--all", "--check"]))?;
    eprintln!("$ cargo xtask gen-operations --check");
    gen_operations::check(&root)?;
    util::run(util::cargo(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let postgres = TestPostgres::start()?;
    let env: Vec<(&str, String)> = postgres
        .as_ref()
        .map(|pg| vec![(POSTGRES_VAR, pg.server.url("postgres"))])
        .unwrap_or_default();
    if util::succeeds(util::cargo(&root).args(["nextest", "--version"])) {
        util::run(
            util::cargo(&root)
                .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .envs(env.iter().map(|(k, v)| (k, v))),
        )?;
    } else {
        eprintln!("note: cargo-nextest is not installed; using cargo test");
        util::run(
            util::cargo(&root)
                .args(["test", "--workspace"])
                .envs(env.iter().map(|(k, v)| (k, v))),
        )?;
    }
    e2e::run_suites(&root, Build::Needed, &env)
}

/// The tests' PostgreSQL server, when the machine has PostgreSQL installed
/// and no server is given in `HERALD_TEST_POSTGRES`: started in a fresh
/// folder, stopped and removed at the end.
struct TestPostgres {
    server: Postgres,
    dir: PathBuf,
}

impl TestPostgres {
    fn start() -> Result<Option<TestPostgres>> {
        if std::env::var_os(POSTGRES_VAR).is_some() {
            return Ok(None);
        }
        if postgres::binaries().is_none() {
            eprintln!(
                "note: PostgreSQL is not installed, so its tests skip (on Debian: apt-get install postgresql)"
            );
            return Ok(None);
        }
        let dir = std::env::temp_dir().join(format!("herald-test-postgres-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server = Postgres::start(&dir, postgres::free_port()?)?;
        eprintln!("PostgreSQL for the tests: {}", server.url("postgres"));
        Ok(Some(TestPostgres { server, dir }))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.server.stop_now();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
