"""Thing groups and membership through boto3: create, describe, update,
delete, list, and the things in them."""

from support import expect_error, group_arn, is_uuid, names_of, recent, thing_arn


def group_names(groups):
    return names_of(groups, "groupName")


def test_create_and_describe_a_root_group(client):
    created = client.create_thing_group(
        thingGroupName="building",
        thingGroupProperties={
            "thingGroupDescription": "HQ",
            "attributePayload": {"attributes": {"city": "Oslo"}},
        },
    )
    assert created["thingGroupName"] == "building"
    assert created["thingGroupArn"] == group_arn("building")
    assert is_uuid(created["thingGroupId"])

    described = client.describe_thing_group(thingGroupName="building")
    assert described["thingGroupName"] == "building"
    assert described["thingGroupId"] == created["thingGroupId"]
    assert described["thingGroupArn"] == group_arn("building")
    assert described["version"] == 1
    props = described["thingGroupProperties"]
    assert props["thingGroupDescription"] == "HQ"
    assert props["attributePayload"]["attributes"] == {"city": "Oslo"}
    meta = described["thingGroupMetadata"]
    recent(meta["creationDate"])
    assert "parentGroupName" not in meta
    assert meta.get("rootToParentThingGroups", []) == []


def test_nested_groups_know_their_ancestors(client):
    client.create_thing_group(thingGroupName="building")
    client.create_thing_group(thingGroupName="floor-1", parentGroupName="building")
    client.create_thing_group(thingGroupName="room-101", parentGroupName="floor-1")

    meta = client.describe_thing_group(thingGroupName="room-101")["thingGroupMetadata"]
    assert meta["parentGroupName"] == "floor-1"
    assert meta["rootToParentThingGroups"] == [
        {"groupName": "building", "groupArn": group_arn("building")},
        {"groupName": "floor-1", "groupArn": group_arn("floor-1")},
    ]
    meta = client.describe_thing_group(thingGroupName="floor-1")["thingGroupMetadata"]
    assert meta["parentGroupName"] == "building"
    assert meta["rootToParentThingGroups"] == [
        {"groupName": "building", "groupArn": group_arn("building")}
    ]


def test_group_creation_errors(client):
    expect_error(
        client,
        "ResourceNotFoundException",
        client.create_thing_group,
        thingGroupName="orphan",
        parentGroupName="missing",
    )
    expect_error(client, "InvalidRequestException", client.create_thing_group, thingGroupName="bad name")

    # A group may be at most 7 deep.
    parent = None
    for depth in range(1, 8):
        kwargs = {"thingGroupName": f"g{depth}"}
        if parent:
            kwargs["parentGroupName"] = parent
        client.create_thing_group(**kwargs)
        parent = f"g{depth}"
    expect_error(
        client,
        "InvalidRequestException",
        client.create_thing_group,
        thingGroupName="g8",
        parentGroupName="g7",
    )
    expect_error(client, "ResourceNotFoundException", client.describe_thing_group, thingGroupName="g8")
    expect_error(client, "ResourceNotFoundException", client.describe_thing_group, thingGroupName="orphan")


def test_a_group_has_at_most_100_children(client):
    client.create_thing_group(thingGroupName="parent")
    for i in range(100):
        client.create_thing_group(thingGroupName=f"child-{i:03}", parentGroupName="parent")
    expect_error(
        client,
        "LimitExceededException",
        client.create_thing_group,
        thingGroupName="child-100",
        parentGroupName="parent",
    )
    children = client.list_thing_groups(parentGroup="parent", maxResults=250)["thingGroups"]
    assert len(children) == 100


def test_creating_the_same_group_again(client):
    props = {"thingGroupDescription": "d"}
    first = client.create_thing_group(thingGroupName="g", thingGroupProperties=props)
    again = client.create_thing_group(thingGroupName="g", thingGroupProperties=props)
    assert again["thingGroupId"] == first["thingGroupId"]
    assert client.describe_thing_group(thingGroupName="g")["version"] == 1

    err = expect_error(
        client,
        "ResourceAlreadyExistsException",
        client.create_thing_group,
        thingGroupName="g",
        thingGroupProperties={"thingGroupDescription": "other"},
    )
    assert err.response["resourceId"] == first["thingGroupId"]
    assert err.response["resourceArn"] == group_arn("g")


def test_update_a_group(client):
    client.create_thing_group(
        thingGroupName="g",
        thingGroupProperties={
            "thingGroupDescription": "one",
            "attributePayload": {"attributes": {"a": "1"}},
        },
    )
    updated = client.update_thing_group(
        thingGroupName="g",
        thingGroupProperties={"attributePayload": {"attributes": {"b": "2"}, "merge": True}},
    )
    assert updated["version"] == 2
    described = client.describe_thing_group(thingGroupName="g")
    assert described["version"] == 2
    props = described["thingGroupProperties"]
    assert props["thingGroupDescription"] == "one"
    assert props["attributePayload"]["attributes"] == {"a": "1", "b": "2"}

    updated = client.update_thing_group(
        thingGroupName="g",
        thingGroupProperties={
            "thingGroupDescription": "two",
            "attributePayload": {"attributes": {"c": "3"}},
        },
        expectedVersion=2,
    )
    assert updated["version"] == 3
    props = client.describe_thing_group(thingGroupName="g")["thingGroupProperties"]
    assert props["thingGroupDescription"] == "two"
    assert props["attributePayload"]["attributes"] == {"c": "3"}

    expect_error(
        client,
        "VersionConflictException",
        client.update_thing_group,
        thingGroupName="g",
        thingGroupProperties={"thingGroupDescription": "three"},
        expectedVersion=2,
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        client.update_thing_group,
        thingGroupName="ghost",
        thingGroupProperties={"thingGroupDescription": "x"},
    )
    assert client.describe_thing_group(thingGroupName="g")["version"] == 3


def test_delete_a_group(client):
    client.create_thing_group(thingGroupName="parent")
    client.create_thing_group(thingGroupName="child", parentGroupName="parent")
    # Not while it has children.
    expect_error(client, "InvalidRequestException", client.delete_thing_group, thingGroupName="parent")
    expect_error(
        client,
        "VersionConflictException",
        client.delete_thing_group,
        thingGroupName="child",
        expectedVersion=5,
    )
    client.delete_thing_group(thingGroupName="child", expectedVersion=1)
    client.delete_thing_group(thingGroupName="parent")
    expect_error(client, "ResourceNotFoundException", client.describe_thing_group, thingGroupName="parent")
    # A missing group deletes fine.
    client.delete_thing_group(thingGroupName="parent")
    assert client.list_thing_groups()["thingGroups"] == []


def test_list_thing_groups(client):
    client.create_thing_group(thingGroupName="b-root")
    client.create_thing_group(thingGroupName="a-root")
    client.create_thing_group(thingGroupName="a-child", parentGroupName="a-root")
    client.create_thing_group(thingGroupName="b-child", parentGroupName="a-root")
    client.create_thing_group(thingGroupName="a-grandchild", parentGroupName="a-child")

    every = client.list_thing_groups()["thingGroups"]
    assert group_names(every) == ["a-child", "a-grandchild", "a-root", "b-child", "b-root"]
    assert every[0] == {"groupName": "a-child", "groupArn": group_arn("a-child")}

    # AWS IoT's default is recursive: descendants at every depth.
    assert group_names(client.list_thing_groups(parentGroup="a-root")["thingGroups"]) == [
        "a-child",
        "a-grandchild",
        "b-child",
    ]
    assert group_names(
        client.list_thing_groups(parentGroup="a-root", recursive=False)["thingGroups"]
    ) == ["a-child", "b-child"]
    assert group_names(
        client.list_thing_groups(parentGroup="a-root", recursive=True)["thingGroups"]
    ) == ["a-child", "a-grandchild", "b-child"]
    # Not recursive and no parent: the root groups only.
    assert group_names(client.list_thing_groups(recursive=False)["thingGroups"]) == [
        "a-root",
        "b-root",
    ]
    assert group_names(
        client.list_thing_groups(recursive=False, namePrefixFilter="a-c")["thingGroups"]
    ) == []
    assert group_names(client.list_thing_groups(namePrefixFilter="a-")["thingGroups"]) == [
        "a-child",
        "a-grandchild",
        "a-root",
    ]
    assert group_names(
        client.list_thing_groups(parentGroup="a-root", recursive=True, namePrefixFilter="a-")[
            "thingGroups"
        ]
    ) == ["a-child", "a-grandchild"]
    expect_error(client, "ResourceNotFoundException", client.list_thing_groups, parentGroup="missing")


# ---------------------------------------------------------------- membership


def test_add_and_remove_things_by_name_and_arn(client):
    client.create_thing_group(thingGroupName="g")
    client.create_thing(thingName="t1")
    client.create_thing(thingName="t2")

    client.add_thing_to_thing_group(thingGroupName="g", thingName="t1")
    client.add_thing_to_thing_group(thingGroupArn=group_arn("g"), thingArn=thing_arn("t2"))
    # Already a member: fine.
    client.add_thing_to_thing_group(thingGroupName="g", thingName="t1")
    assert sorted(client.list_things_in_thing_group(thingGroupName="g")["things"]) == ["t1", "t2"]
    assert client.list_thing_groups_for_thing(thingName="t1")["thingGroups"] == [
        {"groupName": "g", "groupArn": group_arn("g")}
    ]

    client.remove_thing_from_thing_group(thingGroupName="g", thingName="t1")
    client.remove_thing_from_thing_group(thingGroupArn=group_arn("g"), thingArn=thing_arn("t2"))
    # Not a member: fine.
    client.remove_thing_from_thing_group(thingGroupName="g", thingName="t1")
    assert client.list_things_in_thing_group(thingGroupName="g")["things"] == []
    assert client.list_thing_groups_for_thing(thingName="t1")["thingGroups"] == []


def test_membership_errors(client):
    client.create_thing_group(thingGroupName="g")
    client.create_thing(thingName="t")
    expect_error(client, "InvalidRequestException", client.add_thing_to_thing_group, thingName="t")
    expect_error(client, "InvalidRequestException", client.add_thing_to_thing_group, thingGroupName="g")
    expect_error(
        client,
        "ResourceNotFoundException",
        client.add_thing_to_thing_group,
        thingGroupName="missing",
        thingName="t",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        client.add_thing_to_thing_group,
        thingGroupName="g",
        thingName="missing",
    )
    expect_error(
        client, "ResourceNotFoundException", client.list_things_in_thing_group, thingGroupName="missing"
    )
    expect_error(
        client, "ResourceNotFoundException", client.list_thing_groups_for_thing, thingName="missing"
    )
    assert client.list_things_in_thing_group(thingGroupName="g")["things"] == []


def test_a_thing_is_in_at_most_one_group_of_a_hierarchy(client):
    client.create_thing_group(thingGroupName="root")
    client.create_thing_group(thingGroupName="left", parentGroupName="root")
    client.create_thing_group(thingGroupName="right", parentGroupName="root")
    client.create_thing(thingName="t")
    client.add_thing_to_thing_group(thingGroupName="left", thingName="t")
    expect_error(
        client,
        "InvalidRequestException",
        client.add_thing_to_thing_group,
        thingGroupName="right",
        thingName="t",
    )
    assert group_names(client.list_thing_groups_for_thing(thingName="t")["thingGroups"]) == ["left"]


def test_a_thing_is_in_at_most_10_groups(client):
    client.create_thing(thingName="t")
    for i in range(11):
        client.create_thing_group(thingGroupName=f"g{i:02}")
    for i in range(10):
        client.add_thing_to_thing_group(thingGroupName=f"g{i:02}", thingName="t")
    expect_error(
        client,
        "LimitExceededException",
        client.add_thing_to_thing_group,
        thingGroupName="g10",
        thingName="t",
    )
    groups = group_names(client.list_thing_groups_for_thing(thingName="t")["thingGroups"])
    assert groups == [f"g{i:02}" for i in range(10)]


def test_list_things_in_a_group_recursively(client):
    client.create_thing_group(thingGroupName="root")
    client.create_thing_group(thingGroupName="child", parentGroupName="root")
    client.create_thing_group(thingGroupName="other")
    for name in ["t1", "t2", "t3"]:
        client.create_thing(thingName=name)
    client.add_thing_to_thing_group(thingGroupName="root", thingName="t1")
    client.add_thing_to_thing_group(thingGroupName="child", thingName="t2")
    client.add_thing_to_thing_group(thingGroupName="other", thingName="t2")
    client.add_thing_to_thing_group(thingGroupName="other", thingName="t3")

    assert client.list_things_in_thing_group(thingGroupName="root")["things"] == ["t1"]
    assert sorted(
        client.list_things_in_thing_group(thingGroupName="root", recursive=True)["things"]
    ) == ["t1", "t2"]
    assert group_names(client.list_thing_groups_for_thing(thingName="t2")["thingGroups"]) == [
        "child",
        "other",
    ]


def test_update_thing_groups_for_thing(client):
    for g in ["a", "b", "c"]:
        client.create_thing_group(thingGroupName=g)
    client.create_thing(thingName="t")
    client.add_thing_to_thing_group(thingGroupName="a", thingName="t")

    client.update_thing_groups_for_thing(
        thingName="t", thingGroupsToAdd=["b", "c"], thingGroupsToRemove=["a"]
    )
    assert group_names(client.list_thing_groups_for_thing(thingName="t")["thingGroups"]) == ["b", "c"]

    # All of it or nothing.
    expect_error(
        client,
        "ResourceNotFoundException",
        client.update_thing_groups_for_thing,
        thingName="t",
        thingGroupsToAdd=["a", "missing"],
        thingGroupsToRemove=["b"],
    )
    assert group_names(client.list_thing_groups_for_thing(thingName="t")["thingGroups"]) == ["b", "c"]
    expect_error(
        client,
        "ResourceNotFoundException",
        client.update_thing_groups_for_thing,
        thingName="missing",
        thingGroupsToAdd=["a"],
    )


def test_deleting_a_thing_or_group_ends_its_memberships(client):
    client.create_thing_group(thingGroupName="g1")
    client.create_thing_group(thingGroupName="g2")
    client.create_thing(thingName="t1")
    client.create_thing(thingName="t2")
    for g in ["g1", "g2"]:
        for t in ["t1", "t2"]:
            client.add_thing_to_thing_group(thingGroupName=g, thingName=t)

    client.delete_thing(thingName="t1")
    assert client.list_things_in_thing_group(thingGroupName="g1")["things"] == ["t2"]

    client.delete_thing_group(thingGroupName="g1")
    assert group_names(client.list_thing_groups_for_thing(thingName="t2")["thingGroups"]) == ["g2"]


def test_updating_only_the_description_keeps_the_attributes(client):
    client.create_thing_group(
        thingGroupName="g",
        thingGroupProperties={"attributePayload": {"attributes": {"a": "1"}}},
        tags=[{"Key": "team", "Value": "devices"}],
    )
    client.update_thing_group(thingGroupName="g", thingGroupProperties={"thingGroupDescription": "new"})
    props = client.describe_thing_group(thingGroupName="g")["thingGroupProperties"]
    assert props["thingGroupDescription"] == "new"
    assert props["attributePayload"]["attributes"] == {"a": "1"}


def test_a_group_has_at_most_50_attributes(client):
    attrs = {f"a{i:02}": "v" for i in range(50)}
    client.create_thing_group(thingGroupName="g", thingGroupProperties={"attributePayload": {"attributes": attrs}})
    assert client.describe_thing_group(thingGroupName="g")["thingGroupProperties"]["attributePayload"]["attributes"] == attrs
    expect_error(
        client,
        "InvalidRequestException",
        client.create_thing_group,
        thingGroupName="h",
        thingGroupProperties={"attributePayload": {"attributes": {f"a{i:02}": "v" for i in range(51)}}},
    )


def test_membership_does_not_change_the_thing_version(client):
    client.create_thing_group(thingGroupName="g")
    client.create_thing(thingName="t")
    client.add_thing_to_thing_group(thingGroupName="g", thingName="t")
    assert client.describe_thing(thingName="t")["version"] == 1
    assert client.describe_thing_group(thingGroupName="g")["version"] == 1
