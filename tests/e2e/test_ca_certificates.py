"""CA certificates and just-in-time registration (AWS IoT developer guide:
"Manage your CA certificates", "Just-in-time registration of client
certificates"): the CA operations through boto3 and the aws CLI with a CA
made here, and the whole JITR loop with mosquitto_pub: an unknown device
certificate signed by the registered CA is registered as PENDING_ACTIVATION,
`$aws/events/certificates/registered/{caCertificateId}` is published and the
connection refused; activated and given a policy, the device connects."""

import json
import re
import shutil
import subprocess
import time

import pytest

from support import (
    ACCOUNT,
    ARN_PREFIX,
    LocalCa,
    cert_arn,
    cert_id_of,
    expect_error,
    recent,
    run_aws,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def ca_arn(ca_id):
    return f"{ARN_PREFIX}:cacert/{ca_id}"


def registered_ca(client, ca, **kwargs):
    code = client.get_registration_code()["registrationCode"]
    verification = ca.issue(code)
    return client.register_ca_certificate(caCertificate=ca.pem, verificationCertificate=verification, **kwargs)


def test_registration_code_and_register_ca_certificate_rules(client):
    code = client.get_registration_code()["registrationCode"]
    assert HEX64.match(code), code
    assert client.get_registration_code()["registrationCode"] == code

    ca = LocalCa("Fleet CA")
    # The verification certificate must carry the registration code and be
    # signed by the CA; the CA must be a CA.
    expect_error(
        client,
        "RegistrationCodeValidationException",
        client.register_ca_certificate,
        caCertificate=ca.pem,
        verificationCertificate=ca.issue("not-the-code"),
    )
    expect_error(
        client,
        "CertificateValidationException",
        client.register_ca_certificate,
        caCertificate=ca.pem,
        verificationCertificate=LocalCa("Other").issue(code),
    )
    expect_error(
        client,
        "CertificateValidationException",
        client.register_ca_certificate,
        caCertificate=ca.issue("a-leaf"),
        verificationCertificate=ca.issue(code),
    )
    expect_error(client, "InvalidRequestException", client.register_ca_certificate, caCertificate=ca.pem)
    assert client.list_ca_certificates()["certificates"] == []

    registered = registered_ca(
        client,
        ca,
        setAsActive=True,
        allowAutoRegistration=True,
        registrationConfig={"templateBody": "{}", "roleArn": "arn:aws:iam::123456789012:role/jitp"},
    )
    assert registered == {
        "certificateArn": ca_arn(ca.id),
        "certificateId": ca.id,
        "ResponseMetadata": registered["ResponseMetadata"],
    }
    expect_error(
        client,
        "ResourceAlreadyExistsException",
        client.register_ca_certificate,
        caCertificate=ca.pem,
        verificationCertificate=ca.issue(code),
    )

    described = client.describe_ca_certificate(certificateId=ca.id)
    desc = described["certificateDescription"]
    assert desc["certificateArn"] == ca_arn(ca.id)
    assert desc["certificateId"] == ca.id
    assert desc["status"] == "ACTIVE"
    assert cert_id_of(desc["certificatePem"]) == ca.id
    assert desc["ownedBy"] == ACCOUNT
    assert recent(desc["creationDate"]) and recent(desc["lastModifiedDate"])
    assert desc["autoRegistrationStatus"] == "ENABLE"
    assert desc["customerVersion"] == 1
    assert desc["generationId"]
    assert desc["validity"]["notBefore"] < desc["validity"]["notAfter"]
    assert desc["certificateMode"] == "DEFAULT"
    assert described["registrationConfig"] == {"templateBody": "{}", "roleArn": "arn:aws:iam::123456789012:role/jitp"}

    # SNI_ONLY needs no verification certificate.
    sni = LocalCa("SNI CA")
    client.register_ca_certificate(caCertificate=sni.pem, certificateMode="SNI_ONLY")
    assert client.describe_ca_certificate(certificateId=sni.id)["certificateDescription"]["status"] == "INACTIVE"

    client.update_ca_certificate(
        certificateId=ca.id,
        newStatus="INACTIVE",
        newAutoRegistrationStatus="DISABLE",
        registrationConfig={"templateName": "fleet-template"},
    )
    desc = client.describe_ca_certificate(certificateId=ca.id)
    assert desc["certificateDescription"]["status"] == "INACTIVE"
    assert desc["certificateDescription"]["autoRegistrationStatus"] == "DISABLE"
    assert desc["certificateDescription"]["customerVersion"] == 2
    assert desc["registrationConfig"] == {"templateName": "fleet-template"}
    expect_error(client, "InvalidRequestException", client.update_ca_certificate, certificateId=ca.id, newStatus="REVOKED")

    listed = client.list_ca_certificates(ascendingOrder=True)["certificates"]
    assert [c["certificateId"] for c in listed] == [ca.id, sni.id]
    assert listed[0]["certificateArn"] == ca_arn(ca.id) and listed[0]["status"] == "INACTIVE"
    assert recent(listed[0]["creationDate"])
    assert [c["certificateId"] for c in client.list_ca_certificates(templateName="fleet-template")["certificates"]] == [ca.id]

    # A certificate it signed registers without naming the CA, and is listed by it.
    leaf = ca.issue("device-9")
    client.register_certificate(certificatePem=leaf)
    leaf_id = cert_id_of(leaf)
    assert client.describe_certificate(certificateId=leaf_id)["certificateDescription"]["caCertificateId"] == ca.id
    by_ca = client.list_certificates_by_ca(caCertificateId=ca.id)["certificates"]
    assert [(c["certificateId"], c["certificateArn"]) for c in by_ca] == [(leaf_id, cert_arn(leaf_id))]

    client.update_ca_certificate(certificateId=sni.id, newStatus="ACTIVE")
    err = expect_error(client, "CertificateStateException", client.delete_ca_certificate, certificateId=sni.id)
    assert err.response["Error"]["Message"] == "Certificate must be deactivated (not ACTIVE) before deletion."
    client.delete_ca_certificate(certificateId=ca.id)
    expect_error(client, "ResourceNotFoundException", client.describe_ca_certificate, certificateId=ca.id)
    expect_error(client, "ResourceNotFoundException", client.delete_ca_certificate, certificateId=ca.id)
    # The certificates it signed stay.
    assert client.describe_certificate(certificateId=leaf_id)["certificateDescription"]["certificateId"] == leaf_id


WATCHER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN_PREFIX}:client/${{iot:ClientId}}"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN_PREFIX}:topicfilter/$aws/events/*"},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{ARN_PREFIX}:topic/$aws/events/*"},
    ],
}

DEVICE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN_PREFIX}:client/device-1"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN_PREFIX}:topic/devices/device-1"},
    ],
}


@pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="the mosquitto clients are not installed (.ci/run installs mosquitto-clients)",
)
def test_just_in_time_registration_with_the_aws_cli_and_mosquitto(herald, client, tmp_path):
    def aws(command, **kwargs):
        return run_aws(command, herald.endpoint, tmp_path, **kwargs)

    _, port = herald.gateway.endpoint("mqtt tls")
    (tmp_path / "herald-ca.pem").write_text(herald.ca_pem)
    base = ["-h", "localhost", "-p", str(port), "--cafile", str(tmp_path / "herald-ca.pem")]

    # The fleet's CA, registered with the aws CLI as the AWS IoT guide shows.
    ca = LocalCa("Device Fleet CA")
    (tmp_path / "rootCA.pem").write_text(ca.pem)
    code = aws("aws iot get-registration-code")["registrationCode"]
    (tmp_path / "verificationCert.pem").write_text(ca.issue(code))
    registered = aws(
        "aws iot register-ca-certificate --ca-certificate file://rootCA.pem "
        "--verification-cert file://verificationCert.pem --set-as-active --allow-auto-registration"
    )
    assert registered["certificateId"] == ca.id
    assert aws(f"aws iot describe-ca-certificate --certificate-id {ca.id}")["certificateDescription"][
        "autoRegistrationStatus"
    ] == "ENABLE"
    assert [c["certificateId"] for c in aws("aws iot list-ca-certificates")["certificates"]] == [ca.id]
    aws("aws iot update-event-configurations --event-configurations '{\"CA_CERTIFICATE\":{\"Enabled\":true}}'")

    # A watcher of the registration events, with a certificate from the HTTP API.
    watcher = client.create_keys_and_certificate(setAsActive=True)
    (tmp_path / "watcher.pem").write_text(watcher["certificatePem"])
    (tmp_path / "watcher.key").write_text(watcher["keyPair"]["PrivateKey"])
    client.create_policy(policyName="RegistrationWatcher", policyDocument=json.dumps(WATCHER_POLICY))
    client.attach_policy(policyName="RegistrationWatcher", target=watcher["certificateArn"])
    sub = subprocess.Popen(
        ["mosquitto_sub", *base, "--cert", str(tmp_path / "watcher.pem"), "--key", str(tmp_path / "watcher.key"),
         "-i", "registration-watcher", "-t", "$aws/events/certificates/registered/#", "-v", "-C", "1", "-W", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    # The device: a certificate the CA signed, unknown to Herald.
    key_pem, cert_pem = ca.issue_with_key("device-1")
    device_id = cert_id_of(cert_pem)
    (tmp_path / "device.pem").write_text(cert_pem)
    (tmp_path / "device.key").write_text(key_pem)
    publish = ["mosquitto_pub", *base, "--cert", str(tmp_path / "device.pem"), "--key", str(tmp_path / "device.key"),
               "-i", "device-1", "-t", "devices/device-1", "-m", "hello", "-q", "1"]

    def device_connects():
        done = subprocess.run(publish, capture_output=True, text=True, timeout=30)
        return done.returncode == 0

    # Each connection with the pending certificate is refused and publishes
    # the event again, so connect until the watcher (subscribed at some
    # point) has one.
    deadline = time.monotonic() + 60
    while sub.poll() is None and time.monotonic() < deadline:
        assert not device_connects(), "a certificate pending activation connected"
        try:
            sub.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
    out, err = sub.communicate(timeout=10)
    assert sub.returncode == 0, f"mosquitto_sub failed: {err}"
    topic, payload = out.strip().split(" ", 1)
    assert topic == f"$aws/events/certificates/registered/{ca.id}"
    event = json.loads(payload)
    assert list(event) == [
        "certificateId",
        "caCertificateId",
        "timestamp",
        "certificateStatus",
        "awsAccountId",
        "certificateRegistrationTimestamp",
    ]
    assert event["certificateId"] == device_id
    assert event["caCertificateId"] == ca.id
    assert isinstance(event["timestamp"], int) and event["timestamp"] > 1_600_000_000_000
    assert event["certificateStatus"] == "PENDING_ACTIVATION"
    assert event["awsAccountId"] == ACCOUNT
    assert isinstance(event["certificateRegistrationTimestamp"], str)
    assert int(event["certificateRegistrationTimestamp"]) <= event["timestamp"]

    described = aws(f"aws iot describe-certificate --certificate-id {device_id}")["certificateDescription"]
    assert described["status"] == "PENDING_ACTIVATION"
    assert described["caCertificateId"] == ca.id
    listed = aws(f"aws iot list-certificates-by-ca --ca-certificate-id {ca.id}")["certificates"]
    assert [c["certificateId"] for c in listed] == [device_id]

    # What a JITR subscriber does: activate it and attach a policy.
    (tmp_path / "device-policy.json").write_text(json.dumps(DEVICE_POLICY))
    aws("aws iot create-policy --policy-name DevicePolicy --policy-document file://device-policy.json")
    aws(f"aws iot attach-policy --policy-name DevicePolicy --target {cert_arn(device_id)}")
    assert aws(f"aws iot update-certificate --certificate-id {device_id} --new-status ACTIVE") is None

    # The gateway learns of the change from the config service's stream.
    deadline = time.monotonic() + 30
    while not device_connects():
        assert time.monotonic() < deadline, "the activated device never connected"
        time.sleep(0.2)

    # A CA with auto-registration off registers nothing.
    aws(f"aws iot update-ca-certificate --certificate-id {ca.id} --new-auto-registration-status DISABLE")
    key_pem, cert_pem = ca.issue_with_key("device-2")
    (tmp_path / "device.pem").write_text(cert_pem)
    (tmp_path / "device.key").write_text(key_pem)
    assert not device_connects()
    aws(f"aws iot describe-certificate --certificate-id {cert_id_of(cert_pem)}", expect_error="ResourceNotFoundException")
    aws(f"aws iot update-ca-certificate --certificate-id {ca.id} --new-status INACTIVE")
    assert aws(f"aws iot delete-ca-certificate --certificate-id {ca.id}") is None
