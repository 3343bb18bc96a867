"""boto3's paginators over every paged listing: more items than one page, and
every item exactly once."""

import math

from support import ALLOW_ALL, LocalCa, cert_arn, cert_id_of, expect_error, group_arn


def paginate(client, operation, result_key, page_size=None, **kwargs):
    """Every page of `operation`; returns (pages' item lists, all items)."""
    config = {"PageSize": page_size} if page_size else {}
    pages = [
        page.get(result_key, [])
        for page in client.get_paginator(operation).paginate(PaginationConfig=config, **kwargs)
    ]
    return pages, [item for page in pages for item in page]


def assert_paged(pages, items, expected, page_size, key=None):
    """Each page holds at most `page_size`, there was more than one, and every
    expected item appears exactly once."""
    seen = [item[key] for item in items] if key else list(items)
    assert sorted(seen) == sorted(expected), f"{len(seen)} items, {len(set(seen))} distinct"
    assert len(seen) == len(set(seen)), "an item appeared twice"
    assert len(pages) >= math.ceil(len(expected) / page_size) >= 2, [len(p) for p in pages]
    assert all(len(page) <= page_size for page in pages), [len(p) for p in pages]


def test_list_things_with_the_default_page_size(client):
    names = [f"thing-{i:03}" for i in range(120)]
    for name in names:
        client.create_thing(thingName=name)
    first = client.list_things()
    assert len(first["things"]) == 50
    assert first["nextToken"]
    pages, items = paginate(client, "list_things", "things")
    assert_paged(pages, items, names, 50, key="thingName")
    assert [len(p) for p in pages] == [50, 50, 20]
    # Pages follow the name order.
    assert [item["thingName"] for item in items] == names


def test_list_things_with_a_small_page_and_a_filter(client):
    names = [f"t{i:02}" for i in range(23)]
    for i, name in enumerate(names):
        client.create_thing(thingName=name, attributePayload={"attributes": {"parity": str(i % 2)}})
    pages, items = paginate(client, "list_things", "things", page_size=7)
    assert_paged(pages, items, names, 7, key="thingName")
    even = names[::2]
    pages, items = paginate(
        client, "list_things", "things", page_size=4, attributeName="parity", attributeValue="0"
    )
    assert_paged(pages, items, even, 4, key="thingName")


def test_list_thing_types(client):
    names = [f"type-{i:02}" for i in range(12)]
    for name in names:
        client.create_thing_type(thingTypeName=name)
    pages, items = paginate(client, "list_thing_types", "thingTypes", page_size=5)
    assert_paged(pages, items, names, 5, key="thingTypeName")


def test_list_thing_groups(client):
    client.create_thing_group(thingGroupName="root")
    children = [f"child-{i:02}" for i in range(13)]
    for name in children:
        client.create_thing_group(thingGroupName=name, parentGroupName="root")
    others = [f"other-{i:02}" for i in range(9)]
    for name in others:
        client.create_thing_group(thingGroupName=name)

    pages, items = paginate(client, "list_thing_groups", "thingGroups", page_size=5)
    assert_paged(pages, items, ["root"] + children + others, 5, key="groupName")
    pages, items = paginate(client, "list_thing_groups", "thingGroups", page_size=4, parentGroup="root")
    assert_paged(pages, items, children, 4, key="groupName")
    pages, items = paginate(client, "list_thing_groups", "thingGroups", page_size=3, namePrefixFilter="other-")
    assert_paged(pages, items, others, 3, key="groupName")
    assert all(item["groupArn"] == group_arn(item["groupName"]) for item in items)


def test_list_things_in_thing_group(client):
    client.create_thing_group(thingGroupName="root")
    client.create_thing_group(thingGroupName="child", parentGroupName="root")
    direct = [f"direct-{i:02}" for i in range(9)]
    nested = [f"nested-{i:02}" for i in range(8)]
    for name in direct:
        client.create_thing(thingName=name)
        client.add_thing_to_thing_group(thingGroupName="root", thingName=name)
    for name in nested:
        client.create_thing(thingName=name)
        client.add_thing_to_thing_group(thingGroupName="child", thingName=name)

    pages, items = paginate(client, "list_things_in_thing_group", "things", page_size=4, thingGroupName="root")
    assert_paged(pages, items, direct, 4)
    pages, items = paginate(
        client, "list_things_in_thing_group", "things", page_size=5, thingGroupName="root", recursive=True
    )
    assert_paged(pages, items, direct + nested, 5)


def test_list_thing_groups_for_thing(client):
    client.create_thing(thingName="t")
    groups = [f"g{i}" for i in range(10)]
    for name in groups:
        client.create_thing_group(thingGroupName=name)
        client.add_thing_to_thing_group(thingGroupName=name, thingName="t")
    pages, items = paginate(client, "list_thing_groups_for_thing", "thingGroups", page_size=3, thingName="t")
    assert_paged(pages, items, groups, 3, key="groupName")


def test_list_thing_principals_and_principal_things(client):
    client.create_thing(thingName="t")
    principals = [f"{cert_arn(f'{i:064x}')}" for i in range(7)]
    for p in principals:
        client.attach_thing_principal(thingName="t", principal=p)
    pages, items = paginate(client, "list_thing_principals", "principals", page_size=3, thingName="t")
    assert_paged(pages, items, principals, 3)

    things = [f"holder-{i}" for i in range(8)]
    for name in things:
        client.create_thing(thingName=name)
        client.attach_thing_principal(thingName=name, principal=principals[0])
    pages, items = paginate(client, "list_principal_things", "things", page_size=3, principal=principals[0])
    assert_paged(pages, items, things + ["t"], 3)


def test_list_policies(client):
    names = [f"policy-{i:02}" for i in range(12)]
    for name in names:
        client.create_policy(policyName=name, policyDocument=ALLOW_ALL)
    pages, items = paginate(client, "list_policies", "policies", page_size=5)
    assert_paged(pages, items, names, 5, key="policyName")


def test_list_certificates(client):
    ids = [client.create_keys_and_certificate(setAsActive=False)["certificateId"] for _ in range(6)]
    pem = LocalCa().issue("sni")
    client.register_certificate_without_ca(certificatePem=pem)
    ids.append(cert_id_of(pem))
    pages, items = paginate(client, "list_certificates", "certificates", page_size=3)
    assert_paged(pages, items, ids, 3, key="certificateId")


def test_list_attached_policies_and_targets_for_policy(client):
    arns = [client.create_keys_and_certificate(setAsActive=True)["certificateArn"] for _ in range(7)]
    names = [f"p{i}" for i in range(10)]
    for name in names:
        client.create_policy(policyName=name, policyDocument=ALLOW_ALL)
        client.attach_policy(policyName=name, target=arns[0])
    pages, items = paginate(client, "list_attached_policies", "policies", page_size=3, target=arns[0])
    assert_paged(pages, items, names, 3, key="policyName")

    for arn in arns[1:]:
        client.attach_policy(policyName="p0", target=arn)
    pages, items = paginate(client, "list_targets_for_policy", "targets", page_size=3, policyName="p0")
    assert_paged(pages, items, arns, 3)


def test_every_listing_takes_page_sizes_from_1_to_250(client, unchecked_client):
    """The model bounds `maxResults` (RegistryMaxResults) and `pageSize`
    (PageSize) alike, from 1 to 250, and `marker` to 1024 characters: every
    listing refuses what is out of bounds with an InvalidRequestException.
    botocore checks the minimum itself, so 0 goes unchecked."""
    arn = client.create_keys_and_certificate(setAsActive=True)["certificateArn"]
    client.create_policy(policyName="p", policyDocument=ALLOW_ALL)
    client.attach_policy(policyName="p", target=arn)
    client.create_thing(thingName="t")
    client.create_thing_group(thingGroupName="g")
    client.attach_thing_principal(thingName="t", principal=arn)

    registry = [
        ("list_things", "things", {}),
        ("list_thing_types", "thingTypes", {}),
        ("list_thing_groups", "thingGroups", {}),
        ("list_things_in_thing_group", "things", {"thingGroupName": "g"}),
        ("list_thing_groups_for_thing", "thingGroups", {"thingName": "t"}),
        ("list_thing_principals", "principals", {"thingName": "t"}),
        ("list_principal_things", "things", {"principal": arn}),
    ]
    config = [
        ("list_policies", "policies", {}),
        ("list_certificates", "certificates", {}),
        ("list_attached_policies", "policies", {"target": arn}),
        ("list_targets_for_policy", "targets", {"policyName": "p"}),
        ("list_principal_policies", "policies", {"principal": arn}),
        ("list_policy_principals", "principals", {"policyName": "p"}),
    ]
    for member, operations in (("maxResults", registry), ("pageSize", config)):
        for operation, key, kwargs in operations:
            call = getattr(unchecked_client, operation)
            for bad in (0, 251):
                err = expect_error(
                    unchecked_client, "InvalidRequestException", call, **{member: bad}, **kwargs
                )
                message = err.response["Error"]["Message"]
                assert message == f"{member} must be between 1 and 250, not {bad}", (operation, message)
            for good in (1, 250):
                assert key in call(**{member: good}, **kwargs), (operation, good)

    for operation, _, kwargs in config:
        call = getattr(unchecked_client, operation)
        err = expect_error(unchecked_client, "InvalidRequestException", call, marker="A" * 1025, **kwargs)
        assert "1024" in err.response["Error"]["Message"], operation
