"""The AWS IoT Device SDK v2 for Python runs its own jobs and shadow service
tests against Herald, unmodified: `test/test_jobs.py` and
`test/test_shadow.py` of the `awsiotsdk` source distribution (fetched from
PyPI at test time, for the installed version; they are not part of this
repository).

The shadow test creates, reads, updates and deletes named shadows with the
SDK's request-response shadow client over MQTT 5 and MQTT 3.1.1, waiting
for the `update/delta` and `update/documents` messages.

That test creates a thing group, a thing and a CONTINUOUS job with boto3,
adds the thing to the group, and runs the device flow with the SDK's
request-response jobs client over MQTT 5 and MQTT 3.1.1 with mutual TLS:
`notify-next` and `notify`, start-next, describe, update to SUCCEEDED, the
final notifications, and pending executions. It is configured only through
its environment variables: the host, a client certificate and key (issued
here by Herald's CreateKeysAndCertificate, with a policy allowing
everything), the region, and boto3's `AWS_ENDPOINT_URL_IOT`. It connects to
port 8883, hard-coded, and trusts the system store: `SSL_CERT_FILE` names a
bundle of the system's CAs plus Herald's CA, for that process alone.

Marked `standalone`: it starts a Herald of its own, with MQTT over TLS on
127.0.0.1:8883.
"""

import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from conftest import Herald
from support import ACCESS_KEY, REGION, SECRET_KEY, make_client

pytestmark = pytest.mark.standalone

SDK_PORT = 8883  # test_jobs.py connects here, whatever its host
SYSTEM_CAS = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
SDK_TEST_DEADLINE_SECS = 300


def installed_sdk_version():
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        pytest.fail("Python 3.8+ is needed")
    try:
        return version("awsiotsdk")
    except PackageNotFoundError:
        pytest.fail("awsiotsdk is missing: python3 -m pip install awsiotsdk (tests/e2e/README.md)")


def fetch_sdk_test(version, name, into):
    """`test/<name>` from the source distribution of awsiotsdk `version`."""
    download = into / "sdist"
    download.mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"awsiotsdk=={version}", "-d", str(download)],
        check=True,
        timeout=300,
    )
    (archive,) = download.glob("awsiotsdk-*.tar.gz")
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(f"/test/{name}"))
        source = tar.extractfile(member).read()
    path = into / name
    path.write_bytes(source)
    return path


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


SDK_TESTS = {
    "test_jobs.py": (
        "JobsServiceTest",
        ("test_job_processing5", "test_job_processing311", "test_client_creation_success5", "test_client_creation_success311"),
    ),
    "test_shadow.py": (
        "ShadowServiceTest",
        (
            "test_get_non_existent_named_shadow5", "test_get_non_existent_named_shadow311",
            "test_create_get_delete_shadow5", "test_create_get_delete_shadow311",
            "test_update_shadow5", "test_update_shadow311",
        ),
    ),
}


@pytest.mark.parametrize("sdk_test", sorted(SDK_TESTS))
def test_the_device_sdks_own_test_passes_against_herald(sdk_test):
    version = installed_sdk_version()
    assert port_is_free(SDK_PORT), f"127.0.0.1:{SDK_PORT} is taken; the SDK's test needs it"
    system_cas = next((Path(p) for p in SYSTEM_CAS if Path(p).exists()), None)
    with tempfile.TemporaryDirectory(prefix="herald-sdk-") as tmp:
        tmp = Path(tmp)
        test_file = fetch_sdk_test(version, sdk_test, tmp)
        herald = Herald(tmp, gateway_settings={"HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR": f"127.0.0.1:{SDK_PORT}"})
        try:
            herald.start()
            iot = make_client(herald.endpoint)
            keys = iot.create_keys_and_certificate(setAsActive=True)
            (tmp / "cert.pem").write_text(keys["certificatePem"])
            (tmp / "key.pem").write_text(keys["keyPair"]["PrivateKey"])
            everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
            iot.create_policy(policyName="device-sdk-test", policyDocument=json.dumps(everything))
            iot.attach_policy(policyName="device-sdk-test", target=keys["certificateArn"])
            bundle = tmp / "trust.pem"
            bundle.write_text((system_cas.read_text() if system_cas else "") + herald.ca_pem)

            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HERALD_"))}
            env.update(
                AWS_TEST_MQTT5_IOT_CORE_REGION=REGION,
                AWS_TEST_MQTT5_IOT_CORE_HOST="localhost",
                AWS_TEST_MQTT5_IOT_CERTIFICATE_PATH=str(tmp / "cert.pem"),
                AWS_TEST_MQTT5_IOT_KEY_PATH=str(tmp / "key.pem"),
                AWS_ENDPOINT_URL_IOT=herald.endpoint,
                AWS_ACCESS_KEY_ID=ACCESS_KEY,
                AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
                AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
                SSL_CERT_FILE=str(bundle),
            )
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(test_file)],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=SDK_TEST_DEADLINE_SECS,
            )
            report = f"{done.stdout}\n{done.stderr}\n{herald.tails()}"
            assert done.returncode == 0, report
            # Every case ran (none skipped for a missing variable), both protocols.
            test_class, cases = SDK_TESTS[sdk_test]
            for case in cases:
                assert f"PASSED {test_file.name}::{test_class}::{case}" in done.stdout, report
            assert "skipped" not in done.stdout.splitlines()[-1], report
        finally:
            codes = herald.stop()
        assert all(code == 0 for code in codes.values()), f"{codes}\n{herald.tails()}"
