//! `cargo xtask e2e`: build the service binaries, then run the end-to-end suites.
//!
//! `cargo xtask test` runs the same suites after the Rust tests, through [`run_suites`].

use std::{path::Path, process::Command};

use crate::{
    services,
    util::{self, Result},
};

pub(crate) fn run() -> Result<()> {
    let root = util::project_root();
    build_bins(&root)?;
    run_suites(&root, Build::Done, &[])
}

/// Whether the service binaries still need `cargo build --bins` before a suite runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Build {
    Needed,
    Done,
}

/// An end-to-end suite: drives the real binaries from outside, as a user's tools would.
enum Suite {
    /// `python3 -m pytest <dir> -q`: boto3 and MQTT clients against the services.
    Pytest(&'static str),
}

/// THE PLACE FOR END-TO-END SUITES. Each suite that exists in the tree runs,
/// in this order; later ones (the aws CLI, MQTT clients) are added here.
fn suites(root: &Path) -> Vec<Suite> {
    let mut found = Vec::new();
    let pytest = "tests/e2e";
    if root.join(pytest).join("pytest.ini").is_file()
        || root.join(pytest).join("conftest.py").is_file()
    {
        found.push(Suite::Pytest(pytest));
    }
    found
}

/// Runs every end-to-end suite there is; with none, says so and succeeds.
/// `env` is added to each suite's environment.
pub(crate) fn run_suites(root: &Path, build: Build, env: &[(&str, String)]) -> Result<()> {
    let suites = suites(root);
    if suites.is_empty() {
        println!(
            "note: no end-to-end suites yet (tests/e2e with a pytest.ini or conftest.py); nothing to run"
        );
        return Ok(());
    }
    if build == Build::Needed {
        build_bins(root)?;
    }
    for suite in suites {
        match suite {
            Suite::Pytest(dir) => pytest(root, dir, env)?,
        }
    }
    Ok(())
}

fn build_bins(root: &Path) -> Result<()> {
    util::run(util::cargo(root).args(["build", "--bins"]))
}

/// pytest with `HERALD_E2E_BIN_DIR` and `HERALD_E2E_<SERVICE>_BIN` naming the
/// binaries just built, so the suite's fixtures can start them.
fn pytest(root: &Path, dir: &str, env: &[(&str, String)]) -> Result<()> {
    let bin_dir = util::target_dir(root).join("debug");
    let mut cmd = Command::new("python3");
    cmd.current_dir(root)
        .args(["-m", "pytest", dir, "-q"])
        .env("HERALD_E2E_BIN_DIR", &bin_dir)
        .envs(env.iter().map(|(k, v)| (k, v)));
    for svc in services::present(root) {
        cmd.env(
            format!("HERALD_E2E_{}_BIN", svc.name.to_uppercase()),
            bin_dir.join(svc.name),
        );
    }
    util::run(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pytest_suite_is_found_by_its_config_file() {
        let root = std::env::temp_dir().join(format!("xtask-e2e-{}", std::process::id()));
        let dir = root.join("tests/e2e");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(suites(&root).is_empty(), "a bare tests/e2e is not a suite");
        std::fs::write(dir.join("conftest.py"), "").unwrap();
        assert!(matches!(suites(&root)[..], [Suite::Pytest("tests/e2e")]));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
