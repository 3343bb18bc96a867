//! `cargo xtask fuzz`: run every fuzz target for a bounded time each with
//! cargo-fuzz: the policy parser, the gateway's SigV4 verifier and its MQTT
//! packet decoder.
//!
//! The fuzz crates (`crates/policy/fuzz`, `crates/gateway/fuzz`) are outside
//! the workspace. cargo-fuzz
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
    // (fuzz crate, target, seeds directory, dictionary)
    let targets = [
        ("crates/policy/fuzz", "parse", "seeds", Some("parse.dict")),
        (
            "crates/gateway/fuzz",
            "sigv4",
            "seeds/sigv4",
            Some("sigv4.dict"),
        ),
        ("crates/gateway/fuzz", "mqtt_decode", "seeds/mqtt", None),
    ];
    for (dir, target, seeds, dict) in targets {
        let mut cmd = util::cargo(&root);
        cmd.env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--fuzz-dir", dir, target])
            .arg(format!("{dir}/corpus/{target}"))
            .arg(format!("{dir}/{seeds}"))
            .arg("--");
        if let Some(dict) = dict {
            cmd.arg(format!("-dict={dir}/{dict}"));
        }
        cmd.arg(format!("-max_total_time={}", flags.secs));
        util::run(&mut cmd)?;
    }
    Ok(())
}
