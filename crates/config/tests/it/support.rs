//! Starts the registry and the config service in-process for a test, and the
//! helpers the tests share: clients, errors, ARNs, policy documents, X.509
//! material, a whole-state reading for "nothing changed" checks, and a
//! `WatchConfig` reader with timeouts.

use std::{collections::BTreeMap, future::Future, net::SocketAddr, path::PathBuf, time::Duration};

use herald_proto::{
    config::v1::{self as pb, config_client::ConfigClient, config_update::Change},
    registry::v1::{self as reg, registry_client::RegistryClient},
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

pub(crate) use herald_testkit::{eventually, expect_err};

pub(crate) type Config = ConfigClient<Channel>;
pub(crate) type Registry = RegistryClient<Channel>;

/// The account and region both services name in ARNs (their defaults).
pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const REGION: &str = "us-east-1";

/// The 11 event types, in the model's order.
pub(crate) const EVENT_TYPES: [&str; 11] = [
    "THING",
    "THING_GROUP",
    "THING_TYPE",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
    "THING_TYPE_ASSOCIATION",
    "JOB",
    "JOB_EXECUTION",
    "POLICY",
    "CERTIFICATE",
    "CA_CERTIFICATE",
];

/// How long a test waits for a streamed update before failing.
const STREAM_WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------ services

/// One service running in this process on an ephemeral port.
struct Service {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    async fn spawn<F, Fut>(run: F) -> Service
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, shutdown.clone()));
        Service {
            addr,
            shutdown,
            task,
        }
    }

    /// Stops the service and asserts that it shut down cleanly.
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// The registry and the config service (pointed at it), both in-process,
/// with their data in one temporary folder.
pub(crate) struct Herald {
    registry: Service,
    config: Option<Service>,
    config_settings: herald_config::Settings,
    dir: TempDir,
}

impl Herald {
    pub(crate) async fn start() -> Herald {
        Herald::start_with(|_| {}).await
    }

    /// Starts with the config service's test settings changed by `tweak`.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut herald_config::Settings)) -> Herald {
        let dir = tempfile::tempdir().unwrap();
        let registry_settings = herald_registry::Settings::for_test(dir.path().join("registry"));
        let registry = Service::spawn(|listener, shutdown| {
            herald_registry::run(registry_settings, listener, shutdown)
        })
        .await;
        let mut config_settings = herald_config::Settings::for_test(
            dir.path().join("config"),
            format!("http://{}", registry.addr),
        );
        tweak(&mut config_settings);
        let config = Herald::spawn_config(config_settings.clone()).await;
        Herald {
            registry,
            config: Some(config),
            config_settings,
            dir,
        }
    }

    async fn spawn_config(settings: herald_config::Settings) -> Service {
        Service::spawn(|listener, shutdown| herald_config::run(settings, listener, shutdown)).await
    }

    fn config_addr(&self) -> SocketAddr {
        self.config.as_ref().expect("the config service runs").addr
    }

    /// The config service's data folder.
    pub(crate) fn config_dir(&self) -> PathBuf {
        self.config_settings.data_dir.clone()
    }

    pub(crate) async fn config(&self) -> Config {
        ConfigClient::connect(format!("http://{}", self.config_addr()))
            .await
            .unwrap()
    }

    pub(crate) async fn registry(&self) -> Registry {
        RegistryClient::connect(format!("http://{}", self.registry.addr))
            .await
            .unwrap()
    }

    /// Stops the config service (asserting a clean shutdown) and starts it
    /// again on the same data folder. Clients of the old one must be dropped.
    pub(crate) async fn restart_config(&mut self) {
        self.config.take().unwrap().stop().await;
        self.config = Some(Herald::spawn_config(self.config_settings.clone()).await);
    }

    /// Stops both services, asserting that each shut down cleanly.
    pub(crate) async fn stop(mut self) {
        if let Some(config) = self.config.take() {
            config.stop().await;
        }
        self.registry.stop().await;
        drop(self.dir);
    }
}

// ------------------------------------------------------------ errors and waiting

/// Wall-clock epoch milliseconds, to bracket the dates the service records.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ------------------------------------------------------------ ARNs

pub(crate) fn arn(kind: &str, name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/{name}")
}

pub(crate) fn cert_arn(id: &str) -> String {
    arn("cert", id)
}

pub(crate) fn group_arn(name: &str) -> String {
    arn("thinggroup", name)
}

pub(crate) fn policy_arn(name: &str) -> String {
    arn("policy", name)
}

pub(crate) fn topic_arn(topic: &str) -> String {
    arn("topic", topic)
}

pub(crate) fn topic_filter_arn(filter: &str) -> String {
    arn("topicfilter", filter)
}

pub(crate) fn client_arn(client_id: &str) -> String {
    arn("client", client_id)
}

// ------------------------------------------------------------ policy documents

/// A 2012-10-17 document with these statements.
pub(crate) fn document(statements: &[Value]) -> String {
    json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

pub(crate) fn allow(action: &str, resource: &str) -> Value {
    json!({ "Effect": "Allow", "Action": action, "Resource": resource })
}

pub(crate) fn deny(action: &str, resource: &str) -> Value {
    json!({ "Effect": "Deny", "Action": action, "Resource": resource })
}

/// A valid document whose text tells versions apart.
pub(crate) fn publish_doc(topic: &str) -> String {
    document(&[allow("iot:Publish", &topic_arn(topic))])
}

// ------------------------------------------------------------ config calls

pub(crate) async fn create_policy(c: &mut Config, name: &str, doc: &str) {
    let created = c
        .create_policy(pb::CreatePolicyRequest {
            policy_name: name.into(),
            policy_document: doc.into(),
            tags: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.policy_name, name);
    assert_eq!(created.policy_version_id, "1");
}

pub(crate) async fn get_policy(c: &mut Config, name: &str) -> pb::GetPolicyResponse {
    c.get_policy(pb::GetPolicyRequest {
        policy_name: name.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

pub(crate) async fn create_version(
    c: &mut Config,
    name: &str,
    doc: &str,
    set_as_default: bool,
) -> pb::CreatePolicyVersionResponse {
    c.create_policy_version(pb::CreatePolicyVersionRequest {
        policy_name: name.into(),
        policy_document: doc.into(),
        set_as_default,
    })
    .await
    .unwrap()
    .into_inner()
}

/// A new certificate from the Herald CA; returns (id, ARN, PEM).
pub(crate) async fn create_cert(c: &mut Config, active: bool) -> (String, String, String) {
    let created = c
        .create_keys_and_certificate(pb::CreateKeysAndCertificateRequest {
            set_as_active: active,
        })
        .await
        .unwrap()
        .into_inner();
    (
        created.certificate_id,
        created.certificate_arn,
        created.certificate_pem,
    )
}

pub(crate) async fn describe_cert(c: &mut Config, id: &str) -> pb::CertificateDescription {
    c.describe_certificate(pb::DescribeCertificateRequest {
        certificate_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

pub(crate) async fn set_status(c: &mut Config, id: &str, status: pb::CertificateStatus) {
    c.update_certificate(pb::UpdateCertificateRequest {
        certificate_id: id.into(),
        new_status: status as i32,
    })
    .await
    .unwrap();
}

pub(crate) fn attach_req(policy: &str, target: &str) -> pb::AttachPolicyRequest {
    pb::AttachPolicyRequest {
        policy_name: policy.into(),
        target: target.into(),
    }
}

pub(crate) fn detach_req(policy: &str, target: &str) -> pb::DetachPolicyRequest {
    pb::DetachPolicyRequest {
        policy_name: policy.into(),
        target: target.into(),
    }
}

pub(crate) async fn attach(c: &mut Config, policy: &str, target: &str) {
    c.attach_policy(attach_req(policy, target)).await.unwrap();
}

pub(crate) async fn detach(c: &mut Config, policy: &str, target: &str) {
    c.detach_policy(detach_req(policy, target)).await.unwrap();
}

/// The names ListAttachedPolicies gives, every page walked.
pub(crate) async fn attached_to(c: &mut Config, target: &str, recursive: bool) -> Vec<String> {
    let mut names = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_attached_policies(pb::ListAttachedPoliciesRequest {
                target: target.into(),
                recursive,
                marker,
                page_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        for p in page.policies {
            assert_eq!(p.policy_arn, policy_arn(&p.policy_name));
            names.push(p.policy_name);
        }
        if page.next_marker.is_empty() {
            return names;
        }
        marker = page.next_marker;
    }
}

/// The targets ListTargetsForPolicy gives, every page walked.
pub(crate) async fn targets_of(c: &mut Config, policy: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_targets_for_policy(pb::ListTargetsForPolicyRequest {
                policy_name: policy.into(),
                marker,
                page_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        targets.extend(page.targets);
        if page.next_marker.is_empty() {
            return targets;
        }
        marker = page.next_marker;
    }
}

/// Every policy name, every page walked.
/// Every policy name, every page walked, in name order.
pub(crate) async fn policy_names(c: &mut Config) -> Vec<String> {
    let mut names = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_policies(pb::ListPoliciesRequest {
                marker,
                page_size: 0,
                ascending_order: true,
            })
            .await
            .unwrap()
            .into_inner();
        names.extend(page.policies.into_iter().map(|p| p.policy_name));
        if page.next_marker.is_empty() {
            names.sort();
            return names;
        }
        marker = page.next_marker;
    }
}

/// Every certificate id, every page walked, in id order.
pub(crate) async fn certificate_ids(c: &mut Config) -> Vec<String> {
    let mut ids = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_certificates(pb::ListCertificatesRequest {
                marker,
                page_size: 0,
                ascending_order: true,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.certificates.into_iter().map(|c| c.certificate_id));
        if page.next_marker.is_empty() {
            ids.sort();
            return ids;
        }
        marker = page.next_marker;
    }
}

pub(crate) async fn event_configurations(
    c: &mut Config,
) -> pb::DescribeEventConfigurationsResponse {
    c.describe_event_configurations(pb::DescribeEventConfigurationsRequest {})
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn herald_ca(c: &mut Config) -> pb::GetHeraldCaResponse {
    c.get_herald_ca(pb::GetHeraldCaRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// One policy as the read API shows it: the policy, every version, its targets.
#[derive(Debug, PartialEq)]
pub(crate) struct PolicyReading {
    pub(crate) policy: pb::GetPolicyResponse,
    pub(crate) versions: Vec<pb::GetPolicyVersionResponse>,
    pub(crate) targets: Vec<String>,
}

/// Everything the config service holds, read through its API: compared
/// before and after a refused call to show that it changed nothing.
#[derive(Debug, PartialEq)]
pub(crate) struct State {
    pub(crate) event_configurations: pb::DescribeEventConfigurationsResponse,
    pub(crate) policies: Vec<PolicyReading>,
    pub(crate) certificates: Vec<pb::CertificateDescription>,
}

pub(crate) async fn state(c: &mut Config) -> State {
    let mut policies = Vec::new();
    for name in policy_names(c).await {
        let policy = get_policy(c, &name).await;
        let listed = c
            .list_policy_versions(pb::ListPolicyVersionsRequest {
                policy_name: name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .policy_versions;
        let mut versions = Vec::new();
        for v in listed {
            let version = c
                .get_policy_version(pb::GetPolicyVersionRequest {
                    policy_name: name.clone(),
                    policy_version_id: v.version_id,
                })
                .await
                .unwrap()
                .into_inner();
            versions.push(version);
        }
        let targets = targets_of(c, &name).await;
        policies.push(PolicyReading {
            policy,
            versions,
            targets,
        });
    }
    let mut certificates = Vec::new();
    for id in certificate_ids(c).await {
        certificates.push(describe_cert(c, &id).await);
    }
    State {
        event_configurations: event_configurations(c).await,
        policies,
        certificates,
    }
}

// ------------------------------------------------------------ registry calls

pub(crate) async fn create_thing(r: &mut Registry, name: &str, attributes: &[(&str, &str)]) {
    let attributes: std::collections::HashMap<String, String> = attributes
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    r.create_thing(reg::CreateThingRequest {
        thing_name: name.into(),
        thing_type_name: None,
        attribute_payload: Some(reg::AttributePayload {
            attributes,
            merge: false,
        }),
        billing_group_name: None,
    })
    .await
    .unwrap();
}

pub(crate) async fn create_group(r: &mut Registry, name: &str, parent: Option<&str>) {
    r.create_thing_group(reg::CreateThingGroupRequest {
        thing_group_name: name.into(),
        parent_group_name: parent.map(str::to_owned),
        thing_group_properties: None,
        tags: vec![],
    })
    .await
    .unwrap();
}

pub(crate) async fn add_to_group(r: &mut Registry, thing: &str, group: &str) {
    r.add_thing_to_thing_group(reg::AddThingToThingGroupRequest {
        thing_group_name: Some(group.into()),
        thing_group_arn: None,
        thing_name: Some(thing.into()),
        thing_arn: None,
        override_dynamic_groups: false,
    })
    .await
    .unwrap();
}

pub(crate) async fn attach_thing_principal(r: &mut Registry, thing: &str, principal: &str) {
    r.attach_thing_principal(reg::AttachThingPrincipalRequest {
        thing_principal_type: String::new(),
        thing_name: thing.into(),
        principal: principal.into(),
    })
    .await
    .unwrap();
}

pub(crate) async fn detach_thing_principal(r: &mut Registry, thing: &str, principal: &str) {
    r.detach_thing_principal(reg::DetachThingPrincipalRequest {
        thing_name: thing.into(),
        principal: principal.into(),
    })
    .await
    .unwrap();
}

// ------------------------------------------------------------ X.509

/// The DER of the single certificate (or request) in `pem`.
pub(crate) fn pem_der(pem: &str) -> Vec<u8> {
    let (rest, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    assert!(
        String::from_utf8_lossy(rest).trim().is_empty(),
        "one PEM block expected"
    );
    parsed.contents
}

pub(crate) fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A certificate's id as AWS computes it: the SHA-256 hex of its DER.
pub(crate) fn certificate_id(pem: &str) -> String {
    sha256_hex(&pem_der(pem))
}

/// Runs `check` on the parsed certificate in `pem`.
pub(crate) fn with_cert<T>(pem: &str, check: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = pem_der(pem);
    let (rest, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(rest.is_empty());
    check(&cert)
}

/// The subject's common names, in order.
pub(crate) fn common_names(pem: &str) -> Vec<String> {
    with_cert(pem, |cert| {
        cert.subject()
            .iter_common_name()
            .map(|cn| cn.as_str().unwrap().to_owned())
            .collect()
    })
}

/// Whether `cert_pem` names `ca_pem`'s subject as its issuer and carries a
/// signature that `ca_pem`'s key verifies.
pub(crate) fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let ca_der = pem_der(ca_pem);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    with_cert(cert_pem, |cert| {
        cert.issuer().as_raw() == ca.subject().as_raw()
            && cert.verify_signature(Some(ca.public_key())).is_ok()
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Herald tests");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn leaf_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params
}

/// A certificate authority that is not Herald's.
pub(crate) struct TestCa {
    pub(crate) pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new(common_name: &str) -> TestCa {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// Its private key, PEM PKCS#8.
    pub(crate) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Its certificate id.
    pub(crate) fn id(&self) -> String {
        certificate_id(&self.pem)
    }

    /// A client certificate it signs, with a new key.
    pub(crate) fn issue(&self, common_name: &str) -> String {
        self.sign(leaf_params(common_name))
    }

    /// A certificate it signs that expired long ago.
    pub(crate) fn issue_expired(&self, common_name: &str) -> String {
        let mut params = leaf_params(common_name);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> String {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        params.signed_by(&key, &self.issuer).unwrap().pem()
    }
}

/// A self-signed client certificate.
pub(crate) fn self_signed(common_name: &str) -> String {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    leaf_params(common_name).self_signed(&key).unwrap().pem()
}

/// A PKCS#10 request with this subject CN; returns (request PEM, key).
pub(crate) fn csr(common_name: &str) -> (String, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = leaf_params(common_name)
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    (pem, key)
}

/// A certificate from a CSR with this CN; returns (id, ARN, PEM).
pub(crate) async fn create_cert_with_cn(
    c: &mut Config,
    common_name: &str,
    active: bool,
) -> (String, String, String) {
    let (request, _) = csr(common_name);
    let created = c
        .create_certificate_from_csr(pb::CreateCertificateFromCsrRequest {
            certificate_signing_request: request,
            set_as_active: active,
        })
        .await
        .unwrap()
        .into_inner();
    (
        created.certificate_id,
        created.certificate_arn,
        created.certificate_pem,
    )
}

// ------------------------------------------------------------ WatchConfig

/// A `WatchConfig` stream whose reads time out instead of hanging.
pub(crate) struct Watch {
    stream: tonic::Streaming<pb::ConfigUpdate>,
}

impl Watch {
    pub(crate) async fn open(c: &mut Config, after_revision: u64) -> Watch {
        let stream = c
            .watch_config(pb::WatchConfigRequest { after_revision })
            .await
            .unwrap()
            .into_inner();
        Watch { stream }
    }

    /// The next update; fails the test if none comes in time.
    pub(crate) async fn next(&mut self) -> pb::ConfigUpdate {
        tokio::time::timeout(STREAM_WAIT, self.stream.message())
            .await
            .expect("timed out waiting for a config update")
            .expect("the watch failed")
            .expect("the watch ended")
    }

    /// The next update, which must be a snapshot: (revision, snapshot).
    pub(crate) async fn snapshot(&mut self) -> (u64, pb::ConfigSnapshot) {
        let update = self.next().await;
        match update.change {
            Some(Change::Snapshot(snapshot)) => (update.revision, snapshot),
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }

    /// The next update, which must be a change: (revision, change).
    pub(crate) async fn change(&mut self) -> (u64, Change) {
        let update = self.next().await;
        match update.change {
            Some(Change::Snapshot(_)) => panic!("expected a change, got a snapshot"),
            Some(change) => (update.revision, change),
            None => panic!("an update without a change"),
        }
    }
}

/// Event configurations (as the API gives them) as an ordered map.
pub(crate) fn sorted(map: &std::collections::HashMap<String, bool>) -> BTreeMap<String, bool> {
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

/// Every event type disabled but those named.
pub(crate) fn enabled_only(enabled: &[&str]) -> BTreeMap<String, bool> {
    EVENT_TYPES
        .iter()
        .map(|k| (k.to_string(), enabled.contains(k)))
        .collect()
}
