"""IoT policies and their versions through boto3."""

import json

from support import (
    ALLOW_ALL,
    allow,
    document,
    expect_error,
    names_of,
    policy_arn,
    recent,
    topic_arn,
)

DOC_V1 = document(allow("iot:Publish", topic_arn("v1/*")))
DOC_V2 = document(allow("iot:Publish", topic_arn("v2/*")))


def test_create_and_get_a_policy(client):
    created = client.create_policy(policyName="pub", policyDocument=DOC_V1)
    assert created["policyName"] == "pub"
    assert created["policyArn"] == policy_arn("pub")
    assert json.loads(created["policyDocument"]) == json.loads(DOC_V1)
    assert created["policyVersionId"] == "1"

    got = client.get_policy(policyName="pub")
    assert got["policyName"] == "pub"
    assert got["policyArn"] == policy_arn("pub")
    assert json.loads(got["policyDocument"]) == json.loads(DOC_V1)
    assert got["defaultVersionId"] == "1"
    recent(got["creationDate"])
    recent(got["lastModifiedDate"])
    assert got["generationId"]


def test_policy_errors(client):
    client.create_policy(policyName="pub", policyDocument=DOC_V1)
    err = expect_error(
        client, "ResourceAlreadyExistsException", client.create_policy, policyName="pub", policyDocument=DOC_V2
    )
    assert err.response["resourceId"] == "pub"
    assert err.response["resourceArn"] == policy_arn("pub")
    assert json.loads(client.get_policy(policyName="pub")["policyDocument"]) == json.loads(DOC_V1)

    expect_error(client, "ResourceNotFoundException", client.get_policy, policyName="ghost")
    expect_error(
        client, "InvalidRequestException", client.create_policy, policyName="no spaces", policyDocument=DOC_V1
    )
    expect_error(
        client, "InvalidRequestException", client.create_policy, policyName="p" * 129, policyDocument=DOC_V1
    )


def test_malformed_policies_are_refused(client):
    for bad in [
        "not json",
        json.dumps({"Version": "2012-10-17"}),
        json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Perhaps", "Action": "iot:*", "Resource": "*"}]}
        ),
    ]:
        expect_error(
            client, "MalformedPolicyException", client.create_policy, policyName="bad", policyDocument=bad
        )
    expect_error(client, "ResourceNotFoundException", client.get_policy, policyName="bad")

    client.create_policy(policyName="good", policyDocument=DOC_V1)
    expect_error(
        client,
        "MalformedPolicyException",
        client.create_policy_version,
        policyName="good",
        policyDocument="{",
    )
    assert len(client.list_policy_versions(policyName="good")["policyVersions"]) == 1


def test_policy_versions(client):
    client.create_policy(policyName="pub", policyDocument=DOC_V1)

    v2 = client.create_policy_version(policyName="pub", policyDocument=DOC_V2, setAsDefault=True)
    assert v2["policyArn"] == policy_arn("pub")
    assert v2["policyVersionId"] == "2"
    assert v2["isDefaultVersion"] is True
    assert json.loads(v2["policyDocument"]) == json.loads(DOC_V2)
    got = client.get_policy(policyName="pub")
    assert got["defaultVersionId"] == "2"
    assert json.loads(got["policyDocument"]) == json.loads(DOC_V2)

    v3 = client.create_policy_version(policyName="pub", policyDocument=ALLOW_ALL)
    assert v3["policyVersionId"] == "3"
    assert v3["isDefaultVersion"] is False
    assert client.get_policy(policyName="pub")["defaultVersionId"] == "2"

    versions = client.list_policy_versions(policyName="pub")["policyVersions"]
    assert sorted(names_of(versions, "versionId")) == ["1", "2", "3"]
    assert {v["versionId"]: v["isDefaultVersion"] for v in versions} == {
        "1": False,
        "2": True,
        "3": False,
    }
    for v in versions:
        recent(v["createDate"])

    one = client.get_policy_version(policyName="pub", policyVersionId="1")
    assert one["policyArn"] == policy_arn("pub")
    assert one["policyName"] == "pub"
    assert one["policyVersionId"] == "1"
    assert one["isDefaultVersion"] is False
    assert json.loads(one["policyDocument"]) == json.loads(DOC_V1)
    recent(one["creationDate"])
    recent(one["lastModifiedDate"])
    assert one["generationId"]

    client.set_default_policy_version(policyName="pub", policyVersionId="1")
    got = client.get_policy(policyName="pub")
    assert got["defaultVersionId"] == "1"
    assert json.loads(got["policyDocument"]) == json.loads(DOC_V1)
    assert client.get_policy_version(policyName="pub", policyVersionId="1")["isDefaultVersion"] is True
    assert client.get_policy_version(policyName="pub", policyVersionId="2")["isDefaultVersion"] is False


def test_policy_version_errors(client):
    client.create_policy(policyName="pub", policyDocument=DOC_V1)
    client.create_policy_version(policyName="pub", policyDocument=DOC_V2)
    expect_error(
        client, "ResourceNotFoundException", client.get_policy_version, policyName="pub", policyVersionId="9"
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        client.set_default_policy_version,
        policyName="pub",
        policyVersionId="9",
    )
    expect_error(
        client, "ResourceNotFoundException", client.delete_policy_version, policyName="pub", policyVersionId="9"
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        client.create_policy_version,
        policyName="ghost",
        policyDocument=DOC_V1,
    )
    expect_error(client, "ResourceNotFoundException", client.list_policy_versions, policyName="ghost")
    # The default version cannot be deleted.
    expect_error(
        client, "DeleteConflictException", client.delete_policy_version, policyName="pub", policyVersionId="1"
    )
    client.delete_policy_version(policyName="pub", policyVersionId="2")
    assert names_of(client.list_policy_versions(policyName="pub")["policyVersions"], "versionId") == ["1"]
    expect_error(
        client, "ResourceNotFoundException", client.get_policy_version, policyName="pub", policyVersionId="2"
    )


def test_at_most_five_versions_and_ids_are_never_reused(client):
    client.create_policy(policyName="pub", policyDocument=DOC_V1)
    for expected in ["2", "3", "4", "5"]:
        created = client.create_policy_version(policyName="pub", policyDocument=DOC_V2)
        assert created["policyVersionId"] == expected
    expect_error(
        client,
        "VersionsLimitExceededException",
        client.create_policy_version,
        policyName="pub",
        policyDocument=DOC_V2,
    )
    client.delete_policy_version(policyName="pub", policyVersionId="3")
    created = client.create_policy_version(policyName="pub", policyDocument=DOC_V2, setAsDefault=True)
    assert created["policyVersionId"] == "6"
    versions = client.list_policy_versions(policyName="pub")["policyVersions"]
    assert sorted(names_of(versions, "versionId"), key=int) == ["1", "2", "4", "5", "6"]


def test_delete_a_policy(client):
    client.create_policy(policyName="pub", policyDocument=DOC_V1)
    client.create_policy_version(policyName="pub", policyDocument=DOC_V2)
    # Not while it has versions besides the default.
    err = expect_error(client, "DeleteConflictException", client.delete_policy, policyName="pub")
    assert err.response["Error"]["Message"] == (
        "Cannot delete the policy because it has one or more policy versions attached to it (name=pub)"
    )
    client.delete_policy_version(policyName="pub", policyVersionId="2")

    # Nor while it is attached.
    cert = client.create_keys_and_certificate(setAsActive=True)
    client.attach_policy(policyName="pub", target=cert["certificateArn"])
    err = expect_error(client, "DeleteConflictException", client.delete_policy, policyName="pub")
    assert err.response["Error"]["Message"] == (
        "The policy cannot be deleted as the policy is attached to one or more principals (name=pub)"
    )
    client.detach_policy(policyName="pub", target=cert["certificateArn"])

    client.delete_policy(policyName="pub")
    expect_error(client, "ResourceNotFoundException", client.get_policy, policyName="pub")
    expect_error(client, "ResourceNotFoundException", client.delete_policy, policyName="pub")
    assert client.list_policies()["policies"] == []


def test_list_policies(client):
    for name in ["b-pol", "a-pol", "c-pol"]:
        client.create_policy(policyName=name, policyDocument=DOC_V1)
    policies = client.list_policies()["policies"]
    assert sorted(names_of(policies, "policyName")) == ["a-pol", "b-pol", "c-pol"]
    for p in policies:
        assert p["policyArn"] == policy_arn(p["policyName"])
    # ascendingOrder: oldest first; without it, newest first (equal creation
    # dates by name either way).
    created = {p: client.get_policy(policyName=p)["creationDate"] for p in ["a-pol", "b-pol", "c-pol"]}
    oldest_first = sorted(created, key=lambda p: (created[p], p))
    newest_first = sorted(created, key=lambda p: (-created[p].timestamp(), p))
    ascending = client.list_policies(ascendingOrder=True)["policies"]
    assert names_of(ascending, "policyName") == oldest_first
    assert names_of(client.list_policies(ascendingOrder=False)["policies"], "policyName") == newest_first
    assert names_of(policies, "policyName") == newest_first
