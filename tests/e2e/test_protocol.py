"""What every AWS REST-JSON response carries, as boto3 exposes it: a request
id, a JSON content type, and for errors the error type header."""

from support import expect_error


def test_every_response_carries_a_request_id(client):
    first = client.create_thing(thingName="t")["ResponseMetadata"]
    second = client.describe_thing(thingName="t")["ResponseMetadata"]
    # botocore reads it from the x-amzn-RequestId header.
    assert first.get("RequestId"), f"no x-amzn-RequestId: {first['HTTPHeaders']}"
    assert second.get("RequestId"), f"no x-amzn-RequestId: {second['HTTPHeaders']}"
    assert first["RequestId"] != second["RequestId"]
    err = expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="ghost")
    failed = err.response["ResponseMetadata"]
    assert failed.get("RequestId"), f"no x-amzn-RequestId: {failed['HTTPHeaders']}"


def test_responses_are_json_and_errors_name_their_type(client):
    ok = client.list_things()["ResponseMetadata"]
    assert ok["HTTPStatusCode"] == 200
    assert ok["HTTPHeaders"]["content-type"].startswith("application/json")
    err = expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="ghost")
    headers = err.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"].split(":")[0] == "ResourceNotFoundException"
    assert headers["content-type"].startswith("application/json")
