//! The single writer: every mutation runs on one thread, in arrival order, and
//! is acknowledged only after the flush that made it durable. Mutations that
//! arrive while a flush runs share the next one (group commit).

use std::{
    marker::PhantomData,
    sync::mpsc as std_mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::{
    error::StoreError,
    log::{ChangeLog, Record},
    postgres::RemoteWriter,
    store::{Changes, Store, Trees},
};

/// How many mutations one flush may cover at most.
const MAX_BATCH: usize = 512;
/// How long a flush may wait for the mutations that the previous one suggests are coming.
const LINGER: Duration = Duration::from_micros(500);

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(&mut WriterState) -> Completion + Send + 'static>;

/// A handle that submits mutations to the writer thread. The thread stops,
/// after a final flush, once every handle is gone. Mutations fail with the
/// error type of the [`Store`] it was started with.
pub struct Writer<E, Err = StoreError> {
    jobs: std_mpsc::Sender<Job>,
    store: Store<Err>,
    events: PhantomData<fn(E)>,
}

impl<E, Err> Clone for Writer<E, Err> {
    fn clone(&self) -> Self {
        Writer {
            jobs: self.jobs.clone(),
            store: self.store.clone(),
            events: PhantomData,
        }
    }
}

/// The running writer thread.
pub struct WriterThread {
    thread: JoinHandle<()>,
    trees: Trees,
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
        let trees = self.trees;
        tokio::task::spawn_blocking(move || trees.flush()).await??;
        Ok(())
    }
}

/// The writer thread's own state.
struct WriterState {
    trees: Trees,
    /// The last sequence number committed (not necessarily flushed).
    last_sequence: u64,
    /// The last sequence number flushed (or committed to PostgreSQL).
    durable_sequence: u64,
    dirty: bool,
    /// With PostgreSQL: the connection the flush commits on, and what it
    /// has yet to commit.
    remote: Option<RemoteWriter>,
    /// Mutations handled and flushes made, for the log at shutdown.
    mutations: u64,
    flushes: u64,
    /// The thread's name: the `writer` label of its metrics
    /// (`herald_store_*`: mutations handled, committed or refused; the
    /// commit's flush time and batch size; failed flushes).
    name: String,
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl<E: Serialize + Send + 'static, Err: Send + 'static> Writer<E, Err> {
    /// Starts the writer thread for `store`; the returned log follows what it flushes.
    pub fn start(
        store: Store<Err>,
        thread_name: &str,
    ) -> anyhow::Result<(Writer<E, Err>, ChangeLog, WriterThread)> {
        let trees = store.trees().clone();
        let last_sequence = trees.last_sequence()?;
        let (durable_tx, durable_rx) = watch::channel(last_sequence);
        let (jobs, rx) = std_mpsc::channel();
        let log = ChangeLog::new(trees.clone(), durable_rx);
        let state = WriterState {
            trees: trees.clone(),
            last_sequence,
            durable_sequence: last_sequence,
            dirty: false,
            remote: None,
            mutations: 0,
            flushes: 0,
            name: thread_name.to_owned(),
        };
        // Every series exists from the start, at zero.
        metrics::counter!("herald_store_errors_total", "writer" => thread_name.to_owned())
            .increment(0);
        metrics::counter!("herald_store_mutations_total", "writer" => thread_name.to_owned())
            .increment(0);
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || state.run(rx, durable_tx))?;
        Ok((
            Writer {
                jobs,
                store,
                events: PhantomData,
            },
            log,
            WriterThread { thread, trees },
        ))
    }

    /// Runs `mutation` on the writer thread; its writes and events commit
    /// together, and the result comes back once they are durable. A mutation
    /// that fails changes nothing.
    pub async fn mutate<T, F>(&self, mutation: F) -> Result<T, Err>
    where
        T: Send + 'static,
        F: FnOnce(&mut Changes<'_, E, Err>) -> Result<T, Err> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let store = self.store.clone();
        let job: Job = Box::new(move |state: &mut WriterState| {
            let result = state.apply(&store, mutation);
            Box::new(move |flushed: Result<(), StoreError>| {
                let _ = tx.send(flushed.map_err(|e| store.error(e)).and(result));
            })
        });
        let unavailable = || self.store.error(StoreError::ShuttingDown);
        self.jobs.send(job).map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }
}

impl WriterState {
    fn run(mut self, jobs: std_mpsc::Receiver<Job>, durable: watch::Sender<u64>) {
        if let Some(remote) = &self.trees.remote {
            match remote.writer() {
                Ok(writer) => self.remote = Some(writer),
                Err(e) => {
                    // Every waiting and later mutation fails as shutting down.
                    remote.give_up(&format!("the writer cannot reach PostgreSQL: {e}"));
                    return;
                }
            }
        }
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
            let started = Instant::now();
            let flushed = self.flush();
            let failed = flushed.is_err();
            let writer = self.name.clone();
            metrics::histogram!("herald_store_commit_seconds", "writer" => writer.clone())
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("herald_store_commit_batch_size", "writer" => writer.clone())
                .record(completions.len() as f64);
            metrics::counter!("herald_store_mutations_total", "writer" => writer.clone())
                .increment(completions.len() as u64);
            if failed {
                metrics::counter!("herald_store_errors_total", "writer" => writer).increment(1);
            } else {
                self.dirty = false;
                durable.send_replace(self.last_sequence);
            }
            for complete in completions.drain(..) {
                complete(flushed.clone());
            }
            if failed {
                // What was committed but not flushed must never be acknowledged
                // or streamed: stop taking mutations (and, with PostgreSQL,
                // give up the writer's role: the cache is ahead of it).
                tracing::error!("flush failed; no more mutations are accepted");
                if let Some(remote) = &self.remote {
                    remote.give_up("a commit failed");
                }
                return;
            }
        }
        tracing::debug!(
            mutations = self.mutations,
            flushes = self.flushes,
            "writer stopped"
        );
        if let Err(e) = self.flush().and_then(|()| self.trees.flush()) {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    /// Makes what was applied since the last flush durable: sled's flush,
    /// or one PostgreSQL transaction.
    fn flush(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        match &mut self.remote {
            Some(remote) => remote.commit(self.durable_sequence, self.last_sequence)?,
            None => self.trees.flush()?,
        }
        self.durable_sequence = self.last_sequence;
        Ok(())
    }

    fn apply<T, E: Serialize, Err>(
        &mut self,
        store: &Store<Err>,
        mutation: impl FnOnce(&mut Changes<'_, E, Err>) -> Result<T, Err>,
    ) -> Result<T, Err> {
        let mut changes = Changes::new(store);
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
                serde_json::to_vec(&record).map_err(|e| store.error(StoreError::storage(e)))?,
            ));
        }
        let logged = records.len() as u64;
        let for_remote = self
            .remote
            .as_ref()
            .map(|_| (changes.writes.clone(), records.clone()));
        self.trees
            .commit(changes.writes, records)
            .map_err(|e| store.error(e))?;
        if let (Some(remote), Some((writes, records))) = (&mut self.remote, for_remote) {
            remote.add(writes, records);
        }
        self.last_sequence += logged;
        self.dirty = true;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{key, prefix};

    /// A service's own error type, as a service would convert to it.
    #[derive(Debug, PartialEq, Eq)]
    enum ServiceError {
        Store(StoreError),
        Refused(&'static str),
    }

    fn open(dir: &tempfile::TempDir) -> Store<ServiceError> {
        Store::open(dir.path())
            .unwrap()
            .with_errors(ServiceError::Store)
    }

    #[tokio::test]
    async fn mutations_fail_with_the_stores_error_type_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let (writer, log, thread) =
            Writer::<String, ServiceError>::start(store.clone(), "test").unwrap();

        writer
            .mutate(|c| {
                c.put(key(&["thing", "a"]), &1)?;
                c.log("created a".to_owned());
                Ok(())
            })
            .await
            .unwrap();
        let refused = writer
            .mutate(|c| {
                c.put(key(&["thing", "b"]), &2)?;
                c.log("created b".to_owned());
                Err::<(), _>(ServiceError::Refused("no b"))
            })
            .await;
        assert_eq!(refused, Err(ServiceError::Refused("no b")));
        assert_eq!(store.keys(&prefix(&["thing"])).unwrap(), ["a"]);
        assert_eq!(log.last_sequence(), 1);

        // A record that does not decode is a storage failure, reported in
        // the service's error type.
        let err = store.get::<String>(&key(&["thing", "a"])).unwrap_err();
        assert!(
            matches!(err, ServiceError::Store(StoreError::Storage(_))),
            "{err:?}"
        );

        drop(writer);
        thread.stop(Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn partitions_keep_their_own_state_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let default = open(&dir);
        let other = default.partition("111122223333/eu-west-1").unwrap();
        let (w1, log1, t1) = Writer::<String, ServiceError>::start(default.clone(), "a").unwrap();
        let (w2, log2, t2) = Writer::<String, ServiceError>::start(other.clone(), "b").unwrap();
        for (writer, name) in [(&w1, "x"), (&w2, "y"), (&w2, "z")] {
            writer
                .mutate(move |c| {
                    c.put(key(&["thing", name]), &1)?;
                    c.log(format!("created {name}"));
                    Ok(())
                })
                .await
                .unwrap();
        }
        assert_eq!(default.keys(&prefix(&["thing"])).unwrap(), ["x"]);
        assert_eq!(other.keys(&prefix(&["thing"])).unwrap(), ["y", "z"]);
        assert_eq!((log1.last_sequence(), log2.last_sequence()), (1, 2));
        assert_eq!(default.partition_names(), ["111122223333/eu-west-1"]);
        drop((w1, w2));
        t1.stop(Duration::from_secs(5)).await.unwrap();
        t2.stop(Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn first_keys_see_the_changes_pending_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let (writer, _log, thread) =
            Writer::<String, ServiceError>::start(store.clone(), "test").unwrap();
        writer
            .mutate(|c| {
                for k in ["a", "b", "c", "d"] {
                    c.put(key(&["w", k]), &())?;
                }
                c.put(key(&["x", "a"]), &())
            })
            .await
            .unwrap();
        let seen = writer
            .mutate(|c| {
                let list = prefix(&["w"]);
                let before = c.first_keys(&list, 2)?;
                c.remove(key(&["w", "a"]));
                c.remove(key(&["w", "b"]));
                c.put(key(&["w", "bb"]), &())?;
                let after = c.first_keys(&list, 3)?;
                let all = c.first_keys(&list, 10)?;
                Ok((before, after, all))
            })
            .await
            .unwrap();
        assert_eq!(seen.0, ["a", "b"]);
        assert_eq!(seen.1, ["bb", "c", "d"]);
        assert_eq!(seen.2, ["bb", "c", "d"]);
        drop(writer);
        thread.stop(Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn a_writer_whose_thread_is_gone_is_shutting_down() {
        let dir = tempfile::tempdir().unwrap();
        // A handle whose writer thread no longer takes jobs.
        let (jobs, _) = std_mpsc::channel::<Job>();
        let writer = Writer::<(), ServiceError> {
            jobs,
            store: open(&dir),
            events: PhantomData,
        };
        let err = writer.mutate(|_| Ok(())).await.unwrap_err();
        assert_eq!(err, ServiceError::Store(StoreError::ShuttingDown));
        assert_eq!(
            StoreError::ShuttingDown.to_string(),
            "the service is shutting down"
        );
    }
}
