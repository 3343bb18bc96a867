"""Tags through boto3: given at creation (thing groups, thing types, jobs, job
templates, policies, CA certificates) or by TagResource, listed, removed,
gone with their resource; and AWS's errors."""

import json

from support import ALLOW_ALL, ARN_PREFIX, LocalCa, expect_error, group_arn, policy_arn, run_aws, thing_arn

DOCUMENT = json.dumps({"operation": "reboot"})


def tags_of(client, arn, **kwargs):
    return client.list_tags_for_resource(resourceArn=arn, **kwargs)["tags"]


def test_tags_given_at_creation_and_changed_later(client):
    client.create_thing(thingName="t1")
    client.create_thing_group(thingGroupName="fleet", tags=[{"Key": "team", "Value": "edge"}])
    client.create_thing_type(thingTypeName="sensor", tags=[{"Key": "tier", "Value": "gold"}])
    client.create_job(
        jobId="tagged", targets=[thing_arn("t1")], document=DOCUMENT,
        tags=[{"Key": "release", "Value": "2.1"}, {"Key": "owner", "Value": "ops@example.com"}],
    )
    client.create_job_template(
        jobTemplateId="tagged", description="t", document=DOCUMENT, tags=[{"Key": "kind", "Value": "reboot"}]
    )
    assert tags_of(client, group_arn("fleet")) == [{"Key": "team", "Value": "edge"}]
    assert tags_of(client, f"{ARN_PREFIX}:thingtype/sensor") == [{"Key": "tier", "Value": "gold"}]
    assert tags_of(client, f"{ARN_PREFIX}:job/tagged") == [
        {"Key": "owner", "Value": "ops@example.com"},
        {"Key": "release", "Value": "2.1"},
    ]
    assert tags_of(client, f"{ARN_PREFIX}:jobtemplate/tagged") == [{"Key": "kind", "Value": "reboot"}]

    # TagResource adds or replaces; UntagResource removes (a missing key is no error).
    client.tag_resource(
        resourceArn=group_arn("fleet"),
        tags=[{"Key": "team", "Value": "cloud"}, {"Key": "cost-center", "Value": "42"}],
    )
    assert tags_of(client, group_arn("fleet")) == [
        {"Key": "cost-center", "Value": "42"},
        {"Key": "team", "Value": "cloud"},
    ]
    client.untag_resource(resourceArn=group_arn("fleet"), tagKeys=["team", "absent"])
    assert tags_of(client, group_arn("fleet")) == [{"Key": "cost-center", "Value": "42"}]

    # Up to the limit of 50, in one page (ListTagsForResource has no maxResults).
    client.tag_resource(resourceArn=group_arn("fleet"), tags=[{"Key": f"k{i:02}", "Value": "v"} for i in range(49)])
    listed = client.list_tags_for_resource(resourceArn=group_arn("fleet"))
    assert len(listed["tags"]) == 50
    assert "nextToken" not in listed

    # A deleted resource's tags go with it.
    client.delete_thing_group(thingGroupName="fleet")
    client.create_thing_group(thingGroupName="fleet")
    assert tags_of(client, group_arn("fleet")) == []
    client.delete_job(jobId="tagged", force=True)
    expect_error(
        client, "ResourceNotFoundException", client.list_tags_for_resource, resourceArn=f"{ARN_PREFIX}:job/tagged"
    )


def test_tag_errors_change_nothing(client):
    client.create_thing_group(thingGroupName="fleet", tags=[{"Key": "team", "Value": "edge"}])
    for bad in (
        [{"Key": "aws:reserved", "Value": "x"}],
        [{"Key": "k" * 129, "Value": "x"}],
        [{"Key": "ok", "Value": "v" * 257}],
        [{"Key": "semi;colon", "Value": "x"}],
        [{"Key": f"k{i}", "Value": "v"} for i in range(50)],
    ):
        expect_error(client, "InvalidRequestException", client.tag_resource, resourceArn=group_arn("fleet"), tags=bad)
    assert tags_of(client, group_arn("fleet")) == [{"Key": "team", "Value": "edge"}]
    expect_error(
        client, "InvalidRequestException", client.create_thing_group,
        thingGroupName="reserved", tags=[{"Key": "aws:x", "Value": "y"}],
    )
    expect_error(client, "ResourceNotFoundException", client.describe_thing_group, thingGroupName="reserved")
    expect_error(
        client, "ResourceNotFoundException", client.tag_resource,
        resourceArn=group_arn("none"), tags=[{"Key": "a", "Value": "b"}],
    )
    # Resources whose tags Herald does not keep, and other accounts' resources.
    for arn in (thing_arn("t1"), "arn:aws:iot:us-east-1:999999999999:thinggroup/fleet"):
        expect_error(client, "InvalidRequestException", client.list_tags_for_resource, resourceArn=arn)
    expect_error(client, "ResourceNotFoundException", client.list_tags_for_resource, resourceArn=f"{ARN_PREFIX}:policy/p")


def test_policies_and_ca_certificates_keep_their_tags(client, tmp_path):
    client.create_policy(policyName="tagged", policyDocument=ALLOW_ALL, tags=[{"Key": "team", "Value": "edge"}])
    arn = policy_arn("tagged")
    assert tags_of(client, arn) == [{"Key": "team", "Value": "edge"}]
    client.tag_resource(resourceArn=arn, tags=[{"Key": "tier", "Value": "gold"}])
    client.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert tags_of(client, arn) == [{"Key": "tier", "Value": "gold"}]
    # Gone with the policy: one made again under the name has none.
    client.delete_policy(policyName="tagged")
    expect_error(client, "ResourceNotFoundException", client.list_tags_for_resource, resourceArn=arn)
    client.create_policy(policyName="tagged", policyDocument=ALLOW_ALL)
    assert tags_of(client, arn) == []
    expect_error(
        client, "InvalidRequestException", client.tag_resource,
        resourceArn=arn, tags=[{"Key": "aws:reserved", "Value": "x"}],
    )
    assert tags_of(client, arn) == []

    ca = LocalCa("Tagged CA")
    code = client.get_registration_code()["registrationCode"]
    registered = client.register_ca_certificate(
        caCertificate=ca.pem, verificationCertificate=ca.issue(code), tags=[{"Key": "fleet", "Value": "north"}]
    )
    ca_arn = registered["certificateArn"]
    assert tags_of(client, ca_arn) == [{"Key": "fleet", "Value": "north"}]
    # The aws CLI reads them too.
    listed = run_aws(f"aws iot list-tags-for-resource --resource-arn {ca_arn}", client.meta.endpoint_url, tmp_path)
    assert listed["tags"] == [{"Key": "fleet", "Value": "north"}]
    client.delete_ca_certificate(certificateId=registered["certificateId"])
    expect_error(client, "ResourceNotFoundException", client.list_tags_for_resource, resourceArn=ca_arn)
