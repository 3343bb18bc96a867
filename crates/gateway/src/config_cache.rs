//! The gateway's live, in-memory copy of the config service's state: policies
//! (compiled once, when they arrive), certificates, policy attachments and the
//! event configurations, kept current by `WatchConfig`.
//!
//! The MQTT session layer asks it for a certificate's status and the policies
//! of a principal; the event pump asks whether an event type is enabled. Both
//! read synchronously, without I/O: the state sits behind a `RwLock` that the
//! watch task holds only to apply one update (policy documents are compiled
//! before it is taken). A live session subscribes to
//! [`ConfigCache::subscribe_changes`] and re-evaluates when it fires.
//!
//! The watch task starts with a snapshot (`after_revision` 0), applies every
//! change and remembers its revision; when the stream fails or ends it
//! reconnects with an exponential backoff (100 ms doubling to 5 s, reset once
//! an update arrives) and resumes after the last revision it applied. A
//! config service that can't resume from there sends a new snapshot, which
//! replaces everything at once.
//!
//! A hung connection (no FIN, no RST) is only noticed through the channel's
//! HTTP/2 keep-alive; give the channel one when that matters.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard},
    time::Duration,
};

use crate::partition::Tagged;
use herald_policy::Policy;
pub use herald_proto::config::v1::CertificateStatus;
use herald_proto::config::v1::{self as pb, config_client::ConfigClient, config_update};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// The first wait before reconnecting.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A policy as the cache holds it: its default (operative) version.
#[derive(Debug, Clone)]
pub struct CachedPolicy {
    pub arn: String,
    pub default_version_id: String,
    /// The default version's document, as written.
    pub document: Arc<str>,
    /// The document, compiled.
    pub policy: Arc<Policy>,
}

/// A certificate as the cache holds it.
#[derive(Debug, Clone)]
pub struct CachedCertificate {
    pub arn: String,
    pub status: CertificateStatus,
    pub pem: Arc<str>,
}

/// The cache: cheap to clone, every clone sees the same state.
#[derive(Clone)]
pub struct ConfigCache {
    inner: Arc<Inner>,
}

struct Inner {
    state: RwLock<State>,
    /// The revision, sent after each applied update (the state is already
    /// updated when it fires).
    changes: watch::Sender<u64>,
}

impl Default for ConfigCache {
    fn default() -> ConfigCache {
        ConfigCache::new()
    }
}

impl fmt::Debug for ConfigCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("ConfigCache")
            .field("revision", &state.revision)
            .field("ready", &state.ready)
            .field("policies", &state.policies.len())
            .field("certificates", &state.certificates.len())
            .field("targets", &state.attachments.len())
            .finish()
    }
}

impl ConfigCache {
    /// An empty cache, not ready, that nothing updates: [`ConfigCache::run`]
    /// (or [`ConfigCache::apply`], in tests) fills it.
    pub fn new() -> ConfigCache {
        ConfigCache {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// A cache kept current by a task watching `client`'s config service
    /// until `shutdown` is cancelled.
    pub fn spawn(client: ConfigClient<Tagged>, shutdown: CancellationToken) -> ConfigCache {
        let cache = ConfigCache::new();
        tokio::spawn(cache.clone().run(client, shutdown));
        cache
    }

    /// Keeps the cache current until `shutdown` is cancelled: a `WatchConfig`
    /// stream, reopened with a backoff whenever it fails or ends.
    pub async fn run(self, mut client: ConfigClient<Tagged>, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
        loop {
            let after_revision = self.resume_point();
            let opened = tokio::select! {
                () = shutdown.cancelled() => return,
                opened = client.watch_config(pb::WatchConfigRequest { after_revision }) => opened,
            };
            match opened {
                Ok(response) => {
                    tracing::debug!(after_revision, "config watch open");
                    let mut stream = response.into_inner();
                    loop {
                        let message = tokio::select! {
                            () = shutdown.cancelled() => return,
                            message = stream.message() => message,
                        };
                        match message {
                            Ok(Some(update)) => {
                                self.apply(update);
                                backoff.reset();
                            }
                            Ok(None) => {
                                tracing::warn!(
                                    revision = self.revision(),
                                    backoff = ?backoff.current(),
                                    "the config watch ended; reconnecting"
                                );
                                break;
                            }
                            Err(status) => {
                                tracing::warn!(
                                    revision = self.revision(),
                                    code = ?status.code(),
                                    message = status.message(),
                                    backoff = ?backoff.current(),
                                    "the config watch failed; reconnecting"
                                );
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    tracing::warn!(
                        after_revision,
                        code = ?status.code(),
                        message = status.message(),
                        backoff = ?backoff.current(),
                        "could not open the config watch; retrying"
                    );
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = backoff.wait() => {}
            }
        }
    }

    /// Applies one streamed update, then notifies the subscribers. What
    /// [`ConfigCache::run`] does with each update; public so that tests can
    /// drive a cache without a config service.
    pub fn apply(&self, update: pb::ConfigUpdate) {
        // Compile outside the lock: readers wait only for the swap.
        let update = Update::compile(update);
        let applied = {
            let mut state = self
                .inner
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            state.apply(update).then_some(state.revision)
        };
        if let Some(revision) = applied {
            self.inner.changes.send_replace(revision);
        }
    }

    /// Where a new watch starts: after the last revision, or at 0 (a
    /// snapshot) before the first snapshot.
    fn resume_point(&self) -> u64 {
        let state = self.state();
        if state.ready { state.revision } else { 0 }
    }

    fn state(&self) -> RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The config revision the cache is at.
    pub fn revision(&self) -> u64 {
        self.state().revision
    }

    /// Whether a first snapshot has been applied.
    pub fn is_ready(&self) -> bool {
        self.state().ready
    }

    /// Resolves once a first snapshot has been applied (never, while the
    /// config service can't be reached: race it with a timeout or shutdown).
    pub async fn ready(&self) {
        let mut changes = self.subscribe_changes();
        while !self.is_ready() {
            // `self` keeps the sender alive: this can't fail.
            let _ = changes.changed().await;
        }
    }

    /// How many snapshots have been applied: 1 after the start, one more for
    /// each reconnect that could not resume.
    pub fn snapshots(&self) -> u64 {
        self.state().snapshots
    }

    /// A receiver of the revision, marked changed after every applied update
    /// (once the update is visible). Updates that come fast are coalesced.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Whether the event configuration `key` (`"THING"`, ...) is enabled;
    /// false for an unknown key and before the first snapshot.
    pub fn event_enabled(&self, key: &str) -> bool {
        self.state()
            .event_configurations
            .get(key)
            .copied()
            .unwrap_or(false)
    }

    /// A certificate by id.
    pub fn certificate(&self, id: &str) -> Option<CachedCertificate> {
        self.state().certificates.get(id).cloned()
    }

    /// A certificate's status, by id.
    pub fn certificate_status(&self, id: &str) -> Option<CertificateStatus> {
        self.state().certificates.get(id).map(|c| c.status)
    }

    /// A certificate's PEM, by id.
    pub fn certificate_pem(&self, id: &str) -> Option<Arc<str>> {
        self.state().certificates.get(id).map(|c| c.pem.clone())
    }

    /// A policy by name. A policy whose document did not compile is absent.
    pub fn policy(&self, name: &str) -> Option<CachedPolicy> {
        self.state().policies.get(name).cloned()
    }

    /// The compiled policies attached to any of `targets` (a certificate ARN,
    /// thing group ARNs), each once: target by target, by name within one.
    pub fn policies_for_targets(&self, targets: &[&str]) -> Vec<Arc<Policy>> {
        let state = self.state();
        let mut seen: Vec<&str> = Vec::new();
        let mut policies = Vec::new();
        for target in targets {
            let Some(names) = state.attachments.get(*target) else {
                continue;
            };
            for name in names {
                if seen.contains(&name.as_str()) {
                    continue;
                }
                seen.push(name);
                if let Some(policy) = state.policies.get(name) {
                    policies.push(policy.policy.clone());
                }
            }
        }
        policies
    }
}

// ------------------------------------------------------------ the state

#[derive(Debug, Default)]
struct State {
    revision: u64,
    /// A first snapshot has been applied.
    ready: bool,
    snapshots: u64,
    /// By name; only the policies whose document compiled.
    policies: HashMap<String, CachedPolicy>,
    /// By id.
    certificates: HashMap<String, CachedCertificate>,
    /// Target ARN → the names of its policies (never empty).
    attachments: HashMap<String, BTreeSet<String>>,
    event_configurations: HashMap<String, bool>,
}

/// A streamed update with its policy documents compiled, ready to apply.
#[derive(Debug)]
enum Update {
    /// The whole state (not ready, no snapshot counted yet).
    Snapshot(State),
    Change {
        revision: u64,
        change: Change,
    },
}

#[derive(Debug)]
enum Change {
    /// `None`: the document did not compile, the policy is left out.
    PolicyPut(String, Option<CachedPolicy>),
    PolicyDeleted(String),
    CertificatePut(String, CachedCertificate),
    CertificateDeleted(String),
    Attached {
        policy: String,
        target: String,
    },
    Detached {
        policy: String,
        target: String,
    },
    EventConfigurations(HashMap<String, bool>),
    /// A change this gateway doesn't know (from a newer config service):
    /// only the revision advances.
    Unknown,
}

impl Change {
    fn kind(&self) -> &'static str {
        match self {
            Change::PolicyPut(..) => "policy_put",
            Change::PolicyDeleted(_) => "policy_deleted",
            Change::CertificatePut(..) => "certificate_put",
            Change::CertificateDeleted(_) => "certificate_deleted",
            Change::Attached { .. } => "attached",
            Change::Detached { .. } => "detached",
            Change::EventConfigurations(_) => "event_configurations",
            Change::Unknown => "unknown",
        }
    }
}

impl Update {
    fn compile(update: pb::ConfigUpdate) -> Update {
        let revision = update.revision;
        let change = match update.change {
            Some(config_update::Change::Snapshot(snapshot)) => {
                return Update::Snapshot(State::from_snapshot(revision, snapshot));
            }
            Some(config_update::Change::PolicyPut(policy)) => {
                let (name, policy) = compile_policy(policy);
                Change::PolicyPut(name, policy)
            }
            Some(config_update::Change::PolicyDeleted(name)) => Change::PolicyDeleted(name),
            Some(config_update::Change::CertificatePut(certificate)) => {
                let (id, certificate) = certificate_entry(certificate);
                Change::CertificatePut(id, certificate)
            }
            Some(config_update::Change::CertificateDeleted(id)) => Change::CertificateDeleted(id),
            Some(config_update::Change::Attached(a)) => Change::Attached {
                policy: a.policy_name,
                target: a.target,
            },
            Some(config_update::Change::Detached(a)) => Change::Detached {
                policy: a.policy_name,
                target: a.target,
            },
            Some(config_update::Change::EventConfigurations(e)) => {
                Change::EventConfigurations(e.enabled)
            }
            None => Change::Unknown,
        };
        Update::Change { revision, change }
    }
}

fn compile_policy(state: pb::PolicyState) -> (String, Option<CachedPolicy>) {
    match Policy::parse(&state.policy_name, &state.document) {
        Ok(policy) => {
            let cached = CachedPolicy {
                arn: state.policy_arn,
                default_version_id: state.default_version_id,
                document: state.document.into(),
                policy: Arc::new(policy),
            };
            (state.policy_name, Some(cached))
        }
        Err(e) => {
            tracing::warn!(
                policy = %state.policy_name,
                version = %state.default_version_id,
                error = %e,
                "the policy's document does not compile; the policy is left out"
            );
            (state.policy_name, None)
        }
    }
}

fn certificate_entry(state: pb::CertificateState) -> (String, CachedCertificate) {
    let status = CertificateStatus::try_from(state.status).unwrap_or_else(|_| {
        tracing::warn!(
            certificate = %state.certificate_id,
            status = state.status,
            "unknown certificate status"
        );
        CertificateStatus::Unspecified
    });
    let cached = CachedCertificate {
        arn: state.certificate_arn,
        status,
        pem: state.certificate_pem.into(),
    };
    (state.certificate_id, cached)
}

impl State {
    fn from_snapshot(revision: u64, snapshot: pb::ConfigSnapshot) -> State {
        let mut state = State {
            revision,
            event_configurations: snapshot.event_configurations,
            ..State::default()
        };
        for policy in snapshot.policies {
            if let (name, Some(policy)) = compile_policy(policy) {
                state.policies.insert(name, policy);
            }
        }
        for certificate in snapshot.certificates {
            let (id, certificate) = certificate_entry(certificate);
            state.certificates.insert(id, certificate);
        }
        for a in snapshot.attachments {
            state.attach(a.policy_name, a.target);
        }
        state
    }

    /// Applies an update; false when it was ignored (a change before the
    /// first snapshot, or one the cache already has).
    fn apply(&mut self, update: Update) -> bool {
        let (revision, change) = match update {
            Update::Snapshot(mut next) => {
                next.ready = true;
                next.snapshots = self.snapshots + 1;
                tracing::info!(
                    revision = next.revision,
                    policies = next.policies.len(),
                    certificates = next.certificates.len(),
                    targets = next.attachments.len(),
                    "config snapshot applied"
                );
                *self = next;
                return true;
            }
            Update::Change { revision, change } => (revision, change),
        };
        if !self.ready {
            tracing::warn!(revision, "a config change before any snapshot; ignored");
            return false;
        }
        if revision <= self.revision {
            tracing::debug!(
                revision,
                current = self.revision,
                "a config change already applied; ignored"
            );
            return false;
        }
        tracing::debug!(revision, change = change.kind(), "config change");
        self.revision = revision;
        match change {
            Change::PolicyPut(name, Some(policy)) => {
                self.policies.insert(name, policy);
            }
            // Fail closed: the old document is no longer the operative one.
            Change::PolicyPut(name, None) => {
                self.policies.remove(&name);
            }
            Change::PolicyDeleted(name) => {
                self.policies.remove(&name);
                // The config service refuses to delete an attached policy;
                // should one slip through, a later policy of that name must
                // not inherit the attachments.
                self.attachments.retain(|_, names| {
                    names.remove(&name);
                    !names.is_empty()
                });
            }
            Change::CertificatePut(id, certificate) => {
                self.certificates.insert(id, certificate);
            }
            Change::CertificateDeleted(id) => {
                // The detachments come first as their own changes; this only
                // makes sure none outlive the certificate.
                if let Some(certificate) = self.certificates.remove(&id) {
                    self.attachments.remove(&certificate.arn);
                }
            }
            Change::Attached { policy, target } => self.attach(policy, target),
            Change::Detached { policy, target } => {
                if let Some(names) = self.attachments.get_mut(&target) {
                    names.remove(&policy);
                    if names.is_empty() {
                        self.attachments.remove(&target);
                    }
                }
            }
            Change::EventConfigurations(enabled) => self.event_configurations = enabled,
            Change::Unknown => {
                tracing::warn!(
                    revision,
                    "a config change this gateway does not know; only the revision advances"
                );
            }
        }
        true
    }

    fn attach(&mut self, policy: String, target: String) {
        self.attachments.entry(target).or_default().insert(policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "123456789012";
    const REGION: &str = "us-east-1";

    fn arn(kind: &str, name: &str) -> String {
        format!("arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/{name}")
    }

    fn doc(topic: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"iot:Publish","Resource":"{}"}}]}}"#,
            arn("topic", topic)
        )
    }

    fn policy(name: &str, document: &str, version: &str) -> pb::PolicyState {
        pb::PolicyState {
            policy_name: name.into(),
            policy_arn: arn("policy", name),
            document: document.into(),
            default_version_id: version.into(),
        }
    }

    fn cert(id: &str, status: CertificateStatus) -> pb::CertificateState {
        pb::CertificateState {
            certificate_id: id.into(),
            certificate_arn: arn("cert", id),
            status: status as i32,
            certificate_pem: format!("PEM of {id}"),
        }
    }

    fn attachment(policy: &str, target: &str) -> pb::Attachment {
        pb::Attachment {
            policy_name: policy.into(),
            target: target.into(),
        }
    }

    fn events(enabled: &[(&str, bool)]) -> HashMap<String, bool> {
        enabled.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn snapshot(revision: u64, snapshot: pb::ConfigSnapshot) -> pb::ConfigUpdate {
        pb::ConfigUpdate {
            revision,
            change: Some(config_update::Change::Snapshot(snapshot)),
        }
    }

    fn change(revision: u64, change: config_update::Change) -> pb::ConfigUpdate {
        pb::ConfigUpdate {
            revision,
            change: Some(change),
        }
    }

    /// A cache at revision 10: policies p and q, certificates a (active, p
    /// and q attached) and b (inactive), group g (q attached), THING enabled.
    fn loaded() -> ConfigCache {
        let cache = ConfigCache::new();
        cache.apply(snapshot(
            10,
            pb::ConfigSnapshot {
                policies: vec![policy("p", &doc("p"), "1"), policy("q", &doc("q"), "3")],
                certificates: vec![
                    cert("a", CertificateStatus::Active),
                    cert("b", CertificateStatus::Inactive),
                ],
                attachments: vec![
                    attachment("q", &arn("cert", "a")),
                    attachment("p", &arn("cert", "a")),
                    attachment("q", &arn("thinggroup", "g")),
                ],
                event_configurations: events(&[("THING", true), ("POLICY", false)]),
            },
        ));
        cache
    }

    fn names(policies: &[Arc<Policy>]) -> Vec<&str> {
        policies.iter().map(|p| p.name()).collect()
    }

    fn names_for(cache: &ConfigCache, targets: &[&str]) -> Vec<String> {
        names(&cache.policies_for_targets(targets))
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn a_new_cache_is_empty_and_not_ready() {
        let cache = ConfigCache::new();
        assert!(!cache.is_ready());
        assert_eq!(cache.revision(), 0);
        assert_eq!(cache.snapshots(), 0);
        assert!(!cache.event_enabled("THING"));
        assert!(cache.certificate_status("a").is_none());
        assert!(cache.policies_for_targets(&[&arn("cert", "a")]).is_empty());
        let waited = tokio::time::timeout(Duration::from_millis(50), cache.ready()).await;
        assert!(waited.is_err(), "ready() resolved before any snapshot");
    }

    #[tokio::test]
    async fn a_snapshot_fills_the_cache_and_makes_it_ready() {
        let cache = ConfigCache::new();
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.ready().await }
        });
        cache.apply(snapshot(
            10,
            pb::ConfigSnapshot {
                policies: vec![policy("p", &doc("p"), "1"), policy("q", &doc("q"), "3")],
                certificates: vec![cert("a", CertificateStatus::Active)],
                attachments: vec![attachment("p", &arn("cert", "a"))],
                event_configurations: events(&[("THING", true)]),
            },
        ));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("ready() resolves after the snapshot")
            .unwrap();
        assert!(cache.is_ready());
        assert_eq!(cache.revision(), 10);
        assert_eq!(cache.snapshots(), 1);
        assert_eq!(names_for(&cache, &[&arn("cert", "a")]), ["p"]);

        let cache = loaded();
        assert!(cache.event_enabled("THING"));
        assert!(!cache.event_enabled("POLICY"));
        assert!(!cache.event_enabled("JOB"), "an unknown key is disabled");
        assert_eq!(
            cache.certificate_status("a"),
            Some(CertificateStatus::Active)
        );
        assert_eq!(
            cache.certificate_status("b"),
            Some(CertificateStatus::Inactive)
        );
        assert_eq!(cache.certificate_pem("a").as_deref(), Some("PEM of a"));
        assert_eq!(cache.certificate("b").unwrap().arn, arn("cert", "b"));
        assert!(cache.certificate_status("c").is_none());
        let q = cache.policy("q").unwrap();
        assert_eq!(q.default_version_id, "3");
        assert_eq!(&*q.document, doc("q"));
        assert_eq!(q.arn, arn("policy", "q"));
        assert_eq!(q.policy.name(), "q");
    }

    #[test]
    fn policies_for_targets_gives_each_policy_once() {
        let cache = loaded();
        let a = arn("cert", "a");
        let b = arn("cert", "b");
        let g = arn("thinggroup", "g");
        assert_eq!(names_for(&cache, &[&a]), ["p", "q"]);
        assert_eq!(names_for(&cache, &[&g]), ["q"]);
        assert_eq!(names_for(&cache, &[&a, &g]), ["p", "q"]);
        assert_eq!(names_for(&cache, &[&g, &a]), ["q", "p"]);
        assert!(names_for(&cache, &[&b]).is_empty());
        assert!(names_for(&cache, &[]).is_empty());
        assert!(names_for(&cache, &["arn:aws:iot:us-east-1:123456789012:cert/zz"]).is_empty());
    }

    #[test]
    fn a_new_snapshot_replaces_everything() {
        let cache = loaded();
        cache.apply(snapshot(
            7,
            pb::ConfigSnapshot {
                policies: vec![policy("r", &doc("r"), "1")],
                certificates: vec![cert("c", CertificateStatus::Revoked)],
                attachments: vec![attachment("r", &arn("cert", "c"))],
                event_configurations: events(&[("JOB", true)]),
            },
        ));
        assert_eq!(
            cache.revision(),
            7,
            "a snapshot's revision wins, even lower"
        );
        assert_eq!(cache.snapshots(), 2);
        assert!(cache.is_ready());
        assert!(cache.policy("p").is_none() && cache.policy("q").is_none());
        assert!(cache.certificate("a").is_none() && cache.certificate("b").is_none());
        assert!(names_for(&cache, &[&arn("cert", "a")]).is_empty());
        assert!(names_for(&cache, &[&arn("thinggroup", "g")]).is_empty());
        assert_eq!(names_for(&cache, &[&arn("cert", "c")]), ["r"]);
        assert!(!cache.event_enabled("THING"));
        assert!(cache.event_enabled("JOB"));
    }

    #[test]
    fn policy_changes() {
        use config_update::Change as C;
        let cache = loaded();
        let a = arn("cert", "a");

        cache.apply(change(11, C::PolicyPut(policy("r", &doc("r"), "1"))));
        assert_eq!(cache.revision(), 11);
        assert_eq!(&*cache.policy("r").unwrap().document, doc("r"));
        assert!(names_for(&cache, &[&a]).iter().all(|n| n != "r"));

        // A new default version replaces the document and the compiled policy.
        let before = cache.policy("p").unwrap().policy;
        cache.apply(change(12, C::PolicyPut(policy("p", &doc("p2"), "2"))));
        let p = cache.policy("p").unwrap();
        assert_eq!(p.default_version_id, "2");
        assert_eq!(&*p.document, doc("p2"));
        assert!(!Arc::ptr_eq(&before, &p.policy));
        let now = cache.policies_for_targets(&[&a]);
        assert!(now.iter().any(|x| Arc::ptr_eq(x, &p.policy)));

        cache.apply(change(13, C::PolicyDeleted("r".into())));
        assert!(cache.policy("r").is_none());

        // Should an attached policy be deleted, its attachments go with it.
        cache.apply(change(14, C::PolicyDeleted("q".into())));
        assert_eq!(names_for(&cache, &[&a]), ["p"]);
        assert!(names_for(&cache, &[&arn("thinggroup", "g")]).is_empty());
        cache.apply(change(15, C::PolicyPut(policy("q", &doc("q"), "1"))));
        assert_eq!(names_for(&cache, &[&a]), ["p"], "a new q is not attached");
        assert_eq!(cache.revision(), 15);
    }

    #[test]
    fn certificate_changes() {
        use config_update::Change as C;
        let cache = loaded();
        cache.apply(change(
            11,
            C::CertificatePut(cert("c", CertificateStatus::Active)),
        ));
        assert_eq!(
            cache.certificate_status("c"),
            Some(CertificateStatus::Active)
        );
        cache.apply(change(
            12,
            C::CertificatePut(cert("a", CertificateStatus::Revoked)),
        ));
        assert_eq!(
            cache.certificate_status("a"),
            Some(CertificateStatus::Revoked)
        );
        assert_eq!(cache.certificate_pem("a").as_deref(), Some("PEM of a"));
        cache.apply(change(13, C::CertificateDeleted("b".into())));
        assert!(cache.certificate("b").is_none());
        // A deleted certificate takes any attachment left with it.
        cache.apply(change(14, C::CertificateDeleted("a".into())));
        assert!(cache.certificate("a").is_none());
        assert!(names_for(&cache, &[&arn("cert", "a")]).is_empty());
        assert_eq!(names_for(&cache, &[&arn("thinggroup", "g")]), ["q"]);
        // An unknown status is kept as UNSPECIFIED.
        let mut odd = cert("d", CertificateStatus::Active);
        odd.status = 99;
        cache.apply(change(15, C::CertificatePut(odd)));
        assert_eq!(
            cache.certificate_status("d"),
            Some(CertificateStatus::Unspecified)
        );
        assert_eq!(cache.revision(), 15);
    }

    #[test]
    fn attachment_changes() {
        use config_update::Change as C;
        let cache = loaded();
        let b = arn("cert", "b");
        let g = arn("thinggroup", "g");
        cache.apply(change(11, C::Attached(attachment("p", &b))));
        cache.apply(change(12, C::Attached(attachment("q", &b))));
        cache.apply(change(13, C::Attached(attachment("q", &b))));
        assert_eq!(names_for(&cache, &[&b]), ["p", "q"]);
        cache.apply(change(14, C::Detached(attachment("p", &b))));
        assert_eq!(names_for(&cache, &[&b]), ["q"]);
        cache.apply(change(15, C::Detached(attachment("q", &g))));
        assert!(names_for(&cache, &[&g]).is_empty());
        cache.apply(change(16, C::Detached(attachment("q", &g))));
        assert!(!cache.state().attachments.contains_key(&g));
        // A policy attached before it is known (or left out) is skipped.
        cache.apply(change(17, C::Attached(attachment("ghost", &g))));
        assert!(names_for(&cache, &[&g]).is_empty());
        cache.apply(change(18, C::PolicyPut(policy("ghost", &doc("x"), "1"))));
        assert_eq!(names_for(&cache, &[&g]), ["ghost"]);
        assert_eq!(cache.revision(), 18);
    }

    #[test]
    fn event_configuration_changes_replace_every_key() {
        use config_update::Change as C;
        let cache = loaded();
        let enabled = pb::EventConfigurationsState {
            enabled: events(&[("THING", false), ("POLICY", true)]),
        };
        cache.apply(change(11, C::EventConfigurations(enabled)));
        assert!(!cache.event_enabled("THING"));
        assert!(cache.event_enabled("POLICY"));
        let enabled = pb::EventConfigurationsState {
            enabled: events(&[("JOB", true)]),
        };
        cache.apply(change(12, C::EventConfigurations(enabled)));
        assert!(!cache.event_enabled("POLICY"), "a key left out is unknown");
        assert!(cache.event_enabled("JOB"));
    }

    #[test]
    fn a_document_that_does_not_compile_is_left_out() {
        use config_update::Change as C;
        let cache = ConfigCache::new();
        cache.apply(snapshot(
            3,
            pb::ConfigSnapshot {
                policies: vec![policy("bad", "{", "1"), policy("good", &doc("g"), "1")],
                certificates: vec![],
                attachments: vec![
                    attachment("bad", &arn("cert", "a")),
                    attachment("good", &arn("cert", "a")),
                ],
                event_configurations: HashMap::new(),
            },
        ));
        assert!(cache.is_ready());
        assert!(cache.policy("bad").is_none());
        assert_eq!(names_for(&cache, &[&arn("cert", "a")]), ["good"]);
        // A new default version that doesn't compile takes the old one out.
        cache.apply(change(
            4,
            C::PolicyPut(policy("good", r#"{"Version":"x"}"#, "2")),
        ));
        assert_eq!(cache.revision(), 4);
        assert!(cache.policy("good").is_none());
        assert!(names_for(&cache, &[&arn("cert", "a")]).is_empty());
        cache.apply(change(5, C::PolicyPut(policy("good", &doc("g3"), "3"))));
        assert_eq!(names_for(&cache, &[&arn("cert", "a")]), ["good"]);
    }

    #[test]
    fn stale_changes_and_changes_before_a_snapshot_are_ignored() {
        use config_update::Change as C;
        let cache = ConfigCache::new();
        cache.apply(change(1, C::PolicyPut(policy("p", &doc("p"), "1"))));
        assert!(!cache.is_ready());
        assert_eq!(cache.revision(), 0);
        assert!(cache.policy("p").is_none());

        let cache = loaded();
        let mut changes = cache.subscribe_changes();
        changes.mark_unchanged();
        cache.apply(change(10, C::PolicyDeleted("p".into())));
        cache.apply(change(9, C::PolicyDeleted("q".into())));
        assert!(cache.policy("p").is_some() && cache.policy("q").is_some());
        assert_eq!(cache.revision(), 10);
        assert!(
            !changes.has_changed().unwrap(),
            "an ignored change notifies nobody"
        );
    }

    #[test]
    fn a_change_without_a_known_kind_only_advances_the_revision() {
        let cache = loaded();
        cache.apply(pb::ConfigUpdate {
            revision: 11,
            change: None,
        });
        assert_eq!(cache.revision(), 11);
        assert_eq!(names_for(&cache, &[&arn("cert", "a")]), ["p", "q"]);
    }

    #[test]
    fn subscribers_are_told_the_revision_once_the_update_is_visible() {
        use config_update::Change as C;
        let cache = loaded();
        let mut changes = cache.subscribe_changes();
        assert_eq!(*changes.borrow_and_update(), 10);
        cache.apply(change(11, C::PolicyPut(policy("r", &doc("r"), "1"))));
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 11);
        assert!(cache.policy("r").is_some());
        // Fast updates coalesce: the receiver sees the latest revision.
        cache.apply(change(12, C::PolicyDeleted("r".into())));
        cache.apply(change(13, C::CertificateDeleted("b".into())));
        assert_eq!(*changes.borrow_and_update(), 13);
        // A snapshot notifies too, even at the same revision.
        cache.apply(snapshot(13, pb::ConfigSnapshot::default()));
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 13);
        assert!(cache.policy("p").is_none());
    }
}
