//! A session's own read of the registry's change log, for what the `$aws`
//! bus could not give it: the events committed while a persistent session
//! was away (or before a gateway restart), and those its full queue made
//! the bus drop. The session renders, gates, matches and delivers them
//! itself, then goes back to the bus (see `session.rs`).
//!
//! [`Replay::spawn`] follows the change log from a position in its own
//! task (`events::follow`, which reopens a failed stream with backoff) and
//! hands the batches over a small channel, so a session that is busy
//! writing holds the stream back instead of buffering it. When the registry
//! cannot serve the position it tells why: retention removed events after
//! it ([`ReplayMessage::Pruned`], the replay continues from the oldest
//! retained one), or the log ends before it ([`ReplayMessage::Wiped`], the
//! registry's data was replaced; the replay continues from its start).

use std::time::Duration;

use crate::partition::Tagged;
use herald_proto::registry::v1::{ChangeEvent, registry_client::RegistryClient};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::backoff::Backoff;
use crate::events::follow::{ChangeFollower, Followed};

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
    pub(crate) fn spawn(registry: RegistryClient<Tagged>, after_sequence: u64) -> Replay {
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

async fn follow(registry: RegistryClient<Tagged>, after: u64, tx: mpsc::Sender<ReplayMessage>) {
    let mut follower =
        ChangeFollower::new(registry, after, Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF));
    loop {
        let message = match follower.next().await {
            Followed::Events(events) => ReplayMessage::Events(events),
            Followed::Interrupted(error) => {
                tracing::debug!(?error, backoff = ?follower.backoff(), "session replay stream ended; reopening");
                continue;
            }
            Followed::Pruned { after, .. } => {
                tracing::error!(
                    after,
                    "events after the session's position were removed by retention; replaying from the oldest retained event"
                );
                ReplayMessage::Pruned
            }
            Followed::Wiped {
                after,
                last_sequence,
            } => {
                tracing::error!(
                    after,
                    last_sequence,
                    "the registry's change log ends before the session's position; replaying from its start"
                );
                ReplayMessage::Wiped
            }
        };
        if tx.send(message).await.is_err() {
            return;
        }
    }
}
