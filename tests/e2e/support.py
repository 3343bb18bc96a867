"""What the end-to-end tests share: the dev credentials, ARNs, policy
documents, error checks, and certificates made locally with `cryptography`."""

import datetime
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from unittest import mock

import boto3
import botocore.config
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session

ACCOUNT = "123456789012"
REGION = "us-east-1"
ACCESS_KEY = "HERALDDEVKEY"
SECRET_KEY = "herald-dev-secret"
ARN_PREFIX = f"arn:aws:iot:{REGION}:{ACCOUNT}"

# How long one `aws` CLI command may take.
CLI_DEADLINE_SECS = 60

# The HTTP status AWS answers each error type with (botocore's iot model).
ERROR_STATUS = {
    "InvalidRequestException": 400,
    "ResourceNotFoundException": 404,
    "ResourceAlreadyExistsException": 409,
    "VersionConflictException": 409,
    "LimitExceededException": 410,
    "VersionsLimitExceededException": 409,
    "DeleteConflictException": 409,
    "CertificateStateException": 406,
    "CertificateValidationException": 400,
    "MalformedPolicyException": 400,
    "InvalidStateTransitionException": 409,
}


def thing_arn(name):
    return f"{ARN_PREFIX}:thing/{name}"


def thing_type_arn(name):
    return f"{ARN_PREFIX}:thingtype/{name}"


def group_arn(name):
    return f"{ARN_PREFIX}:thinggroup/{name}"


def policy_arn(name):
    return f"{ARN_PREFIX}:policy/{name}"


def cert_arn(cert_id):
    return f"{ARN_PREFIX}:cert/{cert_id}"


def topic_arn(topic):
    return f"{ARN_PREFIX}:topic/{topic}"


def topic_filter_arn(topic_filter):
    return f"{ARN_PREFIX}:topicfilter/{topic_filter}"


def client_arn(client_id):
    return f"{ARN_PREFIX}:client/{client_id}"


def statement(effect, action, resource):
    return {"Effect": effect, "Action": action, "Resource": resource}


def allow(action, resource):
    return statement("Allow", action, resource)


def deny(action, resource):
    return statement("Deny", action, resource)


def document(*statements):
    """A policy document as the API carries it: a JSON string."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALLOW_ALL = document(allow("iot:*", "*"))


def is_uuid(text):
    try:
        uuid.UUID(text)
    except (TypeError, ValueError):
        return False
    return True


def expect_error(client, code, call, **kwargs):
    """Calls `call(**kwargs)`, which must fail with the AWS error `code` raised
    as boto3's modeled exception class; returns the exception."""
    exc_class = getattr(client.exceptions, code)
    with pytest.raises(exc_class) as info:
        call(**kwargs)
    response = info.value.response
    assert response["Error"]["Code"] == code, response
    assert response["Error"]["Message"], f"{code} without a message: {response}"
    if code in ERROR_STATUS:
        assert response["ResponseMetadata"]["HTTPStatusCode"] == ERROR_STATUS[code], response
    return info.value


def aware(value):
    """A timestamp boto3 parsed: a timezone-aware datetime."""
    assert isinstance(value, datetime.datetime), f"{value!r} is not a datetime"
    assert value.tzinfo is not None, f"{value!r} has no time zone"
    return value


def recent(value, slack_secs=300):
    """A datetime within `slack_secs` of now."""
    now = datetime.datetime.now(datetime.timezone.utc)
    aware(value)
    assert abs((now - value).total_seconds()) < slack_secs, f"{value} is not close to {now}"
    return value


def names_of(items, key):
    return [item[key] for item in items]


# ---------------------------------------------------------------- clients

def make_client(
    endpoint,
    access_key=ACCESS_KEY,
    secret_key=SECRET_KEY,
    validate=True,
    service="iot",
    region=REGION,
    retries=None,
):
    """A boto3 client of Herald's endpoint; `retries` is botocore's setting
    (default: one retry)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=botocore.config.Config(
            retries=retries or {"max_attempts": 1},
            connect_timeout=5,
            read_timeout=30,
            parameter_validation=validate,
        ),
    )


def signed(
    endpoint,
    method,
    path,
    body=b"",
    access_key=ACCESS_KEY,
    secret_key=SECRET_KEY,
    signed_at=None,
    sign=True,
):
    """Sends a request to the gateway, SigV4-signed for service `iot` (at
    `signed_at`, a UTC datetime, when given; not at all without `sign`);
    returns the botocore response (`.status_code`, `.headers`, `.content`)."""
    request = AWSRequest(
        method=method,
        url=f"{endpoint}{path}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    if sign:
        auth = SigV4Auth(Credentials(access_key, secret_key), "iot", REGION)
        if signed_at is None:
            auth.add_auth(request)
        else:
            naive = signed_at.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
                auth.add_auth(request)
    session = URLLib3Session(timeout=30)
    try:
        return session.send(request.prepare())
    finally:
        session.close()


# ---------------------------------------------------------------- certificates

def _crypto():
    """The `cryptography` package, or a skip saying it is missing."""
    return pytest.importorskip(
        "cryptography",
        reason="the `cryptography` package makes the CSRs and local CAs; install it with pip",
    )


def _name(common_name, org=None):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def new_key():
    _crypto()
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def pem_of(cert):
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM).decode()


def private_key_pem(key):
    """A private key as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def cert_id_of(pem):
    """Herald's (and AWS's) certificate id: the SHA-256 hex of the DER."""
    _crypto()
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(pem.encode())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def load_cert(pem):
    _crypto()
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.encode())


def _build(subject, issuer, public_key, signing_key, is_ca, not_before, not_after):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    return builder.sign(signing_key, hashes.SHA256())


def _validity(days_from, days_to):
    now = datetime.datetime.now(datetime.timezone.utc)
    return now + datetime.timedelta(days=days_from), now + datetime.timedelta(days=days_to)


class LocalCa:
    """A certificate authority made here, unknown to Herald."""

    def __init__(self, common_name="Local Test CA"):
        _crypto()
        self.key = new_key()
        name = _name(common_name, "Herald e2e")
        before, after = _validity(-1, 365)
        self.cert = _build(name, name, self.key.public_key(), self.key, True, before, after)
        self.pem = pem_of(self.cert)
        self.id = cert_id_of(self.pem)

    def issue(self, common_name, days_from=-1, days_to=30):
        """A leaf certificate for a new key; returns its PEM."""
        return self.issue_with_key(common_name, days_from, days_to)[1]

    def issue_with_key(self, common_name, days_from=-1, days_to=30):
        """A leaf certificate for a new key: (private key PEM, certificate PEM),
        for a client that must present it (mosquitto's `--key`/`--cert`)."""
        key = new_key()
        before, after = _validity(days_from, days_to)
        cert = _build(
            _name(common_name), self.cert.subject, key.public_key(), self.key, False, before, after
        )
        return private_key_pem(key), pem_of(cert)


def make_csr(common_name, org=None):
    """A CSR for a new P-256 key: (key, csr_pem)."""
    _crypto()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    key = new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(common_name, org))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(Encoding.PEM).decode()


def public_key_der(key_or_cert):
    """The SubjectPublicKeyInfo DER of a certificate, a private key, or a public key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key_or_cert.public_key() if hasattr(key_or_cert, "public_key") else key_or_cert
    return public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def aws_cli():
    """The `aws` CLI: the awscli package of this Python if it has one, else `aws` on PATH."""
    if importlib.util.find_spec("awscli") is not None:
        return [sys.executable, "-m", "awscli"]
    found = shutil.which("aws")
    if found:
        return [found]
    pytest.fail("the aws CLI is missing: python3 -m pip install awscli")


def run_aws(command, endpoint, cwd, expect_error=None):
    """Runs one `aws iot ...` (or `aws iot-jobs-data ...`, `aws iot-data ...`) command line with
    `--endpoint-url` and the dev credentials. Returns its parsed JSON output
    (None when it prints nothing); with `expect_error`, the command must fail
    with that AWS error code, and its stderr is returned."""
    argv = shlex.split(command)
    assert argv[0] == "aws" and argv[1] in ("iot", "iot-jobs-data", "iot-data"), command
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_DEFAULT_OUTPUT="json",
        AWS_CONFIG_FILE=str(cwd / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(cwd / "no-aws-credentials"),
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    done = subprocess.run(
        aws_cli() + argv[1:] + ["--endpoint-url", endpoint],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE_SECS,
    )
    if expect_error is not None:
        assert done.returncode != 0, f"{command} succeeded: {done.stdout}"
        assert f"({expect_error})" in done.stderr, done.stderr
        return done.stderr
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else None
