//! Certificates: issued by the Herald CA, from CSRs, registered with and
//! without a CA; status transitions, listing, deletion rules, and the CA itself.

use herald_proto::{config::v1::*, error::ErrorType};
use rcgen::{KeyPair, PKCS_RSA_SHA256, PublicKeyData};

use crate::support::{
    Config, Herald, TestCa, attach, attach_thing_principal, cert_arn, certificate_id,
    certificate_ids, common_names, create_cert, create_policy, create_thing, csr, describe_cert,
    detach_thing_principal, expect_err, herald_ca, now_ms, pem_der, publish_doc, self_signed,
    set_status, signed_by, state, targets_of, with_cert,
};

use CertificateStatus::{Active, Inactive, Revoked};

// ------------------------------------------------------------ helpers

fn register_req(pem: &str, ca_pem: Option<&str>) -> RegisterCertificateRequest {
    RegisterCertificateRequest {
        certificate_pem: pem.into(),
        ca_certificate_pem: ca_pem.map(str::to_owned),
        set_as_active: false,
        status: None,
    }
}

fn without_ca_req(
    pem: &str,
    status: Option<CertificateStatus>,
) -> RegisterCertificateWithoutCaRequest {
    RegisterCertificateWithoutCaRequest {
        certificate_pem: pem.into(),
        status: status.map(|s| s as i32),
    }
}

fn update_req(id: &str, status: i32) -> UpdateCertificateRequest {
    UpdateCertificateRequest {
        certificate_id: id.into(),
        new_status: status,
    }
}

fn delete_req(id: &str, force_delete: bool) -> DeleteCertificateRequest {
    DeleteCertificateRequest {
        certificate_id: id.into(),
        force_delete,
    }
}

fn describe_req(id: &str) -> DescribeCertificateRequest {
    DescribeCertificateRequest {
        certificate_id: id.into(),
    }
}

async fn register(
    c: &mut Config,
    request: RegisterCertificateRequest,
) -> RegisterCertificateResponse {
    c.register_certificate(request).await.unwrap().into_inner()
}

fn status_of(d: &CertificateDescription) -> CertificateStatus {
    CertificateStatus::try_from(d.status).unwrap()
}

/// Ids that are not 64 hexadecimal characters.
fn malformed_ids() -> Vec<String> {
    vec![
        String::new(),
        "abc".into(),
        "a".repeat(63),
        "a".repeat(65),
        "g".repeat(64),
        format!("{}-", "a".repeat(63)),
    ]
}

// ------------------------------------------------------------ CreateKeysAndCertificate

#[tokio::test]
async fn create_keys_and_certificate_issues_an_rsa_2048_certificate_from_the_herald_ca() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let ca = herald_ca(&mut c).await;

    let before = now_ms();
    let created = c
        .create_keys_and_certificate(CreateKeysAndCertificateRequest {
            set_as_active: false,
        })
        .await
        .unwrap()
        .into_inner();
    let after = now_ms();

    let pem = &created.certificate_pem;
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(created.certificate_id, certificate_id(pem));
    assert_eq!(created.certificate_id.len(), 64);
    assert_eq!(created.certificate_arn, cert_arn(&created.certificate_id));
    assert!(
        signed_by(pem, &ca.certificate_pem),
        "not from the Herald CA"
    );
    assert_eq!(common_names(pem), ["AWS IoT Certificate"]);

    // The key pair is a 2048-bit RSA one, as AWS IoT issues, and the certificate's.
    let keys = created.key_pair.expect("a key pair");
    assert!(keys.private_key.contains("-----BEGIN PRIVATE KEY-----"));
    assert!(keys.public_key.contains("-----BEGIN PUBLIC KEY-----"));
    let key = KeyPair::from_pem(&keys.private_key).unwrap();
    assert_eq!(key.algorithm(), &PKCS_RSA_SHA256);
    let bits = with_cert(pem, |cert| match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
        _ => 0,
    });
    assert_eq!(bits, 2048);
    let spki = with_cert(pem, |cert| cert.public_key().raw.to_vec());
    assert_eq!(key.subject_public_key_info(), spki);
    assert_eq!(pem_der(&keys.public_key), spki);

    let described = describe_cert(&mut c, &created.certificate_id).await;
    assert_eq!(described.certificate_id, created.certificate_id);
    assert_eq!(described.certificate_arn, created.certificate_arn);
    assert_eq!(status_of(&described), Inactive);
    assert_eq!(
        described.ca_certificate_id.as_deref(),
        Some(ca.ca_certificate_id.as_str())
    );
    assert_eq!(described.certificate_pem, *pem);
    assert_eq!(described.certificate_mode, "DEFAULT");
    assert_eq!(described.owned_by, crate::support::ACCOUNT);
    assert!((before..=after).contains(&described.creation_date_ms));
    let (not_before, not_after) = with_cert(pem, |cert| {
        (
            cert.validity().not_before.timestamp() * 1000,
            cert.validity().not_after.timestamp() * 1000,
        )
    });
    assert_eq!(described.not_before_ms, not_before);
    assert_eq!(described.not_after_ms, not_after);
    assert!(not_before <= before && after < not_after);

    // setAsActive makes it ACTIVE; every certificate is new.
    let (active, _, active_pem) = create_cert(&mut c, true).await;
    assert_eq!(status_of(&describe_cert(&mut c, &active).await), Active);
    assert_ne!(active, created.certificate_id);
    assert!(signed_by(&active_pem, &ca.certificate_pem));
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ the Herald CA

#[tokio::test]
async fn the_herald_ca_is_written_to_ca_pem_and_kept_across_a_restart() {
    let mut herald = Herald::start().await;
    let mut c = herald.config().await;
    let ca = herald_ca(&mut c).await;
    let on_disk = std::fs::read_to_string(herald.config_dir().join("ca.pem")).unwrap();
    assert_eq!(on_disk, ca.certificate_pem);
    assert_eq!(ca.ca_certificate_id, certificate_id(&ca.certificate_pem));
    assert!(with_cert(&ca.certificate_pem, |cert| cert.is_ca()));
    let (id, _, pem) = create_cert(&mut c, false).await;
    drop(c);

    herald.restart_config().await;
    let mut c = herald.config().await;
    let again = herald_ca(&mut c).await;
    assert_eq!(again, ca);
    let on_disk = std::fs::read_to_string(herald.config_dir().join("ca.pem")).unwrap();
    assert_eq!(on_disk, ca.certificate_pem);

    // Certificates issued before the restart are still known and still chain.
    let described = describe_cert(&mut c, &id).await;
    assert_eq!(described.certificate_pem, pem);
    assert_eq!(
        described.ca_certificate_id,
        Some(ca.ca_certificate_id.clone())
    );
    let (_, _, new_pem) = create_cert(&mut c, false).await;
    assert!(signed_by(&new_pem, &ca.certificate_pem));
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_configured_ca_is_loaded_and_written_to_ca_pem() {
    let files = tempfile::tempdir().unwrap();
    let own_ca = TestCa::new("Own CA");
    let cert_file = files.path().join("own-ca.pem");
    let key_file = files.path().join("own-ca.key");
    std::fs::write(&cert_file, &own_ca.pem).unwrap();
    std::fs::write(&key_file, own_ca.key_pem()).unwrap();
    let herald = Herald::start_with(|settings| {
        settings.ca.cert_file = Some(cert_file.clone());
        settings.ca.key_file = Some(key_file.clone());
    })
    .await;
    let mut c = herald.config().await;

    let ca = herald_ca(&mut c).await;
    assert_eq!(ca.certificate_pem, own_ca.pem);
    assert_eq!(ca.ca_certificate_id, own_ca.id());
    let on_disk = std::fs::read_to_string(herald.config_dir().join("ca.pem")).unwrap();
    assert_eq!(on_disk, own_ca.pem);

    let (id, _, pem) = create_cert(&mut c, false).await;
    assert!(signed_by(&pem, &own_ca.pem));
    assert_eq!(
        describe_cert(&mut c, &id).await.ca_certificate_id,
        Some(own_ca.id())
    );
    // Its certificates are the ones RegisterCertificate takes without a CA PEM.
    let issued = own_ca.issue("device");
    let registered = register(&mut c, register_req(&issued, None)).await;
    assert_eq!(registered.certificate_id, certificate_id(&issued));
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn issue_server_certificate_signs_with_the_herald_ca_without_registering_it() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let ca = herald_ca(&mut c).await;
    let issued = c
        .issue_server_certificate(IssueServerCertificateRequest {
            dns_names: vec!["localhost".into()],
            ip_addresses: vec!["127.0.0.1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(signed_by(&issued.certificate_pem, &ca.certificate_pem));
    assert_eq!(issued.ca_certificate_pem, ca.certificate_pem);
    assert!(issued.private_key_pem.contains("PRIVATE KEY"));
    assert!(certificate_ids(&mut c).await.is_empty());

    let err = c
        .issue_server_certificate(IssueServerCertificateRequest {
            dns_names: vec![],
            ip_addresses: vec![],
        })
        .await;
    expect_err(err, ErrorType::InvalidRequest);
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ CreateCertificateFromCsr

#[tokio::test]
async fn create_certificate_from_csr_keeps_the_subject_and_key_and_signs_with_the_herald_ca() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let ca = herald_ca(&mut c).await;
    let (request, key) = csr("sensor-7");

    let created = c
        .create_certificate_from_csr(CreateCertificateFromCsrRequest {
            certificate_signing_request: request,
            set_as_active: true,
        })
        .await
        .unwrap()
        .into_inner();
    let pem = &created.certificate_pem;
    assert_eq!(created.certificate_id, certificate_id(pem));
    assert_eq!(created.certificate_arn, cert_arn(&created.certificate_id));
    assert_eq!(common_names(pem), ["sensor-7"]);
    let organization = with_cert(pem, |cert| {
        cert.subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    });
    assert_eq!(organization, ["Herald tests"]);
    let spki = with_cert(pem, |cert| cert.public_key().raw.to_vec());
    assert_eq!(spki, key.subject_public_key_info());
    assert!(signed_by(pem, &ca.certificate_pem));

    let described = describe_cert(&mut c, &created.certificate_id).await;
    assert_eq!(status_of(&described), Active);
    assert_eq!(described.ca_certificate_id, Some(ca.ca_certificate_id));
    assert_eq!(described.certificate_mode, "DEFAULT");

    let (request, _) = csr("sensor-8");
    let inactive = c
        .create_certificate_from_csr(CreateCertificateFromCsrRequest {
            certificate_signing_request: request,
            set_as_active: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status_of(&describe_cert(&mut c, &inactive.certificate_id).await),
        Inactive
    );
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_csr_that_does_not_parse_or_verify_is_refused() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let ca = herald_ca(&mut c).await;
    let before = state(&mut c).await;

    // A request whose signature no longer verifies.
    let (good, _) = csr("tampered");
    let mut der = pem_der(&good);
    *der.last_mut().unwrap() ^= 0x01;
    let tampered = pem_of("CERTIFICATE REQUEST", &der);

    for bad in [
        String::new(),
        "garbage".to_owned(),
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".to_owned(),
        ca.certificate_pem.clone(),
        tampered,
        format!("{good}{good}"),
    ] {
        let err = c
            .create_certificate_from_csr(CreateCertificateFromCsrRequest {
                certificate_signing_request: bad.clone(),
                set_as_active: true,
            })
            .await;
        expect_err(err, ErrorType::InvalidRequest);
        assert_eq!(state(&mut c).await, before, "{bad:?} changed something");
    }
    drop(c);
    herald.stop().await;
}

/// PEM with 64-character base64 lines (a small encoder: no base64 crate here).
fn pem_of(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

// ------------------------------------------------------------ RegisterCertificate

#[tokio::test]
async fn register_certificate_accepts_a_certificate_signed_by_the_given_ca() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let test_ca = TestCa::new("Test CA");
    let pem = test_ca.issue("device-1");

    let registered = register(&mut c, register_req(&pem, Some(&test_ca.pem))).await;
    assert_eq!(registered.certificate_id, certificate_id(&pem));
    assert_eq!(
        registered.certificate_arn,
        cert_arn(&registered.certificate_id)
    );
    let described = describe_cert(&mut c, &registered.certificate_id).await;
    assert_eq!(status_of(&described), Inactive, "the default is INACTIVE");
    assert_eq!(described.ca_certificate_id, Some(test_ca.id()));
    assert_eq!(described.certificate_mode, "DEFAULT");
    assert_eq!(
        certificate_id(&described.certificate_pem),
        registered.certificate_id
    );
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn register_certificate_without_a_ca_pem_accepts_only_the_herald_cas_certificates() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let ca = herald_ca(&mut c).await;

    // A Herald-issued certificate deleted, then registered again with no CA PEM.
    let (id, _, pem) = create_cert(&mut c, false).await;
    c.delete_certificate(delete_req(&id, false)).await.unwrap();
    let registered = register(&mut c, register_req(&pem, None)).await;
    assert_eq!(registered.certificate_id, id);
    assert_eq!(
        describe_cert(&mut c, &id).await.ca_certificate_id,
        Some(ca.ca_certificate_id.clone())
    );

    // Anything else is not signed by the Herald CA.
    let before = state(&mut c).await;
    let test_ca = TestCa::new("Herald CA");
    for foreign in [test_ca.issue("device-2"), self_signed("device-3")] {
        expect_err(
            c.register_certificate(register_req(&foreign, None)).await,
            ErrorType::CertificateValidation,
        );
        assert_eq!(state(&mut c).await, before);
    }
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn register_certificate_refuses_a_ca_that_did_not_sign_it() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let ca = herald_ca(&mut c).await;
    let signer = TestCa::new("Signer CA");
    let other = TestCa::new("Other CA");
    let same_name = TestCa::new("Signer CA");
    let pem = signer.issue("device-1");
    let (_, _, issued_pem) = create_cert(&mut c, false).await;
    let before = state(&mut c).await;

    for ca_pem in [
        other.pem.as_str(),
        same_name.pem.as_str(),
        ca.certificate_pem.as_str(),
        "not a certificate",
    ] {
        expect_err(
            c.register_certificate(register_req(&pem, Some(ca_pem)))
                .await,
            ErrorType::CertificateValidation,
        );
        assert_eq!(state(&mut c).await, before);
    }
    // A leaf is no CA, even for itself.
    expect_err(
        c.register_certificate(register_req(&pem, Some(&pem))).await,
        ErrorType::CertificateValidation,
    );
    // The Herald CA's certificate checked against another CA.
    expect_err(
        c.register_certificate(register_req(&issued_pem, Some(&signer.pem)))
            .await,
        ErrorType::CertificateValidation,
    );
    assert_eq!(state(&mut c).await, before);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn register_certificate_refuses_invalid_and_expired_certificates() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let test_ca = TestCa::new("Test CA");
    let before = state(&mut c).await;

    for bad in [
        String::new(),
        "garbage".to_owned(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
        test_ca.issue_expired("old-device"),
    ] {
        expect_err(
            c.register_certificate(register_req(&bad, Some(&test_ca.pem)))
                .await,
            ErrorType::CertificateValidation,
        );
        expect_err(
            c.register_certificate(register_req(&bad, None)).await,
            ErrorType::CertificateValidation,
        );
        expect_err(
            c.register_certificate_without_ca(without_ca_req(&bad, None))
                .await,
            ErrorType::CertificateValidation,
        );
        assert_eq!(state(&mut c).await, before, "{bad:?} changed something");
    }
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn register_certificate_status_wins_over_set_as_active() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let test_ca = TestCa::new("Test CA");
    let cases = [
        (false, None, Inactive),
        (true, None, Active),
        (true, Some(Inactive), Inactive),
        (false, Some(Active), Active),
        (true, Some(Revoked), Revoked),
    ];
    for (i, (set_as_active, status, expected)) in cases.into_iter().enumerate() {
        let pem = test_ca.issue(&format!("device-{i}"));
        let registered = register(
            &mut c,
            RegisterCertificateRequest {
                certificate_pem: pem,
                ca_certificate_pem: Some(test_ca.pem.clone()),
                set_as_active,
                status: status.map(|s| s as i32),
            },
        )
        .await;
        let described = describe_cert(&mut c, &registered.certificate_id).await;
        assert_eq!(
            status_of(&described),
            expected,
            "setAsActive {set_as_active}, status {status:?}"
        );
    }
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_certificate_already_there_cannot_be_registered_again() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let test_ca = TestCa::new("Test CA");
    let (issued_id, _, issued_pem) = create_cert(&mut c, true).await;
    let pem = test_ca.issue("device-1");
    register(&mut c, register_req(&pem, Some(&test_ca.pem))).await;
    let sni = self_signed("sni-device");
    c.register_certificate_without_ca(without_ca_req(&sni, None))
        .await
        .unwrap();
    let before = state(&mut c).await;

    let err = expect_err(
        c.register_certificate(register_req(&issued_pem, None))
            .await,
        ErrorType::ResourceAlreadyExists,
    );
    assert_eq!(err.resource_id.as_deref(), Some(issued_id.as_str()));
    expect_err(
        c.register_certificate(RegisterCertificateRequest {
            status: Some(Inactive as i32),
            ..register_req(&pem, Some(&test_ca.pem))
        })
        .await,
        ErrorType::ResourceAlreadyExists,
    );
    for again in [&issued_pem, &pem, &sni] {
        expect_err(
            c.register_certificate_without_ca(without_ca_req(again, Some(Inactive)))
                .await,
            ErrorType::ResourceAlreadyExists,
        );
    }
    assert_eq!(state(&mut c).await, before);
    assert_eq!(status_of(&describe_cert(&mut c, &issued_id).await), Active);
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ RegisterCertificateWithoutCA

#[tokio::test]
async fn register_certificate_without_ca_takes_any_issuer_in_sni_only_mode() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let test_ca = TestCa::new("Unregistered CA");

    let pem = self_signed("sni-1");
    let registered = c
        .register_certificate_without_ca(without_ca_req(&pem, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.certificate_id, certificate_id(&pem));
    assert_eq!(
        registered.certificate_arn,
        cert_arn(&registered.certificate_id)
    );
    let described = describe_cert(&mut c, &registered.certificate_id).await;
    assert_eq!(described.certificate_mode, "SNI_ONLY");
    assert_eq!(status_of(&described), Inactive);
    assert_eq!(described.ca_certificate_id, None);

    let pem = test_ca.issue("sni-2");
    let registered = c
        .register_certificate_without_ca(without_ca_req(&pem, Some(Active)))
        .await
        .unwrap()
        .into_inner();
    let described = describe_cert(&mut c, &registered.certificate_id).await;
    assert_eq!(status_of(&described), Active);
    assert_eq!(described.certificate_mode, "SNI_ONLY");
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ UpdateCertificate

#[tokio::test]
async fn update_certificate_moves_between_active_inactive_and_revoked() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (id, _, _) = create_cert(&mut c, false).await;
    let created = describe_cert(&mut c, &id).await;

    for status in [Active, Inactive, Active, Inactive] {
        let before = now_ms();
        set_status(&mut c, &id, status).await;
        let after = now_ms();
        let described = describe_cert(&mut c, &id).await;
        assert_eq!(status_of(&described), status);
        assert!((before..=after).contains(&described.last_modified_date_ms));
        assert_eq!(described.creation_date_ms, created.creation_date_ms);
        assert_eq!(described.certificate_pem, created.certificate_pem);
    }
    // The same status again is a success.
    set_status(&mut c, &id, Inactive).await;
    assert_eq!(status_of(&describe_cert(&mut c, &id).await), Inactive);

    set_status(&mut c, &id, Revoked).await;
    assert_eq!(status_of(&describe_cert(&mut c, &id).await), Revoked);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_revoked_certificate_stays_revoked() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (id, _, _) = create_cert(&mut c, true).await;
    set_status(&mut c, &id, Revoked).await;
    let before = state(&mut c).await;

    for status in [Active, Inactive] {
        expect_err(
            c.update_certificate(update_req(&id, status as i32)).await,
            ErrorType::CertificateState,
        );
        assert_eq!(state(&mut c).await, before);
    }
    assert_eq!(status_of(&describe_cert(&mut c, &id).await), Revoked);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn update_certificate_refuses_other_target_statuses() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (id, _, _) = create_cert(&mut c, true).await;
    let before = state(&mut c).await;

    for status in [
        CertificateStatus::PendingTransfer as i32,
        CertificateStatus::RegisterInactive as i32,
        CertificateStatus::PendingActivation as i32,
        CertificateStatus::Unspecified as i32,
        42,
    ] {
        expect_err(
            c.update_certificate(update_req(&id, status)).await,
            ErrorType::InvalidRequest,
        );
        assert_eq!(
            state(&mut c).await,
            before,
            "status {status} changed something"
        );
    }
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ ids

#[tokio::test]
async fn malformed_certificate_ids_are_invalid_and_unknown_ones_not_found() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (id, _, _) = create_cert(&mut c, false).await;
    let before = state(&mut c).await;

    for bad in malformed_ids() {
        expect_err(
            c.describe_certificate(describe_req(&bad)).await,
            ErrorType::InvalidRequest,
        );
        expect_err(
            c.update_certificate(update_req(&bad, Active as i32)).await,
            ErrorType::InvalidRequest,
        );
        expect_err(
            c.delete_certificate(delete_req(&bad, true)).await,
            ErrorType::InvalidRequest,
        );
    }
    let unknown = if id.starts_with('0') { "1" } else { "0" }.repeat(64);
    expect_err(
        c.describe_certificate(describe_req(&unknown)).await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        c.update_certificate(update_req(&unknown, Active as i32))
            .await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        c.delete_certificate(delete_req(&unknown, true)).await,
        ErrorType::ResourceNotFound,
    );
    assert_eq!(state(&mut c).await, before);
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ ListCertificates

#[tokio::test]
async fn list_certificates_pages_in_id_order() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut expected = Vec::new();
    for i in 0..5 {
        let (id, _, _) = create_cert(&mut c, i % 2 == 0).await;
        expected.push((id, if i % 2 == 0 { Active } else { Inactive }));
    }
    let sni = self_signed("sni");
    let sni_id = c
        .register_certificate_without_ca(without_ca_req(&sni, None))
        .await
        .unwrap()
        .into_inner()
        .certificate_id;
    expected.push((sni_id.clone(), Inactive));
    expected.sort();

    let mut pages = Vec::new();
    let mut order = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_certificates(ListCertificatesRequest {
                marker,
                page_size: 2,
                ascending_order: true,
            })
            .await
            .unwrap()
            .into_inner();
        let mut ids = Vec::new();
        for summary in page.certificates {
            assert_eq!(summary.certificate_arn, cert_arn(&summary.certificate_id));
            let mode = if summary.certificate_id == sni_id {
                "SNI_ONLY"
            } else {
                "DEFAULT"
            };
            assert_eq!(summary.certificate_mode, mode);
            assert!(summary.creation_date_ms > 0);
            order.push((summary.creation_date_ms, summary.certificate_id.clone()));
            ids.push((
                summary.certificate_id,
                CertificateStatus::try_from(summary.status).unwrap(),
            ));
        }
        pages.push(ids);
        if page.next_marker.is_empty() {
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
    let mut listed = pages.concat();
    listed.sort();
    assert_eq!(listed, expected);
    // Ascending creation order, equal creation dates by id.
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    // Without ascendingOrder: newest first.
    let newest_first: Vec<(i64, String)> = c
        .list_certificates(ListCertificatesRequest {
            marker: String::new(),
            page_size: 250,
            ascending_order: false,
        })
        .await
        .unwrap()
        .into_inner()
        .certificates
        .into_iter()
        .map(|s| (s.creation_date_ms, s.certificate_id))
        .collect();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    assert_eq!(newest_first, sorted);

    let err = c
        .list_certificates(ListCertificatesRequest {
            marker: String::new(),
            page_size: 251,
            ascending_order: true,
        })
        .await;
    expect_err(err, ErrorType::InvalidRequest);
    let err = c
        .list_certificates(ListCertificatesRequest {
            marker: "bogus".into(),
            page_size: 2,
            ascending_order: true,
        })
        .await;
    expect_err(err, ErrorType::InvalidRequest);
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ DeleteCertificate

#[tokio::test]
async fn an_active_certificate_cannot_be_deleted_even_with_force() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (id, _, _) = create_cert(&mut c, true).await;
    let before = state(&mut c).await;
    for force in [false, true] {
        expect_err(
            c.delete_certificate(delete_req(&id, force)).await,
            ErrorType::CertificateState,
        );
        assert_eq!(state(&mut c).await, before);
    }
    set_status(&mut c, &id, Inactive).await;
    c.delete_certificate(delete_req(&id, false)).await.unwrap();
    expect_err(
        c.describe_certificate(describe_req(&id)).await,
        ErrorType::ResourceNotFound,
    );
    assert!(certificate_ids(&mut c).await.is_empty());
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_certificate_attached_to_a_thing_cannot_be_deleted() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let (id, arn, _) = create_cert(&mut c, false).await;
    create_thing(&mut r, "lamp", &[]).await;
    attach_thing_principal(&mut r, "lamp", &arn).await;
    let before = state(&mut c).await;

    for force in [false, true] {
        expect_err(
            c.delete_certificate(delete_req(&id, force)).await,
            ErrorType::DeleteConflict,
        );
        assert_eq!(state(&mut c).await, before);
    }

    detach_thing_principal(&mut r, "lamp", &arn).await;
    c.delete_certificate(delete_req(&id, false)).await.unwrap();
    assert!(certificate_ids(&mut c).await.is_empty());
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn a_certificate_with_policies_is_deleted_only_with_force_which_detaches_them() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (id, arn, _) = create_cert(&mut c, false).await;
    let (other, other_arn, _) = create_cert(&mut c, false).await;
    create_policy(&mut c, "p", &publish_doc("a")).await;
    create_policy(&mut c, "q", &publish_doc("b")).await;
    attach(&mut c, "p", &arn).await;
    attach(&mut c, "q", &arn).await;
    attach(&mut c, "p", &other_arn).await;
    let before = state(&mut c).await;

    expect_err(
        c.delete_certificate(delete_req(&id, false)).await,
        ErrorType::DeleteConflict,
    );
    assert_eq!(state(&mut c).await, before);

    c.delete_certificate(delete_req(&id, true)).await.unwrap();
    expect_err(
        c.describe_certificate(describe_req(&id)).await,
        ErrorType::ResourceNotFound,
    );
    assert_eq!(targets_of(&mut c, "p").await, [other_arn.as_str()]);
    assert!(targets_of(&mut c, "q").await.is_empty());
    assert_eq!(certificate_ids(&mut c).await, [other.as_str()]);
    // The policies themselves stay, and can now be deleted.
    c.delete_policy(DeletePolicyRequest {
        policy_name: "q".into(),
    })
    .await
    .unwrap();
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_revoked_certificate_can_be_deleted() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (id, _, _) = create_cert(&mut c, true).await;
    set_status(&mut c, &id, Revoked).await;
    c.delete_certificate(delete_req(&id, false)).await.unwrap();
    assert!(certificate_ids(&mut c).await.is_empty());
    drop(c);
    herald.stop().await;
}
