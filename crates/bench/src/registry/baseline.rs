//! The baseline the registry's figures are read against, measured in the same
//! run on the same disk: raw sled, with no gRPC, validation or change log.
//!
//! - one insert and one flush per write: the floor of a durable write;
//! - 64 inserts per flush: what group commit can reach at 64 clients.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::stats::per_sec;

/// Durable writes per second, two ways.
pub(super) struct Baseline {
    pub(super) flush_per_write: f64,
    pub(super) batch_of_64: f64,
}

/// A record about the size of a small thing's.
const RECORD: &[u8] = br#"{"name":"bench-c64-1-100","id":"00000000-0000-0000-0000-000000000000","type_name":null,"attributes":{"a":"1","b":"2"},"version":1}"#;

pub(super) fn measure(dir: &std::path::Path, phase: Duration) -> anyhow::Result<Baseline> {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .open()
        .context("open the baseline sled database")?;
    let tree = db.open_tree("baseline").context("open the baseline tree")?;
    let mut key = 0u64;
    let mut run = |batch: usize| -> anyhow::Result<f64> {
        let start = Instant::now();
        let mut written = 0u64;
        while start.elapsed() < phase {
            let mut writes = sled::Batch::default();
            for _ in 0..batch {
                key += 1;
                writes.insert(&key.to_be_bytes(), RECORD);
            }
            tree.apply_batch(writes).context("write")?;
            db.flush().context("flush")?;
            written += batch as u64;
        }
        Ok(per_sec(written, start.elapsed()))
    };
    let flush_per_write = run(1)?;
    let batch_of_64 = run(64)?;
    Ok(Baseline {
        flush_per_write,
        batch_of_64,
    })
}
