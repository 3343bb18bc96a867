//! The registry's (account, region) partitions ([`herald_runtime::partition`]):
//! the default partition in the database's `data` tree, every other in a
//! tree of its own (`partition/<account>/<region>`), each with its own
//! writer, change log, fleet index and background tasks (retention, job
//! timers, the index's follower, the dynamic groups' keeper).

use std::time::Duration;

use anyhow::Context as _;
use herald_proto::error::AwsError;
use herald_runtime::partition::{Opener, Partition, Stopper};
use herald_store::{Store, Writer};
use tokio_util::sync::CancellationToken;

use crate::{
    domain::Event,
    index::Index,
    service::{Context, Registry},
};

pub(crate) type Partitions = herald_runtime::partition::Partitions<Registry>;

/// What every partition's background tasks need besides its store.
#[derive(Clone)]
pub(crate) struct PartitionSettings {
    /// The template: each partition gets its own account and region.
    pub(crate) context: Context,
    pub(crate) retention: Duration,
    pub(crate) prune_interval: Duration,
    pub(crate) timer_interval: Duration,
}

/// Opens the default partition and every other `store`'s database holds.
pub(crate) fn open(
    store: Store<AwsError>,
    settings: PartitionSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<Partitions> {
    let default = Partition::new(&settings.context.account_id, &settings.context.region)
        .context("the settings' account_id and region")?;
    let existing = store.partition_names();
    let opener: Opener<Registry> = Box::new(move |partition, is_default| {
        open_one(&store, &settings, &shutdown, partition, is_default)
    });
    Partitions::open(default, existing, opener)
}

fn open_one(
    root: &Store<AwsError>,
    settings: &PartitionSettings,
    shutdown: &CancellationToken,
    partition: &Partition,
    is_default: bool,
) -> anyhow::Result<(Registry, Stopper)> {
    let store = if is_default {
        root.clone()
    } else {
        root.partition(&partition.name())
            .map_err(|e| anyhow::anyhow!("{}", e.message))?
    };
    let (writer, log, writer_thread) =
        Writer::<Event, AwsError>::start(store.clone(), "registry-writer")
            .context("start the writer")?;
    let index = Index::load(&store, log.clone())
        .map_err(|e| anyhow::anyhow!("load the fleet index: {}", e.message))?;
    let context = Context {
        account_id: partition.account.clone(),
        region: partition.region.clone(),
        ..settings.context.clone()
    };
    let registry = Registry::new(store, writer, context, log.clone(), index.clone());
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
    let stopper: Stopper = Box::new(move |grace| {
        Box::pin(async move {
            for task in tasks {
                task.await.context("join a partition's task")?;
            }
            writer_thread.stop(grace).await.context("stop the writer")
        })
    });
    Ok((registry, stopper))
}
