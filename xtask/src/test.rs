//! `cargo xtask test`: everything CI checks, in order, stopping at the first failure.

use crate::{
    e2e::{self, Build},
    gen_operations,
    util::{self, Result},
};

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
    if util::succeeds(util::cargo(&root).args(["nextest", "--version"])) {
        util::run(util::cargo(&root).args(["nextest", "run", "--workspace", "--no-fail-fast"]))?;
    } else {
        eprintln!("note: cargo-nextest is not installed; using cargo test");
        util::run(util::cargo(&root).args(["test", "--workspace"]))?;
    }
    e2e::run_suites(&root, Build::Needed)
}
