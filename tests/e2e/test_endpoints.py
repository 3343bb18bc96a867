"""DescribeEndpoint: Herald answers its own addresses, from its settings, for
each endpoint type AWS IoT defines (AWS IoT API Reference: DescribeEndpoint)."""

import tempfile
from pathlib import Path

from conftest import Herald
from support import expect_error, make_client


def test_every_endpoint_type_answers_the_default_address(client):
    for endpoint_type in ["iot:Data-ATS", "iot:Data", "iot:CredentialProvider", "iot:Jobs"]:
        assert client.describe_endpoint(endpointType=endpoint_type)["endpointAddress"] == "localhost"
    # No type: the legacy iot:Data endpoint, as AWS IoT answers.
    assert client.describe_endpoint()["endpointAddress"] == "localhost"


def test_an_unknown_endpoint_type_is_refused(client):
    err = expect_error(client, "InvalidRequestException", client.describe_endpoint, endpointType="iot:Nope")
    assert "iot:Nope" in err.response["Error"]["Message"]


def test_the_addresses_come_from_the_gateway_settings():
    settings = {
        "HERALD_GATEWAY__ENDPOINTS__DATA_ATS": "mqtt.example.test",
        "HERALD_GATEWAY__ENDPOINTS__DATA": "legacy.example.test",
        "HERALD_GATEWAY__ENDPOINTS__CREDENTIAL_PROVIDER": "credentials.example.test",
        "HERALD_GATEWAY__ENDPOINTS__JOBS": "jobs.example.test:8443",
    }
    with tempfile.TemporaryDirectory(prefix="herald-endpoints-") as tmp:
        herald = Herald(Path(tmp), gateway_settings=settings)
        try:
            herald.start()
            iot = make_client(herald.endpoint)
            answers = {
                t: iot.describe_endpoint(endpointType=t)["endpointAddress"]
                for t in ["iot:Data-ATS", "iot:Data", "iot:CredentialProvider", "iot:Jobs"]
            }
        finally:
            herald.stop()
    assert answers == {
        "iot:Data-ATS": "mqtt.example.test",
        "iot:Data": "legacy.example.test",
        "iot:CredentialProvider": "credentials.example.test",
        "iot:Jobs": "jobs.example.test:8443",
    }
