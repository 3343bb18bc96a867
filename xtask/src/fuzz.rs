//! `cargo xtask fuzz`: run every fuzz target for a bounded time each with
//! cargo-fuzz: the policy parser, the gateway's SigV4 verifier and its MQTT
//! packet decoder, and the registry's fleet indexing query parser and Device
//! Shadow request documents.
//!
//! The fuzz crates (`crates/policy/fuzz`, `crates/gateway/fuzz`,
//! `crates/registry/fuzz`) are outside
//! the workspace. cargo-fuzz
//! needs unstable compiler flags; `RUSTC_BOOTSTRAP=1` allows them on the stable
//! toolchain, which is the only one these machines have. CI does not run this.

use crate::{
    flags,
    util::{self, Context as _, Result, bail},
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
        ("crates/registry/fuzz", "query", "seeds/query", None),
        ("crates/registry/fuzz", "shadow", "seeds/shadow", None),
    ];
    for (dir, target, seeds, dict) in targets {
        // libFuzzer writes what it finds here; it must exist beforehand.
        let corpus = root.join(dir).join("corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
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
        if let Err(e) = util::run(&mut cmd) {
            let kept = keep_crashes(&root.join(dir), target, seeds)?;
            bail!(
                "{e}\nthe inputs that failed are now seeds, replayed by `cargo xtask test`: {kept:?}\nfix the bug, then commit them"
            );
        }
    }
    Ok(())
}

/// Copies what libFuzzer saved in `artifacts/<target>/` (crash-, leak-,
/// timeout-, oom- files) into the target's seeds, where the corpus tests
/// replay them; returns the seeds' paths.
fn keep_crashes(dir: &std::path::Path, target: &str, seeds: &str) -> Result<Vec<String>> {
    let artifacts = dir.join("artifacts").join(target);
    let Ok(entries) = std::fs::read_dir(&artifacts) else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let seed = dir.join(seeds).join(&name);
        if !seed.exists() {
            std::fs::copy(entry.path(), &seed).with_context(|| {
                format!("copy {} to {}", entry.path().display(), seed.display())
            })?;
        }
        kept.push(seed.display().to_string());
    }
    Ok(kept)
}
