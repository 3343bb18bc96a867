//! (Account, region) partitions. Every resource, event and change log lives
//! in one: the default partition (the settings' account and region) in the
//! database's `data` tree, every other in a tree of its own
//! (`partition/<account>/<region>`), with its own writer, change log, fleet
//! index and background tasks, opened when a call first names it and again
//! at every start. A gRPC call names its partition in the
//! [`PARTITION_METADATA`] entry (`<account>/<region>`); a call without one
//! is for the default partition.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::Context as _;
use herald_proto::error::AwsError;
use herald_store::{Store, Writer, WriterThread};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use crate::{
    domain::{self, Event},
    index::Index,
    service::{Context, Registry},
};

/// The gRPC metadata entry that names a call's partition: `<account>/<region>`.
pub const PARTITION_METADATA: &str = "x-herald-partition";

/// An (account, region) pair.
type Key = (String, String);

/// What every partition's background tasks need besides its store.
#[derive(Clone)]
pub(crate) struct PartitionSettings {
    /// The template: each partition gets its own account and region.
    pub(crate) context: Context,
    pub(crate) retention: Duration,
    pub(crate) prune_interval: Duration,
    pub(crate) timer_interval: Duration,
}

/// A partition's writer thread and tasks, stopped at shutdown.
struct Running {
    writer_thread: WriterThread,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    store: Store<AwsError>,
    settings: PartitionSettings,
    default: Key,
    open: Mutex<HashMap<Key, Registry>>,
    running: Mutex<Vec<Running>>,
    shutdown: CancellationToken,
}

/// The open partitions. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Partitions {
    inner: Arc<Inner>,
}

/// Whether `account` is 12 digits and `region` an AWS region name's shape.
fn check_key(account: &str, region: &str) -> Result<(), AwsError> {
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let region_ok = (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if account_ok && region_ok {
        Ok(())
    } else {
        Err(domain::invalid(format!(
            "{account}/{region} is not an account (12 digits) and a region"
        )))
    }
}

impl Partitions {
    /// Opens the default partition and every partition `store`'s database
    /// holds, starting their tasks.
    pub(crate) fn open(
        store: Store<AwsError>,
        settings: PartitionSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Partitions> {
        let default = (
            settings.context.account_id.clone(),
            settings.context.region.clone(),
        );
        let partitions = Partitions {
            inner: Arc::new(Inner {
                store,
                settings,
                default: default.clone(),
                open: Mutex::new(HashMap::new()),
                running: Mutex::new(Vec::new()),
                shutdown,
            }),
        };
        partitions.start(&default)?;
        for name in partitions.inner.store.partition_names() {
            let Some((account, region)) = name.split_once('/') else {
                continue;
            };
            if check_key(account, region).is_ok() {
                partitions.start(&(account.to_owned(), region.to_owned()))?;
            }
        }
        Ok(partitions)
    }

    /// The default partition.
    pub(crate) fn default_registry(&self) -> Registry {
        self.get(&self.inner.default)
            .unwrap_or_else(|_| unreachable!("the default partition opens at start"))
    }

    /// Every open partition.
    pub(crate) fn all(&self) -> Vec<Registry> {
        lock(&self.inner.open).values().cloned().collect()
    }

    /// The partition a call names (the default when it names none), opened
    /// if it is not yet.
    pub(crate) fn of<T>(&self, request: &Request<T>) -> Result<Registry, Status> {
        let Some(value) = request.metadata().get(PARTITION_METADATA) else {
            return Ok(self.default_registry());
        };
        let value = value
            .to_str()
            .map_err(|_| Status::from(domain::invalid("The partition is not text")))?;
        let Some((account, region)) = value.split_once('/') else {
            return Err(Status::from(domain::invalid(format!(
                "{value:?} is not <account>/<region>"
            ))));
        };
        check_key(account, region).map_err(Status::from)?;
        let key = (account.to_owned(), region.to_owned());
        if let Ok(registry) = self.get(&key) {
            return Ok(registry);
        }
        self.start(&key)
            .map_err(|e| Status::internal(format!("opening partition {value}: {e:#}")))
    }

    fn get(&self, key: &Key) -> Result<Registry, ()> {
        lock(&self.inner.open).get(key).cloned().ok_or(())
    }

    /// Opens a partition and starts its tasks (once, whoever asks first).
    fn start(&self, key: &Key) -> anyhow::Result<Registry> {
        let mut open = lock(&self.inner.open);
        if let Some(registry) = open.get(key) {
            return Ok(registry.clone());
        }
        let (account, region) = key;
        let store = if *key == self.inner.default {
            self.inner.store.clone()
        } else {
            self.inner
                .store
                .partition(&format!("{account}/{region}"))
                .map_err(|e| anyhow::anyhow!("{}", e.message))?
        };
        let (writer, log, writer_thread) =
            Writer::<Event, AwsError>::start(store.clone(), "registry-writer")
                .context("start the writer")?;
        let index = Index::load(&store, log.clone())
            .map_err(|e| anyhow::anyhow!("load the fleet index: {}", e.message))?;
        let settings = &self.inner.settings;
        let context = Context {
            account_id: account.clone(),
            region: region.clone(),
            ..settings.context.clone()
        };
        let registry = Registry::new(store, writer, context, log.clone(), index.clone());
        let shutdown = &self.inner.shutdown;
        let tasks = vec![
            tokio::spawn(log.retain(
                settings.retention,
                settings.prune_interval,
                shutdown.clone(),
            )),
            tokio::spawn(
                registry
                    .clone()
                    .run_job_timers(settings.timer_interval, shutdown.clone()),
            ),
            tokio::spawn(index.follow(shutdown.clone())),
            tokio::spawn(registry.clone().run_dynamic_groups(shutdown.clone())),
        ];
        lock(&self.inner.running).push(Running {
            writer_thread,
            tasks,
        });
        open.insert(key.clone(), registry.clone());
        if *key != self.inner.default {
            tracing::info!(account, region, "partition open");
        }
        Ok(registry)
    }

    /// Waits for every partition's tasks (once shutdown is cancelled) and
    /// stops its writer.
    pub(crate) async fn stop(&self, grace: Duration) -> anyhow::Result<()> {
        lock(&self.inner.open).clear();
        let running = std::mem::take(&mut *lock(&self.inner.running));
        for partition in running {
            for task in partition.tasks {
                task.await.context("join a partition's task")?;
            }
            partition
                .writer_thread
                .stop(grace)
                .await
                .context("stop the writer")?;
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
