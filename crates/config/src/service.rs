//! The config service's operations, with AWS semantics. Reads go straight to
//! the store; mutations run on the single writer and log a `ConfigEvent` for
//! the gateway's cache. Thing groups and thing principals come from the registry.

use std::{collections::BTreeSet, sync::Arc};

use herald_proto::error::{AwsError, ErrorType};
use herald_runtime::x509;
use herald_store::{ChangeLog, key, now_ms, prefix};

use crate::{
    certs::{self, Ca},
    domain::{
        Arns, Certificate, CertificateMode, CertificateStatus, ConfigEvent, EVENT_TYPES,
        EventConfigurations, MAX_POLICIES_PER_TARGET, MAX_POLICY_VERSIONS, Policy, PolicyVersion,
        Target, check_certificate_id, check_document, check_policy_name, conflict, invalid,
        not_found,
    },
    registry::Registry,
};

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

/// Everything the gateway caches, consistent with one revision of the log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) revision: u64,
    pub(crate) policies: Vec<PolicyState>,
    pub(crate) certificates: Vec<Certificate>,
    pub(crate) attachments: Vec<(String, String)>,
    pub(crate) event_configurations: Vec<(String, bool)>,
}

/// A certificate issued with a new key pair.
pub(crate) struct NewKeys {
    pub(crate) certificate: Certificate,
    pub(crate) private_key_pem: String,
    pub(crate) public_key_pem: String,
}

/// One `TestAuthorization` answer.
pub(crate) struct AuthResult {
    pub(crate) action_type: String,
    pub(crate) resources: Vec<String>,
    pub(crate) decision: herald_policy::Decision,
    pub(crate) allowed: Vec<String>,
    pub(crate) explicit_deny: Vec<String>,
    pub(crate) implicit_deny: Vec<String>,
    pub(crate) missing_context: Vec<String>,
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

fn generation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl ConfigService {
    pub(crate) fn new(
        store: Store,
        writer: Writer,
        log: ChangeLog,
        ca: Ca,
        ctx: Context,
        registry: Registry,
    ) -> ConfigService {
        ConfigService {
            store,
            writer,
            log,
            ca: Arc::new(ca),
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

    // ------------------------------------------------------------ event configurations

    /// Writes the default event configurations at first start.
    pub(crate) async fn initialize(&self) -> Result<(), AwsError> {
        self.writer
            .mutate(|c| {
                if c.get::<EventConfigurations>(EVENT_CONFIG_KEY)?.is_none() {
                    let config = EventConfigurations::new(now_ms());
                    c.put(EVENT_CONFIG_KEY.to_vec(), &config)?;
                    c.log(ConfigEvent::EventConfigurations {
                        enabled: config.enabled,
                    });
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn describe_event_configurations(&self) -> Result<EventConfigurations, AwsError> {
        Ok(self
            .store
            .get(EVENT_CONFIG_KEY)?
            .unwrap_or_else(|| EventConfigurations::new(now_ms())))
    }

    pub(crate) async fn update_event_configurations(
        &self,
        enabled: Vec<(String, bool)>,
    ) -> Result<(), AwsError> {
        if let Some((unknown, _)) = enabled
            .iter()
            .find(|(k, _)| !EVENT_TYPES.contains(&k.as_str()))
        {
            return Err(invalid(format!(
                "{unknown:?} is not an event type; the event types are {}",
                EVENT_TYPES.join(", ")
            )));
        }
        self.writer
            .mutate(move |c| {
                let now = now_ms();
                let mut config = c
                    .get::<EventConfigurations>(EVENT_CONFIG_KEY)?
                    .unwrap_or_else(|| EventConfigurations::new(now));
                config.enabled.extend(enabled);
                config.last_modified_date_ms = now;
                c.put(EVENT_CONFIG_KEY.to_vec(), &config)?;
                c.log(ConfigEvent::EventConfigurations {
                    enabled: config.enabled,
                });
                Ok(())
            })
            .await
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

    // ------------------------------------------------------------ policies

    pub(crate) async fn create_policy(
        &self,
        name: String,
        document: String,
    ) -> Result<Policy, AwsError> {
        check_policy_name(&name)?;
        check_document(&name, &document)?;
        let arn = self.arns().policy(&name);
        self.writer
            .mutate(move |c| {
                if c.exists(&policy_key(&name))? {
                    let mut err = AwsError::new(
                        ErrorType::ResourceAlreadyExists,
                        format!("Policy {name} already exists in this account"),
                    );
                    err.resource_id = Some(name.clone());
                    err.resource_arn = Some(arn);
                    return Err(err);
                }
                let now = now_ms();
                let policy = Policy {
                    name: name.clone(),
                    default_version: 1,
                    next_version: 2,
                    creation_date_ms: now,
                    last_modified_date_ms: now,
                    generation_id: generation_id(),
                };
                c.put(policy_key(&name), &policy)?;
                c.put(
                    version_key(&name, 1),
                    &PolicyVersion {
                        version: 1,
                        document: document.clone(),
                        creation_date_ms: now,
                    },
                )?;
                log_policy(c, &policy, &document);
                Ok(policy)
            })
            .await
    }

    /// A policy and its default version's document.
    pub(crate) fn get_policy(&self, name: &str) -> Result<PolicyState, AwsError> {
        check_policy_name(name)?;
        let c = self.reader();
        let policy = load_policy(&c, name)?;
        let document = load_version(&c, name, policy.default_version)?.document;
        Ok(PolicyState { policy, document })
    }

    /// Every policy name, in name order.
    pub(crate) fn policy_names(&self) -> Result<Vec<String>, AwsError> {
        self.store.keys(&prefix(&["policy"]))
    }

    pub(crate) async fn delete_policy(&self, name: String) -> Result<(), AwsError> {
        check_policy_name(&name)?;
        self.writer
            .mutate(move |c| {
                let policy = load_policy(c, &name)?;
                if !c.keys(&prefix(&["att", &name]))?.is_empty() {
                    return Err(conflict(format!("Policy {name} is attached to one or more targets; detach it first")));
                }
                let versions = c.keys(&prefix(&["pver", &name]))?;
                if versions.len() > 1 {
                    return Err(conflict(format!(
                        "Policy {name} has versions other than its default version; delete them first"
                    )));
                }
                c.remove(policy_key(&name));
                c.remove(version_key(&name, policy.default_version));
                c.log(ConfigEvent::PolicyDeleted { name });
                Ok(())
            })
            .await
    }

    pub(crate) async fn create_policy_version(
        &self,
        name: String,
        document: String,
        set_as_default: bool,
    ) -> Result<(Policy, PolicyVersion), AwsError> {
        check_policy_name(&name)?;
        check_document(&name, &document)?;
        self.writer
            .mutate(move |c| {
                let mut policy = load_policy(c, &name)?;
                if c.keys(&prefix(&["pver", &name]))?.len() >= MAX_POLICY_VERSIONS {
                    return Err(AwsError::new(
                        ErrorType::VersionsLimitExceeded,
                        format!("The policy {name} already has the maximum number of versions ({MAX_POLICY_VERSIONS})"),
                    ));
                }
                let now = now_ms();
                let version = PolicyVersion { version: policy.next_version, document, creation_date_ms: now };
                policy.next_version += 1;
                policy.last_modified_date_ms = now;
                c.put(version_key(&name, version.version), &version)?;
                if set_as_default {
                    policy.default_version = version.version;
                    policy.generation_id = generation_id();
                    log_policy(c, &policy, &version.document);
                }
                c.put(policy_key(&name), &policy)?;
                Ok((policy, version))
            })
            .await
    }

    pub(crate) fn get_policy_version(
        &self,
        name: &str,
        id: &str,
    ) -> Result<(Policy, PolicyVersion), AwsError> {
        check_policy_name(name)?;
        let version = crate::domain::parse_version_id(id)?;
        let c = self.reader();
        let policy = load_policy(&c, name)?;
        Ok((policy, load_version(&c, name, version)?))
    }

    pub(crate) fn list_policy_versions(
        &self,
        name: &str,
    ) -> Result<(Policy, Vec<PolicyVersion>), AwsError> {
        check_policy_name(name)?;
        let policy = load_policy(&self.reader(), name)?;
        let versions = self
            .store
            .iter(&prefix(&["pver", name]), None)
            .map(|entry| entry.and_then(|(_, bytes)| self.store.decode::<PolicyVersion>(&bytes)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((policy, versions))
    }

    pub(crate) async fn set_default_policy_version(
        &self,
        name: String,
        id: String,
    ) -> Result<(), AwsError> {
        check_policy_name(&name)?;
        let version = crate::domain::parse_version_id(&id)?;
        self.writer
            .mutate(move |c| {
                let mut policy = load_policy(c, &name)?;
                let document = load_version(c, &name, version)?.document;
                if policy.default_version != version {
                    policy.default_version = version;
                    policy.last_modified_date_ms = now_ms();
                    policy.generation_id = generation_id();
                    c.put(policy_key(&name), &policy)?;
                    log_policy(c, &policy, &document);
                }
                Ok(())
            })
            .await
    }

    pub(crate) async fn delete_policy_version(
        &self,
        name: String,
        id: String,
    ) -> Result<(), AwsError> {
        check_policy_name(&name)?;
        let version = crate::domain::parse_version_id(&id)?;
        self.writer
            .mutate(move |c| {
                let policy = load_policy(c, &name)?;
                load_version(c, &name, version)?;
                if policy.default_version == version {
                    return Err(conflict(format!(
                        "Version {version} is the default version of policy {name}; it cannot be deleted"
                    )));
                }
                c.remove(version_key(&name, version));
                Ok(())
            })
            .await
    }

    // ------------------------------------------------------------ certificates

    fn new_certificate(
        parsed: &certs::ParsedCertificate,
        status: CertificateStatus,
        ca_id: Option<String>,
        mode: CertificateMode,
    ) -> Certificate {
        let now = now_ms();
        Certificate {
            id: parsed.id.clone(),
            pem: parsed.pem.clone(),
            status,
            ca_id,
            mode,
            creation_date_ms: now,
            last_modified_date_ms: now,
            not_before_ms: parsed.not_before_ms,
            not_after_ms: parsed.not_after_ms,
            customer_version: 1,
            generation_id: generation_id(),
        }
    }

    /// Stores a new certificate; one that is already there is refused.
    async fn add_certificate(&self, certificate: Certificate) -> Result<Certificate, AwsError> {
        let arn = self.arns().certificate(&certificate.id);
        self.writer
            .mutate(move |c| {
                if c.exists(&cert_key(&certificate.id))? {
                    let mut err = AwsError::new(
                        ErrorType::ResourceAlreadyExists,
                        "The certificate is already provisioned or registered",
                    );
                    err.resource_id = Some(certificate.id.clone());
                    err.resource_arn = Some(arn);
                    return Err(err);
                }
                c.put(cert_key(&certificate.id), &certificate)?;
                log_certificate(c, &certificate);
                Ok(certificate)
            })
            .await
    }

    fn active_or_inactive(set_as_active: bool) -> CertificateStatus {
        if set_as_active {
            CertificateStatus::Active
        } else {
            CertificateStatus::Inactive
        }
    }

    pub(crate) async fn create_keys_and_certificate(
        &self,
        set_as_active: bool,
    ) -> Result<NewKeys, AwsError> {
        let issued = self.ca.issue_with_new_key()?;
        let parsed = certs::parse_certificate(&issued.certificate_pem)?;
        let certificate = Self::new_certificate(
            &parsed,
            Self::active_or_inactive(set_as_active),
            Some(self.ca.id().to_owned()),
            CertificateMode::Default,
        );
        let certificate = self.add_certificate(certificate).await?;
        Ok(NewKeys {
            certificate,
            private_key_pem: issued.private_key_pem,
            public_key_pem: issued.public_key_pem,
        })
    }

    pub(crate) async fn create_certificate_from_csr(
        &self,
        csr: &str,
        set_as_active: bool,
    ) -> Result<Certificate, AwsError> {
        let pem = self.ca.issue_from_csr(csr)?;
        let parsed = certs::parse_certificate(&pem)?;
        let certificate = Self::new_certificate(
            &parsed,
            Self::active_or_inactive(set_as_active),
            Some(self.ca.id().to_owned()),
            CertificateMode::Default,
        );
        self.add_certificate(certificate).await
    }

    /// RegisterCertificate: signed by `ca_pem` when given, else by the Herald CA
    /// (the only CA registered with Herald).
    pub(crate) async fn register_certificate(
        &self,
        pem: &str,
        ca_pem: Option<&str>,
        status: CertificateStatus,
    ) -> Result<Certificate, AwsError> {
        let parsed = certs::parse_certificate(pem)?;
        let ca_id = certs::verify_signed_by(&parsed, ca_pem.unwrap_or(self.ca.cert_pem()))?;
        let certificate =
            Self::new_certificate(&parsed, status, Some(ca_id), CertificateMode::Default);
        self.add_certificate(certificate).await
    }

    pub(crate) async fn register_certificate_without_ca(
        &self,
        pem: &str,
        status: CertificateStatus,
    ) -> Result<Certificate, AwsError> {
        let parsed = certs::parse_certificate(pem)?;
        let certificate = Self::new_certificate(&parsed, status, None, CertificateMode::SniOnly);
        self.add_certificate(certificate).await
    }

    pub(crate) async fn update_certificate(
        &self,
        id: String,
        status: CertificateStatus,
    ) -> Result<(), AwsError> {
        check_certificate_id(&id)?;
        let id = id.to_ascii_lowercase();
        if !matches!(
            status,
            CertificateStatus::Active | CertificateStatus::Inactive | CertificateStatus::Revoked
        ) {
            return Err(invalid(
                "A certificate's status can be set to ACTIVE, INACTIVE or REVOKED",
            ));
        }
        self.writer
            .mutate(move |c| {
                let mut cert = load_certificate(c, &id)?;
                if cert.status == CertificateStatus::Revoked && status != CertificateStatus::Revoked {
                    return Err(AwsError::new(
                        ErrorType::CertificateState,
                        format!("Certificate {id} is revoked; a revoked certificate cannot be reactivated"),
                    ));
                }
                if cert.status != status {
                    cert.status = status;
                    cert.last_modified_date_ms = now_ms();
                    cert.customer_version += 1;
                    cert.generation_id = generation_id();
                    c.put(cert_key(&id), &cert)?;
                    log_certificate(c, &cert);
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn describe_certificate(&self, id: &str) -> Result<Certificate, AwsError> {
        check_certificate_id(id)?;
        load_certificate(&self.reader(), &id.to_ascii_lowercase())
    }

    /// Every certificate, by id.
    pub(crate) fn certificates(&self) -> Result<Vec<Certificate>, AwsError> {
        self.store
            .iter(&prefix(&["cert"]), None)
            .map(|entry| entry.and_then(|(_, bytes)| self.store.decode(&bytes)))
            .collect()
    }

    pub(crate) async fn delete_certificate(&self, id: String, force: bool) -> Result<(), AwsError> {
        check_certificate_id(&id)?;
        let id = id.to_ascii_lowercase();
        let arn = self.arns().certificate(&id);
        let things = self.registry.principal_things(&arn).await?;
        self.writer
            .mutate(move |c| {
                let cert = load_certificate(c, &id)?;
                if cert.status == CertificateStatus::Active {
                    return Err(AwsError::new(
                        ErrorType::CertificateState,
                        format!("Certificate {id} is active; deactivate it before deleting it"),
                    ));
                }
                if !things.is_empty() {
                    return Err(conflict(format!(
                        "Certificate {id} is attached to things ({}); detach it first",
                        things.join(", ")
                    )));
                }
                let policies = c.keys(&prefix(&["tgt", &arn]))?;
                if !policies.is_empty() && !force {
                    return Err(conflict(format!(
                        "Certificate {id} has policies attached; detach them first"
                    )));
                }
                for policy in policies {
                    c.remove(key(&["att", &policy, &arn]));
                    c.remove(key(&["tgt", &arn, &policy]));
                    c.log(ConfigEvent::Detached {
                        policy,
                        target: arn.clone(),
                    });
                }
                c.remove(cert_key(&id));
                c.log(ConfigEvent::CertificateDeleted { id });
                Ok(())
            })
            .await
    }

    // ------------------------------------------------------------ attachments

    /// A target ARN, normalized, once its certificate or thing group is known to exist.
    async fn existing_target(&self, target: &str) -> Result<String, AwsError> {
        match self.arns().target(target)? {
            Target::Certificate(id) => {
                load_certificate(&self.reader(), &id)?;
                Ok(self.arns().certificate(&id))
            }
            Target::ThingGroup(name) => match self.registry.thing_group(&name).await? {
                Some(_) => Ok(target.to_owned()),
                None => Err(not_found(format!("Thing group {name} cannot be found."))),
            },
        }
    }

    pub(crate) async fn attach_policy(
        &self,
        policy: String,
        target: String,
    ) -> Result<(), AwsError> {
        check_policy_name(&policy)?;
        let target = self.existing_target(&target).await?;
        self.writer
            .mutate(move |c| {
                load_policy(c, &policy)?;
                if c.exists(&key(&["att", &policy, &target]))? {
                    return Ok(());
                }
                if c.keys(&prefix(&["tgt", &target]))?.len() >= MAX_POLICIES_PER_TARGET {
                    return Err(AwsError::new(
                        ErrorType::LimitExceeded,
                        format!("{target} already has {MAX_POLICIES_PER_TARGET} policies attached, the most a target can have"),
                    ));
                }
                c.put(key(&["att", &policy, &target]), &())?;
                c.put(key(&["tgt", &target, &policy]), &())?;
                c.log(ConfigEvent::Attached { policy, target });
                Ok(())
            })
            .await
    }

    pub(crate) async fn detach_policy(
        &self,
        policy: String,
        target: String,
    ) -> Result<(), AwsError> {
        check_policy_name(&policy)?;
        let target = match self.arns().target(&target)? {
            Target::Certificate(id) => self.arns().certificate(&id),
            Target::ThingGroup(_) => target,
        };
        self.writer
            .mutate(move |c| {
                load_policy(c, &policy)?;
                if c.exists(&key(&["att", &policy, &target]))? {
                    c.remove(key(&["att", &policy, &target]));
                    c.remove(key(&["tgt", &target, &policy]));
                    c.log(ConfigEvent::Detached { policy, target });
                }
                Ok(())
            })
            .await
    }

    /// The thing group ARNs from `group` up to its root.
    async fn group_and_ancestors(&self, group: &str) -> Result<Vec<String>, AwsError> {
        let Some(described) = self.registry.thing_group(group).await? else {
            return Err(not_found(format!("Thing group {group} cannot be found.")));
        };
        let mut arns = vec![described.arn];
        arns.extend(described.ancestor_arns.into_iter().rev());
        Ok(arns)
    }

    /// Policies attached to `target`, and for a thing group with `recursive`,
    /// to its ancestors, each once, in name order.
    pub(crate) async fn attached_policies(
        &self,
        target: &str,
        recursive: bool,
    ) -> Result<Vec<String>, AwsError> {
        let target = self.existing_target(target).await?;
        let targets = match self.arns().target(&target)? {
            Target::ThingGroup(name) if recursive => self.group_and_ancestors(&name).await?,
            _ => vec![target],
        };
        let mut names = BTreeSet::new();
        for target in targets {
            names.extend(self.store.keys(&prefix(&["tgt", &target]))?);
        }
        Ok(names.into_iter().collect())
    }

    pub(crate) fn targets_for_policy(&self, policy: &str) -> Result<Vec<String>, AwsError> {
        check_policy_name(policy)?;
        load_policy(&self.reader(), policy)?;
        self.store.keys(&prefix(&["att", policy]))
    }

    /// The policies in force for a principal (a certificate ARN) and a thing:
    /// those attached to the certificate and to the thing's groups and their ancestors.
    pub(crate) async fn effective_policies(
        &self,
        principal: Option<&str>,
        thing: Option<&str>,
    ) -> Result<Vec<PolicyState>, AwsError> {
        let mut targets = Vec::new();
        if let Some(principal) = principal.filter(|p| !p.is_empty()) {
            match self.arns().target(principal)? {
                Target::Certificate(id) => targets.push(self.arns().certificate(&id)),
                Target::ThingGroup(_) => {
                    return Err(invalid("The principal must be a certificate ARN"));
                }
            }
        }
        if let Some(thing) = thing.filter(|t| !t.is_empty()) {
            targets.extend(self.registry.thing_group_targets(thing).await?);
        }
        let mut names = BTreeSet::new();
        for target in &targets {
            names.extend(self.store.keys(&prefix(&["tgt", target]))?);
        }
        names.iter().map(|name| self.get_policy(name)).collect()
    }

    /// TestAuthorization: evaluates each auth info against the principal's
    /// effective policies (with the thing named by the client id when the
    /// principal is attached to it), plus `add`, minus `skip`.
    pub(crate) async fn test_authorization(
        &self,
        principal: Option<String>,
        client_id: Option<String>,
        auth_infos: Vec<(String, Vec<String>)>,
        add: Vec<String>,
        skip: Vec<String>,
    ) -> Result<Vec<AuthResult>, AwsError> {
        if auth_infos.is_empty() || auth_infos.len() > 10 {
            return Err(invalid("authInfos must have 1 to 10 entries"));
        }
        let mut context = herald_policy::Context::new();
        let mut thing = None;
        if let Some(client_id) = client_id.as_deref().filter(|c| !c.is_empty()) {
            context = context.with_client_id(client_id);
            if is_thing_name(client_id) {
                thing = self.registry.thing(client_id).await?;
            }
        }
        let mut attached = false;
        if let Some(principal) = principal.as_deref().filter(|p| !p.is_empty()) {
            let Target::Certificate(id) = self.arns().target(principal)? else {
                return Err(invalid("The principal must be a certificate ARN"));
            };
            let cert = self.describe_certificate(&id)?;
            let parsed = certs::parse_certificate(&cert.pem)?;
            for (field, values) in x509::by_field(&parsed.subject) {
                context = context.with_subject_field(field, values);
            }
            for (field, values) in x509::by_field(&parsed.issuer) {
                context = context.with_issuer_field(field, values);
            }
            if let Some(t) = &thing {
                let things = self
                    .registry
                    .principal_things(&self.arns().certificate(&id))
                    .await?;
                attached = things.contains(&t.name);
            }
        }
        let thing_for_groups = thing.as_ref().filter(|_| attached).map(|t| t.name.clone());
        if let Some(t) = &thing {
            context = context.with_thing_name(&t.name).with_attached(attached);
            if let Some(type_name) = &t.type_name {
                context = context.with_thing_type_name(type_name);
            }
            for (name, value) in &t.attributes {
                context = context.with_thing_attribute(name, value);
            }
        }
        let mut states = self
            .effective_policies(principal.as_deref(), thing_for_groups.as_deref())
            .await?;
        for name in add {
            if !states.iter().any(|s| s.policy.name == name) {
                states.push(self.get_policy(&name)?);
            }
        }
        states.retain(|s| !skip.contains(&s.policy.name));
        let policies = states
            .iter()
            .map(|s| check_document(&s.policy.name, &s.document))
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<&str> = states.iter().map(|s| s.policy.name.as_str()).collect();
        auth_infos
            .into_iter()
            .map(|(action_type, resources)| {
                evaluate(&policies, &names, &context, action_type, resources)
            })
            .collect()
    }

    // ------------------------------------------------------------ watch

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

/// Whether a client id can name a thing: `[a-zA-Z0-9:_-]+`, 1 to 128.
fn is_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b))
}

fn evaluate(
    policies: &[herald_policy::Policy],
    names: &[&str],
    context: &herald_policy::Context,
    action_type: String,
    resources: Vec<String>,
) -> Result<AuthResult, AwsError> {
    use herald_policy::{Action, Decision, Request, explain};
    let action = match action_type.as_str() {
        "PUBLISH" => Action::Publish,
        "SUBSCRIBE" => Action::Subscribe,
        "RECEIVE" => Action::Receive,
        "CONNECT" => Action::Connect,
        other => {
            return Err(invalid(format!(
                "{other:?} is not an action type: use PUBLISH, SUBSCRIBE, RECEIVE or CONNECT"
            )));
        }
    };
    if resources.is_empty() {
        return Err(invalid("Each authInfo needs at least one resource"));
    }
    let (mut allowed, mut denied, mut missing) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    let mut all_allowed = true;
    for resource in &resources {
        let explanation = explain(policies, &Request::new(action, resource, context));
        all_allowed &= explanation.decision == Decision::Allowed;
        allowed.extend(explanation.allowed_by);
        denied.extend(explanation.denied_by);
        for m in explanation.missing_context {
            if !missing.contains(&m) {
                missing.push(m);
            }
        }
    }
    let decision = if !denied.is_empty() {
        Decision::ExplicitDeny
    } else if all_allowed {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    };
    let pick = |set: &BTreeSet<usize>| set.iter().map(|&i| names[i].to_owned()).collect::<Vec<_>>();
    let implicit = (0..names.len())
        .filter(|i| !allowed.contains(i) && !denied.contains(i))
        .map(|i| names[i].to_owned());
    Ok(AuthResult {
        action_type,
        resources,
        decision,
        allowed: pick(&allowed),
        explicit_deny: pick(&denied),
        implicit_deny: implicit.collect(),
        missing_context: missing,
    })
}
