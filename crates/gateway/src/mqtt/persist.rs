//! The durable part of `clean_session=false` sessions: what a client
//! subscribed to and how far into the registry's change log it has
//! acknowledged its events, kept in the gateway's own sled store so that a
//! session resumes after a gateway restart (or a crash) as it was.
//!
//! Writes go through one background task that coalesces them: the latest
//! state of each client id wins, and one flush covers every client id that
//! changed meanwhile. [`SessionStore::save`] waits until its state is
//! durable (a SUBSCRIBE is answered only then);
//! [`SessionStore::save_later`] does not (the acknowledged position moves
//! often; after a crash an older position means events are sent again,
//! never lost).
//!
//! With other gateway replicas (`bus = "nats://..."`), every change is also
//! written where they share sessions ([`SharedSessions`]), so that a client
//! resumes its session on whichever replica it reaches. Only the replica
//! that holds a session writes its shared record: one that has not heard
//! yet that its client moved finds the record written by another replica
//! since and the client id claimed by it, and keeps what it still writes of
//! that session here (the client id is disowned).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use herald_store::{Store, Writer};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// How often, at most, the coalesced states are written when nobody waits.
pub(crate) const SAVE_INTERVAL: Duration = Duration::from_millis(100);
/// How long [`SessionStore::save`] waits for a failing store.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the writer thread.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// A persistent session as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// `$aws/...` filters (the gateway's bus) and their granted QoS level.
    pub bus: Vec<(String, u8)>,
    /// Other filters (rumqttd) and their granted QoS level.
    pub router: Vec<(String, u8)>,
    /// Every registry event up to this change-log sequence that the
    /// session's filters match has been delivered, and acknowledged when
    /// delivered at QoS 1: a resumed session replays the log after it.
    pub after_sequence: u64,
    /// When its client disconnected, in epoch milliseconds; `None` while
    /// connected (a session stored so by a gateway that crashed counts from
    /// the restart).
    #[serde(default)]
    pub disconnected_at_ms: Option<u64>,
    /// The principal that holds it (sessions stored before this was kept
    /// have none).
    #[serde(default)]
    pub principal: String,
}

fn prefix() -> Vec<u8> {
    herald_store::prefix(&["session"])
}

fn key(client_id: &str) -> Vec<u8> {
    herald_store::key(&["session", client_id])
}

/// The store of persistent sessions. Cheap to clone.
#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("flushed", &*self.inner.flushed.borrow())
            .finish_non_exhaustive()
    }
}

/// Where persistent sessions are shared with the other gateway replicas
/// (`bus = "nats://..."`), so that a session resumes on any of them.
pub(crate) trait SharedSessions: Send + Sync {
    /// Writes these changes (`None` removes the client id's session) and
    /// returns the client ids whose sessions another replica holds now:
    /// their changes were not written.
    fn save<'a>(
        &'a self,
        changes: &'a [(String, Option<StoredSession>)],
    ) -> BoxFuture<'a, Vec<String>>;
    /// The shared session of `client_id`, if there is one.
    fn load<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Option<StoredSession>>;
}

/// A boxed future of a trait object's method.
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

struct Inner {
    shared: std::sync::OnceLock<Arc<dyn SharedSessions>>,
    pending: Mutex<Pending>,
    wake: Notify,
    /// The number of the last change made durable.
    flushed: watch::Sender<u64>,
    stopped: CancellationToken,
}

#[derive(Default)]
struct Pending {
    /// The number of the last change queued.
    queued: u64,
    /// Client id → its latest state; `None` removes it.
    changes: HashMap<String, Option<StoredSession>>,
    /// The client ids whose sessions another replica holds now: their
    /// changes here are kept here only, never shared over theirs.
    disowned: std::collections::HashSet<String>,
    /// The client ids that connected here since the shared write under
    /// way began: that write finding another replica holding one of them
    /// does not disown it.
    owned_since: std::collections::HashSet<String>,
}

impl SessionStore {
    /// Reads every stored session of `store` and starts the task that
    /// writes changes to it until `shutdown` is cancelled (then the pending
    /// changes are written and the store released: see
    /// [`SessionStore::stopped`]). Must be called within a Tokio runtime.
    pub fn open(
        store: Store,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(SessionStore, HashMap<String, StoredSession>)> {
        let mut sessions = HashMap::new();
        for entry in store.iter(&prefix(), None) {
            let (client_id, bytes) = entry.context("read the stored sessions")?;
            match serde_json::from_slice::<StoredSession>(&bytes) {
                Ok(session) => {
                    sessions.insert(client_id, session);
                }
                Err(e) => {
                    tracing::error!(client_id, error = %e, "unreadable stored session; ignored");
                }
            }
        }
        let (writer, _log, thread) =
            Writer::<()>::start(store, "session-store").context("start the session writer")?;
        let inner = Arc::new(Inner {
            shared: std::sync::OnceLock::new(),
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            flushed: watch::Sender::new(0),
            stopped: CancellationToken::new(),
        });
        let task_inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let _stopped = task_inner.stopped.clone().drop_guard();
            loop {
                let stop = tokio::select! {
                    () = shutdown.cancelled() => true,
                    () = task_inner.wake.notified() => false,
                    () = tokio::time::sleep(SAVE_INTERVAL) => false,
                };
                write_pending(&writer, &task_inner).await;
                if stop {
                    break;
                }
            }
            drop(writer);
            if let Err(e) = thread.stop(WRITER_GRACE).await {
                tracing::error!(error = %e, "could not stop the session writer");
            }
        });
        Ok((SessionStore { inner }, sessions))
    }

    fn queue(&self, client_id: &str, session: Option<StoredSession>) -> u64 {
        let mut pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.queued += 1;
        pending.changes.insert(client_id.to_owned(), session);
        pending.queued
    }

    /// Shares every change from now on with `shared` (only the first given
    /// is used).
    pub(crate) fn share_with(&self, shared: Arc<dyn SharedSessions>) {
        let _ = self.inner.shared.set(shared);
    }

    /// `client_id`'s session moved to another replica: what this one
    /// still writes of it (its old session's end) stays here.
    pub(crate) fn disown(&self, client_id: &str) {
        self.pending().disowned.insert(client_id.to_owned());
    }

    /// `client_id` connected here: its session is this replica's again.
    pub(crate) fn own(&self, client_id: &str) {
        let mut pending = self.pending();
        pending.disowned.remove(client_id);
        pending.owned_since.insert(client_id.to_owned());
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether sessions are shared with other replicas.
    pub(crate) fn is_shared(&self) -> bool {
        self.inner.shared.get().is_some()
    }

    /// The session of `client_id` the replicas share, if they do and have one.
    pub(crate) async fn load_shared(&self, client_id: &str) -> Option<StoredSession> {
        self.inner.shared.get()?.load(client_id).await
    }

    /// Stores `session` for `client_id` and waits until it is durable (or
    /// the store has stopped).
    pub async fn save(&self, client_id: &str, session: StoredSession) {
        let number = self.queue(client_id, Some(session));
        self.wait(number).await;
    }

    /// Stores `session` for `client_id` with the next write.
    pub fn save_later(&self, client_id: &str, session: StoredSession) {
        self.queue(client_id, Some(session));
    }

    /// Forgets `client_id`'s session and waits until that is durable.
    pub async fn remove(&self, client_id: &str) {
        let number = self.queue(client_id, None);
        self.wait(number).await;
    }

    /// Forgets `client_id`'s session with the next write.
    pub fn remove_later(&self, client_id: &str) {
        self.queue(client_id, None);
    }

    async fn wait(&self, number: u64) {
        self.inner.wake.notify_one();
        let mut flushed = self.inner.flushed.subscribe();
        tokio::select! {
            _ = flushed.wait_for(|n| *n >= number) => {}
            () = self.inner.stopped.cancelled() => {}
            () = tokio::time::sleep(SAVE_TIMEOUT) => {
                tracing::warn!(timeout = ?SAVE_TIMEOUT, "storing a session state is taking long; going on");
            }
        }
    }

    /// Resolves once the store has written its last changes and stopped.
    pub async fn stopped(&self) {
        self.inner.stopped.cancelled().await;
    }
}

async fn write_pending(writer: &Writer<()>, inner: &Inner) {
    let (number, changes) = {
        let mut pending = inner.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.changes.is_empty() {
            return;
        }
        (pending.queued, std::mem::take(&mut pending.changes))
    };
    let count = changes.len();
    let shared = inner.shared.get().map(|shared| {
        let mut pending = inner.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.owned_since.clear();
        let changes: Vec<(String, Option<StoredSession>)> = changes
            .iter()
            .filter(|(k, _)| !pending.disowned.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (shared, changes)
    });
    let written = writer
        .mutate(move |c| {
            for (client_id, session) in changes {
                match session {
                    Some(session) => c.put(key(&client_id), &session)?,
                    None => c.remove(key(&client_id)),
                }
            }
            Ok(())
        })
        .await;
    if let Some((shared, changes)) = shared {
        let lost = shared.save(&changes).await;
        if !lost.is_empty() {
            let mut pending = inner.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for client_id in lost {
                if !pending.owned_since.contains(&client_id) {
                    pending.disowned.insert(client_id);
                }
            }
        }
    }
    match written {
        Ok(()) => {
            inner.flushed.send_replace(number);
        }
        // The sessions stay as they are in memory; a later change of each
        // is written again.
        Err(e) => tracing::error!(error = %e, count, "could not store session states"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let (store, loaded) =
            SessionStore::open(Store::open(dir.path()).unwrap(), shutdown.clone()).unwrap();
        assert!(loaded.is_empty());
        let session = StoredSession {
            bus: vec![("$aws/events/thing/+/created".into(), 1)],
            router: vec![("a/#".into(), 0)],
            after_sequence: 41,
            disconnected_at_ms: Some(1_700_000_000_000),
            principal: "principal-1".into(),
        };
        store.save("c1", session.clone()).await;
        store.save("c2", StoredSession::default()).await;
        store.save("c3", StoredSession::default()).await;
        store.remove_later("c3");
        store.save_later(
            "c1",
            StoredSession {
                after_sequence: 42,
                ..session.clone()
            },
        );
        store.remove("c2").await;
        shutdown.cancel();
        store.stopped().await;

        let shutdown = CancellationToken::new();
        let (store, loaded) =
            SessionStore::open(Store::open(dir.path()).unwrap(), shutdown.clone()).unwrap();
        assert_eq!(
            loaded,
            HashMap::from([(
                "c1".to_owned(),
                StoredSession {
                    after_sequence: 42,
                    ..session
                }
            )])
        );
        shutdown.cancel();
        store.stopped().await;
    }
}
