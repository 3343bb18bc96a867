"""Certificates through boto3: issued by the Herald CA (new keys, or a CSR),
registered (with a CA, without one), their status, listing and deletion."""

import re

import pytest

from support import (
    ACCOUNT,
    ALLOW_ALL,
    LocalCa,
    cert_arn,
    cert_id_of,
    expect_error,
    load_cert,
    make_csr,
    public_key_der,
    recent,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def herald_ca(herald):
    """The Herald CA's certificate (PEM) and id."""
    pem = herald.ca_pem
    return pem, cert_id_of(pem)


def assert_issued_by(pem, ca_pem):
    """`pem` names `ca_pem`'s subject as its issuer, and the CA's key verifies its signature."""
    cert, ca = load_cert(pem), load_cert(ca_pem)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


def test_create_keys_and_certificate(client, herald_ca):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    created = client.create_keys_and_certificate(setAsActive=True)
    cert_id = created["certificateId"]
    assert HEX64.match(cert_id), cert_id
    assert created["certificateArn"] == cert_arn(cert_id)
    pem = created["certificatePem"]
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert cert_id_of(pem) == cert_id

    # The key pair matches the certificate, which the Herald CA issued.
    private = load_pem_private_key(created["keyPair"]["PrivateKey"].encode(), password=None)
    public = load_pem_public_key(created["keyPair"]["PublicKey"].encode())
    cert = load_cert(pem)
    assert public_key_der(private) == public_key_der(cert)
    assert public_key_der(public) == public_key_der(cert)
    # A 2048-bit RSA key pair, as AWS IoT's CreateKeysAndCertificate issues.
    from cryptography.hazmat.primitives.asymmetric import rsa

    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    ca_pem, ca_id = herald_ca
    assert_issued_by(pem, ca_pem)

    desc = client.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert desc["certificateArn"] == cert_arn(cert_id)
    assert desc["certificateId"] == cert_id
    assert desc["caCertificateId"] == ca_id
    assert desc["status"] == "ACTIVE"
    assert cert_id_of(desc["certificatePem"]) == cert_id
    assert desc["ownedBy"] == ACCOUNT
    recent(desc["creationDate"])
    recent(desc["lastModifiedDate"])
    assert desc["customerVersion"] == 1
    assert desc["generationId"]
    assert desc["certificateMode"] == "DEFAULT"
    validity = desc["validity"]
    recent(validity["notBefore"], slack_secs=3 * 86400)
    assert validity["notAfter"] > desc["creationDate"]
    assert int(validity["notBefore"].timestamp()) == int(cert.not_valid_before_utc.timestamp())
    assert int(validity["notAfter"].timestamp()) == int(cert.not_valid_after_utc.timestamp())


def test_new_certificates_are_inactive_unless_set_as_active(client):
    created = client.create_keys_and_certificate()
    desc = client.describe_certificate(certificateId=created["certificateId"])["certificateDescription"]
    assert desc["status"] == "INACTIVE"


def test_create_certificate_from_csr(client, herald_ca):
    key, csr = make_csr("sensor-7", org="Herald e2e")
    created = client.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)
    cert_id = created["certificateId"]
    assert created["certificateArn"] == cert_arn(cert_id)
    assert cert_id_of(created["certificatePem"]) == cert_id

    from cryptography import x509

    cert = load_cert(created["certificatePem"])
    assert cert.subject == x509.load_pem_x509_csr(csr.encode()).subject
    assert public_key_der(cert) == public_key_der(key)
    ca_pem, ca_id = herald_ca
    assert_issued_by(created["certificatePem"], ca_pem)

    desc = client.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert desc["status"] == "ACTIVE"
    assert desc["caCertificateId"] == ca_id

    inactive = client.create_certificate_from_csr(certificateSigningRequest=make_csr("other")[1])
    desc = client.describe_certificate(certificateId=inactive["certificateId"])["certificateDescription"]
    assert desc["status"] == "INACTIVE"


def test_a_bad_csr_is_an_invalid_request(client):
    expect_error(
        client,
        "InvalidRequestException",
        client.create_certificate_from_csr,
        certificateSigningRequest="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    expect_error(
        client,
        "InvalidRequestException",
        client.create_certificate_from_csr,
        certificateSigningRequest="not a csr",
    )
    assert client.list_certificates()["certificates"] == []


def test_a_herald_certificate_registers_again_only_after_delete(client, herald_ca):
    created = client.create_keys_and_certificate(setAsActive=False)
    cert_id, pem = created["certificateId"], created["certificatePem"]

    err = expect_error(
        client, "ResourceAlreadyExistsException", client.register_certificate, certificatePem=pem
    )
    assert err.response["resourceId"] == cert_id
    assert err.response["resourceArn"] == cert_arn(cert_id)

    client.delete_certificate(certificateId=cert_id)
    expect_error(client, "ResourceNotFoundException", client.describe_certificate, certificateId=cert_id)

    # Signed by the Herald CA, so no caCertificatePem is needed.
    registered = client.register_certificate(certificatePem=pem)
    assert registered["certificateId"] == cert_id
    assert registered["certificateArn"] == cert_arn(cert_id)
    desc = client.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert desc["status"] == "INACTIVE"
    assert desc["caCertificateId"] == herald_ca[1]
    assert desc["certificateMode"] == "DEFAULT"


def test_register_a_certificate_from_a_local_ca(client):
    ca = LocalCa()
    pem = ca.issue("device-1")

    # Not signed by the Herald CA.
    expect_error(client, "CertificateValidationException", client.register_certificate, certificatePem=pem)
    # Not signed by this other CA either.
    expect_error(
        client,
        "CertificateValidationException",
        client.register_certificate,
        certificatePem=pem,
        caCertificatePem=LocalCa("Another CA").pem,
    )

    registered = client.register_certificate(certificatePem=pem, caCertificatePem=ca.pem, setAsActive=True)
    cert_id = cert_id_of(pem)
    assert registered["certificateId"] == cert_id
    assert registered["certificateArn"] == cert_arn(cert_id)
    desc = client.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert desc["status"] == "ACTIVE"
    assert desc["caCertificateId"] == ca.id
    assert cert_id_of(desc["certificatePem"]) == cert_id
    assert desc["certificateMode"] == "DEFAULT"

    err = expect_error(
        client,
        "ResourceAlreadyExistsException",
        client.register_certificate,
        certificatePem=pem,
        caCertificatePem=ca.pem,
    )
    assert err.response["resourceId"] == cert_id


def test_register_status_wins_over_set_as_active(client):
    ca = LocalCa()
    first, second, third = ca.issue("one"), ca.issue("two"), ca.issue("three")
    client.register_certificate(certificatePem=first, caCertificatePem=ca.pem, setAsActive=True, status="INACTIVE")
    client.register_certificate(certificatePem=second, caCertificatePem=ca.pem, status="ACTIVE")
    client.register_certificate(certificatePem=third, caCertificatePem=ca.pem)

    def status(pem):
        desc = client.describe_certificate(certificateId=cert_id_of(pem))["certificateDescription"]
        return desc["status"]

    assert [status(first), status(second), status(third)] == ["INACTIVE", "ACTIVE", "INACTIVE"]


def test_invalid_and_expired_certificates_are_refused(client):
    ca = LocalCa()
    expired = ca.issue("old", days_from=-30, days_to=-1)
    expect_error(
        client,
        "CertificateValidationException",
        client.register_certificate,
        certificatePem=expired,
        caCertificatePem=ca.pem,
    )
    expect_error(
        client,
        "CertificateValidationException",
        client.register_certificate_without_ca,
        certificatePem=expired,
    )
    garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    expect_error(
        client,
        "CertificateValidationException",
        client.register_certificate,
        certificatePem=garbage,
        caCertificatePem=ca.pem,
    )
    expect_error(
        client, "CertificateValidationException", client.register_certificate_without_ca, certificatePem=garbage
    )
    assert client.list_certificates()["certificates"] == []


def test_register_certificate_without_ca(client):
    pem = LocalCa("Unregistered CA").issue("sni-device")
    registered = client.register_certificate_without_ca(certificatePem=pem)
    cert_id = cert_id_of(pem)
    assert registered["certificateId"] == cert_id
    assert registered["certificateArn"] == cert_arn(cert_id)
    desc = client.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert desc["status"] == "INACTIVE"
    assert desc["certificateMode"] == "SNI_ONLY"
    assert "caCertificateId" not in desc

    active = LocalCa().issue("sni-active")
    client.register_certificate_without_ca(certificatePem=active, status="ACTIVE")
    desc = client.describe_certificate(certificateId=cert_id_of(active))["certificateDescription"]
    assert desc["status"] == "ACTIVE"

    expect_error(
        client, "ResourceAlreadyExistsException", client.register_certificate_without_ca, certificatePem=pem
    )


def test_update_certificate_status(client):
    cert_id = client.create_keys_and_certificate(setAsActive=True)["certificateId"]
    before = client.describe_certificate(certificateId=cert_id)["certificateDescription"]

    client.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    after = client.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert after["status"] == "INACTIVE"
    assert after["lastModifiedDate"] >= before["lastModifiedDate"]
    assert after["customerVersion"] == before["customerVersion"] + 1

    client.update_certificate(certificateId=cert_id, newStatus="ACTIVE")
    assert client.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "ACTIVE"

    expect_error(
        client,
        "InvalidRequestException",
        client.update_certificate,
        certificateId=cert_id,
        newStatus="PENDING_TRANSFER",
    )

    client.update_certificate(certificateId=cert_id, newStatus="REVOKED")
    assert client.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "REVOKED"
    expect_error(
        client, "CertificateStateException", client.update_certificate, certificateId=cert_id, newStatus="ACTIVE"
    )
    expect_error(
        client,
        "CertificateStateException",
        client.update_certificate,
        certificateId=cert_id,
        newStatus="INACTIVE",
    )
    assert client.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "REVOKED"


def test_certificate_ids_are_checked(client):
    expect_error(client, "InvalidRequestException", client.describe_certificate, certificateId="z" * 64)
    expect_error(client, "ResourceNotFoundException", client.describe_certificate, certificateId="0" * 64)
    expect_error(
        client, "ResourceNotFoundException", client.update_certificate, certificateId="0" * 64, newStatus="ACTIVE"
    )
    expect_error(client, "ResourceNotFoundException", client.delete_certificate, certificateId="0" * 64)
    expect_error(client, "InvalidRequestException", client.delete_certificate, certificateId="z" * 64)


def test_delete_certificate_rules(client):
    created = client.create_keys_and_certificate(setAsActive=True)
    cert_id, arn = created["certificateId"], created["certificateArn"]

    # Active: refused, in AWS IoT's words (scripts match on them).
    err = expect_error(client, "CertificateStateException", client.delete_certificate, certificateId=cert_id)
    assert err.response["Error"]["Message"] == "Certificate must be deactivated (not ACTIVE) before deletion."
    client.update_certificate(certificateId=cert_id, newStatus="INACTIVE")

    # Attached to a thing: refused.
    client.create_thing(thingName="t")
    client.attach_thing_principal(thingName="t", principal=arn)
    err = expect_error(client, "DeleteConflictException", client.delete_certificate, certificateId=cert_id)
    assert err.response["Error"]["Message"] == f"Things must be detached before deletion (arn: {arn})"
    client.detach_thing_principal(thingName="t", principal=arn)

    # With a policy: refused unless forced, which detaches it.
    client.create_policy(policyName="p", policyDocument=ALLOW_ALL)
    client.attach_policy(policyName="p", target=arn)
    err = expect_error(client, "DeleteConflictException", client.delete_certificate, certificateId=cert_id)
    assert err.response["Error"]["Message"] == f"Certificate policies must be detached before deletion (arn: {arn})"
    assert client.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "INACTIVE"
    client.delete_certificate(certificateId=cert_id, forceDelete=True)
    expect_error(client, "ResourceNotFoundException", client.describe_certificate, certificateId=cert_id)
    assert client.list_targets_for_policy(policyName="p")["targets"] == []
    client.delete_policy(policyName="p")


def test_list_certificates(client):
    active = client.create_keys_and_certificate(setAsActive=True)
    inactive = client.create_keys_and_certificate(setAsActive=False)
    sni = LocalCa().issue("sni")
    client.register_certificate_without_ca(certificatePem=sni)

    listed = {c["certificateId"]: c for c in client.list_certificates()["certificates"]}
    assert set(listed) == {active["certificateId"], inactive["certificateId"], cert_id_of(sni)}
    one = listed[active["certificateId"]]
    assert one["certificateArn"] == active["certificateArn"]
    assert one["status"] == "ACTIVE"
    assert one["certificateMode"] == "DEFAULT"
    recent(one["creationDate"])
    assert listed[inactive["certificateId"]]["status"] == "INACTIVE"
    assert listed[cert_id_of(sni)]["certificateMode"] == "SNI_ONLY"
