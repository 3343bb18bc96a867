//! Who a connection acts for ([`Principal`]): how it authenticated, the
//! targets and names of the policies that apply to it, and the certificate
//! fields its policies may name (AWS IoT Core Developer Guide: "Policy
//! variables for X.509 certificates").

use herald_policy::{CertField, Context};

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// An X.509 client certificate (TLS); `id` is the certificate id.
    Certificate,
    /// A username and password from the settings (development); `id` is
    /// the configured principal name.
    Password,
    /// A SigV4 signature with an access key (MQTT over WebSockets); `id` is
    /// the access key id, and the IoT policy named after it applies.
    AccessKey,
}

/// Who a connection acts for, and where its policies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The certificate id, or the configured name of a password principal:
    /// the lifecycle events' `principalIdentifier`.
    pub id: String,
    /// How it authenticated.
    pub kind: PrincipalKind,
    /// Policy attachment targets: the certificate ARN, plus the ARNs of the
    /// groups (and their ancestors) of the thing the connection is
    /// associated with; their attached policies apply.
    pub policy_targets: Vec<String>,
    /// Policies that apply by name, whatever they are attached to (the
    /// password principals of the settings).
    pub policy_names: Vec<String>,
    /// The client certificate's subject fields, in certificate order (the
    /// `iot:Certificate.Subject.*` policy variables); empty without one.
    pub subject: Vec<(CertField, String)>,
    /// The client certificate's issuer fields (`iot:Certificate.Issuer.*`).
    pub issuer: Vec<(CertField, String)>,
}

impl Principal {
    /// The principal of a registered, active client certificate: its id,
    /// its ARN (the policy attachment target) and its subject and issuer
    /// fields (what the TLS listener's `CertificatePrincipal` holds).
    pub fn certificate(
        certificate_id: impl Into<String>,
        certificate_arn: impl Into<String>,
        subject: Vec<(CertField, String)>,
        issuer: Vec<(CertField, String)>,
    ) -> Principal {
        Principal {
            id: certificate_id.into(),
            kind: PrincipalKind::Certificate,
            policy_targets: vec![certificate_arn.into()],
            policy_names: Vec::new(),
            subject,
            issuer,
        }
    }

    /// The principal of a WebSocket connection signed with `access_key_id`:
    /// the IoT policy of that name applies to it.
    pub(crate) fn access_key(access_key_id: &str) -> Principal {
        Principal {
            id: access_key_id.to_owned(),
            kind: PrincipalKind::AccessKey,
            policy_targets: Vec::new(),
            policy_names: vec![access_key_id.to_owned()],
            subject: Vec::new(),
            issuer: Vec::new(),
        }
    }

    /// The policy context of this principal on a connection.
    pub(super) fn context(&self, client_id: &str, ip: std::net::IpAddr) -> Context {
        let mut context = Context::new()
            .with_client_id(client_id.to_owned())
            .with_source_ip(ip);
        for field in CertField::ALL {
            let values = |fields: &[(CertField, String)]| -> Vec<String> {
                fields
                    .iter()
                    .filter(|(f, _)| *f == field)
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            let subject = values(&self.subject);
            if !subject.is_empty() {
                context = context.with_subject_field(field, subject);
            }
            let issuer = values(&self.issuer);
            if !issuer.is_empty() {
                context = context.with_issuer_field(field, issuer);
            }
        }
        context
    }
}
