//! Generates the gRPC contracts from `proto/` into `OUT_DIR`, with the vendored
//! `protoc` so that no system compiler is needed.

use std::{env, error::Error, path::PathBuf};

const FILES: &[&str] = &[
    "herald/registry/v1/registry.proto",
    "herald/registry/v1/jobs.proto",
    "herald/registry/v1/shadow.proto",
    "herald/registry/v1/tags.proto",
    "herald/registry/v1/index.proto",
    "herald/config/v1/config.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let files: Vec<PathBuf> = FILES.iter().map(|f| root.join(f)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("descriptor.bin"))
        .emit_rerun_if_changed(false)
        .compile_with_config(config, &files, &[root])?;
    Ok(())
}
