//! What the gateway caches, read in one piece (`WatchConfig`'s snapshot).

use herald_proto::error::AwsError;
use herald_store::{now_ms, prefix};

use super::{
    ConfigService, EVENT_CONFIG_KEY, PolicyState, load_certificate, load_policy, load_version,
};
use crate::domain::{Certificate, EventConfigurations};

/// Everything the gateway caches, consistent with one revision of the log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) revision: u64,
    pub(crate) policies: Vec<PolicyState>,
    pub(crate) certificates: Vec<Certificate>,
    pub(crate) attachments: Vec<(String, String)>,
    pub(crate) event_configurations: Vec<(String, bool)>,
}

impl ConfigService {
    /// Everything the gateway caches, read on the writer so that it matches one revision.
    pub(crate) async fn snapshot(&self) -> Result<Snapshot, AwsError> {
        self.writer
            .mutate(|c| {
                let mut snapshot = Snapshot {
                    revision: c.last_sequence(),
                    ..Snapshot::default()
                };
                for name in c.keys(&prefix(&["policy"]))? {
                    let policy = load_policy(c, &name)?;
                    let document = load_version(c, &name, policy.default_version)?.document;
                    snapshot.policies.push(PolicyState { policy, document });
                }
                for id in c.keys(&prefix(&["cert"]))? {
                    snapshot.certificates.push(load_certificate(c, &id)?);
                }
                for entry in c.keys(&prefix(&["att"]))? {
                    if let Some((policy, target)) = entry.split_once('\0') {
                        snapshot
                            .attachments
                            .push((policy.to_owned(), target.to_owned()));
                    }
                }
                let config = c
                    .get::<EventConfigurations>(EVENT_CONFIG_KEY)?
                    .unwrap_or_else(|| EventConfigurations::new(now_ms()));
                snapshot.event_configurations = config.enabled.into_iter().collect();
                Ok(snapshot)
            })
            .await
    }
}
