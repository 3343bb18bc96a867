"""Policy attachments, effective policies and TestAuthorization through boto3."""

import json

from support import (
    ALLOW_ALL,
    allow,
    client_arn,
    deny,
    document,
    expect_error,
    group_arn,
    make_csr,
    names_of,
    policy_arn,
    topic_arn,
    topic_filter_arn,
)


def policy(client, name, *statements):
    doc = document(*statements) if statements else ALLOW_ALL
    client.create_policy(policyName=name, policyDocument=doc)
    return doc


def certificate(client):
    return client.create_keys_and_certificate(setAsActive=True)["certificateArn"]


def attached(client, target, **kwargs):
    return names_of(client.list_attached_policies(target=target, **kwargs)["policies"], "policyName")


def test_attach_and_detach_on_a_certificate(client):
    arn = certificate(client)
    policy(client, "b-pol")
    policy(client, "a-pol")
    client.attach_policy(policyName="b-pol", target=arn)
    client.attach_policy(policyName="a-pol", target=arn)
    client.attach_policy(policyName="a-pol", target=arn)  # twice: fine

    listed = client.list_attached_policies(target=arn)["policies"]
    assert listed == [
        {"policyName": "a-pol", "policyArn": policy_arn("a-pol")},
        {"policyName": "b-pol", "policyArn": policy_arn("b-pol")},
    ]
    assert client.list_targets_for_policy(policyName="a-pol")["targets"] == [arn]

    client.detach_policy(policyName="a-pol", target=arn)
    client.detach_policy(policyName="a-pol", target=arn)  # not attached: fine
    assert attached(client, arn) == ["b-pol"]
    assert client.list_targets_for_policy(policyName="a-pol")["targets"] == []


def test_attach_to_thing_groups_and_list_recursively(client):
    client.create_thing_group(thingGroupName="building")
    client.create_thing_group(thingGroupName="floor", parentGroupName="building")
    policy(client, "building-pol")
    policy(client, "floor-pol")
    client.attach_policy(policyName="building-pol", target=group_arn("building"))
    client.attach_policy(policyName="floor-pol", target=group_arn("floor"))

    assert attached(client, group_arn("floor")) == ["floor-pol"]
    assert attached(client, group_arn("floor"), recursive=True) == ["building-pol", "floor-pol"]
    assert attached(client, group_arn("building"), recursive=True) == ["building-pol"]
    assert client.list_targets_for_policy(policyName="floor-pol")["targets"] == [group_arn("floor")]

    arn = certificate(client)
    client.attach_policy(policyName="floor-pol", target=arn)
    assert sorted(client.list_targets_for_policy(policyName="floor-pol")["targets"]) == sorted(
        [group_arn("floor"), arn]
    )


def test_attachment_errors(client):
    arn = certificate(client)
    policy(client, "p")
    expect_error(client, "InvalidRequestException", client.attach_policy, policyName="p", target="not-an-arn")
    expect_error(
        client,
        "InvalidRequestException",
        client.attach_policy,
        policyName="p",
        target="arn:aws:iot:eu-west-1:999999999999:thinggroup/elsewhere",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        client.attach_policy,
        policyName="p",
        target="arn:aws:iot:us-east-1:123456789012:cert/" + "0" * 64,
    )
    expect_error(
        client, "ResourceNotFoundException", client.attach_policy, policyName="p", target=group_arn("missing")
    )
    expect_error(client, "ResourceNotFoundException", client.attach_policy, policyName="ghost", target=arn)
    expect_error(client, "ResourceNotFoundException", client.list_targets_for_policy, policyName="ghost")
    expect_error(client, "InvalidRequestException", client.list_attached_policies, target="not-an-arn")
    assert attached(client, arn) == []


def test_a_target_has_at_most_10_policies(client):
    arn = certificate(client)
    for i in range(11):
        policy(client, f"p{i:02}")
    for i in range(10):
        client.attach_policy(policyName=f"p{i:02}", target=arn)
    err = expect_error(client, "LimitExceededException", client.attach_policy, policyName="p10", target=arn)
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert attached(client, arn) == [f"p{i:02}" for i in range(10)]


def test_get_effective_policies(client):
    arn = certificate(client)
    cert_doc = policy(client, "cert-pol", allow("iot:Connect", client_arn("*")))
    root_doc = policy(client, "root-pol", allow("iot:Publish", topic_arn("root/*")))
    leaf_doc = policy(client, "leaf-pol", allow("iot:Publish", topic_arn("leaf/*")))
    policy(client, "unrelated")
    client.create_thing_group(thingGroupName="root")
    client.create_thing_group(thingGroupName="leaf", parentGroupName="root")
    client.create_thing(thingName="dev")
    client.add_thing_to_thing_group(thingGroupName="leaf", thingName="dev")
    client.attach_policy(policyName="cert-pol", target=arn)
    client.attach_policy(policyName="root-pol", target=group_arn("root"))
    client.attach_policy(policyName="leaf-pol", target=group_arn("leaf"))
    client.attach_policy(policyName="leaf-pol", target=arn)  # reached twice, listed once

    effective = client.get_effective_policies(principal=arn, thingName="dev")["effectivePolicies"]
    by_name = {p["policyName"]: p for p in effective}
    assert sorted(names_of(effective, "policyName")) == ["cert-pol", "leaf-pol", "root-pol"]
    for name, doc in [("cert-pol", cert_doc), ("root-pol", root_doc), ("leaf-pol", leaf_doc)]:
        assert by_name[name]["policyArn"] == policy_arn(name)
        assert json.loads(by_name[name]["policyDocument"]) == json.loads(doc)

    only_cert = client.get_effective_policies(principal=arn)["effectivePolicies"]
    assert sorted(names_of(only_cert, "policyName")) == ["cert-pol", "leaf-pol"]


def test_effective_policies_follow_the_default_version(client):
    arn = certificate(client)
    policy(client, "p", allow("iot:Publish", topic_arn("v1")))
    client.attach_policy(policyName="p", target=arn)
    v2 = document(allow("iot:Publish", topic_arn("v2")))
    client.create_policy_version(policyName="p", policyDocument=v2, setAsDefault=True)
    (effective,) = client.get_effective_policies(principal=arn)["effectivePolicies"]
    assert json.loads(effective["policyDocument"]) == json.loads(v2)


def auth_info(action, *resources):
    return {"actionType": action, "resources": list(resources)}


def refs(result, *path):
    node = result
    for key in path:
        node = node.get(key, {})
    policies = node.get("policies", []) if isinstance(node, dict) else node
    for p in policies:
        assert p["policyArn"] == policy_arn(p["policyName"])
    return sorted(p["policyName"] for p in policies)


def outcome(result):
    return (
        result["authDecision"],
        refs(result, "allowed"),
        refs(result, "denied", "explicitDeny"),
        refs(result, "denied", "implicitDeny"),
    )


def test_test_authorization_decisions(client):
    arn = certificate(client)
    policy(client, "pub-allow", allow("iot:Publish", topic_arn("room/*")))
    policy(client, "pub-deny", deny("iot:Publish", topic_arn("room/secret")))
    policy(client, "sub-allow", allow("iot:Subscribe", topic_filter_arn("room/*")))
    for name in ["pub-allow", "pub-deny", "sub-allow"]:
        client.attach_policy(policyName=name, target=arn)

    infos = [
        auth_info("PUBLISH", topic_arn("room/a")),
        auth_info("PUBLISH", topic_arn("room/secret")),
        auth_info("PUBLISH", topic_arn("hall/a")),
        auth_info("PUBLISH", topic_arn("room/a"), topic_arn("hall/a")),
        auth_info("SUBSCRIBE", topic_filter_arn("room/#")),
        auth_info("RECEIVE", topic_arn("room/a")),
    ]
    results = client.test_authorization(principal=arn, authInfos=infos)["authResults"]
    assert [r["authInfo"] for r in results] == infos
    every = ["pub-allow", "pub-deny", "sub-allow"]
    assert [outcome(r) for r in results] == [
        ("ALLOWED", ["pub-allow"], [], ["pub-deny", "sub-allow"]),
        ("EXPLICIT_DENY", ["pub-allow"], ["pub-deny"], ["sub-allow"]),
        ("IMPLICIT_DENY", [], [], every),
        ("IMPLICIT_DENY", ["pub-allow"], [], ["pub-deny", "sub-allow"]),
        ("ALLOWED", ["sub-allow"], [], ["pub-allow", "pub-deny"]),
        ("IMPLICIT_DENY", [], [], every),
    ]


def test_test_authorization_adds_and_skips_policies(client):
    arn = certificate(client)
    policy(client, "attached", allow("iot:Publish", topic_arn("a")))
    policy(client, "extra", allow("iot:Publish", topic_arn("b")))
    client.attach_policy(policyName="attached", target=arn)
    infos = [auth_info("PUBLISH", topic_arn("a")), auth_info("PUBLISH", topic_arn("b"))]

    plain = client.test_authorization(principal=arn, authInfos=infos)["authResults"]
    assert [r["authDecision"] for r in plain] == ["ALLOWED", "IMPLICIT_DENY"]

    added = client.test_authorization(principal=arn, authInfos=infos, policyNamesToAdd=["extra"])
    assert [r["authDecision"] for r in added["authResults"]] == ["ALLOWED", "ALLOWED"]

    skipped = client.test_authorization(
        principal=arn, authInfos=infos, policyNamesToAdd=["extra"], policyNamesToSkip=["attached"]
    )
    assert [r["authDecision"] for r in skipped["authResults"]] == ["IMPLICIT_DENY", "ALLOWED"]


def test_test_authorization_uses_the_client_ids_thing(client):
    arn = certificate(client)
    policy(
        client,
        "vars",
        allow("iot:Connect", client_arn("${iot:ClientId}")),
        allow("iot:Publish", topic_arn("things/${iot:Connection.Thing.ThingName}/*")),
        allow("iot:Publish", topic_arn("rooms/${iot:Connection.Thing.Attributes[room]}/*")),
    )
    policy(client, "group-pol", allow("iot:Subscribe", topic_filter_arn("fleet/*")))
    client.attach_policy(policyName="vars", target=arn)
    client.create_thing(thingName="sensor-1", attributePayload={"attributes": {"room": "kitchen"}})
    client.create_thing_group(thingGroupName="fleet")
    client.add_thing_to_thing_group(thingGroupName="fleet", thingName="sensor-1")
    client.attach_policy(policyName="group-pol", target=group_arn("fleet"))
    client.attach_thing_principal(thingName="sensor-1", principal=arn)

    infos = [
        auth_info("CONNECT", client_arn("sensor-1")),
        auth_info("CONNECT", client_arn("sensor-2")),
        auth_info("PUBLISH", topic_arn("things/sensor-1/state")),
        auth_info("PUBLISH", topic_arn("rooms/kitchen/temp")),
        auth_info("PUBLISH", topic_arn("rooms/hall/temp")),
        auth_info("SUBSCRIBE", topic_filter_arn("fleet/news")),
    ]
    results = client.test_authorization(principal=arn, clientId="sensor-1", authInfos=infos)["authResults"]
    assert [r["authDecision"] for r in results] == [
        "ALLOWED",
        "IMPLICIT_DENY",
        "ALLOWED",
        "ALLOWED",
        "IMPLICIT_DENY",
        "ALLOWED",
    ]
    assert refs(results[5], "allowed") == ["group-pol"]

    # Once the certificate is detached from the thing, the thing's groups no longer count.
    client.detach_thing_principal(thingName="sensor-1", principal=arn)
    results = client.test_authorization(
        principal=arn, clientId="sensor-1", authInfos=[infos[5]]
    )["authResults"]
    assert results[0]["authDecision"] == "IMPLICIT_DENY"


def test_test_authorization_limits(client, unchecked_client):
    arn = certificate(client)
    expect_error(
        unchecked_client,
        "InvalidRequestException",
        unchecked_client.test_authorization,
        principal=arn,
        authInfos=[],
    )
    eleven = [auth_info("PUBLISH", topic_arn(f"t{i}")) for i in range(11)]
    expect_error(client, "InvalidRequestException", client.test_authorization, principal=arn, authInfos=eleven)
    expect_error(
        client,
        "InvalidRequestException",
        client.test_authorization,
        principal=arn,
        authInfos=[{"actionType": "PUBLISH", "resources": []}],
    )
    ten = eleven[:10]
    results = client.test_authorization(principal=arn, authInfos=ten)["authResults"]
    assert len(results) == 10
    assert {r["authDecision"] for r in results} == {"IMPLICIT_DENY"}


def test_test_authorization_resolves_certificate_subject_variables(client):
    _, csr = make_csr("sensor-cn", org="Acme")
    arn = client.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)["certificateArn"]
    policy(
        client,
        "by-subject",
        allow("iot:Publish", topic_arn("cn/${iot:Certificate.Subject.CommonName}/*")),
        allow("iot:Publish", topic_arn("org/${iot:Certificate.Subject.Organization}/*")),
    )
    client.attach_policy(policyName="by-subject", target=arn)
    infos = [
        auth_info("PUBLISH", topic_arn("cn/sensor-cn/x")),
        auth_info("PUBLISH", topic_arn("cn/other/x")),
        auth_info("PUBLISH", topic_arn("org/Acme/x")),
    ]
    results = client.test_authorization(principal=arn, authInfos=infos)["authResults"]
    assert [r["authDecision"] for r in results] == ["ALLOWED", "IMPLICIT_DENY", "ALLOWED"]
    assert refs(results[0], "allowed") == ["by-subject"]


def test_test_authorization_names_missing_context_values(client):
    arn = certificate(client)
    policy(
        client,
        "vars",
        allow("iot:Publish", topic_arn("things/${iot:Connection.Thing.ThingName}")),
        allow("iot:Publish", topic_arn("clients/${iot:ClientId}")),
    )
    client.attach_policy(policyName="vars", target=arn)
    infos = [auth_info("PUBLISH", topic_arn("things/ghost")), auth_info("PUBLISH", topic_arn("clients/ghost"))]
    results = client.test_authorization(principal=arn, clientId="ghost", authInfos=infos)["authResults"]
    assert results[0]["authDecision"] == "IMPLICIT_DENY"
    assert "iot:Connection.Thing.ThingName" in results[0]["missingContextValues"]
    assert results[1]["authDecision"] == "ALLOWED"


def test_test_authorization_and_effective_policy_errors(client):
    arn = certificate(client)
    info = [auth_info("PUBLISH", topic_arn("a"))]
    expect_error(
        client,
        "ResourceNotFoundException",
        client.test_authorization,
        principal=arn,
        authInfos=info,
        policyNamesToAdd=["ghost"],
    )
    expect_error(
        client,
        "InvalidRequestException",
        client.test_authorization,
        principal=arn,
        authInfos=[auth_info("FLY", topic_arn("a"))],
    )
    client.create_thing_group(thingGroupName="g")
    expect_error(
        client, "InvalidRequestException", client.get_effective_policies, principal=group_arn("g")
    )


def test_effective_policies_of_a_thing_alone(client):
    policy(client, "group-pol", allow("iot:Publish", topic_arn("g/*")))
    client.create_thing_group(thingGroupName="g")
    client.create_thing(thingName="t")
    client.add_thing_to_thing_group(thingGroupName="g", thingName="t")
    client.attach_policy(policyName="group-pol", target=group_arn("g"))
    effective = client.get_effective_policies(thingName="t")["effectivePolicies"]
    assert names_of(effective, "policyName") == ["group-pol"]
    client.remove_thing_from_thing_group(thingGroupName="g", thingName="t")
    assert client.get_effective_policies(thingName="t")["effectivePolicies"] == []
