//! The only module that knows sled. A service's state and its change log share
//! one tree, so that a mutation and its events commit as one atomic batch:
//! state under prefixed keys (parts separated by `\0`, always starting with a
//! printable character), the log under `\xff` plus the big-endian sequence
//! number. Every value is JSON. With PostgreSQL as the backend
//! ([`crate::postgres`]), the sled tree is the writing replica's cache of
//! the same records, and the writer commits them to PostgreSQL.

use std::{collections::BTreeMap, ops::Bound, path::Path};

use anyhow::Context;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    error::StoreError,
    log::Record,
    postgres::{Backend, Remote, Shared},
};

/// Builds a key from its parts.
pub fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

/// Builds the prefix of every key that starts with these parts.
pub fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut prefix = key(parts);
    prefix.push(0);
    prefix
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::storage)
}

/// The first byte of every log key; state keys never start with it.
const LOG: u8 = 0xff;

pub(crate) fn log_key(sequence: u64) -> [u8; 9] {
    let mut key = [LOG; 9];
    key[1..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// A service's durable state and change log.
///
/// `Err` is the error its operations report: [`StoreError`] as it is, or,
/// after [`Store::with_errors`], a service's own error type, so that a
/// service converts storage failures in one place.
pub struct Store<Err = StoreError> {
    trees: Trees,
    error: fn(StoreError) -> Err,
}

impl<Err> Clone for Store<Err> {
    fn clone(&self) -> Self {
        Store {
            trees: self.trees.clone(),
            error: self.error,
        }
    }
}

/// The sled database and its state tree: what the writer and the log use.
#[derive(Clone)]
pub(crate) struct Trees {
    db: sled::Db,
    state: sled::Tree,
    /// The partition's PostgreSQL, when sled is only its cache.
    pub(crate) remote: Option<Remote>,
}

impl Store {
    /// Opens (or creates) the database in `dir`. A database still locked
    /// by a process (or a task of this one) that is letting it go, as in a
    /// quick restart, is waited for, up to [`LOCK_WAIT`].
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let started = std::time::Instant::now();
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .mode(sled::Mode::HighThroughput)
                .open();
            match opened {
                // sled reports the lock taken as an `Other` error naming it.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && started.elapsed() < LOCK_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                opened => {
                    break opened
                        .with_context(|| format!("open sled database in {}", dir.display()))?;
                }
            }
        };
        let state = db.open_tree(DEFAULT_TREE).context("open the data tree")?;
        Ok(Store {
            trees: Trees {
                db,
                state,
                remote: None,
            },
            error: std::convert::identity,
        })
    }

    /// Opens `service`'s store on `backend`: sled in `dir`, or PostgreSQL
    /// with its cache in `dir/cache` (emptied, then filled from PostgreSQL
    /// once this replica is the service's writer: until then, as a standby,
    /// this waits, or gives up when `shutdown` fires).
    pub async fn open_with(
        backend: &Backend,
        dir: &Path,
        service: &str,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Store> {
        let dir = dir.to_path_buf();
        let Backend::Postgres { url, ca_file } = backend else {
            return tokio::task::spawn_blocking(move || Store::open(&dir)).await?;
        };
        let shared = Shared::connect(url, ca_file.as_ref(), service, shutdown).await?;
        let cache = dir.join("cache");
        let partitions = shared.partitions().await?;
        let db = tokio::task::spawn_blocking(move || -> anyhow::Result<sled::Db> {
            if cache.exists() {
                std::fs::remove_dir_all(&cache)
                    .with_context(|| format!("empty the cache {}", cache.display()))?;
            }
            std::fs::create_dir_all(&cache)?;
            sled::Config::new()
                .path(&cache)
                .mode(sled::Mode::HighThroughput)
                .open()
                .with_context(|| format!("open the cache in {}", cache.display()))
        })
        .await??;
        for partition in &partitions {
            let tree = db.open_tree(tree_name(partition))?;
            shared
                .fill(partition, &tree)
                .await
                .with_context(|| format!("fill the cache of partition {partition:?}"))?;
        }
        tracing::info!(
            service,
            partitions = partitions.len(),
            "cache filled from PostgreSQL"
        );
        let state = db.open_tree(DEFAULT_TREE)?;
        let remote = Remote::new(std::sync::Arc::new(shared), String::new());
        Ok(Store {
            trees: Trees {
                db,
                state,
                remote: Some(remote),
            },
            error: std::convert::identity,
        })
    }
}

/// The default partition's tree.
const DEFAULT_TREE: &str = "data";

/// The tree of a partition ("" is the default).
fn tree_name(partition: &str) -> String {
    if partition.is_empty() {
        DEFAULT_TREE.to_owned()
    } else {
        format!("{PARTITION_PREFIX}{partition}")
    }
}

/// How long [`Store::open`] waits for a database another holder is
/// releasing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The prefix of the trees that hold the partitions other than the default.
const PARTITION_PREFIX: &str = "partition/";

impl<Err> Store<Err> {
    /// Another partition of the same database: its own state and change log,
    /// in a tree of its own (`partition/<name>`), with its own sequence
    /// numbers. The store [`Store::open`] returns is the default partition.
    pub fn partition(&self, name: &str) -> Result<Store<Err>, Err> {
        let state = self
            .trees
            .db
            .open_tree(tree_name(name))
            .map_err(|e| (self.error)(StoreError::storage(e)))?;
        let remote = self
            .trees
            .remote
            .as_ref()
            .map(|remote| Remote::new(std::sync::Arc::clone(remote.shared()), name.to_owned()));
        Ok(Store {
            trees: Trees {
                db: self.trees.db.clone(),
                state,
                remote,
            },
            error: self.error,
        })
    }

    /// A child of `shutdown` that also fires when this replica stops being
    /// its service's writer ([`Store::lost`]): what the service serves
    /// until.
    pub fn serving_until_lost(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> tokio_util::sync::CancellationToken {
        let serving = shutdown.child_token();
        if let Some(remote) = &self.trees.remote {
            let lost = remote.shared().lost().clone();
            let stop = serving.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = lost.cancelled() => {
                        tracing::error!("no longer the writer: stopping");
                        stop.cancel();
                    }
                    () = stop.cancelled() => {}
                }
            });
        }
        serving
    }

    /// Fires when this replica is no longer its service's writer (its
    /// PostgreSQL connection failed, a commit failed, or another replica took
    /// over): the service must stop. Never fires for sled.
    pub fn lost(&self) -> tokio_util::sync::CancellationToken {
        match &self.trees.remote {
            Some(remote) => remote.shared().lost().clone(),
            None => tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The names of the partitions the database holds besides the default.
    pub fn partition_names(&self) -> Vec<String> {
        self.trees
            .db
            .tree_names()
            .into_iter()
            .filter_map(|name| {
                let name = String::from_utf8(name.to_vec()).ok()?;
                name.strip_prefix(PARTITION_PREFIX).map(str::to_owned)
            })
            .collect()
    }

    /// The same store, reporting its failures through `error`.
    pub fn with_errors<Other>(self, error: fn(StoreError) -> Other) -> Store<Other> {
        Store {
            trees: self.trees,
            error,
        }
    }

    /// Turns a store failure into this store's error type.
    pub fn error(&self, err: StoreError) -> Err {
        (self.error)(err)
    }

    pub(crate) fn trees(&self) -> &Trees {
        &self.trees
    }

    /// Decodes a stored record.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Err> {
        decode(bytes).map_err(self.error)
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, Err> {
        self.trees.get(key).map_err(self.error)
    }

    /// Entries under `prefix` (which ends with the separator) whose key suffix
    /// comes after `after`, in key order, as (suffix, value).
    pub fn iter(
        &self,
        prefix: &[u8],
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>), Err>> + use<Err> {
        let error = self.error;
        self.trees
            .iter(prefix, after)
            .map(move |entry| entry.map_err(error))
    }

    /// Suffixes of every key under `prefix`.
    pub fn keys(&self, prefix: &[u8]) -> Result<Vec<String>, Err> {
        self.trees.keys(prefix).map_err(self.error)
    }
}

impl Trees {
    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.state.get(key).map_err(StoreError::storage)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.state.contains_key(key).map_err(StoreError::storage)
    }

    fn iter(
        &self,
        prefix: &[u8],
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>), StoreError>> + use<> {
        let start = match after {
            Some(after) => Bound::Excluded([prefix, after.as_bytes()].concat()),
            None => Bound::Included(prefix.to_vec()),
        };
        let prefix = prefix.to_vec();
        self.state
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .map_while(move |entry| match entry {
                Ok((k, v)) => {
                    let suffix = k.strip_prefix(prefix.as_slice())?;
                    Some(Ok((
                        String::from_utf8_lossy(suffix).into_owned(),
                        v.to_vec(),
                    )))
                }
                Err(e) => Some(Err(StoreError::storage(e))),
            })
    }

    fn keys(&self, prefix: &[u8]) -> Result<Vec<String>, StoreError> {
        self.iter(prefix, None)
            .map(|entry| entry.map(|(k, _)| k))
            .collect()
    }

    /// Every state key (not the log's).
    fn state_keys(&self) -> impl Iterator<Item = Result<sled::IVec, StoreError>> + use<> {
        self.state
            .range(..[LOG].as_slice())
            .map(|entry| entry.map(|(k, _)| k).map_err(StoreError::storage))
    }
    /// The last sequence number in the log, 0 when empty.
    pub(crate) fn last_sequence(&self) -> anyhow::Result<u64> {
        let last = self.state.scan_prefix([LOG]).next_back().transpose()?;
        Ok(last.map_or(0, |(k, _)| decode_seq(&k)))
    }

    /// The first sequence number in the log, 0 when empty.
    pub(crate) fn first_sequence(&self) -> Result<u64, StoreError> {
        let first = self
            .state
            .scan_prefix([LOG])
            .next()
            .transpose()
            .map_err(StoreError::storage)?;
        Ok(first.map_or(0, |(k, _)| decode_seq(&k)))
    }

    /// Up to `limit` log records with sequence numbers in `(after, upto]`.
    pub(crate) fn read_log<E: DeserializeOwned>(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Record<E>>, StoreError> {
        let range = log_key(after + 1)..=log_key(upto);
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in self.state.range(range).take(limit) {
            let (_, v) = entry.map_err(StoreError::storage)?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Removes log records older than `cutoff_ms`, but never `keep_from` or later.
    pub(crate) fn prune_log(&self, cutoff_ms: i64, keep_from: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        for entry in self.state.scan_prefix([LOG]) {
            let (k, v) = entry.map_err(StoreError::storage)?;
            if decode_seq(&k) >= keep_from {
                break;
            }
            let record: Stamp = decode(&v)?;
            if record.timestamp_ms >= cutoff_ms {
                break;
            }
            self.state.remove(k).map_err(StoreError::storage)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Writes `writes` to the state and `records` to the log as one atomic batch.
    pub(crate) fn commit(
        &self,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        records: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        for (seq, record) in records {
            batch.insert(&log_key(seq), record);
        }
        self.state.apply_batch(batch).map_err(StoreError::storage)
    }

    /// Makes every committed write durable.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(StoreError::storage)
    }
}

/// The part of a log record that retention reads.
#[derive(serde::Deserialize)]
struct Stamp {
    timestamp_ms: i64,
}

fn decode_seq(key: &[u8]) -> u64 {
    key.get(1..)
        .and_then(|k| k.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// A mutation in the making: reads see its own pending writes. Its
/// operations fail with its store's error type.
pub struct Changes<'a, E, Err = StoreError> {
    store: &'a Store<Err>,
    /// The sequence number of the last event committed before this change.
    pub(crate) sequence: u64,
    pub(crate) writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(crate) events: Vec<E>,
}

impl<'a, E, Err> Changes<'a, E, Err> {
    pub fn new(store: &'a Store<Err>) -> Changes<'a, E, Err> {
        Changes {
            store,
            sequence: 0,
            writes: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, Err> {
        match self.writes.get(key) {
            Some(Some(bytes)) => self.store.decode(bytes).map(Some),
            Some(None) => Ok(None),
            None => self.store.get(key),
        }
    }

    pub fn exists(&self, key: &[u8]) -> Result<bool, Err> {
        match self.writes.get(key) {
            Some(v) => Ok(v.is_some()),
            None => self.store.trees.contains(key).map_err(self.store.error),
        }
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), Err> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| self.store.error(StoreError::storage(e)))?;
        self.writes.insert(key, Some(bytes));
        Ok(())
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// On the writer, the sequence number of the last event committed before
    /// this change: a read-only mutation reads a state consistent with it.
    pub fn last_sequence(&self) -> u64 {
        self.sequence
    }

    /// Removes every state key (the change log stays): for test resets.
    pub fn remove_all_state(&mut self) -> Result<(), Err> {
        for k in self.store.trees.state_keys() {
            let k = k.map_err(self.store.error)?;
            self.writes.insert(k.to_vec(), None);
        }
        for value in self.writes.values_mut() {
            *value = None;
        }
        Ok(())
    }

    /// Logs an event with this change.
    pub fn log(&mut self, event: E) {
        self.events.push(event);
    }

    /// Suffixes of the first `n` keys under `prefix`, in key order, pending
    /// writes included; reads no further into storage than they need.
    pub fn first_keys(&self, prefix: &[u8], n: usize) -> Result<Vec<String>, Err> {
        let pending: Vec<(String, bool)> = self
            .writes
            .range(prefix.to_vec()..)
            .map_while(|(k, v)| {
                let suffix = k.strip_prefix(prefix)?;
                Some((String::from_utf8_lossy(suffix).into_owned(), v.is_some()))
            })
            .collect();
        // At most `pending.len()` stored keys can be hidden by pending removals.
        let mut keys: BTreeMap<String, bool> = BTreeMap::new();
        for entry in self
            .store
            .iter(prefix, None)
            .take(n.saturating_add(pending.len()))
        {
            let (suffix, _) = entry?;
            keys.insert(suffix, true);
        }
        keys.extend(pending);
        Ok(keys
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(k, _)| k)
            .take(n)
            .collect())
    }

    /// Suffixes of every key under `prefix`, pending writes included.
    pub fn keys(&self, prefix: &[u8]) -> Result<Vec<String>, Err> {
        let mut keys: BTreeMap<String, bool> = self
            .store
            .keys(prefix)?
            .into_iter()
            .map(|k| (k, true))
            .collect();
        for (k, v) in self.writes.range(prefix.to_vec()..) {
            let Some(suffix) = k.strip_prefix(prefix) else {
                break;
            };
            keys.insert(String::from_utf8_lossy(suffix).into_owned(), v.is_some());
        }
        Ok(keys
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(k, _)| k)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_being_released_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let held = Store::open(dir.path()).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(held);
        });
        // Still locked when asked for; opened once released.
        let again = Store::open(dir.path());
        release.join().unwrap();
        assert!(again.is_ok(), "{:?}", again.err());
    }
}
