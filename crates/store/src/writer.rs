//! The single writer: every mutation runs on one thread, in arrival order, and
//! is acknowledged only after the flush that made it durable. Mutations that
//! arrive while a flush runs share the next one (group commit).

use std::{
    marker::PhantomData,
    sync::mpsc as std_mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use herald_proto::error::{AwsError, ErrorType};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::{
    log::{ChangeLog, Record},
    store::{Changes, Store, internal},
};

/// How many mutations one flush may cover at most.
const MAX_BATCH: usize = 512;
/// How long a flush may wait for the mutations that the previous one suggests are coming.
const LINGER: Duration = Duration::from_micros(500);

type Completion = Box<dyn FnOnce(Result<(), AwsError>) + Send>;
type Job = Box<dyn FnOnce(&mut WriterState) -> Completion + Send + 'static>;

/// A handle that submits mutations to the writer thread. The thread stops,
/// after a final flush, once every handle is gone.
pub struct Writer<E> {
    jobs: std_mpsc::Sender<Job>,
    events: PhantomData<fn(E)>,
}

impl<E> Clone for Writer<E> {
    fn clone(&self) -> Self {
        Writer {
            jobs: self.jobs.clone(),
            events: PhantomData,
        }
    }
}

/// The running writer thread.
pub struct WriterThread {
    thread: JoinHandle<()>,
    store: Store,
}

impl WriterThread {
    /// Waits, at most `grace`, for the thread to stop (it stops, after a final
    /// flush, once every [`Writer`] handle is dropped), then flushes storage.
    pub async fn stop(self, grace: Duration) -> anyhow::Result<()> {
        let thread = self.thread;
        let joined =
            tokio::time::timeout(grace, tokio::task::spawn_blocking(move || thread.join())).await;
        if !matches!(joined, Ok(Ok(Ok(())))) {
            tracing::warn!("the writer did not stop in time; flushing directly");
        }
        let store = self.store;
        tokio::task::spawn_blocking(move || store.flush()).await??;
        Ok(())
    }
}

/// The writer thread's own state.
struct WriterState {
    store: Store,
    /// The last sequence number committed (not necessarily flushed).
    last_sequence: u64,
    dirty: bool,
    /// Mutations handled and flushes made, for the log at shutdown.
    mutations: u64,
    flushes: u64,
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn unavailable() -> AwsError {
    AwsError::new(
        ErrorType::ServiceUnavailable,
        "the service is shutting down",
    )
}

impl<E: Serialize + Send + 'static> Writer<E> {
    /// Starts the writer thread for `store`; the returned log follows what it flushes.
    pub fn start(
        store: Store,
        thread_name: &str,
    ) -> anyhow::Result<(Writer<E>, ChangeLog, WriterThread)> {
        let last_sequence = store.last_sequence()?;
        let (durable_tx, durable_rx) = watch::channel(last_sequence);
        let (jobs, rx) = std_mpsc::channel();
        let log = ChangeLog::new(store.clone(), durable_rx);
        let state = WriterState {
            store: store.clone(),
            last_sequence,
            dirty: false,
            mutations: 0,
            flushes: 0,
        };
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || state.run(rx, durable_tx))?;
        Ok((
            Writer {
                jobs,
                events: PhantomData,
            },
            log,
            WriterThread { thread, store },
        ))
    }

    /// Runs `mutation` on the writer thread; its writes and events commit
    /// together, and the result comes back once they are durable. A mutation
    /// that fails changes nothing.
    pub async fn mutate<T, F>(&self, mutation: F) -> Result<T, AwsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Changes<'_, E>) -> Result<T, AwsError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state: &mut WriterState| {
            let result = state.apply(mutation);
            Box::new(move |flushed: Result<(), AwsError>| {
                let _ = tx.send(flushed.and(result));
            })
        });
        self.jobs.send(job).map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }
}

impl WriterState {
    fn run(mut self, jobs: std_mpsc::Receiver<Job>, durable: watch::Sender<u64>) {
        let mut completions: Vec<Completion> = Vec::new();
        // How many mutations the previous flush covered: while callers keep that
        // many in flight, waiting briefly for all of them costs less than a flush each.
        let mut expected = 1;
        while let Ok(job) = jobs.recv() {
            let deadline = Instant::now() + LINGER;
            completions.push(job(&mut self));
            while completions.len() < MAX_BATCH {
                let next = if completions.len() < expected {
                    jobs.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        .ok()
                } else {
                    jobs.try_recv().ok()
                };
                match next {
                    Some(job) => completions.push(job(&mut self)),
                    None => break,
                }
            }
            expected = completions.len();
            self.flushes += 1;
            self.mutations += completions.len() as u64;
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
                tracing::error!("flush failed; no more mutations are accepted");
                return;
            }
        }
        tracing::debug!(
            mutations = self.mutations,
            flushes = self.flushes,
            "writer stopped"
        );
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    fn apply<T, E: Serialize>(
        &mut self,
        mutation: impl FnOnce(&mut Changes<'_, E>) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let store = self.store.clone();
        let mut changes = Changes::new(&store);
        changes.sequence = self.last_sequence;
        let value = mutation(&mut changes)?;
        if changes.writes.is_empty() && changes.events.is_empty() {
            return Ok(value);
        }
        let timestamp_ms = now_ms();
        let mut records = Vec::with_capacity(changes.events.len());
        for (i, event) in changes.events.into_iter().enumerate() {
            let record = Record {
                sequence: self.last_sequence + 1 + i as u64,
                event_id: uuid::Uuid::new_v4().to_string(),
                timestamp_ms,
                event,
            };
            records.push((
                record.sequence,
                serde_json::to_vec(&record).map_err(internal)?,
            ));
        }
        let logged = records.len() as u64;
        self.store.commit(changes.writes, records)?;
        self.last_sequence += logged;
        self.dirty = true;
        Ok(value)
    }
}
