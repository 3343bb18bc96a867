//! The single writer: every mutation runs on one thread, in arrival order, and
//! is acknowledged only after the flush that made it durable. Mutations that
//! arrive while a flush runs share the next one (group commit).

use std::thread::JoinHandle;

use herald_proto::error::{AwsError, ErrorType};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    domain::ChangeRecord,
    store::{Changes, Store, internal},
};

/// How many mutations one flush may cover at most.
const MAX_BATCH: usize = 512;

type Completion = Box<dyn FnOnce(Result<(), AwsError>) + Send>;
type Job = Box<dyn FnOnce(&mut WriterState) -> Completion + Send>;

/// A handle that submits mutations to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

/// The writer thread's own state.
pub(crate) struct WriterState {
    store: Store,
    account_id: String,
    /// The last sequence number committed (not necessarily flushed).
    last_sequence: u64,
    dirty: bool,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn unavailable() -> AwsError {
    AwsError::new(
        ErrorType::ServiceUnavailable,
        "the registry is shutting down",
    )
}

impl Writer {
    /// Starts the writer thread. `durable` follows the last flushed sequence number.
    pub(crate) fn start(
        store: Store,
        account_id: String,
    ) -> anyhow::Result<(Writer, watch::Receiver<u64>, JoinHandle<()>)> {
        let last_sequence = store.last_sequence()?;
        let (durable_tx, durable_rx) = watch::channel(last_sequence);
        let (jobs, rx) = mpsc::channel(4096);
        let state = WriterState {
            store,
            account_id,
            last_sequence,
            dirty: false,
        };
        let thread = std::thread::Builder::new()
            .name("registry-writer".into())
            .spawn(move || state.run(rx, durable_tx))?;
        Ok((Writer { jobs }, durable_rx, thread))
    }

    /// Runs `mutation` on the writer thread; its writes and events commit
    /// together, and the result comes back once they are durable. A mutation
    /// that fails changes nothing.
    pub(crate) async fn mutate<T, F>(&self, mutation: F) -> Result<T, AwsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Changes<'_>) -> Result<T, AwsError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state: &mut WriterState| {
            let result = state.apply(mutation);
            Box::new(move |flushed: Result<(), AwsError>| {
                let _ = tx.send(flushed.and(result));
            })
        });
        self.jobs.send(job).await.map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }
}

impl WriterState {
    fn run(mut self, mut jobs: mpsc::Receiver<Job>, durable: watch::Sender<u64>) {
        let mut completions: Vec<Completion> = Vec::new();
        while let Some(job) = jobs.blocking_recv() {
            completions.push(job(&mut self));
            while completions.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => completions.push(job(&mut self)),
                    Err(_) => break,
                }
            }
            let flushed = if self.dirty {
                self.store.flush()
            } else {
                Ok(())
            };
            let failed = flushed.is_err();
            if !failed {
                self.dirty = false;
                durable.send_replace(self.last_sequence);
            }
            for complete in completions.drain(..) {
                complete(flushed.clone());
            }
            if failed {
                // What was committed but not flushed must never be acknowledged
                // or streamed: stop taking mutations.
                tracing::error!("flush failed; the registry stops accepting mutations");
                return;
            }
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    fn apply<T>(
        &mut self,
        mutation: impl FnOnce(&mut Changes<'_>) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let store = self.store.clone();
        let mut changes = Changes::new(&store);
        let value = mutation(&mut changes)?;
        if changes.writes.is_empty() && changes.events.is_empty() {
            return Ok(value);
        }
        let timestamp_ms = now_ms();
        let mut records = Vec::with_capacity(changes.events.len());
        for (i, (operation, body)) in changes.events.into_iter().enumerate() {
            let record = ChangeRecord {
                sequence: self.last_sequence + 1 + i as u64,
                event_id: uuid::Uuid::new_v4().to_string(),
                timestamp_ms,
                account_id: self.account_id.clone(),
                operation,
                body,
            };
            records.push((
                record.sequence,
                serde_json::to_vec(&record).map_err(internal)?,
            ));
        }
        self.store.commit(&changes.writes, &records)?;
        self.last_sequence += records.len() as u64;
        self.dirty = true;
        Ok(value)
    }
}
