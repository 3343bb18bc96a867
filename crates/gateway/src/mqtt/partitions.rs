//! The MQTT side of each (account, region) partition (AWS IoT: every
//! account and region is a broker of its own). A device acts in the
//! partition its certificate is registered in; a [`World`] is everything
//! its sessions share there: the partition's config cache, `$aws` bus,
//! event pump (following that partition's change log), session context
//! (client ids, persistent sessions), retained messages and routing level,
//! and its just-in-time registration. Nothing of one partition reaches
//! another's sessions.
//!
//! [`MqttPartitions`] opens the gateway's own partition (its settings'
//! account and region: password users act there) at start, with every
//! partition whose data the gateway's folder holds, and the others when a
//! device presents a certificate no open partition knows: it asks the
//! config service which partitions exist ([`MqttPartitions::locate`]).
//! The gateway's own partition keeps its data where it always did
//! (`pump`, `sessions`, `retained` in the data folder); each other one has
//! `partitions/<account>/<region>/` of its own.
//!
//! A certificate registered in several partitions (AWS IoT's `SNI_ONLY`
//! CA mode allows it) is told apart by the TLS server name the device
//! asked for: a name with a served region among its labels
//! (`iot.eu-west-1.example`) asks for that region's partitions, and a label
//! that is an account id, alone or followed by `-` (`111122223333-ats`),
//! for that account's. A name that names neither (`localhost`) leaves the
//! choice to the registrations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use herald_proto::config::v1::{self as pb, config_client::ConfigClient};
use herald_proto::registry::v1::{
    GetChangeLogInfoRequest, jobs_client::JobsClient, registry_client::RegistryClient,
    shadows_client::ShadowsClient,
};
use herald_runtime::partition::Partition;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::cluster::{Nats, PartitionPeers};
use super::jitr::Jitr;
use super::lifecycle::VersionCounter;
use super::persist::SessionStore;
use super::retained::{RetainedLimits, RetainedStore};
use super::router::{Link, Router};
use super::session::{SessionContext, SessionSettings};
use crate::bus::Bus;
use crate::config_cache::{CachedCertificate, ConfigCache};
use crate::events::EventPump;
use crate::partition::{Tagged, tagged};

/// How long a device waits for a partition it needs to be opened and its
/// config to arrive.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest time between two listings of the config service's
/// partitions: devices presenting unknown certificates do not make one
/// call each.
const LIST_INTERVAL: Duration = Duration::from_millis(250);

/// What every partition's MQTT side is made from.
pub(crate) struct Setup {
    /// The gateway's data folder.
    pub(crate) data_dir: PathBuf,
    /// The channel to the registry (its `Registry` and `Jobs` services).
    pub(crate) registry: Channel,
    /// The channel to the config service.
    pub(crate) config: Channel,
    /// The routing engine, shared: each partition routes below a level of
    /// its own.
    pub(crate) router: Router,
    pub(crate) retained_limits: RetainedLimits,
    pub(crate) session_settings: SessionSettings,
    /// Stops the caches, the pumps and the session expiry.
    pub(crate) shutdown: CancellationToken,
    /// Stops the session and retained stores (after the sessions ended).
    pub(crate) stores_stop: CancellationToken,
    /// The other gateway replicas, over NATS (`bus = "nats://..."`).
    pub(crate) nats: Option<Arc<Nats>>,
}

/// One partition's MQTT side. Cheap to clone.
#[derive(Clone)]
pub(crate) struct World {
    pub(crate) ctx: SessionContext,
    pub(crate) cache: ConfigCache,
    pub(crate) jitr: Jitr,
    /// `None`: the gateway's own partition.
    pub(crate) partition: Option<Partition>,
    session_store: SessionStore,
    retained: RetainedStore,
    pump: EventPump,
    bus: Bus,
    /// For the change log's head, which the pump's lag is measured from.
    registry: RegistryClient<Tagged>,
    /// The link to the other replicas, if any.
    peers: Option<Arc<PartitionPeers>>,
    /// The router link the `iot-data` API publishes through, made when
    /// first needed.
    http_link: Arc<tokio::sync::Mutex<Option<Link>>>,
}

impl World {
    /// Opens the MQTT side of `partition` (`None`: the gateway's own, whose
    /// account and region are `default`).
    async fn open(
        setup: &Setup,
        partition: Option<&Partition>,
        default: &Partition,
    ) -> anyhow::Result<World> {
        let dir = match partition {
            None => setup.data_dir.clone(),
            Some(p) => partition_dir(&setup.data_dir, p),
        };
        let (pump_store, sessions_store, retained_store) = tokio::task::spawn_blocking(move || {
            anyhow::Ok((
                herald_store::Store::open(&dir.join("pump"))?,
                herald_store::Store::open(&dir.join("sessions"))?,
                herald_store::Store::open(&dir.join("retained"))?,
            ))
        })
        .await??;
        let (session_store, stored) = SessionStore::open(sessions_store, setup.stores_stop.clone())
            .context("open the session store")?;
        let retained = RetainedStore::open(
            retained_store,
            setup.retained_limits,
            setup.stores_stop.clone(),
        )
        .context("open the retained-message store")?;
        let (retained_count, retained_bytes) = retained.usage();
        let named = partition.unwrap_or(default);
        tracing::info!(
            partition = named.name(),
            persistent_sessions = stored.len(),
            retained_count,
            retained_bytes,
            "mqtt partition open"
        );
        let tag = partition.cloned();
        let config = ConfigClient::new(tagged(setup.config.clone(), tag.clone()));
        let registry = RegistryClient::new(tagged(setup.registry.clone(), tag.clone()));
        let jobs = JobsClient::new(tagged(setup.registry.clone(), tag.clone()));
        let shadows = ShadowsClient::new(tagged(setup.registry.clone(), tag.clone()));
        let cache = ConfigCache::spawn(config.clone(), setup.shutdown.clone());
        let bus = Bus::new();
        // A partition opened for its first device starts at the change
        // log's head: what was committed before has no subscriber here. So
        // does a replica with no cursor of its own (a new pod beside others:
        // the sessions that resume on it replay from their own positions).
        let fresh_start = match partition {
            None if setup.nats.is_none() => 0,
            // Not answering: from the oldest retained event (at least once).
            _ => change_log_head(&registry, OPEN_TIMEOUT).await.unwrap_or(0),
        };
        let pump = EventPump::spawn_after(
            registry.clone(),
            cache.clone(),
            bus.clone(),
            pump_store,
            fresh_start,
            setup.shutdown.clone(),
        )
        .context("start the event pump")?;
        let mut router = setup
            .router
            .clone()
            .in_partition(partition)
            .with_retained(retained.clone());
        let peers = setup
            .nats
            .as_ref()
            .map(|nats| PartitionPeers::new(Arc::clone(nats), named));
        if let Some((peers, _)) = &peers {
            router = router.with_peers(peers.clone());
        }
        let ctx = SessionContext::new(
            cache.clone(),
            bus.clone(),
            Arc::new(VersionCounter::new()),
            &named.region,
            &named.account,
            router.clone(),
            setup.session_settings.clone(),
        )
        .with_registry(registry)
        .with_jobs(jobs)
        .with_shadows(shadows)
        .with_session_store(session_store.clone(), stored)
        .with_event_pump(pump.clone());
        let peers = match peers {
            Some((peers, receivers)) => {
                let ctx = ctx.clone().with_client_ids(peers.clone());
                session_store.share_with(peers.clone());
                peers
                    .start(receivers, &router, &bus, ctx, setup.shutdown.clone())
                    .await
                    .context("join the other replicas")?;
                Some(peers)
            }
            None => None,
        };
        tokio::spawn(expire_sessions(
            ctx.clone(),
            setup.session_settings.persistent_session_expiry,
            setup.shutdown.clone(),
        ));
        let jitr = Jitr::new(config, bus.clone(), cache.clone(), &named.account);
        Ok(World {
            ctx,
            cache,
            jitr,
            partition: tag,
            session_store,
            retained,
            pump,
            bus,
            registry: RegistryClient::new(tagged(setup.registry.clone(), partition.cloned())),
            peers,
            http_link: Arc::default(),
        })
    }

    /// Resolves once the partition's stores and pump have written what
    /// they hold and closed (after the stop tokens were cancelled).
    async fn stopped(&self) {
        self.session_store.stopped().await;
        self.retained.stopped().await;
        self.pump.stopped().await;
    }
}

/// The last sequence number of the change log `registry` names, if the
/// registry answers within `timeout`.
async fn change_log_head(registry: &RegistryClient<Tagged>, timeout: Duration) -> Option<u64> {
    let mut registry = registry.clone();
    let info = tokio::time::timeout(
        timeout,
        registry.get_change_log_info(GetChangeLogInfoRequest {}),
    )
    .await;
    match info {
        Ok(Ok(info)) => Some(info.into_inner().last_sequence),
        Ok(Err(status)) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "reading the change log's head failed");
            None
        }
        Err(_) => {
            tracing::warn!(?timeout, "reading the change log's head timed out");
            None
        }
    }
}

/// Where a partition other than the gateway's own keeps its MQTT data.
fn partition_dir(data_dir: &Path, partition: &Partition) -> PathBuf {
    data_dir
        .join("partitions")
        .join(&partition.account)
        .join(&partition.region)
}

/// The partitions whose MQTT data `data_dir` holds.
fn stored_partitions(data_dir: &Path) -> Vec<Partition> {
    let mut found = Vec::new();
    let Ok(accounts) = std::fs::read_dir(data_dir.join("partitions")) else {
        return found;
    };
    for account in accounts.flatten() {
        let Ok(regions) = std::fs::read_dir(account.path()) else {
            continue;
        };
        for region in regions.flatten() {
            let (account, region) = (account.file_name(), region.file_name());
            if let (Some(account), Some(region)) = (account.to_str(), region.to_str())
                && let Some(partition) = Partition::new(account, region)
            {
                found.push(partition);
            }
        }
    }
    found
}

/// Forgets expired persistent sessions, checking a few times per expiry
/// period (at least once a minute), until `shutdown`.
async fn expire_sessions(ctx: SessionContext, expiry: Duration, shutdown: CancellationToken) {
    let period = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                ctx.expire_sessions();
            }
        }
    }
}

/// Where a presented certificate is registered.
pub(crate) enum Located {
    /// In exactly one partition (after the server name narrowed them).
    Registered(Box<(World, CachedCertificate)>),
    /// In none: the partitions that may register it just in time.
    Unknown(Vec<World>),
    /// In several, and the server name does not tell which.
    Ambiguous(Vec<Partition>),
}

struct Inner {
    setup: Setup,
    /// The gateway's own account and region.
    default: Partition,
    own: World,
    others: Mutex<HashMap<Partition, World>>,
    /// Held while partitions are being opened: one opening at a time.
    opening: tokio::sync::Mutex<()>,
    /// Held while the config service's partitions are listed and opened,
    /// with when that last happened.
    listing: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// Lists the partitions the config service holds.
    config: ConfigClient<Channel>,
    /// The regions a TLS server name may name.
    regions: Vec<String>,
}

/// Every partition's MQTT side the gateway has open. Cheap to clone.
#[derive(Clone)]
pub(crate) struct MqttPartitions {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MqttPartitions {
    /// Opens the gateway's own partition (`default`) and every partition
    /// whose data the data folder holds. `regions` are the served regions,
    /// which a TLS server name may name.
    pub(crate) async fn open(
        setup: Setup,
        default: Partition,
        regions: Vec<String>,
    ) -> anyhow::Result<MqttPartitions> {
        let own = World::open(&setup, None, &default).await?;
        let config = ConfigClient::new(setup.config.clone());
        let stored = stored_partitions(&setup.data_dir);
        let partitions = MqttPartitions {
            inner: Arc::new(Inner {
                setup,
                default,
                own,
                others: Mutex::new(HashMap::new()),
                opening: tokio::sync::Mutex::new(()),
                listing: tokio::sync::Mutex::new(None),
                config,
                regions,
            }),
        };
        for partition in stored {
            partitions.get_or_open(&partition).await?;
        }
        Ok(partitions)
    }

    /// The gateway's own partition.
    pub(crate) fn own(&self) -> &World {
        &self.inner.own
    }

    /// The open partition `partition` (`None`: the gateway's own).
    pub(crate) fn get(&self, partition: Option<&Partition>) -> Option<World> {
        match partition {
            None => Some(self.inner.own.clone()),
            Some(p) if *p == self.inner.default => Some(self.inner.own.clone()),
            Some(p) => lock(&self.inner.others).get(p).cloned(),
        }
    }

    /// Every open partition, the gateway's own first.
    pub(crate) fn all(&self) -> Vec<World> {
        let mut all = vec![self.inner.own.clone()];
        let mut others: Vec<World> = lock(&self.inner.others).values().cloned().collect();
        others.sort_by(|a, b| a.partition.cmp(&b.partition));
        all.extend(others);
        all
    }

    /// Opens `partition` if it is not open yet.
    async fn get_or_open(&self, partition: &Partition) -> anyhow::Result<World> {
        if let Some(world) = self.get(Some(partition)) {
            return Ok(world);
        }
        let _opening = self.inner.opening.lock().await;
        if let Some(world) = self.get(Some(partition)) {
            return Ok(world);
        }
        let world = World::open(&self.inner.setup, Some(partition), &self.inner.default)
            .await
            .with_context(|| format!("open partition {}", partition.name()))?;
        lock(&self.inner.others).insert(partition.clone(), world.clone());
        Ok(world)
    }

    /// Opens the partitions the config service holds that are not open
    /// yet, and waits (a bounded time) for their config to arrive; at most
    /// once per [`LIST_INTERVAL`] (a caller that waited for another's
    /// listing uses its result).
    async fn open_new(&self) {
        let mut listed_at = self.inner.listing.lock().await;
        if listed_at.is_some_and(|at| at.elapsed() < LIST_INTERVAL) {
            return;
        }
        self.list_and_open().await;
        *listed_at = Some(tokio::time::Instant::now());
    }

    async fn list_and_open(&self) {
        let mut config = self.inner.config.clone();
        let listed = tokio::time::timeout(
            OPEN_TIMEOUT,
            config.list_partitions(pb::ListPartitionsRequest {}),
        )
        .await;
        let names = match listed {
            Ok(Ok(listed)) => listed.into_inner().partitions,
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "listing the partitions failed");
                return;
            }
            Err(_) => {
                tracing::warn!(?OPEN_TIMEOUT, "listing the partitions timed out");
                return;
            }
        };
        let mut opened = Vec::new();
        for partition in names.iter().filter_map(|name| Partition::parse(name)) {
            if self.get(Some(&partition)).is_some() {
                continue;
            }
            match self.get_or_open(&partition).await {
                Ok(world) => opened.push(world),
                Err(e) => tracing::error!(error = format!("{e:#}"), "opening a partition failed"),
            }
        }
        for world in opened {
            let _ = tokio::time::timeout(OPEN_TIMEOUT, world.cache.ready()).await;
        }
    }

    /// Where the certificate `certificate_id` is registered, narrowed by
    /// the TLS `server_name`. When no open partition holds it, the
    /// partitions the config service holds are opened first.
    pub(crate) async fn locate(&self, certificate_id: &str, server_name: Option<&str>) -> Located {
        match self.lookup(certificate_id, server_name) {
            Located::Unknown(_) => {
                self.open_new().await;
                self.lookup(certificate_id, server_name)
            }
            found => found,
        }
    }

    fn lookup(&self, certificate_id: &str, server_name: Option<&str>) -> Located {
        let wanted = Wanted::of(server_name, &self.inner.regions);
        let allowed: Vec<World> = self
            .all()
            .into_iter()
            .filter(|world| wanted.allows(&self.named(world)))
            .collect();
        let mut holders: Vec<(World, CachedCertificate)> = allowed
            .iter()
            .cloned()
            .filter_map(|world| {
                let cert = world.cache.certificate(certificate_id)?;
                Some((world, cert))
            })
            .collect();
        match holders.len() {
            0 => Located::Unknown(allowed),
            1 => Located::Registered(Box::new(holders.remove(0))),
            _ => Located::Ambiguous(holders.iter().map(|(w, _)| self.named(w)).collect()),
        }
    }

    /// The partition `world` serves, named.
    fn named(&self, world: &World) -> Partition {
        world
            .partition
            .clone()
            .unwrap_or_else(|| self.inner.default.clone())
    }

    /// Sets each open partition's gauges (`partition` label): sessions
    /// (`herald_gateway_sessions`, by `state`: live, persistent_live,
    /// persistent_away), the event pump's cursor and its lag behind the
    /// change log's head (`herald_gateway_pump_cursor`,
    /// `herald_gateway_pump_lag`; the head asked of the registry, the lag
    /// left as it was when it does not answer), the bus's dropped
    /// deliveries and subscribers.
    pub(crate) async fn report_metrics(&self) {
        if let Some(nats) = &self.inner.setup.nats {
            metrics::gauge!("herald_gateway_nats_connected")
                .set(f64::from(u8::from(nats.connected())));
        }
        for world in self.all() {
            let partition = self.named(&world).name();
            let gauge = |name: &'static str, state: Option<&'static str>, value: f64| {
                let mut labels = vec![("partition", partition.clone())];
                if let Some(state) = state {
                    labels.push(("state", state.to_owned()));
                }
                metrics::gauge!(name, &labels).set(value);
            };
            let (persistent_live, persistent_away) = world.ctx.persistent_sessions();
            gauge(
                "herald_gateway_sessions",
                Some("live"),
                world.ctx.live_sessions() as f64,
            );
            gauge(
                "herald_gateway_sessions",
                Some("persistent_live"),
                persistent_live as f64,
            );
            gauge(
                "herald_gateway_sessions",
                Some("persistent_away"),
                persistent_away as f64,
            );
            let cursor = world.pump.cursor();
            gauge("herald_gateway_pump_cursor", None, cursor as f64);
            let stats = world.bus.stats();
            gauge(
                "herald_gateway_bus_subscribers",
                None,
                stats.subscribers as f64,
            );
            gauge("herald_gateway_bus_dropped", None, stats.dropped as f64);
            if let Some(peers) = &world.peers {
                gauge("herald_gateway_peer_dropped", None, peers.dropped() as f64);
            }
            if let Some(head) = change_log_head(&world.registry, Duration::from_secs(1)).await {
                gauge(
                    "herald_gateway_pump_lag",
                    None,
                    head.saturating_sub(cursor) as f64,
                );
            }
        }
    }

    /// Resolves once every open partition's stores and pump have closed
    /// (after the stop tokens were cancelled).
    pub(crate) async fn stopped(&self) {
        for world in self.all() {
            world.stopped().await;
        }
    }
}

/// What a TLS server name asks for: the first label that is a served
/// region, and the first label that is an account id, alone or followed by
/// `-` (`111122223333-ats`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Wanted<'a> {
    region: Option<&'a str>,
    account: Option<&'a str>,
}

impl<'a> Wanted<'a> {
    fn of(server_name: Option<&'a str>, regions: &[String]) -> Wanted<'a> {
        let Some(name) = server_name else {
            return Wanted::default();
        };
        let labels = || name.split('.');
        let region = labels().find(|l| regions.iter().any(|r| r == l));
        let account = labels().find_map(|l| {
            let digits = l
                .get(..12)
                .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
            let rest = &l[digits.len()..];
            (rest.is_empty() || rest.starts_with('-')).then_some(digits)
        });
        Wanted { region, account }
    }

    fn allows(&self, partition: &Partition) -> bool {
        self.region.is_none_or(|r| r == partition.region)
            && self.account.is_none_or(|a| a == partition.account)
    }
}

/// The `iot-data` API's way to the partitions' subscribers.
impl crate::partition::Broker for MqttPartitions {
    fn publish(
        &self,
        partition: Option<Partition>,
        topic: String,
        payload: tokio_util::bytes::Bytes,
        qos: u8,
        retain: bool,
        properties: Option<rumqttd::protocol::PublishProperties>,
    ) -> crate::partition::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let world = self.world_of(partition.as_ref()).await?;
            if topic.starts_with("$aws/") {
                world.bus.publish(&topic, &payload[..]);
                return Ok(());
            }
            let mut link = world.http_link.lock().await;
            if link.is_none() {
                let made = world
                    .ctx
                    .shared
                    .router
                    .service_link("iot-data")
                    .await
                    .map_err(|e| e.to_string())?;
                *link = Some(made);
            }
            let Some(made) = link.as_mut() else {
                return Err("no router link".into());
            };
            let forwarded = properties
                .as_ref()
                .and_then(|p| super::codec::Forwarded::of(p, super::lifecycle::epoch_millis_now()));
            let published = made
                .publish(&topic, payload, qos, retain, forwarded.as_ref())
                .await;
            if published.is_err() {
                // Made again for the next publish.
                *link = None;
            }
            published.map_err(|e| e.to_string())
        })
    }

    fn retained(
        &self,
        partition: Option<Partition>,
    ) -> crate::partition::BoxFuture<'_, Result<Vec<crate::partition::RetainedMessage>, String>>
    {
        Box::pin(async move {
            let world = self.world_of(partition.as_ref()).await?;
            let now_ms = super::lifecycle::epoch_millis_now();
            Ok(world
                .retained
                .messages()
                .into_iter()
                .filter(|(_, m)| !m.expired(now_ms))
                .map(|(topic, m)| crate::partition::RetainedMessage {
                    topic: topic.to_string(),
                    user_properties: m
                        .properties
                        .as_ref()
                        .map(super::codec::Forwarded::user_properties)
                        .unwrap_or_default(),
                    payload: m.payload,
                    qos: m.qos,
                    modified_ms: m.modified_ms,
                })
                .collect())
        })
    }
}

impl MqttPartitions {
    /// The open world of `partition` (`None`: the gateway's own), opened if
    /// it is not.
    pub(crate) async fn world_of(&self, partition: Option<&Partition>) -> Result<World, String> {
        match partition {
            None => Ok(self.own().clone()),
            Some(p) => self.get_or_open(p).await.map_err(|e| format!("{e:#}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_name_asks_for_a_region_and_an_account() {
        let regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
        assert_eq!(Wanted::of(None, &regions), Wanted::default());
        assert_eq!(Wanted::of(Some("localhost"), &regions), Wanted::default());
        let wanted = Wanted::of(Some("111122223333-ats.iot.eu-west-1.example"), &regions);
        assert_eq!(
            wanted,
            Wanted {
                region: Some("eu-west-1"),
                account: Some("111122223333")
            }
        );
        let ireland = Partition::new("111122223333", "eu-west-1").unwrap();
        let virginia = Partition::new("111122223333", "us-east-1").unwrap();
        let other = Partition::new("999988887777", "eu-west-1").unwrap();
        assert!(wanted.allows(&ireland));
        assert!(!wanted.allows(&virginia));
        assert!(!wanted.allows(&other));
        // Not a served region, not an account id: no choice made.
        let loose = Wanted::of(Some("iot.xx-nowhere-1.12345678901x.é"), &regions);
        assert_eq!(loose, Wanted::default());
        assert!(loose.allows(&virginia));
        // Only the region.
        let region_only = Wanted::of(Some("eu-west-1.localhost"), &regions);
        assert!(region_only.allows(&other) && !region_only.allows(&virginia));
    }
}
