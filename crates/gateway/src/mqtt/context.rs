//! What every session of one gateway shares ([`SessionContext`]): the
//! settings, the config cache, the `$aws` bus, the routing engine, the
//! table of live sessions and the persistent sessions whose clients are
//! away.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::partition::Tagged;
use herald_proto::registry::v1::{
    ConnectivityReport, ReportConnectivityRequest, jobs_client::JobsClient,
    registry_client::RegistryClient, shadows_client::ShadowsClient,
};
use tokio::sync::Notify;
use tokio_util::bytes::Bytes;

use super::lifecycle::{LifecycleEvent, VersionCounter, epoch_millis_now};
use super::persist::{SessionStore, StoredSession};
use super::router::Router;
use crate::bus::{Bus, Delivery as BusDelivery, QoS, SubscriberId};
use crate::config_cache::ConfigCache;
use crate::events::EventPump;

use super::codec::valid_str;

/// Limits of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// How long a new connection may take to send its CONNECT.
    pub connect_timeout: Duration,
    /// The largest packet accepted, as its remaining length in bytes (AWS:
    /// 128 KB payloads; larger packets end the session with CLIENT_ERROR).
    pub max_packet_size: usize,
    /// The length of the session's `$aws` bus queue.
    pub bus_queue: usize,
    /// How long a takeover waits for the old session to end.
    pub takeover_timeout: Duration,
    /// How long a persistent session is kept after its client went away.
    pub persistent_session_expiry: Duration,
    /// The shortest keep-alive a client gets: shorter ones are raised to it
    /// (AWS IoT: 30 s). Capped at [`MAX_KEEP_ALIVE_SECS`](super::connect::MAX_KEEP_ALIVE_SECS).
    pub min_keep_alive: Duration,
    /// How many persistent sessions (`clean_session=false`, live or away)
    /// one principal may hold; a CONNECT that would create one more is
    /// refused. Resuming one is always allowed.
    pub max_persistent_sessions_per_principal: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            connect_timeout: Duration::from_secs(10),
            max_packet_size: 128 * 1024 + 512,
            bus_queue: crate::bus::DEFAULT_QUEUE_CAPACITY,
            takeover_timeout: Duration::from_secs(5),
            persistent_session_expiry: Duration::from_secs(3600),
            min_keep_alive: Duration::from_secs(30),
            max_persistent_sessions_per_principal: 1000,
        }
    }
}

/// A flag raised once, that tasks wait for: a `CancellationToken` without
/// its tree, so without an allocation of its own (every live session holds
/// two).
#[derive(Default)]
pub(super) struct Signal {
    raised: AtomicBool,
    notify: Notify,
}

impl Signal {
    /// Raises the flag, waking every waiter; later waits return at once.
    pub(super) fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether the flag is raised.
    #[cfg(test)]
    pub(super) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Waits until the flag is raised; cancel-safe.
    pub(super) async fn raised(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a raise in between wakes it.
            notified.as_mut().enable();
            if self.raised.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// A live session, as the client-id table knows it.
pub(super) struct Live {
    /// Raised by a newer session of the same client id.
    pub(super) kick: Signal,
    /// Raised when the session has fully ended.
    pub(super) done: Signal,
    /// The principal of a persistent session (`clean_session=false`).
    pub(super) persistent_principal: Option<String>,
}

pub(super) struct Shared {
    pub(super) cache: ConfigCache,
    pub(super) bus: Bus,
    pub(super) versions: Arc<VersionCounter>,
    pub(super) region: String,
    pub(super) account_id: String,
    /// `arn:aws:iot:<region>:<account>:`, the start of every ARN a policy
    /// check names.
    pub(super) arn_prefix: Arc<str>,
    pub(super) router: Router,
    pub(super) settings: SessionSettings,
    /// Where the thing a CONNECT names is looked up; without it no
    /// connection is associated with a thing.
    pub(super) registry: OnceLock<RegistryClient<Tagged>>,
    /// Where connect and disconnect reports wait for the registry (set with
    /// the registry).
    pub(super) connectivity: OnceLock<tokio::sync::mpsc::Sender<ConnectivityReport>>,
    /// The registry's `Jobs` service, which answers the jobs device API;
    /// without it jobs requests are carried like any `$aws/things` message
    /// and answered by no one.
    pub(super) jobs: OnceLock<JobsClient<Tagged>>,
    /// The registry's `Shadows` service, which answers the Device Shadow
    /// topics; without it shadow requests are carried like any `$aws/things`
    /// message and answered by no one.
    pub(super) shadows: OnceLock<ShadowsClient<Tagged>>,
    pub(super) live: Mutex<HashMap<String, Arc<Live>>>,
    /// The `clean_session=false` sessions that ended.
    pub(super) persistent: Mutex<HashMap<String, Persisted>>,
    /// Where persistent sessions are stored; without it they last as long
    /// as the gateway runs.
    pub(super) sessions: OnceLock<SessionStore>,
    /// The event pump, whose progress tells sessions how far the bus has
    /// carried the change log; without it (or a registry) sessions never
    /// replay the log.
    pub(super) pump: OnceLock<EventPump>,
    /// The other gateway replicas' view of client ids (`bus =
    /// "nats://..."`): told of each connection accepted here.
    pub(super) client_ids: OnceLock<Arc<dyn ClientIds>>,
}

/// Where client ids are claimed across gateway replicas.
pub(super) trait ClientIds: Send + Sync {
    /// `live` now holds `client_id` on this replica; a newer claim
    /// elsewhere raises its `kick`.
    fn connected(&self, client_id: &str, live: &Arc<Live>);
    /// `live`'s connection ended: its claim is no longer watched.
    fn ended(&self, client_id: &str, live: &Arc<Live>);
}

/// The filters a session subscribed to, by where they live.
#[derive(Debug, Clone, Default)]
pub(super) struct Filters {
    pub(super) router: HashMap<String, QoS>,
    pub(super) bus: HashMap<String, QoS>,
    /// The principal that holds the session (for
    /// [`SessionSettings::max_persistent_sessions_per_principal`]).
    pub(super) principal: String,
}

impl Filters {
    pub(super) fn from_stored(stored: &StoredSession) -> Filters {
        let qos = |level| QoS::from_level(level).unwrap_or(QoS::AtLeastOnce);
        Filters {
            router: stored
                .router
                .iter()
                .map(|(f, l)| (f.clone(), qos(*l)))
                .collect(),
            bus: stored
                .bus
                .iter()
                .map(|(f, l)| (f.clone(), qos(*l)))
                .collect(),
            principal: stored.principal.clone(),
        }
    }

    pub(super) fn to_stored(
        &self,
        after_sequence: u64,
        disconnected_at_ms: Option<u64>,
    ) -> StoredSession {
        let list = |filters: &HashMap<String, QoS>| {
            let mut list: Vec<(String, u8)> = filters
                .iter()
                .map(|(f, q)| (f.clone(), q.level()))
                .collect();
            list.sort();
            list
        };
        StoredSession {
            bus: list(&self.bus),
            router: list(&self.router),
            after_sequence,
            disconnected_at_ms,
            principal: self.principal.clone(),
        }
    }
}

/// A QoS 1 message sent and not acknowledged when its persistent session
/// ended: sent again, with DUP, when the session resumes (while the gateway
/// runs; registry events are replayed from the change log instead).
#[derive(Debug, Clone)]
pub(super) struct Unacked {
    pub(super) pkid: u16,
    pub(super) topic: Arc<str>,
    pub(super) payload: Bytes,
    pub(super) retain: bool,
    /// The MQTT 5 properties it was sent with.
    pub(super) properties: Option<super::codec::Forwarded>,
}

/// A `clean_session=false` session while its client is away.
#[derive(Default)]
pub(super) struct Persisted {
    pub(super) filters: Filters,
    /// The change-log position (see [`StoredSession::after_sequence`]).
    pub(super) after_sequence: u64,
    pub(super) unacked: Vec<Unacked>,
    /// When the client went away, in epoch milliseconds.
    pub(super) away_since_ms: u64,
    /// Its place on the `$aws` bus, still subscribed: the lifecycle events
    /// published meanwhile wait in its queue (registry events that do not
    /// fit are replayed from the change log). Not after a restart.
    pub(super) bus: Option<BusLink>,
}

impl Persisted {
    /// A stored session as it is kept while its client is away (`now`:
    /// since when, if the record does not say).
    pub(super) fn from_stored(session: &StoredSession, now: u64) -> Persisted {
        Persisted {
            filters: Filters::from_stored(session),
            after_sequence: session.after_sequence,
            unacked: Vec::new(),
            away_since_ms: session.disconnected_at_ms.unwrap_or(now),
            bus: None,
        }
    }

    /// Takes it off the bus (it expired, or a clean session replaced it).
    pub(super) fn leave_bus(&mut self, bus: &Bus) {
        if let Some(link) = self.bus.take() {
            bus.remove(link.id);
        }
    }
}

/// What every session shares. Cheap to clone.
#[derive(Clone)]
pub struct SessionContext {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionContext")
            .field("region", &self.shared.region)
            .field("account_id", &self.shared.account_id)
            .field("live", &self.live_sessions())
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionContext {
    /// Ends the live session `live` of `client_id`: takes it out of the
    /// client-id table if it is still the one there (a takeover may have
    /// replaced it), and tells whoever waits for it that it is done.
    pub(super) fn end_live(&self, client_id: &str, live: &Arc<Live>) {
        let mut table = lock(&self.shared.live);
        if table.get(client_id).is_some_and(|l| Arc::ptr_eq(l, live)) {
            table.remove(client_id);
        }
        drop(table);
        if let Some(ids) = self.shared.client_ids.get() {
            ids.ended(client_id, live);
        }
        live.done.raise();
    }

    /// The context of the sessions of one gateway.
    pub fn new(
        cache: ConfigCache,
        bus: Bus,
        versions: Arc<VersionCounter>,
        region: impl Into<String>,
        account_id: impl Into<String>,
        router: Router,
        settings: SessionSettings,
    ) -> SessionContext {
        let (region, account_id) = (region.into(), account_id.into());
        SessionContext {
            shared: Arc::new(Shared {
                cache,
                bus,
                versions,
                arn_prefix: format!("arn:aws:iot:{region}:{account_id}:").into(),
                region,
                account_id,
                router,
                settings,
                registry: OnceLock::new(),
                connectivity: OnceLock::new(),
                jobs: OnceLock::new(),
                shadows: OnceLock::new(),
                live: Mutex::new(HashMap::new()),
                persistent: Mutex::new(HashMap::new()),
                sessions: OnceLock::new(),
                pump: OnceLock::new(),
                client_ids: OnceLock::new(),
            }),
        }
    }

    /// Claims client ids with `ids` (the other replicas); only the first
    /// given is used.
    pub(super) fn with_client_ids(self, ids: Arc<dyn ClientIds>) -> SessionContext {
        let _ = self.shared.client_ids.set(ids);
        self
    }

    /// Forgets the persistent session of `client_id` that is away from this
    /// replica (its client resumed it on another), here only; `taken_over`:
    /// its live connection here was just ended for the other replica. What
    /// this replica still writes of it (the end of that session) then
    /// stays here, never over the other replica's record.
    pub(super) fn forget_away(&self, client_id: &str, taken_over: bool) {
        let away = lock(&self.shared.persistent).remove(client_id);
        let store = self.shared.sessions.get();
        if (taken_over || away.is_some())
            && let Some(store) = store
        {
            store.disown(client_id);
        }
        if let Some(mut away) = away {
            away.leave_bus(&self.shared.bus);
            if let Some(store) = store {
                store.remove_later(client_id);
            }
        }
    }

    /// Keeps persistent sessions in `store`, starting with `stored` (what
    /// it held when it was opened), so that they survive a restart. Only
    /// the first store given is used.
    pub fn with_session_store(
        self,
        store: SessionStore,
        stored: HashMap<String, StoredSession>,
    ) -> SessionContext {
        if self.shared.sessions.set(store).is_ok() {
            let now = epoch_millis_now();
            let mut persistent = lock(&self.shared.persistent);
            for (client_id, session) in stored {
                persistent.insert(client_id, Persisted::from_stored(&session, now));
            }
        }
        self
    }

    /// Whether `principal` may connect `client_id` with
    /// `clean_session=false`: it resumes (or takes over) a persistent
    /// session, or the principal holds fewer than
    /// [`SessionSettings::max_persistent_sessions_per_principal`].
    pub(super) fn may_hold_another(&self, client_id: &str, principal: &str) -> bool {
        let live = lock(&self.shared.live);
        if live
            .get(client_id)
            .is_some_and(|l| l.persistent_principal.is_some())
        {
            return true;
        }
        let mut held = live
            .values()
            .filter(|l| l.persistent_principal.as_deref() == Some(principal))
            .count();
        drop(live);
        let away = lock(&self.shared.persistent);
        if away.contains_key(client_id) {
            return true;
        }
        held += away
            .values()
            .filter(|p| p.filters.principal == principal)
            .count();
        held < self.shared.settings.max_persistent_sessions_per_principal
    }

    /// Whether a session away since `persisted.away_since_ms` has expired
    /// at `now_ms`.
    pub(super) fn expired(&self, persisted: &Persisted, now_ms: u64) -> bool {
        let expiry = self.shared.settings.persistent_session_expiry;
        let expiry_ms = u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(persisted.away_since_ms) > expiry_ms
    }

    /// Forgets the persistent sessions whose client has been away longer
    /// than [`SessionSettings::persistent_session_expiry`], and returns how
    /// many. (A client that comes back after that starts afresh anyway;
    /// this frees what they hold.)
    pub fn expire_sessions(&self) -> usize {
        let now = epoch_millis_now();
        let expired: Vec<String> = {
            let mut persistent = lock(&self.shared.persistent);
            let ids: Vec<String> = persistent
                .iter()
                .filter(|(_, p)| self.expired(p, now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                if let Some(mut gone) = persistent.remove(id) {
                    gone.leave_bus(&self.shared.bus);
                }
            }
            ids
        };
        if let Some(store) = self.shared.sessions.get() {
            for id in &expired {
                store.remove_later(id);
            }
        }
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "persistent sessions expired");
        }
        expired.len()
    }

    /// Lets sessions replay the change log (with the registry of
    /// [`with_registry`](Self::with_registry)) for what the bus did not
    /// carry to them: see the module documentation. Only the first pump
    /// given is used.
    pub fn with_event_pump(self, pump: EventPump) -> SessionContext {
        let _ = self.shared.pump.set(pump);
        self
    }

    /// The client ids of the persistent sessions whose client is away.
    pub fn away_sessions(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.shared.persistent).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Associates connections with registry things through `registry`
    /// (see the module documentation). Only the first registry given is
    /// used.
    pub fn with_registry(self, registry: RegistryClient<Tagged>) -> SessionContext {
        let (reports, rx) = tokio::sync::mpsc::channel(CONNECTIVITY_QUEUE);
        if self.shared.connectivity.set(reports).is_ok() {
            tokio::spawn(report_connectivity(registry.clone(), rx));
        }
        let _ = self.shared.registry.set(registry);
        self
    }

    /// Answers the jobs device API with `jobs` (see `jobs`). Only the first
    /// client given is used.
    pub fn with_jobs(self, jobs: JobsClient<Tagged>) -> SessionContext {
        let _ = self.shared.jobs.set(jobs);
        self
    }

    /// Answers the Device Shadow topics with the registry's `Shadows`
    /// service.
    pub fn with_shadows(self, shadows: ShadowsClient<Tagged>) -> SessionContext {
        let _ = self.shared.shadows.set(shadows);
        self
    }

    /// The number of connected client ids.
    pub fn live_sessions(&self) -> usize {
        lock(&self.shared.live).len()
    }

    /// The persistent sessions (`clean_session=false`): connected, and away.
    pub fn persistent_sessions(&self) -> (usize, usize) {
        let live = lock(&self.shared.live)
            .values()
            .filter(|live| live.persistent_principal.is_some())
            .count();
        (live, lock(&self.shared.persistent).len())
    }

    /// Whether `client_id` has a connected session.
    pub fn is_connected(&self, client_id: &str) -> bool {
        lock(&self.shared.live).contains_key(client_id)
    }

    pub(super) fn publish_event(&self, event: LifecycleEvent) {
        // Client ids are checked when the CONNECT is read; this keeps any
        // other way out of events built from one MQTT forbids.
        if !valid_str(&event.session().client_id) {
            tracing::warn!("no lifecycle event for a client id MQTT forbids");
            return;
        }
        self.report_connectivity(&event);
        if let Some((topic, payload)) = event.render() {
            // `iot:Receive` is checked by each receiving session.
            self.shared.bus.publish(&topic, payload);
        }
    }

    /// Tells the registry's fleet index that a client connected or
    /// disconnected (`connectivity.*`), through the context's reporter
    /// ([`report_connectivity`]): a report that does not arrive (a full
    /// queue, a registry that does not answer) leaves the index with the
    /// previous one.
    fn report_connectivity(&self, event: &LifecycleEvent) {
        let report = match event {
            LifecycleEvent::Connected(c) => ConnectivityReport {
                client_id: c.session.client_id.clone(),
                connected: true,
                timestamp_ms: i64::try_from(c.timestamp_ms).unwrap_or(i64::MAX),
                disconnect_reason: None,
            },
            LifecycleEvent::Disconnected(d) => ConnectivityReport {
                client_id: d.session.client_id.clone(),
                connected: false,
                timestamp_ms: i64::try_from(d.timestamp_ms).unwrap_or(i64::MAX),
                disconnect_reason: Some(d.reason.as_str().to_owned()),
            },
            _ => return,
        };
        let Some(reports) = self.shared.connectivity.get() else {
            return;
        };
        if reports.try_send(report).is_err() {
            tracing::debug!("connectivity report queue full; report dropped");
        }
    }
}

/// Reports waiting for the registry, at most: beyond, new ones are dropped.
const CONNECTIVITY_QUEUE: usize = 16_384;
/// Reports sent in one call, at most (the registry takes up to 1,000).
const CONNECTIVITY_BATCH: usize = 500;

/// Sends the connectivity reports queued on `rx` to the registry, in order,
/// as many as are waiting (up to [`CONNECTIVITY_BATCH`]) in each call: one
/// task and one call at a time per gateway partition, however many clients
/// connect at once. Ends when every sender is gone.
async fn report_connectivity(
    mut registry: RegistryClient<Tagged>,
    mut rx: tokio::sync::mpsc::Receiver<ConnectivityReport>,
) {
    let mut batch = Vec::with_capacity(CONNECTIVITY_BATCH);
    while rx.recv_many(&mut batch, CONNECTIVITY_BATCH).await > 0 {
        let reports = std::mem::take(&mut batch);
        if let Err(status) = registry
            .report_connectivity(ReportConnectivityRequest { reports })
            .await
        {
            tracing::debug!(code = ?status.code(), "reporting connectivity to the registry failed");
        }
    }
}

/// A session's place on the `$aws` bus.
pub(super) struct BusLink {
    pub(super) id: SubscriberId,
    pub(super) rx: tokio::sync::mpsc::Receiver<BusDelivery>,
    /// The bus's record of the highest registry event it dropped for it.
    pub(super) dropped: Arc<AtomicU64>,
}

impl BusLink {
    pub(super) fn register(bus: &Bus, capacity: usize) -> BusLink {
        let (id, rx) = bus.register(capacity);
        let dropped = bus.dropped_sequence(id).unwrap_or_default();
        BusLink { id, rx, dropped }
    }
}
