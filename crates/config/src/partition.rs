//! The config service's (account, region) partitions
//! ([`herald_runtime::partition`]): the default partition in the database's
//! `data` tree, every other in a tree of its own, each with its own writer,
//! change log and retention, and a registry client that names the same
//! partition. The Herald CA is one for all partitions.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use herald_proto::error::AwsError;
use herald_runtime::partition::{Opener, Partition, Partitions, Stopper};
use herald_store::{Store, Writer};
use tokio_util::sync::CancellationToken;

use crate::{
    certs::Ca,
    domain::ConfigEvent,
    registry::Registry,
    service::{ConfigService, Context},
};

/// What every partition shares.
pub(crate) struct Shared {
    pub(crate) ca: Arc<Ca>,
    pub(crate) registry: Registry,
    pub(crate) retention: Duration,
    pub(crate) prune_interval: Duration,
}

/// Opens the default partition and every other `store`'s database holds.
pub(crate) fn open(
    store: Store<AwsError>,
    default: Partition,
    shared: Shared,
    shutdown: CancellationToken,
) -> anyhow::Result<Partitions<ConfigService>> {
    let existing = store.partition_names();
    let opener: Opener<ConfigService> = Box::new(move |partition, is_default| {
        open_one(&store, &shared, &shutdown, partition, is_default)
    });
    Partitions::open(default, existing, opener)
}

fn open_one(
    root: &Store<AwsError>,
    shared: &Shared,
    shutdown: &CancellationToken,
    partition: &Partition,
    is_default: bool,
) -> anyhow::Result<(ConfigService, Stopper)> {
    let store = if is_default {
        root.clone()
    } else {
        root.partition(&partition.name())
            .map_err(|e| anyhow::anyhow!("{}", e.message))?
    };
    let (writer, log, writer_thread) =
        Writer::<ConfigEvent, AwsError>::start(store.clone(), "config-writer")
            .context("start the writer")?;
    // Named even for the default partition: the registry's default may be
    // another.
    let registry = shared.registry.in_partition(partition);
    let context = Context {
        account_id: partition.account.clone(),
        region: partition.region.clone(),
    };
    let service = ConfigService::new(
        store,
        writer,
        log.clone(),
        shared.ca.clone(),
        context,
        registry,
    );
    let retention =
        tokio::spawn(log.retain(shared.retention, shared.prune_interval, shutdown.clone()));
    let stopper: Stopper = Box::new(move |grace| {
        Box::pin(async move {
            retention.await.context("join retention")?;
            writer_thread.stop(grace).await.context("stop the writer")
        })
    });
    Ok((service, stopper))
}
