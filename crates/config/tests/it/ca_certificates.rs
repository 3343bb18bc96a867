//! CA certificates and just-in-time registration through the gRPC API.

use herald_proto::{config::v1::*, error::ErrorType};

use crate::support::{Config, Herald, TestCa, describe_cert, expect_err, pem_der};

async fn register_ca(c: &mut Config, ca: &TestCa, active: bool, auto: bool) {
    let code = c
        .get_registration_code(GetRegistrationCodeRequest {})
        .await
        .unwrap()
        .into_inner()
        .registration_code;
    c.register_ca_certificate(RegisterCaCertificateRequest {
        ca_certificate: ca.pem.clone(),
        verification_certificate: Some(ca.issue(&code)),
        set_as_active: active,
        allow_auto_registration: auto,
        registration_config: None,
        certificate_mode: String::new(),
        tags: Vec::new(),
    })
    .await
    .unwrap();
}

fn auto_req(pem: &str) -> AutoRegisterCertificateRequest {
    AutoRegisterCertificateRequest {
        certificate_der: pem_der(pem),
    }
}

#[tokio::test]
async fn a_device_certificate_from_an_auto_registering_ca_is_registered_pending_activation_once() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let fleet = TestCa::new("Fleet CA");
    register_ca(&mut c, &fleet, true, true).await;

    let device = fleet.issue("device-1");
    let first = c
        .auto_register_certificate(auto_req(&device))
        .await
        .unwrap()
        .into_inner();
    assert!(first.registered);
    assert_eq!(first.ca_certificate_id, fleet.id());
    assert_eq!(first.status, CertificateStatus::PendingActivation as i32);
    let described = describe_cert(&mut c, &first.certificate_id).await;
    assert_eq!(
        described.status,
        CertificateStatus::PendingActivation as i32
    );
    assert_eq!(
        described.ca_certificate_id.as_deref(),
        Some(fleet.id().as_str())
    );

    // Presented again while pending: the same certificate, not registered anew.
    let again = c
        .auto_register_certificate(auto_req(&device))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.registered);
    assert_eq!(again.certificate_id, first.certificate_id);
    assert_eq!(again.creation_date_ms, first.creation_date_ms);

    // Once active, it is no longer Herald's to register.
    c.update_certificate(UpdateCertificateRequest {
        certificate_id: first.certificate_id.clone(),
        new_status: CertificateStatus::Active as i32,
    })
    .await
    .unwrap();
    expect_err(
        c.auto_register_certificate(auto_req(&device)).await,
        ErrorType::CertificateState,
    );
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn nothing_is_registered_without_an_active_auto_registering_ca() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let inactive = TestCa::new("Inactive CA");
    register_ca(&mut c, &inactive, false, true).await;
    let manual = TestCa::new("Manual CA");
    register_ca(&mut c, &manual, true, false).await;
    let stranger = TestCa::new("Unregistered CA");

    for ca in [&inactive, &manual, &stranger] {
        let device = ca.issue("device");
        expect_err(
            c.auto_register_certificate(auto_req(&device)).await,
            ErrorType::ResourceNotFound,
        );
        let listed = c
            .list_certificates(ListCertificatesRequest {
                marker: String::new(),
                page_size: 0,
                ascending_order: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(listed.certificates.is_empty(), "{listed:?}");
    }
    drop(c);
    herald.stop().await;
}
