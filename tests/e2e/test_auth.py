"""Request authentication (SigV4) and operations Herald does not serve."""

import datetime
import json

import pytest
from botocore.exceptions import ClientError

from support import ACCESS_KEY, REGION, SECRET_KEY, make_client, signed


def client_error(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response


def test_a_wrong_secret_is_an_invalid_signature(herald, client):
    client.create_thing(thingName="kept")
    forger = make_client(herald.endpoint, access_key=ACCESS_KEY, secret_key="not-the-secret")
    response = client_error(forger.create_thing, thingName="forged")
    assert response["Error"]["Code"] == "InvalidSignatureException", response
    assert response["Error"]["Message"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    response = client_error(forger.describe_thing, thingName="kept")
    assert response["Error"]["Code"] == "InvalidSignatureException", response
    # Nothing was created by the refused call.
    assert [t["thingName"] for t in client.list_things()["things"]] == ["kept"]


def test_an_unknown_access_key_is_unrecognized(herald, client):
    stranger = make_client(herald.endpoint, access_key="AKIANOBODYKNOWS", secret_key=SECRET_KEY)
    response = client_error(stranger.list_things)
    assert response["Error"]["Code"] == "UnrecognizedClientException", response
    assert response["Error"]["Message"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    response = client_error(stranger.create_policy, policyName="p", policyDocument="{}")
    assert response["Error"]["Code"] == "UnrecognizedClientException", response
    assert client.list_policies()["policies"] == []


def test_the_reset_endpoint_needs_a_signature_too(herald, client):
    client.create_thing(thingName="survivor")
    response = signed(herald.endpoint, "POST", "/_herald/reset", secret_key="wrong")
    assert response.status_code == 403, response.content
    assert [t["thingName"] for t in client.list_things()["things"]] == ["survivor"]


@pytest.mark.parametrize(
    "method, operation, kwargs",
    [
        ("list_managed_job_templates", "ListManagedJobTemplates", {}),
        ("list_audit_tasks", "ListAuditTasks", {"startTime": 0, "endTime": 1}),
        ("list_topic_rules", "ListTopicRules", {}),
        ("create_dimension", "CreateDimension", {"name": "d", "type": "TOPIC_FILTER", "stringValues": ["a"], "clientRequestToken": "t"}),
    ],
)
def test_an_operation_herald_does_not_serve_is_a_named_4xx(client, method, operation, kwargs):
    response = client_error(getattr(client, method), **kwargs)
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    assert 400 <= status < 500, response
    assert operation in response["Error"]["Message"], response


def error_code(response):
    """The AWS error type of a raw response: the `x-amzn-ErrorType` header
    (up to any `:`), else the body's `__type`."""
    header = response.headers.get("x-amzn-ErrorType")
    if header:
        return header.split(":")[0]
    return json.loads(response.content or b"{}").get("__type", "").split("#")[-1]


def test_an_unsigned_request_is_refused(herald, client):
    response = signed(herald.endpoint, "GET", "/things", sign=False)
    assert response.status_code == 403, response.content
    assert error_code(response) == "MissingAuthenticationTokenException"
    response = signed(herald.endpoint, "POST", "/things/unsigned", body=b"{}", sign=False)
    assert response.status_code == 403, response.content
    assert client.list_things()["things"] == []


def test_a_signature_older_than_15_minutes_is_refused(herald, client):
    now = datetime.datetime.now(datetime.timezone.utc)
    stale = signed(herald.endpoint, "GET", "/things", signed_at=now - datetime.timedelta(minutes=20))
    assert stale.status_code == 403, stale.content
    assert error_code(stale) == "InvalidSignatureException"
    future = signed(herald.endpoint, "GET", "/things", signed_at=now + datetime.timedelta(minutes=20))
    assert future.status_code == 403, future.content
    # A few minutes of clock skew are tolerated.
    skewed = signed(herald.endpoint, "GET", "/things", signed_at=now - datetime.timedelta(minutes=5))
    assert skewed.status_code == 200, skewed.content
    assert json.loads(skewed.content)["things"] == []


def test_a_body_changed_after_signing_is_refused(herald, client):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.httpsession import URLLib3Session

    request = AWSRequest(
        method="POST",
        url=f"{herald.endpoint}/things/tampered",
        data=b'{"attributePayload": {"attributes": {"a": "1"}}}',
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "iot", REGION).add_auth(request)
    prepared = request.prepare()
    prepared.body = b'{"attributePayload": {"attributes": {"a": "2"}}}'
    session = URLLib3Session(timeout=30)
    try:
        response = session.send(prepared)
    finally:
        session.close()
    assert response.status_code == 403, response.content
    assert error_code(response) == "InvalidSignatureException"
    assert client.list_things()["things"] == []
