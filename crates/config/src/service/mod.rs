//! The config service's operations, with AWS semantics. Reads go straight to
//! the store; mutations run on the single writer and log a `ConfigEvent` for
//! the gateway's cache. Thing groups and thing principals come from the registry.
//!
//! This module holds what every operation shares (the service, its keys and
//! loaders); the operations are in one module per concern:
//! `event_configurations`, `policies` (and their versions), `certificates`,
//! `ca_certificates` (registered CAs and just-in-time registration),
//! `attachments` (and the policies in force for a principal and a thing),
//! `authorization` (`TestAuthorization`) and `watch` (the gateway's snapshot).

mod attachments;
mod authorization;
mod ca_certificates;
mod certificates;
mod event_configurations;
mod policies;
mod tags;
mod watch;

use std::sync::Arc;

use herald_proto::error::AwsError;
use herald_store::{ChangeLog, key, now_ms, prefix};

use crate::{
    certs::Ca,
    domain::{
        Arns, Certificate, ConfigEvent, EventConfigurations, Policy, PolicyVersion, not_found,
    },
    registry::Registry,
};

pub(crate) use ca_certificates::{CaUpdate, NewCa};
pub(crate) use watch::Snapshot;

type Changes<'a> = herald_store::Changes<'a, ConfigEvent, AwsError>;
type Store = herald_store::Store<AwsError>;
type Writer = herald_store::Writer<ConfigEvent, AwsError>;

const EVENT_CONFIG_KEY: &[u8] = b"eventcfg";

pub(crate) struct Context {
    pub(crate) account_id: String,
    pub(crate) region: String,
}

#[derive(Clone)]
pub(crate) struct ConfigService {
    store: Store,
    writer: Writer,
    log: ChangeLog,
    ca: Arc<Ca>,
    ctx: Arc<Context>,
    registry: Registry,
}

/// A policy's operative state: its default version's document.
#[derive(Debug, Clone)]
pub(crate) struct PolicyState {
    pub(crate) policy: Policy,
    pub(crate) document: String,
}

fn policy_key(name: &str) -> Vec<u8> {
    key(&["policy", name])
}

fn version_key(name: &str, version: u32) -> Vec<u8> {
    key(&["pver", name, &format!("{version:010}")])
}

fn cert_key(id: &str) -> Vec<u8> {
    key(&["cert", id])
}

fn load_policy(c: &Changes<'_>, name: &str) -> Result<Policy, AwsError> {
    c.get(&policy_key(name))?
        .ok_or_else(|| not_found(format!("Policy {name} cannot be found.")))
}

fn load_version(c: &Changes<'_>, name: &str, version: u32) -> Result<PolicyVersion, AwsError> {
    c.get(&version_key(name, version))?.ok_or_else(|| {
        not_found(format!(
            "Version {version} of policy {name} cannot be found."
        ))
    })
}

fn load_certificate(c: &Changes<'_>, id: &str) -> Result<Certificate, AwsError> {
    c.get(&cert_key(id))?
        .ok_or_else(|| not_found(format!("Certificate {id} cannot be found.")))
}

fn log_policy(c: &mut Changes<'_>, policy: &Policy, document: &str) {
    c.log(ConfigEvent::PolicyPut {
        name: policy.name.clone(),
        default_version: policy.default_version,
        document: document.to_owned(),
    });
}

fn log_certificate(c: &mut Changes<'_>, cert: &Certificate) {
    c.log(ConfigEvent::CertificatePut {
        id: cert.id.clone(),
        status: cert.status,
        pem: cert.pem.clone(),
    });
}

/// `ResourceAlreadyExistsException` naming the resource that is there.
fn already_exists(message: &str, id: &str, arn: String) -> AwsError {
    let mut err = AwsError::new(
        herald_proto::error::ErrorType::ResourceAlreadyExists,
        message,
    );
    err.resource_id = Some(id.to_owned());
    err.resource_arn = Some(arn);
    err
}

fn generation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl ConfigService {
    pub(crate) fn new(
        store: Store,
        writer: Writer,
        log: ChangeLog,
        ca: Arc<Ca>,
        ctx: Context,
        registry: Registry,
    ) -> ConfigService {
        ConfigService {
            store,
            writer,
            log,
            ca,
            ctx: Arc::new(ctx),
            registry,
        }
    }

    pub(crate) fn arns(&self) -> Arns<'_> {
        Arns {
            region: &self.ctx.region,
            account: &self.ctx.account_id,
        }
    }

    pub(crate) fn log(&self) -> &ChangeLog {
        &self.log
    }

    pub(crate) fn ca(&self) -> &Ca {
        &self.ca
    }

    fn reader(&self) -> Changes<'_> {
        herald_store::Changes::new(&self.store)
    }

    /// Removes every policy, certificate and attachment and disables every
    /// event type, logging each removal (test mode). The CA stays.
    pub(crate) async fn reset(&self) -> Result<(), AwsError> {
        self.writer
            .mutate(|c| {
                for entry in c.keys(&prefix(&["att"]))? {
                    if let Some((policy, target)) = entry.split_once('\0') {
                        c.log(ConfigEvent::Detached {
                            policy: policy.to_owned(),
                            target: target.to_owned(),
                        });
                    }
                }
                for name in c.keys(&prefix(&["policy"]))? {
                    c.log(ConfigEvent::PolicyDeleted { name });
                }
                for id in c.keys(&prefix(&["cert"]))? {
                    c.log(ConfigEvent::CertificateDeleted { id });
                }
                c.remove_all_state()?;
                let config = EventConfigurations::new(now_ms());
                c.put(EVENT_CONFIG_KEY.to_vec(), &config)?;
                c.log(ConfigEvent::EventConfigurations {
                    enabled: config.enabled,
                });
                Ok(())
            })
            .await
    }
}
