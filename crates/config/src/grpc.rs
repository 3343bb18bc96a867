//! The tonic adapter: unwrap the request, call the service, convert the result.
//! Wire types stop here.

use std::pin::Pin;

use herald_proto::{
    config::v1::{self as pb, config_server},
    error::AwsError,
    registry::v1 as rpb,
};
use herald_runtime::partition::Partitions;
use herald_store::{Page, Paged, StoreError, WatchError};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    domain::{
        self, CaCertificate, Certificate, CertificateMode, CertificateStatus, ConfigEvent,
        RegistrationConfig,
    },
    service::{CaUpdate, ConfigService, NewCa, PolicyState, Snapshot},
};

/// The `Config` service: each call runs on the partition it names
/// ([`herald_runtime::partition`]).
pub(crate) struct GrpcConfig {
    partitions: Partitions<ConfigService>,
    shutdown: CancellationToken,
    test_mode: bool,
}

impl GrpcConfig {
    pub(crate) fn new(
        partitions: Partitions<ConfigService>,
        shutdown: CancellationToken,
        test_mode: bool,
    ) -> GrpcConfig {
        GrpcConfig {
            partitions,
            shutdown,
            test_mode,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, AwsError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn status_from_wire(status: i32) -> Result<CertificateStatus, Status> {
    Ok(match pb::CertificateStatus::try_from(status) {
        Ok(pb::CertificateStatus::Active) => CertificateStatus::Active,
        Ok(pb::CertificateStatus::Inactive) => CertificateStatus::Inactive,
        Ok(pb::CertificateStatus::Revoked) => CertificateStatus::Revoked,
        Ok(pb::CertificateStatus::PendingTransfer) => CertificateStatus::PendingTransfer,
        Ok(pb::CertificateStatus::RegisterInactive) => CertificateStatus::RegisterInactive,
        Ok(pb::CertificateStatus::PendingActivation) => CertificateStatus::PendingActivation,
        _ => {
            return Err(Status::from(domain::invalid(format!(
                "{status} is not a certificate status"
            ))));
        }
    })
}

fn status_to_wire(status: CertificateStatus) -> i32 {
    let status = match status {
        CertificateStatus::Active => pb::CertificateStatus::Active,
        CertificateStatus::Inactive => pb::CertificateStatus::Inactive,
        CertificateStatus::Revoked => pb::CertificateStatus::Revoked,
        CertificateStatus::PendingTransfer => pb::CertificateStatus::PendingTransfer,
        CertificateStatus::RegisterInactive => pb::CertificateStatus::RegisterInactive,
        CertificateStatus::PendingActivation => pb::CertificateStatus::PendingActivation,
    };
    status as i32
}

fn registration_config_from_wire(config: pb::RegistrationConfig) -> RegistrationConfig {
    RegistrationConfig {
        template_body: config.template_body,
        role_arn: config.role_arn,
        template_name: config.template_name,
    }
}

fn mode_from_wire(mode: &str) -> Result<CertificateMode, Status> {
    match mode {
        "" | "DEFAULT" => Ok(CertificateMode::Default),
        "SNI_ONLY" => Ok(CertificateMode::SniOnly),
        other => Err(Status::from(domain::invalid(format!(
            "certificateMode must be DEFAULT or SNI_ONLY, not {other:?}"
        )))),
    }
}

fn auto_registration_from_wire(status: &str) -> Result<bool, Status> {
    match status {
        "ENABLE" => Ok(true),
        "DISABLE" => Ok(false),
        other => Err(Status::from(domain::invalid(format!(
            "newAutoRegistrationStatus must be ENABLE or DISABLE, not {other:?}"
        )))),
    }
}

fn page_status(err: StoreError) -> Status {
    Status::from(domain::store_error(err))
}

/// AWS's `marker`/`pageSize` paging over a name-ordered listing.
/// A listing key that orders by creation date, oldest first when
/// `ascending` and newest first otherwise, then by name (ListPolicies' and
/// ListCertificates' `ascendingOrder`).
fn creation_key(creation_ms: i64, name: &str, ascending: bool) -> String {
    let ms = u64::try_from(creation_ms).unwrap_or(0);
    let ms = if ascending { ms } else { u64::MAX - ms };
    format!("{ms:020}/{name}")
}

/// One page of `items` in creation order, each keyed by its name.
fn page_by_creation<T>(
    marker: &str,
    page_size: u32,
    ascending: bool,
    items: impl IntoIterator<Item = (i64, String, T)>,
) -> Result<Paged<T>, Status> {
    let page = Page::new(marker, page_size).map_err(page_status)?;
    let mut keyed: Vec<(String, T)> = items
        .into_iter()
        .map(|(ms, name, item)| (creation_key(ms, &name, ascending), item))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let after = page.after().map(str::to_owned);
    let rest = keyed
        .into_iter()
        .filter(|(key, _)| after.as_deref().is_none_or(|a| key.as_str() > a))
        .map(Ok::<_, Status>);
    page.collect(rest)
}

/// Tags as the services keep them: (key, value) in the order given.
fn tags_from_wire(tags: Vec<pb::Tag>) -> Vec<(String, String)> {
    tags.into_iter().map(|t| (t.key, t.value)).collect()
}

fn page_of(marker: &str, page_size: u32, names: Vec<String>) -> Result<Paged<String>, Status> {
    let page = Page::new(marker, page_size).map_err(page_status)?;
    Ok(page.collect_sorted(names.into_iter()))
}

impl GrpcConfig {
    fn arn_of_policy(service: &ConfigService, name: &str) -> String {
        service.arns().policy(name)
    }

    fn policy_summary(service: &ConfigService, name: String) -> pb::PolicySummary {
        pb::PolicySummary {
            policy_arn: Self::arn_of_policy(service, &name),
            policy_name: name,
        }
    }

    /// One page of ListCertificates or ListCertificatesByCA, in creation order.
    fn certificate_page(
        service: &ConfigService,
        marker: &str,
        page_size: u32,
        ascending: bool,
        certs: Vec<Certificate>,
    ) -> Reply<pb::ListCertificatesResponse> {
        let page = page_by_creation(
            marker,
            page_size,
            ascending,
            certs
                .into_iter()
                .map(|c| (c.creation_date_ms, c.id.clone(), c)),
        )?;
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: page
                .items
                .into_iter()
                .map(|c| pb::CertificateSummary {
                    certificate_arn: service.arns().certificate(&c.id),
                    certificate_id: c.id,
                    status: status_to_wire(c.status),
                    certificate_mode: c.mode.as_str().to_owned(),
                    creation_date_ms: c.creation_date_ms,
                })
                .collect(),
            next_marker: page.next_token.unwrap_or_default(),
        }))
    }

    fn ca_certificate_description(
        service: &ConfigService,
        ca: CaCertificate,
    ) -> pb::CaCertificateDescription {
        pb::CaCertificateDescription {
            certificate_arn: service.arns().ca_certificate(&ca.id),
            certificate_id: ca.id,
            status: status_to_wire(ca.status),
            certificate_pem: ca.pem,
            owned_by: service.arns().account.to_owned(),
            creation_date_ms: ca.creation_date_ms,
            auto_registration_status: if ca.auto_registration {
                "ENABLE"
            } else {
                "DISABLE"
            }
            .to_owned(),
            last_modified_date_ms: ca.last_modified_date_ms,
            customer_version: ca.customer_version,
            generation_id: ca.generation_id,
            not_before_ms: ca.not_before_ms,
            not_after_ms: ca.not_after_ms,
            certificate_mode: ca.mode.as_str().to_owned(),
            registration_config: Some(pb::RegistrationConfig {
                template_body: ca.registration_config.template_body,
                role_arn: ca.registration_config.role_arn,
                template_name: ca.registration_config.template_name,
            }),
        }
    }

    fn certificate_description(
        service: &ConfigService,
        c: Certificate,
    ) -> pb::CertificateDescription {
        pb::CertificateDescription {
            certificate_arn: service.arns().certificate(&c.id),
            certificate_id: c.id,
            ca_certificate_id: c.ca_id,
            status: status_to_wire(c.status),
            certificate_pem: c.pem,
            owned_by: service.arns().account.to_owned(),
            creation_date_ms: c.creation_date_ms,
            last_modified_date_ms: c.last_modified_date_ms,
            not_before_ms: c.not_before_ms,
            not_after_ms: c.not_after_ms,
            certificate_mode: c.mode.as_str().to_owned(),
            customer_version: c.customer_version,
            generation_id: c.generation_id,
        }
    }

    fn policy_state(service: &ConfigService, s: PolicyState) -> pb::PolicyState {
        pb::PolicyState {
            policy_arn: Self::arn_of_policy(service, &s.policy.name),
            policy_name: s.policy.name,
            document: s.document,
            default_version_id: s.policy.default_version.to_string(),
        }
    }

    fn certificate_state(
        service: &ConfigService,
        id: String,
        status: CertificateStatus,
        pem: String,
    ) -> pb::CertificateState {
        pb::CertificateState {
            certificate_arn: service.arns().certificate(&id),
            certificate_id: id,
            status: status_to_wire(status),
            certificate_pem: pem,
        }
    }
}

fn snapshot_update(grpc: &WatchContext, s: Snapshot) -> pb::ConfigUpdate {
    pb::ConfigUpdate {
        revision: s.revision,
        change: Some(pb::config_update::Change::Snapshot(pb::ConfigSnapshot {
            policies: s
                .policies
                .into_iter()
                .map(|p| GrpcConfig::policy_state(&grpc.service, p))
                .collect(),
            certificates: s
                .certificates
                .into_iter()
                .map(|c| GrpcConfig::certificate_state(&grpc.service, c.id, c.status, c.pem))
                .collect(),
            attachments: s
                .attachments
                .into_iter()
                .map(|(policy_name, target)| pb::Attachment {
                    policy_name,
                    target,
                })
                .collect(),
            event_configurations: s.event_configurations.into_iter().collect(),
        })),
    }
}

fn event_update(grpc: &WatchContext, revision: u64, event: ConfigEvent) -> pb::ConfigUpdate {
    use pb::config_update::Change;
    let change = match event {
        ConfigEvent::PolicyPut {
            name,
            default_version,
            document,
        } => Change::PolicyPut(pb::PolicyState {
            policy_arn: GrpcConfig::arn_of_policy(&grpc.service, &name),
            policy_name: name,
            document,
            default_version_id: default_version.to_string(),
        }),
        ConfigEvent::PolicyDeleted { name } => Change::PolicyDeleted(name),
        ConfigEvent::CertificatePut { id, status, pem } => Change::CertificatePut(
            GrpcConfig::certificate_state(&grpc.service, id, status, pem),
        ),
        ConfigEvent::CertificateDeleted { id } => Change::CertificateDeleted(id),
        ConfigEvent::Attached { policy, target } => Change::Attached(pb::Attachment {
            policy_name: policy,
            target,
        }),
        ConfigEvent::Detached { policy, target } => Change::Detached(pb::Attachment {
            policy_name: policy,
            target,
        }),
        ConfigEvent::EventConfigurations { enabled } => {
            Change::EventConfigurations(pb::EventConfigurationsState {
                enabled: enabled.into_iter().collect(),
            })
        }
    };
    pb::ConfigUpdate {
        revision,
        change: Some(change),
    }
}

/// What a `WatchConfig` stream follows: a partition's service and the
/// shutdown signal.
struct WatchContext {
    service: ConfigService,
    shutdown: CancellationToken,
}
type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::ConfigUpdate, Status>> + Send>>;

/// Streams a snapshot (unless `after` can be resumed from the log), then every
/// change; a follower that falls out of the retained log gets a new snapshot.
async fn watch(grpc: WatchContext, after: u64, tx: mpsc::Sender<Result<pb::ConfigUpdate, Status>>) {
    let log = grpc.service.log().clone();
    let mut cursor = after;
    let mut resume = after != 0 && log.start(after).is_ok();
    loop {
        if !resume {
            match grpc.service.snapshot().await {
                Ok(snapshot) => {
                    cursor = snapshot.revision;
                    if tx.send(Ok(snapshot_update(&grpc, snapshot))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                    return;
                }
            }
        }
        let (batches_tx, mut batches) = mpsc::channel(4);
        tokio::spawn(log.clone().follow::<ConfigEvent>(
            cursor,
            false,
            batches_tx,
            grpc.shutdown.clone(),
        ));
        resume = true;
        while let Some(batch) = batches.recv().await {
            match batch {
                Ok(records) => {
                    for record in records {
                        if tx
                            .send(Ok(event_update(&grpc, record.sequence, record.event)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Err(WatchError::Store(e)) => {
                    let _ = tx.send(Err(Status::from(domain::store_error(e)))).await;
                    return;
                }
                // Out of range: start again from a snapshot.
                Err(_) => {
                    resume = false;
                    break;
                }
            }
        }
        if resume {
            return;
        }
    }
}

#[tonic::async_trait]
impl config_server::Config for GrpcConfig {
    async fn update_event_configurations(
        &self,
        request: Request<pb::UpdateEventConfigurationsRequest>,
    ) -> Reply<pb::UpdateEventConfigurationsResponse> {
        let service = self.partitions.of(&request)?;
        let enabled = request.into_inner().enabled.into_iter().collect();
        reply(
            service
                .update_event_configurations(enabled)
                .await
                .map(|()| pb::UpdateEventConfigurationsResponse {}),
        )
    }

    async fn describe_event_configurations(
        &self,
        request: Request<pb::DescribeEventConfigurationsRequest>,
    ) -> Reply<pb::DescribeEventConfigurationsResponse> {
        let service = self.partitions.of(&request)?;
        reply(service.describe_event_configurations().map(|c| {
            pb::DescribeEventConfigurationsResponse {
                enabled: c.enabled.into_iter().collect(),
                creation_date_ms: c.creation_date_ms,
                last_modified_date_ms: c.last_modified_date_ms,
            }
        }))
    }

    async fn create_policy(
        &self,
        request: Request<pb::CreatePolicyRequest>,
    ) -> Reply<pb::CreatePolicyResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let document = r.policy_document.clone();
        reply(
            service
                .create_policy(r.policy_name, r.policy_document, tags_from_wire(r.tags))
                .await
                .map(|p| pb::CreatePolicyResponse {
                    policy_arn: Self::arn_of_policy(&service, &p.name),
                    policy_name: p.name,
                    policy_document: document,
                    policy_version_id: p.default_version.to_string(),
                }),
        )
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Reply<pb::GetPolicyResponse> {
        let service = self.partitions.of(&request)?;
        reply(
            service
                .get_policy(&request.into_inner().policy_name)
                .map(|s| pb::GetPolicyResponse {
                    policy_arn: Self::arn_of_policy(&service, &s.policy.name),
                    policy_name: s.policy.name,
                    policy_document: s.document,
                    default_version_id: s.policy.default_version.to_string(),
                    creation_date_ms: s.policy.creation_date_ms,
                    last_modified_date_ms: s.policy.last_modified_date_ms,
                    generation_id: s.policy.generation_id,
                }),
        )
    }

    async fn list_policies(
        &self,
        request: Request<pb::ListPoliciesRequest>,
    ) -> Reply<pb::ListPoliciesResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let policies = service.policies().map_err(Status::from)?;
        let page = page_by_creation(
            &r.marker,
            r.page_size,
            r.ascending_order,
            policies
                .into_iter()
                .map(|p| (p.creation_date_ms, p.name.clone(), p.name)),
        )?;
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: page
                .items
                .into_iter()
                .map(|n| Self::policy_summary(&service, n))
                .collect(),
            next_marker: page.next_token.unwrap_or_default(),
        }))
    }

    async fn delete_policy(
        &self,
        request: Request<pb::DeletePolicyRequest>,
    ) -> Reply<pb::DeletePolicyResponse> {
        let service = self.partitions.of(&request)?;
        reply(
            service
                .delete_policy(request.into_inner().policy_name)
                .await
                .map(|()| pb::DeletePolicyResponse {}),
        )
    }

    async fn create_policy_version(
        &self,
        request: Request<pb::CreatePolicyVersionRequest>,
    ) -> Reply<pb::CreatePolicyVersionResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let created = service
            .create_policy_version(r.policy_name, r.policy_document, r.set_as_default)
            .await;
        reply(created.map(|(p, v)| pb::CreatePolicyVersionResponse {
            policy_arn: Self::arn_of_policy(&service, &p.name),
            policy_document: v.document,
            policy_version_id: v.version.to_string(),
            is_default_version: p.default_version == v.version,
        }))
    }

    async fn get_policy_version(
        &self,
        request: Request<pb::GetPolicyVersionRequest>,
    ) -> Reply<pb::GetPolicyVersionResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            service
                .get_policy_version(&r.policy_name, &r.policy_version_id)
                .map(|(p, v)| pb::GetPolicyVersionResponse {
                    policy_arn: Self::arn_of_policy(&service, &p.name),
                    policy_name: p.name,
                    policy_document: v.document,
                    policy_version_id: v.version.to_string(),
                    is_default_version: p.default_version == v.version,
                    creation_date_ms: v.creation_date_ms,
                    last_modified_date_ms: p.last_modified_date_ms,
                    generation_id: p.generation_id,
                }),
        )
    }

    async fn list_policy_versions(
        &self,
        request: Request<pb::ListPolicyVersionsRequest>,
    ) -> Reply<pb::ListPolicyVersionsResponse> {
        let service = self.partitions.of(&request)?;
        reply(
            service
                .list_policy_versions(&request.into_inner().policy_name)
                .map(|(p, versions)| pb::ListPolicyVersionsResponse {
                    policy_versions: versions
                        .into_iter()
                        .rev()
                        .map(|v| pb::PolicyVersion {
                            version_id: v.version.to_string(),
                            is_default_version: v.version == p.default_version,
                            create_date_ms: v.creation_date_ms,
                        })
                        .collect(),
                }),
        )
    }

    async fn set_default_policy_version(
        &self,
        request: Request<pb::SetDefaultPolicyVersionRequest>,
    ) -> Reply<pb::SetDefaultPolicyVersionResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let done = service
            .set_default_policy_version(r.policy_name, r.policy_version_id)
            .await;
        reply(done.map(|()| pb::SetDefaultPolicyVersionResponse {}))
    }

    async fn delete_policy_version(
        &self,
        request: Request<pb::DeletePolicyVersionRequest>,
    ) -> Reply<pb::DeletePolicyVersionResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let done = service
            .delete_policy_version(r.policy_name, r.policy_version_id)
            .await;
        reply(done.map(|()| pb::DeletePolicyVersionResponse {}))
    }

    async fn create_keys_and_certificate(
        &self,
        request: Request<pb::CreateKeysAndCertificateRequest>,
    ) -> Reply<pb::CreateKeysAndCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let created = service
            .create_keys_and_certificate(request.into_inner().set_as_active)
            .await;
        reply(created.map(|k| pb::CreateKeysAndCertificateResponse {
            certificate_arn: service.arns().certificate(&k.certificate.id),
            certificate_id: k.certificate.id,
            certificate_pem: k.certificate.pem,
            key_pair: Some(pb::KeyPair {
                public_key: k.public_key_pem,
                private_key: k.private_key_pem,
            }),
        }))
    }

    async fn create_certificate_from_csr(
        &self,
        request: Request<pb::CreateCertificateFromCsrRequest>,
    ) -> Reply<pb::CreateCertificateFromCsrResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let created = service
            .create_certificate_from_csr(&r.certificate_signing_request, r.set_as_active)
            .await;
        reply(created.map(|c| pb::CreateCertificateFromCsrResponse {
            certificate_arn: service.arns().certificate(&c.id),
            certificate_id: c.id,
            certificate_pem: c.pem,
        }))
    }

    async fn register_certificate(
        &self,
        request: Request<pb::RegisterCertificateRequest>,
    ) -> Reply<pb::RegisterCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let status = match r.status {
            Some(status) => status_from_wire(status)?,
            None if r.set_as_active => CertificateStatus::Active,
            None => CertificateStatus::Inactive,
        };
        let registered = service
            .register_certificate(&r.certificate_pem, r.ca_certificate_pem.as_deref(), status)
            .await;
        reply(registered.map(|c| pb::RegisterCertificateResponse {
            certificate_arn: service.arns().certificate(&c.id),
            certificate_id: c.id,
        }))
    }

    async fn register_certificate_without_ca(
        &self,
        request: Request<pb::RegisterCertificateWithoutCaRequest>,
    ) -> Reply<pb::RegisterCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let status = match r.status {
            Some(status) => status_from_wire(status)?,
            None => CertificateStatus::Inactive,
        };
        let registered = service
            .register_certificate_without_ca(&r.certificate_pem, status)
            .await;
        reply(registered.map(|c| pb::RegisterCertificateResponse {
            certificate_arn: service.arns().certificate(&c.id),
            certificate_id: c.id,
        }))
    }

    async fn update_certificate(
        &self,
        request: Request<pb::UpdateCertificateRequest>,
    ) -> Reply<pb::UpdateCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let status = status_from_wire(r.new_status)?;
        reply(
            service
                .update_certificate(r.certificate_id, status)
                .await
                .map(|()| pb::UpdateCertificateResponse {}),
        )
    }

    async fn describe_certificate(
        &self,
        request: Request<pb::DescribeCertificateRequest>,
    ) -> Reply<pb::CertificateDescription> {
        let service = self.partitions.of(&request)?;
        let described = service.describe_certificate(&request.into_inner().certificate_id);
        reply(described.map(|c| Self::certificate_description(&service, c)))
    }

    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> Reply<pb::ListCertificatesResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let certs = service.certificates().map_err(Status::from)?;
        Self::certificate_page(&service, &r.marker, r.page_size, r.ascending_order, certs)
    }

    async fn get_registration_code(
        &self,
        request: Request<pb::GetRegistrationCodeRequest>,
    ) -> Reply<pb::GetRegistrationCodeResponse> {
        let service = self.partitions.of(&request)?;
        let code = service.registration_code().await;
        reply(code.map(|registration_code| pb::GetRegistrationCodeResponse { registration_code }))
    }

    async fn register_ca_certificate(
        &self,
        request: Request<pb::RegisterCaCertificateRequest>,
    ) -> Reply<pb::RegisterCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let new = NewCa {
            ca_pem: r.ca_certificate,
            verification_pem: r.verification_certificate,
            set_as_active: r.set_as_active,
            allow_auto_registration: r.allow_auto_registration,
            registration_config: r
                .registration_config
                .map(registration_config_from_wire)
                .unwrap_or_default(),
            mode: mode_from_wire(&r.certificate_mode)?,
            tags: tags_from_wire(r.tags),
        };
        let registered = service.register_ca_certificate(new).await;
        reply(registered.map(|ca| pb::RegisterCertificateResponse {
            certificate_arn: service.arns().ca_certificate(&ca.id),
            certificate_id: ca.id,
        }))
    }

    async fn describe_ca_certificate(
        &self,
        request: Request<pb::DescribeCaCertificateRequest>,
    ) -> Reply<pb::CaCertificateDescription> {
        let service = self.partitions.of(&request)?;
        let described = service.describe_ca_certificate(&request.into_inner().certificate_id);
        reply(described.map(|ca| Self::ca_certificate_description(&service, ca)))
    }

    async fn update_ca_certificate(
        &self,
        request: Request<pb::UpdateCaCertificateRequest>,
    ) -> Reply<pb::UpdateCaCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let update = CaUpdate {
            status: r.new_status.map(status_from_wire).transpose()?,
            auto_registration: r
                .new_auto_registration_status
                .as_deref()
                .map(auto_registration_from_wire)
                .transpose()?,
            registration_config: r.registration_config.map(registration_config_from_wire),
            remove_auto_registration: r.remove_auto_registration,
        };
        let updated = service
            .update_ca_certificate(r.certificate_id, update)
            .await;
        reply(updated.map(|()| pb::UpdateCaCertificateResponse {}))
    }

    async fn delete_ca_certificate(
        &self,
        request: Request<pb::DeleteCaCertificateRequest>,
    ) -> Reply<pb::DeleteCaCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let deleted = service
            .delete_ca_certificate(request.into_inner().certificate_id)
            .await;
        reply(deleted.map(|()| pb::DeleteCaCertificateResponse {}))
    }

    async fn list_ca_certificates(
        &self,
        request: Request<pb::ListCaCertificatesRequest>,
    ) -> Reply<pb::ListCaCertificatesResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let cas = service.ca_certificates().map_err(Status::from)?;
        let page = page_by_creation(
            &r.marker,
            r.page_size,
            r.ascending_order,
            cas.into_iter()
                .filter(|ca| {
                    r.template_name.is_none()
                        || ca.registration_config.template_name == r.template_name
                })
                .map(|ca| (ca.creation_date_ms, ca.id.clone(), ca)),
        )?;
        Ok(Response::new(pb::ListCaCertificatesResponse {
            certificates: page
                .items
                .into_iter()
                .map(|ca| pb::CaCertificateSummary {
                    certificate_arn: service.arns().ca_certificate(&ca.id),
                    certificate_id: ca.id,
                    status: status_to_wire(ca.status),
                    creation_date_ms: ca.creation_date_ms,
                })
                .collect(),
            next_marker: page.next_token.unwrap_or_default(),
        }))
    }

    async fn list_certificates_by_ca(
        &self,
        request: Request<pb::ListCertificatesByCaRequest>,
    ) -> Reply<pb::ListCertificatesResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let certs = service
            .certificates_by_ca(&r.ca_certificate_id)
            .map_err(Status::from)?;
        Self::certificate_page(&service, &r.marker, r.page_size, r.ascending_order, certs)
    }

    async fn auto_register_certificate(
        &self,
        request: Request<pb::AutoRegisterCertificateRequest>,
    ) -> Reply<pb::AutoRegisterCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let pem = crate::certs::pem_encode("CERTIFICATE", &request.into_inner().certificate_der);
        let registered = service.auto_register(&pem).await;
        reply(registered.map(|r| pb::AutoRegisterCertificateResponse {
            certificate_id: r.certificate.id,
            ca_certificate_id: r.ca_id,
            status: status_to_wire(r.certificate.status),
            creation_date_ms: r.certificate.creation_date_ms,
            registered: r.registered,
        }))
    }

    async fn delete_certificate(
        &self,
        request: Request<pb::DeleteCertificateRequest>,
    ) -> Reply<pb::DeleteCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            service
                .delete_certificate(r.certificate_id, r.force_delete)
                .await
                .map(|()| pb::DeleteCertificateResponse {}),
        )
    }

    async fn get_herald_ca(
        &self,
        request: Request<pb::GetHeraldCaRequest>,
    ) -> Reply<pb::GetHeraldCaResponse> {
        let service = self.partitions.of(&request)?;
        let ca = service.ca();
        Ok(Response::new(pb::GetHeraldCaResponse {
            certificate_pem: ca.cert_pem().to_owned(),
            ca_certificate_id: ca.id().to_owned(),
        }))
    }

    async fn issue_server_certificate(
        &self,
        request: Request<pb::IssueServerCertificateRequest>,
    ) -> Reply<pb::IssueServerCertificateResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let ca = service.ca();
        reply(ca.issue_server(&r.dns_names, &r.ip_addresses).map(
            |(certificate_pem, private_key_pem)| pb::IssueServerCertificateResponse {
                certificate_pem,
                private_key_pem,
                ca_certificate_pem: ca.cert_pem().to_owned(),
            },
        ))
    }

    async fn attach_policy(
        &self,
        request: Request<pb::AttachPolicyRequest>,
    ) -> Reply<pb::AttachPolicyResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            service
                .attach_policy(r.policy_name, r.target)
                .await
                .map(|()| pb::AttachPolicyResponse {}),
        )
    }

    async fn detach_policy(
        &self,
        request: Request<pb::DetachPolicyRequest>,
    ) -> Reply<pb::DetachPolicyResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            service
                .detach_policy(r.policy_name, r.target)
                .await
                .map(|()| pb::DetachPolicyResponse {}),
        )
    }

    async fn list_attached_policies(
        &self,
        request: Request<pb::ListAttachedPoliciesRequest>,
    ) -> Reply<pb::ListAttachedPoliciesResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let names = service
            .attached_policies(&r.target, r.recursive)
            .await
            .map_err(Status::from)?;
        let page = page_of(&r.marker, r.page_size, names)?;
        Ok(Response::new(pb::ListAttachedPoliciesResponse {
            policies: page
                .items
                .into_iter()
                .map(|n| Self::policy_summary(&service, n))
                .collect(),
            next_marker: page.next_token.unwrap_or_default(),
        }))
    }

    async fn list_targets_for_policy(
        &self,
        request: Request<pb::ListTargetsForPolicyRequest>,
    ) -> Reply<pb::ListTargetsForPolicyResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let targets = service
            .targets_for_policy(&r.policy_name)
            .map_err(Status::from)?;
        let page = page_of(&r.marker, r.page_size, targets)?;
        Ok(Response::new(pb::ListTargetsForPolicyResponse {
            targets: page.items,
            next_marker: page.next_token.unwrap_or_default(),
        }))
    }

    async fn get_effective_policies(
        &self,
        request: Request<pb::GetEffectivePoliciesRequest>,
    ) -> Reply<pb::GetEffectivePoliciesResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let policies = service
            .effective_policies(r.principal.as_deref(), r.thing_name.as_deref())
            .await;
        reply(policies.map(|states| {
            pb::GetEffectivePoliciesResponse {
                effective_policies: states
                    .into_iter()
                    .map(|s| pb::EffectivePolicy {
                        policy_arn: Self::arn_of_policy(&service, &s.policy.name),
                        policy_name: s.policy.name,
                        policy_document: s.document,
                    })
                    .collect(),
            }
        }))
    }

    async fn test_authorization(
        &self,
        request: Request<pb::TestAuthorizationRequest>,
    ) -> Reply<pb::TestAuthorizationResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let infos = r
            .auth_infos
            .into_iter()
            .map(|i| (i.action_type, i.resources))
            .collect();
        let results = service
            .test_authorization(
                r.principal,
                r.client_id,
                infos,
                r.policy_names_to_add,
                r.policy_names_to_skip,
            )
            .await;
        let refs = |names: Vec<String>| {
            names
                .into_iter()
                .map(|n| pb::PolicyRef {
                    policy_arn: Self::arn_of_policy(&service, &n),
                    policy_name: n,
                })
                .collect()
        };
        reply(results.map(|results| {
            pb::TestAuthorizationResponse {
                auth_results: results
                    .into_iter()
                    .map(|a| pb::AuthResult {
                        auth_info: Some(pb::AuthInfo {
                            action_type: a.action_type,
                            resources: a.resources,
                        }),
                        allowed: refs(a.allowed),
                        implicit_deny: refs(a.implicit_deny),
                        explicit_deny: refs(a.explicit_deny),
                        auth_decision: a.decision.as_str().to_owned(),
                        missing_context_values: a.missing_context,
                    })
                    .collect(),
            }
        }))
    }

    type WatchConfigStream = WatchStream;

    async fn watch_config(&self, request: Request<pb::WatchConfigRequest>) -> Reply<WatchStream> {
        let service = self.partitions.of(&request)?;
        let after = request.into_inner().after_revision;
        let (tx, rx) = mpsc::channel(64);
        let grpc = WatchContext {
            service: service.clone(),
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(watch(grpc, after, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_partitions(
        &self,
        _: Request<pb::ListPartitionsRequest>,
    ) -> Reply<pb::ListPartitionsResponse> {
        let mut partitions: Vec<String> = self
            .partitions
            .all_named()
            .into_iter()
            .map(|(partition, _)| partition.name())
            .collect();
        partitions.sort();
        Ok(Response::new(pb::ListPartitionsResponse { partitions }))
    }

    async fn tag_resource(
        &self,
        request: Request<rpb::TagResourceRequest>,
    ) -> Reply<rpb::TagResourceResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let tags = r.tags.into_iter().map(|t| (t.key, t.value)).collect();
        let tagged = service.tag_resource(r.resource_arn, tags).await;
        reply(tagged.map(|()| rpb::TagResourceResponse {}))
    }

    async fn untag_resource(
        &self,
        request: Request<rpb::UntagResourceRequest>,
    ) -> Reply<rpb::UntagResourceResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let untagged = service.untag_resource(r.resource_arn, r.tag_keys).await;
        reply(untagged.map(|()| rpb::UntagResourceResponse {}))
    }

    async fn list_tags_for_resource(
        &self,
        request: Request<rpb::ListTagsForResourceRequest>,
    ) -> Reply<rpb::ListTagsForResourceResponse> {
        let service = self.partitions.of(&request)?;
        let r = request.into_inner();
        let page = Page::new(&r.next_token, r.max_results).map_err(page_status)?;
        let listed = service.list_tags_for_resource(&r.resource_arn, page);
        reply(listed.map(|p| {
            rpb::ListTagsForResourceResponse {
                tags: p
                    .items
                    .into_iter()
                    .map(|(key, value)| rpb::Tag { key, value })
                    .collect(),
                next_token: p.next_token.unwrap_or_default(),
            }
        }))
    }

    /// Wipes every partition (test mode).
    async fn reset(&self, _: Request<pb::ResetRequest>) -> Reply<pb::ResetResponse> {
        if !self.test_mode {
            return Err(Status::failed_precondition(
                "Reset is served only with the test_mode setting",
            ));
        }
        for service in self.partitions.all() {
            service.reset().await.map_err(Status::from)?;
        }
        Ok(Response::new(pb::ResetResponse {}))
    }
}
