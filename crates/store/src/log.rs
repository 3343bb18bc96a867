//! Following the change log: replay from a cursor, then live, and retention.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::watch;

use crate::{error::StoreError, store::Trees, writer::now_ms};

/// One logged event with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<E> {
    /// 1, 2, 3, ... in commit order, with no gaps.
    pub sequence: u64,
    /// A UUID fixed at commit: a redelivery carries the same id.
    pub event_id: String,
    /// Commit time, epoch milliseconds; every event of one mutation shares it.
    pub timestamp_ms: i64,
    pub event: E,
}

/// The change log as its followers see it: only what is durable.
#[derive(Clone)]
pub struct ChangeLog {
    trees: Trees,
    durable: watch::Receiver<u64>,
    /// How many [`ChangeLog::follow`] tasks run.
    followers: Arc<AtomicUsize>,
}

/// Counts a follower while it lives.
struct Following(Arc<AtomicUsize>);

impl Following {
    fn new(count: &Arc<AtomicUsize>) -> Following {
        count.fetch_add(1, Ordering::Relaxed);
        Following(Arc::clone(count))
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Events per streamed batch.
const BATCH: usize = 256;

/// Why a watch ended early.
#[derive(Debug)]
pub enum WatchError {
    /// Events after the cursor were removed by retention.
    Expired {
        cursor: u64,
        first: u64,
    },
    /// The cursor is past the end of the log (a log that was wiped, say).
    Ahead {
        cursor: u64,
        last: u64,
    },
    Store(StoreError),
}

impl From<StoreError> for WatchError {
    fn from(err: StoreError) -> Self {
        WatchError::Store(err)
    }
}

impl ChangeLog {
    pub(crate) fn new(trees: Trees, durable: watch::Receiver<u64>) -> ChangeLog {
        ChangeLog {
            trees,
            durable,
            followers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many followers ([`ChangeLog::follow`]) are streaming the log now.
    pub fn followers(&self) -> usize {
        self.followers.load(Ordering::Relaxed)
    }

    /// Sets the log's gauges, labelled with `service` and `partition`:
    /// `herald_change_log_head` (the last durable sequence number),
    /// `herald_change_log_floor` (the oldest one retention kept; 0 for an
    /// empty log) and `herald_change_log_followers`.
    pub fn report_metrics(&self, service: &'static str, partition: String) {
        let labels = [("service", service.to_owned()), ("partition", partition)];
        metrics::gauge!("herald_change_log_head", &labels).set(self.last_sequence() as f64);
        if let Ok(first) = self.first_sequence() {
            metrics::gauge!("herald_change_log_floor", &labels).set(first as f64);
        }
        metrics::gauge!("herald_change_log_followers", &labels).set(self.followers() as f64);
    }

    /// The last durable sequence number, 0 when nothing was ever logged.
    pub fn last_sequence(&self) -> u64 {
        *self.durable.borrow()
    }

    /// The first retained sequence number, 0 when the log is empty.
    pub fn first_sequence(&self) -> Result<u64, StoreError> {
        self.trees.first_sequence()
    }

    /// Resolves when the last durable sequence number reaches `sequence`.
    pub async fn durable_at(&self, sequence: u64) {
        let mut durable = self.durable.clone();
        let _ = durable.wait_for(|s| *s >= sequence).await;
    }

    /// The position to start after: `after`, or for 0 the event before the oldest retained one.
    pub fn start(&self, after: u64) -> Result<u64, WatchError> {
        let first = self.trees.first_sequence()?;
        let last = self.last_sequence();
        if after == 0 {
            return Ok(if first == 0 { last } else { first - 1 });
        }
        if after > last {
            return Err(WatchError::Ahead {
                cursor: after,
                last,
            });
        }
        // The last event is never pruned, so an empty log means nothing was ever logged.
        if first > after + 1 {
            return Err(WatchError::Expired {
                cursor: after,
                first,
            });
        }
        Ok(after)
    }

    /// Sends every durable event after `cursor`, in order, in batches, and then
    /// follows the log until the receiver goes away or `shutdown` fires.
    /// `from_oldest`: the cursor came from [`start`] for 0, so if retention removes
    /// the oldest events before the first batch, the watch starts at the new oldest.
    pub async fn follow<E: DeserializeOwned>(
        self,
        mut cursor: u64,
        mut from_oldest: bool,
        tx: mpsc::Sender<Result<Vec<Record<E>>, WatchError>>,
        shutdown: CancellationToken,
    ) {
        let _following = Following::new(&self.followers);
        let mut durable = self.durable.clone();
        loop {
            let upto = *durable.borrow_and_update();
            while cursor < upto {
                let batch = match self.read_after(cursor, upto) {
                    Ok(batch) => batch,
                    Err(WatchError::Expired { first, .. }) if from_oldest && first > 0 => {
                        cursor = first - 1;
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                from_oldest = false;
                cursor = batch.last().map_or(cursor, |r| r.sequence);
                if tx.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Removes events older than the retention period, every `interval`, until shutdown.
    /// The newest event always stays, so sequence numbers continue after a restart.
    pub async fn retain(
        self,
        retention: Duration,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        if retention.is_zero() {
            return;
        }
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let cutoff = now_ms() - retention.as_millis() as i64;
            let keep_from = self.last_sequence();
            let trees = self.trees.clone();
            match tokio::task::spawn_blocking(move || trees.prune_log(cutoff, keep_from)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => tracing::debug!(removed, "change log retention removed events"),
                Ok(Err(e)) => tracing::warn!(error = %e, "change log retention failed"),
                Err(e) => tracing::warn!(error = %e, "change log retention task failed"),
            }
            // PostgreSQL drops what the cache no longer holds (every round,
            // so a failed delete is retried).
            if let Some(remote) = &self.trees.remote {
                match self.trees.first_sequence() {
                    Ok(first) if first > 1 => {
                        if let Err(e) = remote.prune_below(first).await {
                            tracing::warn!(error = %e, "change log retention in PostgreSQL failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "change log retention failed"),
                }
            }
        }
    }

    fn read_after<E: DeserializeOwned>(
        &self,
        cursor: u64,
        upto: u64,
    ) -> Result<Vec<Record<E>>, WatchError> {
        let batch = self.trees.read_log(cursor, upto, BATCH)?;
        match batch.first() {
            Some(first) if first.sequence == cursor + 1 => Ok(batch),
            _ => {
                let first = self.trees.first_sequence()?;
                Err(WatchError::Expired { cursor, first })
            }
        }
    }
}

impl WatchError {
    pub fn message(&self) -> String {
        match self {
            WatchError::Expired { cursor, first } => format!(
                "events after sequence {cursor} were removed by retention; the oldest retained event is {first}"
            ),
            WatchError::Ahead { cursor, last } => {
                format!("sequence {cursor} is past the end of the change log, which ends at {last}")
            }
            WatchError::Store(e) => e.to_string(),
        }
    }

    /// The cursor cannot be served from this log.
    pub fn is_out_of_range(&self) -> bool {
        !matches!(self, WatchError::Store(_))
    }
}
