//! `cargo xtask fuzz`: fuzz the policy parser for a bounded time with cargo-fuzz.
//!
//! The fuzz crate (`crates/policy/fuzz`) is outside the workspace. cargo-fuzz
//! needs unstable compiler flags; `RUSTC_BOOTSTRAP=1` allows them on the stable
//! toolchain, which is the only one these machines have. CI does not run this.

use crate::{
    flags,
    util::{self, Result, bail},
};

pub(crate) fn run(flags: &flags::Fuzz) -> Result<()> {
    let root = util::project_root();
    let installed = util::cargo(&root)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        bail!(
            "cargo-fuzz is not installed; install it once with: cargo install cargo-fuzz --locked"
        );
    }
    let dir = "crates/policy/fuzz";
    util::run(
        util::cargo(&root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--fuzz-dir", dir, "parse"])
            .arg(format!("{dir}/corpus/parse"))
            .arg(format!("{dir}/seeds"))
            .arg("--")
            .arg(format!("-dict={dir}/parse.dict"))
            .arg(format!("-max_total_time={}", flags.secs)),
    )
}
