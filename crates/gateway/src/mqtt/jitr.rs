//! Just-in-time registration (AWS IoT developer guide: "Just-in-time
//! registration of client certificates"): a device presents a certificate
//! Herald does not know, signed by a CA certificate the account registered
//! with auto-registration enabled. The config service registers it as
//! `PENDING_ACTIVATION`; the gateway publishes
//! `$aws/events/certificates/registered/{caCertificateId}` (when the
//! `CA_CERTIFICATE` event configuration is enabled) and refuses the
//! connection. A device presenting a certificate still `PENDING_ACTIVATION`
//! gets the same event again, as on AWS IoT. Once something activates the
//! certificate (and attaches a policy), the device's next connection
//! succeeds.

use std::sync::Arc;

use crate::partition::Tagged;
use herald_proto::config::v1::{self as pb, config_client::ConfigClient};
use serde::Serialize;

use crate::bus::Bus;
use crate::config_cache::ConfigCache;
use crate::mqtt::lifecycle::epoch_millis_now;

/// The topic prefix of the registration event; the CA certificate id follows.
pub(crate) const REGISTERED_TOPIC_PREFIX: &str = "$aws/events/certificates/registered/";

/// How long the refused connection waits for the config service to register
/// its certificate.
const REGISTRATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The event configuration that gates the registration event.
const EVENT_KEY: &str = "CA_CERTIFICATE";

/// The registration event's payload, fields in the AWS documentation's
/// order: `awsAccountId` (not `accountId`), no `eventType` or `eventId`,
/// and `certificateRegistrationTimestamp` a string.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RegisteredEvent<'a> {
    certificate_id: &'a str,
    ca_certificate_id: &'a str,
    timestamp: u64,
    certificate_status: &'static str,
    aws_account_id: &'a str,
    certificate_registration_timestamp: String,
}

/// Registers unknown certificates signed by a registered CA and publishes
/// their event. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Jitr {
    config: ConfigClient<Tagged>,
    bus: Bus,
    cache: ConfigCache,
    account_id: Arc<str>,
}

impl Jitr {
    pub(crate) fn new(
        config: ConfigClient<Tagged>,
        bus: Bus,
        cache: ConfigCache,
        account_id: &str,
    ) -> Jitr {
        Jitr {
            config,
            bus,
            cache,
            account_id: account_id.into(),
        }
    }

    /// A device presented `der`, a certificate Herald does not know or holds
    /// as `PENDING_ACTIVATION`. Registers it if a registered CA with
    /// auto-registration enabled signed it, and publishes the event. The
    /// connection is refused either way (by the caller). True when a CA of
    /// this partition signed it (registered now or before).
    pub(crate) async fn presented(&self, der: &[u8]) -> bool {
        let mut config = self.config.clone();
        let call = config.auto_register_certificate(pb::AutoRegisterCertificateRequest {
            certificate_der: der.to_vec(),
        });
        let Ok(answer) = tokio::time::timeout(REGISTRATION_TIMEOUT, call).await else {
            tracing::warn!(?REGISTRATION_TIMEOUT, "just-in-time registration timed out");
            return false;
        };
        let registered = match answer {
            Ok(registered) => registered.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                tracing::debug!("no registered CA with auto-registration signed the certificate");
                return false;
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "just-in-time registration failed");
                return false;
            }
        };
        tracing::info!(
            certificate_id = registered.certificate_id,
            ca_certificate_id = registered.ca_certificate_id,
            registered_now = registered.registered,
            "certificate registered just in time as PENDING_ACTIVATION"
        );
        if self.cache.event_enabled(EVENT_KEY) {
            let (topic, payload) = render(&registered, &self.account_id, epoch_millis_now());
            self.bus.publish(&topic, payload);
        }
        true
    }
}

/// The registration event's topic and payload.
fn render(
    registered: &pb::AutoRegisterCertificateResponse,
    account_id: &str,
    now_ms: u64,
) -> (String, Vec<u8>) {
    let topic = format!("{REGISTERED_TOPIC_PREFIX}{}", registered.ca_certificate_id);
    let event = RegisteredEvent {
        certificate_id: &registered.certificate_id,
        ca_certificate_id: &registered.ca_certificate_id,
        timestamp: now_ms,
        certificate_status: "PENDING_ACTIVATION",
        aws_account_id: account_id,
        certificate_registration_timestamp: registered.creation_date_ms.to_string(),
    };
    // Serializing plain strings and numbers can't fail.
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    (topic, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_has_aws_fields_in_aws_order() {
        let registered = pb::AutoRegisterCertificateResponse {
            certificate_id: "c1".into(),
            ca_certificate_id: "ca1".into(),
            status: pb::CertificateStatus::PendingActivation as i32,
            creation_date_ms: 1_700_000_000_123,
            registered: true,
        };
        let (topic, payload) = render(&registered, "123456789012", 1_700_000_000_456);
        assert_eq!(topic, "$aws/events/certificates/registered/ca1");
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"certificateId":"c1","caCertificateId":"ca1","timestamp":1700000000456,"certificateStatus":"PENDING_ACTIVATION","awsAccountId":"123456789012","certificateRegistrationTimestamp":"1700000000123"}"#
        );
    }
}
