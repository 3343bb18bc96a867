"""Accounts and regions over HTTP: the region a request is signed for and
the account of its access key pick the (account, region) partition it acts
in; a partition's things, groups, policies and ARNs are its own and
invisible to the others (boto3 and the aws CLI)."""

import tempfile
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import Herald
from support import ACCESS_KEY, ACCOUNT, SECRET_KEY, allow, document, expect_error, make_client, run_aws

TOKYO = "ap-northeast-1"


def things(client):
    return [t["thingName"] for t in client.list_things()["things"]]


def test_each_region_is_a_partition_of_its_own(herald, client):
    tokyo = make_client(herald.endpoint, region=TOKYO)
    client.create_thing(thingName="lamp", attributePayload={"attributes": {"where": "home"}})
    created = tokyo.create_thing(thingName="lamp", attributePayload={"attributes": {"where": "tokyo"}})
    assert created["thingArn"] == f"arn:aws:iot:{TOKYO}:{ACCOUNT}:thing/lamp"
    tokyo.create_thing(thingName="only-in-tokyo")
    assert things(client) == ["lamp"]
    assert things(tokyo) == ["lamp", "only-in-tokyo"]
    assert tokyo.describe_thing(thingName="lamp")["attributes"] == {"where": "tokyo"}
    expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="only-in-tokyo")

    tokyo.create_thing_group(thingGroupName="floor")
    assert client.list_thing_groups()["thingGroups"] == []
    group = tokyo.describe_thing_group(thingGroupName="floor")
    assert group["thingGroupArn"] == f"arn:aws:iot:{TOKYO}:{ACCOUNT}:thinggroup/floor"
    tokyo.create_policy(policyName="p", policyDocument=document(allow("iot:Connect", "*")))
    assert [p["policyName"] for p in tokyo.list_policies()["policies"]] == ["p"]
    assert client.list_policies()["policies"] == []
    assert tokyo.get_policy(policyName="p")["policyArn"] == f"arn:aws:iot:{TOKYO}:{ACCOUNT}:policy/p"

    client.delete_thing(thingName="lamp")
    assert things(tokyo) == ["lamp", "only-in-tokyo"]


def test_a_region_herald_does_not_serve_is_refused(herald):
    nowhere = make_client(herald.endpoint, region="xx-nowhere-1")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        nowhere.list_things()
    error = info.value.response["Error"]
    assert error["Code"] == "InvalidSignatureException", error
    assert "xx-nowhere-1" in error["Message"]


def test_the_aws_cli_with_region(herald, tmp_path):
    def aws(command, **kwargs):
        return run_aws(command, herald.endpoint, tmp_path, **kwargs)

    created = aws("aws iot create-thing --thing-name Sensor --region eu-west-1")
    assert created["thingArn"] == f"arn:aws:iot:eu-west-1:{ACCOUNT}:thing/Sensor"
    assert [t["thingName"] for t in aws("aws iot list-things --region eu-west-1")["things"]] == ["Sensor"]
    assert aws("aws iot list-things")["things"] == []


OTHER_ACCOUNT = "111122223333"
SETTINGS = f"""
[[access_keys]]
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
account_id = "{ACCOUNT}"

[[access_keys]]
access_key_id = "OTHERACCOUNTKEY"
secret_access_key = "other-account-secret"
account_id = "{OTHER_ACCOUNT}"
"""


def test_each_account_is_a_partition_of_its_own():
    with tempfile.TemporaryDirectory(prefix="herald-accounts-") as tmp:
        tmp = Path(tmp)
        (tmp / "gateway.toml").write_text(SETTINGS)
        herald = Herald(tmp, gateway_settings={"HERALD_GATEWAY_CONFIG": str(tmp / "gateway.toml")})
        try:
            herald.start()
            ours = make_client(herald.endpoint)
            theirs = make_client(herald.endpoint, access_key="OTHERACCOUNTKEY", secret_key="other-account-secret")
            created = theirs.create_thing(thingName="lamp")
            assert created["thingArn"] == f"arn:aws:iot:us-east-1:{OTHER_ACCOUNT}:thing/lamp"
            assert things(ours) == []
            ours.create_thing(thingName="fan")
            assert things(theirs) == ["lamp"]
            assert things(ours) == ["fan"]
        finally:
            herald.stop()
