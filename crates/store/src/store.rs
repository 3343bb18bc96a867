//! The only module that knows sled. A service's state and its change log share
//! one tree, so that a mutation and its events commit as one atomic batch:
//! state under prefixed keys (parts separated by `\0`, always starting with a
//! printable character), the log under `\xff` plus the big-endian sequence
//! number. Every value is JSON.

use std::{collections::BTreeMap, ops::Bound, path::Path};

use anyhow::Context;
use herald_proto::error::{AwsError, ErrorType};
use serde::{Serialize, de::DeserializeOwned};

use crate::log::Record;

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

/// Decodes a stored record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AwsError> {
    serde_json::from_slice(bytes).map_err(internal)
}

/// The first byte of every log key; state keys never start with it.
const LOG: u8 = 0xff;

fn log_key(sequence: u64) -> [u8; 9] {
    let mut key = [LOG; 9];
    key[1..].copy_from_slice(&sequence.to_be_bytes());
    key
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    state: sled::Tree,
}

pub fn internal(err: impl std::fmt::Display) -> AwsError {
    AwsError::new(
        ErrorType::InternalFailure,
        format!("storage failure: {err}"),
    )
}

impl Store {
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .with_context(|| format!("open sled database in {}", dir.display()))?;
        let state = db.open_tree("data").context("open the data tree")?;
        Ok(Store { db, state })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AwsError> {
        match self.state.get(key).map_err(internal)? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(internal),
            None => Ok(None),
        }
    }

    /// Entries under `prefix` (which ends with the separator) whose key suffix
    /// comes after `after`, in key order, as (suffix, value).
    pub fn iter(
        &self,
        prefix: &[u8],
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>), AwsError>> + use<> {
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
                Err(e) => Some(Err(internal(e))),
            })
    }

    /// Suffixes of every key under `prefix`.
    pub fn keys(&self, prefix: &[u8]) -> Result<Vec<String>, AwsError> {
        self.iter(prefix, None)
            .map(|entry| entry.map(|(k, _)| k))
            .collect()
    }

    /// The last sequence number in the log, 0 when empty.
    pub(crate) fn last_sequence(&self) -> anyhow::Result<u64> {
        let last = self.state.scan_prefix([LOG]).next_back().transpose()?;
        Ok(last.map_or(0, |(k, _)| decode_seq(&k)))
    }

    /// The first sequence number in the log, 0 when empty.
    pub(crate) fn first_sequence(&self) -> Result<u64, AwsError> {
        let first = self
            .state
            .scan_prefix([LOG])
            .next()
            .transpose()
            .map_err(internal)?;
        Ok(first.map_or(0, |(k, _)| decode_seq(&k)))
    }

    /// Up to `limit` log records with sequence numbers in `(after, upto]`.
    pub(crate) fn read_log<E: DeserializeOwned>(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Record<E>>, AwsError> {
        let range = log_key(after + 1)..=log_key(upto);
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in self.state.range(range).take(limit) {
            let (_, v) = entry.map_err(internal)?;
            out.push(serde_json::from_slice(&v).map_err(internal)?);
        }
        Ok(out)
    }

    /// Removes log records older than `cutoff_ms`, but never `keep_from` or later.
    pub(crate) fn prune_log(&self, cutoff_ms: i64, keep_from: u64) -> Result<u64, AwsError> {
        let mut removed = 0;
        for entry in self.state.scan_prefix([LOG]) {
            let (k, v) = entry.map_err(internal)?;
            if decode_seq(&k) >= keep_from {
                break;
            }
            let record: Stamp = serde_json::from_slice(&v).map_err(internal)?;
            if record.timestamp_ms >= cutoff_ms {
                break;
            }
            self.state.remove(k).map_err(internal)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Writes `writes` to the state and `records` to the log as one atomic batch.
    pub(crate) fn commit(
        &self,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        records: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), AwsError> {
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
        self.state.apply_batch(batch).map_err(internal)
    }

    /// Makes every committed write durable.
    pub(crate) fn flush(&self) -> Result<(), AwsError> {
        self.db.flush().map(drop).map_err(internal)
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

/// A mutation in the making: reads see its own pending writes.
pub struct Changes<'a, E> {
    store: &'a Store,
    /// The sequence number of the last event committed before this change.
    pub(crate) sequence: u64,
    pub(crate) writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(crate) events: Vec<E>,
}

impl<'a, E> Changes<'a, E> {
    pub fn new(store: &'a Store) -> Changes<'a, E> {
        Changes {
            store,
            sequence: 0,
            writes: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AwsError> {
        match self.writes.get(key) {
            Some(Some(bytes)) => serde_json::from_slice(bytes).map(Some).map_err(internal),
            Some(None) => Ok(None),
            None => self.store.get(key),
        }
    }

    pub fn exists(&self, key: &[u8]) -> Result<bool, AwsError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.is_some()),
            None => self.store.state.contains_key(key).map_err(internal),
        }
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), AwsError> {
        let bytes = serde_json::to_vec(value).map_err(internal)?;
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
    pub fn remove_all_state(&mut self) -> Result<(), AwsError> {
        for entry in self.store.state.range(..[LOG].as_slice()) {
            let (k, _) = entry.map_err(internal)?;
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

    /// Suffixes of every key under `prefix`, pending writes included.
    pub fn keys(&self, prefix: &[u8]) -> Result<Vec<String>, AwsError> {
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
