//! Change log replay: WatchChanges from the oldest retained event up to the
//! last one logged when the replay starts.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_proto::registry::v1::{ChangeLogInfo, GetChangeLogInfoRequest, WatchChangesRequest};

use super::load::{Client, connect};

/// Replay gives up after this long, so the bench always ends.
const MAX_REPLAY: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub(super) struct Replay {
    pub(super) records: u64,
    pub(super) elapsed: Duration,
}

pub(super) async fn log_info(client: &mut Client) -> anyhow::Result<ChangeLogInfo> {
    let response = client
        .get_change_log_info(GetChangeLogInfoRequest {})
        .await
        .context("GetChangeLogInfo")?;
    Ok(response.into_inner())
}

/// How many events the log retains.
pub(super) fn retained(info: &ChangeLogInfo) -> u64 {
    if info.last_sequence == 0 {
        0
    } else {
        info.last_sequence - info.first_sequence + 1
    }
}

/// Streams the whole retained log on a fresh connection and times it.
pub(super) async fn replay(endpoint: &str) -> anyhow::Result<Replay> {
    let mut client = connect(endpoint).await?;
    let info = log_info(&mut client).await?;
    let started = Instant::now();
    let records = tokio::time::timeout(MAX_REPLAY, consume(&mut client, &info))
        .await
        .with_context(|| {
            format!(
                "replay did not reach sequence {} within {MAX_REPLAY:?}",
                info.last_sequence
            )
        })??;
    Ok(Replay {
        records,
        elapsed: started.elapsed(),
    })
}

/// Reads batches until `info.last_sequence`, checking that sequences have no gaps.
async fn consume(client: &mut Client, info: &ChangeLogInfo) -> anyhow::Result<u64> {
    if retained(info) == 0 {
        return Ok(0);
    }
    let request = WatchChangesRequest { after_sequence: 0 };
    let mut stream = client
        .watch_changes(request)
        .await
        .context("opening WatchChanges")?
        .into_inner();
    let mut expected = info.first_sequence;
    let mut records = 0;
    while expected <= info.last_sequence {
        let batch = stream
            .message()
            .await
            .context("reading WatchChanges")?
            .with_context(|| {
                format!("WatchChanges ended before sequence {}", info.last_sequence)
            })?;
        for event in batch.events {
            if event.sequence != expected {
                bail!(
                    "WatchChanges sent sequence {} where {expected} was due",
                    event.sequence
                );
            }
            expected += 1;
            records += 1;
        }
    }
    Ok(records)
}
