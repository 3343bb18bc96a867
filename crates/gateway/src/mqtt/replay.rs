//! A session's own read of the registry's change log, for what the `$aws`
//! bus could not give it: the events committed while a persistent session
//! was away (or before a gateway restart), and those its full queue made
//! the bus drop. The session renders, gates, matches and delivers them
//! itself, then goes back to the bus (see `session.rs`).
//!
//! [`Replay::spawn`] follows `WatchChanges` from a position in its own
//! task and hands the batches over a small channel, so a session that is
//! busy writing holds the stream back instead of buffering it. The task
//! reopens a failed stream with backoff. When the registry cannot serve
//! the position (`OUT_OF_RANGE`) it tells why: retention removed events
//! after it ([`ReplayMessage::Pruned`], the replay continues from the
//! oldest retained one), or the log ends before it
//! ([`ReplayMessage::Wiped`], the registry's data was replaced; the replay
//! continues from its start).

use std::time::Duration;

use herald_proto::registry::v1::{
    ChangeEvent, GetChangeLogInfoRequest, WatchChangesRequest, registry_client::RegistryClient,
};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::{Code, transport::Channel};

const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Batches the task may read ahead of the session.
const CHANNEL: usize = 4;

/// What the replay task hands its session.
#[derive(Debug)]
pub(crate) enum ReplayMessage {
    /// Consecutive events of the log, in order.
    Events(Vec<ChangeEvent>),
    /// Events after the position were removed by retention: the replay
    /// continues from the oldest retained event.
    Pruned,
    /// The log ends before the position: the replay restarts from its
    /// first event; the session forgets its position.
    Wiped,
}

/// A running replay; dropping it stops the task.
pub(crate) struct Replay {
    rx: mpsc::Receiver<ReplayMessage>,
    _stop: DropGuard,
}

impl Replay {
    /// Follows the change log after `after_sequence`.
    pub(crate) fn spawn(registry: RegistryClient<Channel>, after_sequence: u64) -> Replay {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let stop = CancellationToken::new();
        let task_stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = task_stop.cancelled() => {}
                () = follow(registry, after_sequence, tx) => {}
            }
        });
        Replay {
            rx,
            _stop: stop.drop_guard(),
        }
    }

    /// The next message; `None` once the task has ended (never while the
    /// session holds the replay, short of a panic).
    pub(crate) async fn next(&mut self) -> Option<ReplayMessage> {
        self.rx.recv().await
    }
}

async fn follow(
    mut registry: RegistryClient<Channel>,
    mut after: u64,
    tx: mpsc::Sender<ReplayMessage>,
) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let failed = match registry
            .watch_changes(WatchChangesRequest {
                after_sequence: after,
            })
            .await
        {
            Ok(response) => {
                backoff = INITIAL_BACKOFF;
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(batch)) => {
                            if let Some(last) = batch.events.last() {
                                after = after.max(last.sequence);
                            }
                            if tx.send(ReplayMessage::Events(batch.events)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                }
            }
            Err(status) => Some(status),
        };
        if let Some(status) = &failed
            && status.code() == Code::OutOfRange
            && after > 0
        {
            let info = registry
                .get_change_log_info(GetChangeLogInfoRequest {})
                .await
                .map(tonic::Response::into_inner);
            let message = match info {
                Ok(info) if info.last_sequence < after => {
                    tracing::error!(
                        after,
                        last_sequence = info.last_sequence,
                        "the registry's change log ends before the session's position; replaying from its start"
                    );
                    ReplayMessage::Wiped
                }
                _ => {
                    tracing::error!(
                        after,
                        "events after the session's position were removed by retention; replaying from the oldest retained event"
                    );
                    ReplayMessage::Pruned
                }
            };
            if tx.send(message).await.is_err() {
                return;
            }
            after = 0;
            continue;
        }
        tracing::debug!(after, error = ?failed, ?backoff, "session replay stream ended; reopening");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
