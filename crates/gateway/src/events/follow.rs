//! Following the registry's change log (`WatchChanges`) from a position:
//! the one follower behind the event pump and every session's replay.
//!
//! [`ChangeFollower::next`] hands out the batches in order, and says when
//! the stream was interrupted (it could not be opened, failed or ended: the
//! next call reopens it after the position, after a backoff) and when the
//! registry cannot serve the position (`OUT_OF_RANGE`). Then it asks the
//! registry why: retention removed events after the position
//! ([`Followed::Pruned`]) or the log ends before it, its data replaced
//! ([`Followed::Wiped`]). Either way following goes on at once from the
//! oldest retained event (position 0).

use herald_proto::registry::v1::{
    ChangeEvent, GetChangeLogInfoRequest, WatchChangesRequest, WatchChangesResponse,
    registry_client::RegistryClient,
};
use tonic::{Code, Status, Streaming};

use crate::partition::Tagged;

use crate::backoff::Backoff;

/// What following the log brought.
#[derive(Debug)]
pub(crate) enum Followed {
    /// Consecutive events after the position, in order.
    Events(Vec<ChangeEvent>),
    /// The stream could not be opened, failed (`Some`) or ended (`None`).
    Interrupted(Option<Status>),
    /// Events after `after` were removed by the registry's retention; the
    /// oldest one retained is `first_retained`, when the registry said.
    Pruned {
        after: u64,
        first_retained: Option<u64>,
    },
    /// The log ends (at `last_sequence`) before `after`: the registry's data
    /// was replaced.
    Wiped { after: u64, last_sequence: u64 },
}

/// A follower of the change log.
pub(crate) struct ChangeFollower {
    registry: RegistryClient<Tagged>,
    /// The last event handed out: the stream resumes after it.
    after: u64,
    stream: Option<Streaming<WatchChangesResponse>>,
    backoff: Backoff,
    /// The last attempt failed: wait before the next.
    waiting: bool,
}

impl ChangeFollower {
    /// Follows the log after `after`, waiting `backoff` between attempts.
    pub(crate) fn new(registry: RegistryClient<Tagged>, after: u64, backoff: Backoff) -> Self {
        ChangeFollower {
            registry,
            after,
            stream: None,
            backoff,
            waiting: false,
        }
    }

    /// The wait before the next attempt, after an interruption.
    pub(crate) fn backoff(&self) -> std::time::Duration {
        self.backoff.current()
    }

    /// What happened next. Cancel-safe at every await but the backoff's,
    /// which a cancelled call leaves for the next one.
    pub(crate) async fn next(&mut self) -> Followed {
        if self.stream.is_none() {
            if self.waiting {
                self.backoff.wait().await;
                self.waiting = false;
            }
            let opened = self
                .registry
                .watch_changes(WatchChangesRequest {
                    after_sequence: self.after,
                })
                .await;
            match opened {
                Ok(response) => {
                    tracing::debug!(after_sequence = self.after, "change stream open");
                    self.backoff.reset();
                    self.stream = Some(response.into_inner());
                }
                Err(status) => return self.failed(status).await,
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return Followed::Interrupted(None);
        };
        match stream.message().await {
            Ok(Some(batch)) => {
                if let Some(last) = batch.events.last() {
                    self.after = self.after.max(last.sequence);
                }
                Followed::Events(batch.events)
            }
            Ok(None) => {
                self.stream = None;
                self.waiting = true;
                Followed::Interrupted(None)
            }
            Err(status) => {
                self.stream = None;
                self.failed(status).await
            }
        }
    }

    async fn failed(&mut self, status: Status) -> Followed {
        // A position of 0 is always in range: an `OUT_OF_RANGE` then is
        // unexpected, and retried with the backoff.
        if status.code() != Code::OutOfRange || self.after == 0 {
            self.waiting = true;
            return Followed::Interrupted(Some(status));
        }
        let after = std::mem::take(&mut self.after);
        let info = self
            .registry
            .get_change_log_info(GetChangeLogInfoRequest {})
            .await
            .map(tonic::Response::into_inner);
        match info {
            Ok(info) if info.last_sequence < after => Followed::Wiped {
                after,
                last_sequence: info.last_sequence,
            },
            Ok(info) => Followed::Pruned {
                after,
                first_retained: Some(info.first_sequence),
            },
            Err(_) => Followed::Pruned {
                after,
                first_retained: None,
            },
        }
    }
}
