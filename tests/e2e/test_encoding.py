"""Names and values with every character AWS allows in them, through URL
paths, query strings, headers and bodies: each must survive botocore's
encoding, the gateway's SigV4 canonicalization and its decoding."""

import json

from support import ALLOW_ALL, expect_error, group_arn, names_of, policy_arn, thing_arn, thing_type_arn

# Thing, type and group names: [a-zA-Z0-9:_-]+
ODD_NAME = "a:b_c-D:9"
# Policy names: [\w+=,.@-]+ ('+' in a path is a plus, not a space).
ODD_POLICY = "p+q=r,s.t@u-v_w"
# Attribute values: [a-zA-Z0-9_.,@/:#=\[\]-]*
ODD_VALUE = "x/y:z=w@q#r[1],s.t_u-v"
# Attribute names: [a-zA-Z0-9_.,@/:#-]+
ODD_ATTRIBUTE = "k/e:y#1@a,b.c_d-e"


def test_odd_thing_names_in_paths(client):
    created = client.create_thing(thingName=ODD_NAME)
    assert created["thingArn"] == thing_arn(ODD_NAME)
    assert client.describe_thing(thingName=ODD_NAME)["thingName"] == ODD_NAME
    client.update_thing(thingName=ODD_NAME, attributePayload={"attributes": {"a": "1"}})
    assert client.describe_thing(thingName=ODD_NAME)["version"] == 2
    client.delete_thing(thingName=ODD_NAME, expectedVersion=2)
    expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName=ODD_NAME)


def test_odd_attribute_names_and_values_in_bodies_and_queries(client):
    client.create_thing(thingName="odd", attributePayload={"attributes": {ODD_ATTRIBUTE: ODD_VALUE}})
    client.create_thing(thingName="even", attributePayload={"attributes": {ODD_ATTRIBUTE: "plain"}})
    assert client.describe_thing(thingName="odd")["attributes"] == {ODD_ATTRIBUTE: ODD_VALUE}
    listed = client.list_things(attributeName=ODD_ATTRIBUTE, attributeValue=ODD_VALUE)["things"]
    assert names_of(listed, "thingName") == ["odd"]
    listed = client.list_things(
        attributeName=ODD_ATTRIBUTE, attributeValue="x/y:z=", usePrefixAttributeValue=True
    )["things"]
    assert names_of(listed, "thingName") == ["odd"]


def test_odd_type_and_group_names(client):
    client.create_thing_type(thingTypeName=ODD_NAME)
    assert client.describe_thing_type(thingTypeName=ODD_NAME)["thingTypeArn"] == thing_type_arn(ODD_NAME)
    assert names_of(client.list_thing_types(thingTypeName=ODD_NAME)["thingTypes"], "thingTypeName") == [
        ODD_NAME
    ]
    client.create_thing_group(thingGroupName=ODD_NAME)
    client.create_thing_group(thingGroupName="child", parentGroupName=ODD_NAME)
    client.create_thing(thingName=ODD_NAME, thingTypeName=ODD_NAME)
    client.add_thing_to_thing_group(thingGroupName=ODD_NAME, thingName=ODD_NAME)
    assert client.list_things_in_thing_group(thingGroupName=ODD_NAME)["things"] == [ODD_NAME]
    assert names_of(client.list_thing_groups(parentGroup=ODD_NAME)["thingGroups"], "groupName") == ["child"]
    assert client.list_thing_groups_for_thing(thingName=ODD_NAME)["thingGroups"] == [
        {"groupName": ODD_NAME, "groupArn": group_arn(ODD_NAME)}
    ]


def test_odd_policy_names_in_paths_and_arns(client):
    created = client.create_policy(policyName=ODD_POLICY, policyDocument=ALLOW_ALL)
    assert created["policyArn"] == policy_arn(ODD_POLICY)
    assert client.get_policy(policyName=ODD_POLICY)["policyName"] == ODD_POLICY
    client.create_policy_version(policyName=ODD_POLICY, policyDocument=ALLOW_ALL, setAsDefault=True)
    assert client.get_policy_version(policyName=ODD_POLICY, policyVersionId="2")["isDefaultVersion"] is True
    arn = client.create_keys_and_certificate(setAsActive=True)["certificateArn"]
    client.attach_policy(policyName=ODD_POLICY, target=arn)
    assert client.list_targets_for_policy(policyName=ODD_POLICY)["targets"] == [arn]
    assert client.list_attached_policies(target=arn)["policies"] == [
        {"policyName": ODD_POLICY, "policyArn": policy_arn(ODD_POLICY)}
    ]
    client.detach_policy(policyName=ODD_POLICY, target=arn)
    client.delete_policy_version(policyName=ODD_POLICY, policyVersionId="1")
    client.delete_policy(policyName=ODD_POLICY)
    expect_error(client, "ResourceNotFoundException", client.get_policy, policyName=ODD_POLICY)


def test_odd_principals_in_headers(client):
    client.create_thing(thingName="t")
    principal = "arn:aws:iam::123456789012:role/with space+plus=eq,comma@at/slash"
    client.attach_thing_principal(thingName="t", principal=principal)
    assert client.list_thing_principals(thingName="t")["principals"] == [principal]
    assert client.list_principal_things(principal=principal)["things"] == ["t"]
    client.detach_thing_principal(thingName="t", principal=principal)
    assert client.list_thing_principals(thingName="t")["principals"] == []


def test_descriptions_with_spaces_and_punctuation(client):
    text = "Floor 3, east wing: (sensors) & more!"
    client.create_thing_group(thingGroupName="g", thingGroupProperties={"thingGroupDescription": text})
    props = client.describe_thing_group(thingGroupName="g")["thingGroupProperties"]
    assert props["thingGroupDescription"] == text
    client.create_thing_type(thingTypeName="t", thingTypeProperties={"thingTypeDescription": text})
    props = client.describe_thing_type(thingTypeName="t")["thingTypeProperties"]
    assert props["thingTypeDescription"] == text


def test_policy_documents_are_kept_as_given(client):
    # Whitespace and key order in the document survive the round trip.
    doc = '{\n  "Statement": [ {"Resource": "*", "Action": "iot:*", "Effect": "Allow"} ],\n  "Version": "2012-10-17"\n}'
    created = client.create_policy(policyName="kept", policyDocument=doc)
    assert created["policyDocument"] == doc
    assert client.get_policy(policyName="kept")["policyDocument"] == doc
    assert json.loads(client.get_policy_version(policyName="kept", policyVersionId="1")["policyDocument"]) == json.loads(doc)
