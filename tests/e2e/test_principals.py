"""Thing principals through boto3: attach, detach, and both listings (the
principal travels in the `x-amzn-principal` header)."""

from support import expect_error


def test_attach_list_and_detach_principals(client):
    cert = client.create_keys_and_certificate(setAsActive=True)
    other = client.create_keys_and_certificate(setAsActive=True)
    arn, other_arn = cert["certificateArn"], other["certificateArn"]
    client.create_thing(thingName="t1")
    client.create_thing(thingName="t2")

    client.attach_thing_principal(thingName="t1", principal=arn)
    client.attach_thing_principal(thingName="t1", principal=arn)  # twice: fine
    client.attach_thing_principal(thingName="t1", principal=other_arn)
    client.attach_thing_principal(thingName="t2", principal=arn)

    assert sorted(client.list_thing_principals(thingName="t1")["principals"]) == sorted(
        [arn, other_arn]
    )
    assert client.list_thing_principals(thingName="t2")["principals"] == [arn]
    assert sorted(client.list_principal_things(principal=arn)["things"]) == ["t1", "t2"]
    assert client.list_principal_things(principal=other_arn)["things"] == ["t1"]

    client.detach_thing_principal(thingName="t1", principal=arn)
    client.detach_thing_principal(thingName="t1", principal=arn)  # not attached: fine
    assert client.list_thing_principals(thingName="t1")["principals"] == [other_arn]
    assert client.list_principal_things(principal=arn)["things"] == ["t2"]


def test_any_principal_string_can_be_attached(client):
    client.create_thing(thingName="t")
    principal = "arn:aws:iam::123456789012:user/someone"
    client.attach_thing_principal(thingName="t", principal=principal)
    assert client.list_thing_principals(thingName="t")["principals"] == [principal]
    assert client.list_principal_things(principal=principal)["things"] == ["t"]
    assert client.list_principal_things(principal="nobody")["things"] == []


def test_principal_errors(client):
    arn = client.create_keys_and_certificate(setAsActive=True)["certificateArn"]
    expect_error(
        client, "ResourceNotFoundException", client.attach_thing_principal, thingName="ghost", principal=arn
    )
    expect_error(
        client, "ResourceNotFoundException", client.detach_thing_principal, thingName="ghost", principal=arn
    )
    err = expect_error(client, "ResourceNotFoundException", client.list_thing_principals, thingName="ghost")
    assert err.response["Error"]["Message"] == (
        "Failed to list principals for thing ghost because the thing does not exist in your account"
    )
    assert client.list_principal_things(principal=arn)["things"] == []


def test_exclusive_attachments_and_the_v2_listings(client):
    solo = client.create_keys_and_certificate(setAsActive=True)["certificateArn"]
    shared = client.create_keys_and_certificate(setAsActive=True)["certificateArn"]
    client.create_thing(thingName="lamp")
    client.create_thing(thingName="fan")

    client.attach_thing_principal(thingName="lamp", principal=solo, thingPrincipalType="EXCLUSIVE_THING")
    client.attach_thing_principal(thingName="lamp", principal=shared)
    client.attach_thing_principal(thingName="fan", principal=shared, thingPrincipalType="NON_EXCLUSIVE_THING")

    # Exclusive to lamp: fan may not have it; shared has two things: not exclusive.
    expect_error(client, "InvalidRequestException", client.attach_thing_principal, thingName="fan", principal=solo)
    expect_error(
        client,
        "InvalidRequestException",
        client.attach_thing_principal,
        thingName="lamp",
        principal=shared,
        thingPrincipalType="EXCLUSIVE_THING",
    )

    listed = client.list_thing_principals_v2(thingName="lamp")
    assert sorted(listed["thingPrincipalObjects"], key=lambda o: o["principal"]) == sorted(
        [
            {"principal": solo, "thingPrincipalType": "EXCLUSIVE_THING"},
            {"principal": shared, "thingPrincipalType": "NON_EXCLUSIVE_THING"},
        ],
        key=lambda o: o["principal"],
    )
    assert "nextToken" not in listed
    assert client.list_thing_principals_v2(thingName="lamp", thingPrincipalType="EXCLUSIVE_THING")[
        "thingPrincipalObjects"
    ] == [{"principal": solo, "thingPrincipalType": "EXCLUSIVE_THING"}]
    assert client.list_principal_things_v2(principal=shared)["principalThingObjects"] == [
        {"thingName": "fan", "thingPrincipalType": "NON_EXCLUSIVE_THING"},
        {"thingName": "lamp", "thingPrincipalType": "NON_EXCLUSIVE_THING"},
    ]
    assert client.list_principal_things_v2(principal=solo, thingPrincipalType="NON_EXCLUSIVE_THING")[
        "principalThingObjects"
    ] == []
    # The v1 listing shows both kinds.
    assert sorted(client.list_thing_principals(thingName="lamp")["principals"]) == sorted([solo, shared])

    err = expect_error(client, "ResourceNotFoundException", client.list_thing_principals_v2, thingName="ghost")
    assert err.response["Error"]["Message"] == (
        "Failed to list principals for thing ghost because the thing does not exist in your account"
    )
