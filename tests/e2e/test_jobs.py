"""Jobs through boto3: create on things and groups, describe, list, the
document, executions, cancel and delete, and AWS's errors."""

import json
from datetime import datetime, timedelta, timezone

from support import ARN_PREFIX, expect_error, group_arn, recent, thing_arn

DOCUMENT = json.dumps({"operation": "update", "url": "https://example.com/fw.bin"})


def job_arn(job_id):
    return f"{ARN_PREFIX}:job/{job_id}"


def fleet(client, things=("t1", "t2", "t3")):
    """Things in a group `fleet` (t1 directly, t2 in its child `fleet-eu`) and t3 outside."""
    for name in things:
        client.create_thing(thingName=name)
    client.create_thing_group(thingGroupName="fleet")
    client.create_thing_group(thingGroupName="fleet-eu", parentGroupName="fleet")
    client.add_thing_to_thing_group(thingGroupName="fleet", thingName="t1")
    client.add_thing_to_thing_group(thingGroupName="fleet-eu", thingName="t2")


def execution_statuses(client, job_id):
    summaries = client.list_job_executions_for_job(jobId=job_id)["executionSummaries"]
    return {s["thingArn"]: s["jobExecutionSummary"]["status"] for s in summaries}


def test_a_job_on_a_group_and_a_thing(client):
    fleet(client)
    created = client.create_job(
        jobId="fw-2",
        targets=[group_arn("fleet"), thing_arn("t3")],
        document=DOCUMENT,
        description="firmware 2",
        targetSelection="SNAPSHOT",
        timeoutConfig={"inProgressTimeoutInMinutes": 30},
    )
    assert created["jobId"] == "fw-2"
    assert created["jobArn"] == job_arn("fw-2")
    assert created["description"] == "firmware 2"

    job = client.describe_job(jobId="fw-2")["job"]
    assert job["jobId"] == "fw-2"
    assert job["status"] == "IN_PROGRESS"
    assert job["targetSelection"] == "SNAPSHOT"
    assert job["targets"] == [group_arn("fleet"), thing_arn("t3")]
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 30}
    assert job["forceCanceled"] is False
    recent(job["createdAt"])
    recent(job["lastUpdatedAt"])
    assert "completedAt" not in job
    details = job["jobProcessDetails"]
    assert details["numberOfQueuedThings"] == 3
    assert details["numberOfSucceededThings"] == 0

    assert client.get_job_document(jobId="fw-2")["document"] == DOCUMENT
    assert execution_statuses(client, "fw-2") == {
        thing_arn("t1"): "QUEUED",
        thing_arn("t2"): "QUEUED",
        thing_arn("t3"): "QUEUED",
    }
    execution = client.describe_job_execution(jobId="fw-2", thingName="t2")["execution"]
    assert execution["jobId"] == "fw-2"
    assert execution["thingArn"] == thing_arn("t2")
    assert execution["status"] == "QUEUED"
    assert execution["executionNumber"] == 1
    assert execution["versionNumber"] == 1
    recent(execution["queuedAt"])
    assert "startedAt" not in execution

    for_thing = client.list_job_executions_for_thing(thingName="t3")["executionSummaries"]
    assert [s["jobId"] for s in for_thing] == ["fw-2"]
    assert for_thing[0]["jobExecutionSummary"]["status"] == "QUEUED"

    listed = client.list_jobs()["jobs"]
    assert [j["jobId"] for j in listed] == ["fw-2"]
    assert listed[0]["jobArn"] == job_arn("fw-2")
    assert client.list_jobs(thingGroupName="fleet")["jobs"][0]["jobId"] == "fw-2"
    assert client.list_jobs(status="COMPLETED")["jobs"] == []
    assert client.list_jobs(targetSelection="CONTINUOUS")["jobs"] == []


def test_listings_page(client):
    client.create_thing(thingName="t1")
    for i in range(5):
        client.create_job(jobId=f"job-{i}", targets=[thing_arn("t1")], document=DOCUMENT)
    seen, token = [], None
    while True:
        kwargs = {"maxResults": 2}
        if token:
            kwargs["nextToken"] = token
        page = client.list_jobs(**kwargs)
        assert len(page["jobs"]) <= 2
        seen += [j["jobId"] for j in page["jobs"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == [f"job-{i}" for i in range(5)]
    paginator = client.get_paginator("list_job_executions_for_thing")
    pages = list(paginator.paginate(thingName="t1", PaginationConfig={"PageSize": 2}))
    assert sum(len(p["executionSummaries"]) for p in pages) == 5


def test_cancel_and_delete(client):
    fleet(client)
    client.create_job(jobId="fw", targets=[group_arn("fleet")], document=DOCUMENT)
    expect_error(client, "InvalidStateTransitionException", client.delete_job, jobId="fw")
    canceled = client.cancel_job(jobId="fw", reasonCode="BAD_BUILD", comment="rolled back")
    assert canceled["jobArn"] == job_arn("fw")
    job = client.describe_job(jobId="fw")["job"]
    assert job["status"] == "CANCELED"
    assert job["reasonCode"] == "BAD_BUILD"
    assert job["comment"] == "rolled back"
    assert job["jobProcessDetails"]["numberOfCanceledThings"] == 2
    assert set(execution_statuses(client, "fw").values()) == {"CANCELED"}
    assert client.list_job_executions_for_job(jobId="fw", status="QUEUED")["executionSummaries"] == []

    client.delete_job(jobId="fw")
    expect_error(client, "ResourceNotFoundException", client.describe_job, jobId="fw")
    assert client.list_job_executions_for_thing(thingName="t1")["executionSummaries"] == []

    client.create_job(jobId="fw", targets=[thing_arn("t3")], document=DOCUMENT)
    client.delete_job(jobId="fw", force=True)
    expect_error(client, "ResourceNotFoundException", client.get_job_document, jobId="fw")


def test_one_execution_cancelled_and_deleted(client):
    fleet(client)
    client.create_job(jobId="fw", targets=[thing_arn("t1"), thing_arn("t3")], document=DOCUMENT)
    expect_error(
        client,
        "VersionConflictException",
        client.cancel_job_execution,
        jobId="fw",
        thingName="t1",
        expectedVersion=7,
    )
    expect_error(
        client,
        "InvalidStateTransitionException",
        client.delete_job_execution,
        jobId="fw",
        thingName="t3",
        executionNumber=1,
    )
    client.cancel_job_execution(
        jobId="fw", thingName="t1", expectedVersion=1, statusDetails={"why": "replaced"}
    )
    execution = client.describe_job_execution(jobId="fw", thingName="t1")["execution"]
    assert execution["status"] == "CANCELED"
    assert execution["versionNumber"] == 2
    assert execution["statusDetails"] == {"detailsMap": {"why": "replaced"}}
    expect_error(
        client,
        "InvalidStateTransitionException",
        client.cancel_job_execution,
        jobId="fw",
        thingName="t1",
    )
    client.delete_job_execution(jobId="fw", thingName="t3", executionNumber=1, force=True)
    expect_error(
        client,
        "ResourceNotFoundException",
        client.describe_job_execution,
        jobId="fw",
        thingName="t3",
    )
    # Nothing is pending any more: the snapshot job is complete.
    job = client.describe_job(jobId="fw")["job"]
    assert job["status"] == "COMPLETED"
    recent(job["completedAt"])


def test_continuous_jobs_reach_things_that_join_later(client):
    fleet(client)
    client.create_job(
        jobId="follow", targets=[group_arn("fleet-eu")], document=DOCUMENT,
        targetSelection="CONTINUOUS",
    )
    client.add_thing_to_thing_group(thingGroupName="fleet-eu", thingName="t3")
    assert execution_statuses(client, "follow") == {
        thing_arn("t2"): "QUEUED",
        thing_arn("t3"): "QUEUED",
    }
    client.remove_thing_from_thing_group(thingGroupName="fleet-eu", thingName="t3")
    assert execution_statuses(client, "follow")[thing_arn("t3")] == "REMOVED"
    job = client.describe_job(jobId="follow")["job"]
    assert job["targetSelection"] == "CONTINUOUS"
    assert job["status"] == "IN_PROGRESS"
    # A deleted group is followed no more, even by a group later made with its name.
    assert [j["jobId"] for j in client.list_jobs(thingGroupName="fleet-eu")["jobs"]] == ["follow"]
    client.remove_thing_from_thing_group(thingGroupName="fleet-eu", thingName="t2")
    client.delete_thing_group(thingGroupName="fleet-eu")
    assert client.list_jobs(thingGroupName="fleet-eu")["jobs"] == []
    client.create_thing_group(thingGroupName="fleet-eu")
    client.add_thing_to_thing_group(thingGroupName="fleet-eu", thingName="t1")
    assert thing_arn("t1") not in execution_statuses(client, "follow")


def test_update_job_and_associate_targets(client):
    fleet(client)
    client.create_job(
        jobId="follow", targets=[thing_arn("t1")], document=DOCUMENT, targetSelection="CONTINUOUS"
    )
    client.update_job(jobId="follow", description="now with a timeout", timeoutConfig={"inProgressTimeoutInMinutes": 5})
    job = client.describe_job(jobId="follow")["job"]
    assert job["description"] == "now with a timeout"
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 5}
    # The retry, abort and rollout configurations are replaced as given.
    client.update_job(
        jobId="follow",
        jobExecutionsRolloutConfig={"maximumPerMinute": 10},
        jobExecutionsRetryConfig={"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 2}]},
    )
    job = client.describe_job(jobId="follow")["job"]
    assert job["jobExecutionsRolloutConfig"] == {"maximumPerMinute": 10}
    assert job["jobExecutionsRetryConfig"] == {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 2}]}
    assert job["description"] == "now with a timeout"
    expect_error(
        client, "InvalidRequestException", client.update_job, jobId="follow",
        jobExecutionsRolloutConfig={"maximumPerMinute": 1001},
    )

    associated = client.associate_targets_with_job(
        jobId="follow", targets=[group_arn("fleet-eu"), group_arn("fleet-eu")], comment="EU too"
    )
    assert associated["jobArn"] == job_arn("follow")
    assert client.describe_job(jobId="follow")["job"]["targets"] == [thing_arn("t1"), group_arn("fleet-eu")]
    assert execution_statuses(client, "follow") == {thing_arn("t1"): "QUEUED", thing_arn("t2"): "QUEUED"}
    # The group is followed from now on.
    client.add_thing_to_thing_group(thingGroupName="fleet-eu", thingName="t3")
    assert execution_statuses(client, "follow")[thing_arn("t3")] == "QUEUED"

    client.create_job(jobId="once", targets=[thing_arn("t1")], document=DOCUMENT)
    expect_error(
        client, "InvalidRequestException", client.associate_targets_with_job, jobId="once", targets=[thing_arn("t2")]
    )
    expect_error(client, "ResourceNotFoundException", client.update_job, jobId="nothing", description="x")


def test_job_templates(client):
    client.create_thing(thingName="t1")
    created = client.create_job_template(
        jobTemplateId="fw-template", description="firmware", document=DOCUMENT,
        timeoutConfig={"inProgressTimeoutInMinutes": 10},
    )
    assert created["jobTemplateId"] == "fw-template"
    template_arn = f"{ARN_PREFIX}:jobtemplate/fw-template"
    assert created["jobTemplateArn"] == template_arn
    described = client.describe_job_template(jobTemplateId="fw-template")
    assert described["document"] == DOCUMENT
    assert described["description"] == "firmware"
    assert described["timeoutConfig"] == {"inProgressTimeoutInMinutes": 10}
    recent(described["createdAt"])
    expect_error(
        client, "ConflictException", client.create_job_template,
        jobTemplateId="fw-template", description="again", document=DOCUMENT,
    )
    # A template holds the configurations a job created from it starts with.
    retries = {"criteriaList": [{"failureType": "ALL", "numberOfRetries": 1}]}
    abort = {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50.0,
                               "minNumberOfExecutedThings": 2}]}
    rollout = {"maximumPerMinute": 100}
    client.create_job_template(
        jobTemplateId="with-configs", description="r", document=DOCUMENT,
        jobExecutionsRetryConfig=retries, abortConfig=abort, jobExecutionsRolloutConfig=rollout,
    )
    described = client.describe_job_template(jobTemplateId="with-configs")
    assert (described["jobExecutionsRetryConfig"], described["abortConfig"]) == (retries, abort)
    assert described["jobExecutionsRolloutConfig"] == rollout
    client.create_job(
        jobId="configured", targets=[thing_arn("t1")],
        jobTemplateArn=f"{ARN_PREFIX}:jobtemplate/with-configs",
    )
    job = client.describe_job(jobId="configured")["job"]
    assert (job["jobExecutionsRetryConfig"], job["abortConfig"]) == (retries, abort)
    assert job["jobExecutionsRolloutConfig"] == rollout
    expect_error(
        client, "InvalidRequestException", client.create_job_template,
        jobTemplateId="bad-retries", description="r", document=DOCUMENT,
        jobExecutionsRetryConfig={"criteriaList": [{"failureType": "ALL", "numberOfRetries": 11}]},
    )

    client.create_job(jobId="from-template", targets=[thing_arn("t1")], jobTemplateArn=template_arn)
    job = client.describe_job(jobId="from-template")["job"]
    assert job["jobTemplateArn"] == template_arn
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 10}
    assert client.get_job_document(jobId="from-template")["document"] == DOCUMENT

    # A template from a job.
    client.create_job_template(jobTemplateId="copy", description="a copy", jobArn=job_arn("from-template"))
    assert client.describe_job_template(jobTemplateId="copy")["document"] == DOCUMENT
    listed = client.list_job_templates()["jobTemplates"]
    assert [t["jobTemplateId"] for t in listed] == ["copy", "fw-template", "with-configs"]

    client.delete_job_template(jobTemplateId="copy")
    expect_error(client, "ResourceNotFoundException", client.describe_job_template, jobTemplateId="copy")
    expect_error(
        client, "ResourceNotFoundException", client.create_job,
        jobId="orphan", targets=[thing_arn("t1")], jobTemplateArn=f"{ARN_PREFIX}:jobtemplate/copy",
    )


def test_failed_executions_are_retried(client, jobs_data):
    client.create_thing(thingName="t1")
    client.create_job(
        jobId="retried", targets=[thing_arn("t1")], document=DOCUMENT,
        jobExecutionsRetryConfig={"criteriaList": [{"failureType": "ALL", "numberOfRetries": 1}]},
    )
    job = client.describe_job(jobId="retried")["job"]
    assert job["jobExecutionsRetryConfig"] == {"criteriaList": [{"failureType": "ALL", "numberOfRetries": 1}]}
    jobs_data.update_job_execution(thingName="t1", jobId="retried", status="FAILED")
    summary = client.list_job_executions_for_job(jobId="retried")["executionSummaries"][0]["jobExecutionSummary"]
    assert (summary["status"], summary["executionNumber"], summary["retryAttempt"]) == ("QUEUED", 2, 1)
    expect_error(
        client, "InvalidRequestException", client.create_job, jobId="bad", targets=[thing_arn("t1")],
        document=DOCUMENT, jobExecutionsRetryConfig={"criteriaList": [{"failureType": "ALL", "numberOfRetries": 11}]},
    )


def test_a_job_aborts_when_enough_executions_fail(client, jobs_data):
    for name in ("t1", "t2", "t3"):
        client.create_thing(thingName=name)
    abort = {"criteriaList": [
        {"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 50.0, "minNumberOfExecutedThings": 2}
    ]}
    client.create_job(
        jobId="fragile", targets=[thing_arn(t) for t in ("t1", "t2", "t3")], document=DOCUMENT, abortConfig=abort
    )
    assert client.describe_job(jobId="fragile")["job"]["abortConfig"] == abort
    jobs_data.update_job_execution(thingName="t1", jobId="fragile", status="REJECTED")
    jobs_data.update_job_execution(thingName="t2", jobId="fragile", status="FAILED")
    job = client.describe_job(jobId="fragile")["job"]
    assert job["status"] == "CANCELED"
    assert "abortConfig" in job["comment"]
    assert execution_statuses(client, "fragile")[thing_arn("t3")] == "CANCELED"


def schedule_time(minutes_ahead):
    """A schedule time (UTC, yyyy-MM-ddTHH:mm) `minutes_ahead` from now, on a whole minute."""
    at = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=minutes_ahead)
    return at.strftime("%Y-%m-%dT%H:%M")


def test_a_rollout_creates_executions_at_its_rate(client):
    for name in ("r1", "r2", "r3", "r4", "r5"):
        client.create_thing(thingName=name)
    rollout = {
        "maximumPerMinute": 50,
        "exponentialRate": {
            "baseRatePerMinute": 2,
            "incrementFactor": 1.5,
            "rateIncreaseCriteria": {"numberOfSucceededThings": 2},
        },
    }
    client.create_job(
        jobId="rolled",
        targets=[thing_arn(n) for n in ("r1", "r2", "r3", "r4", "r5")],
        document=DOCUMENT,
        jobExecutionsRolloutConfig=rollout,
    )
    job = client.describe_job(jobId="rolled")["job"]
    assert job["jobExecutionsRolloutConfig"] == rollout
    assert job["status"] == "IN_PROGRESS"
    # The base rate: two things this minute, the others in the next ones.
    assert job["jobProcessDetails"]["numberOfQueuedThings"] == 2
    assert sorted(execution_statuses(client, "rolled")) == [thing_arn("r1"), thing_arn("r2")]
    # Cancelling ends the rollout: the waiting things get nothing.
    client.cancel_job(jobId="rolled")
    assert set(execution_statuses(client, "rolled").values()) == {"CANCELED"}
    assert len(execution_statuses(client, "rolled")) == 2

    for bad in (
        {"maximumPerMinute": 1001},
        {"exponentialRate": {"baseRatePerMinute": 2, "incrementFactor": 1.25,
                             "rateIncreaseCriteria": {"numberOfNotifiedThings": 1}}},
        {"exponentialRate": {"baseRatePerMinute": 2, "incrementFactor": 2,
                             "rateIncreaseCriteria": {}}},
    ):
        expect_error(
            client, "InvalidRequestException", client.create_job,
            jobId="bad", targets=[thing_arn("r1")], document=DOCUMENT, jobExecutionsRolloutConfig=bad,
        )


def test_a_scheduled_job_waits_for_its_start_time(client):
    client.create_thing(thingName="later")
    start, end = schedule_time(90), schedule_time(150)
    client.create_job(
        jobId="later",
        targets=[thing_arn("later")],
        document=DOCUMENT,
        schedulingConfig={"startTime": start, "endTime": end, "endBehavior": "CANCEL"},
    )
    job = client.describe_job(jobId="later")["job"]
    assert job["status"] == "SCHEDULED"
    assert job["schedulingConfig"] == {"startTime": start, "endTime": end, "endBehavior": "CANCEL"}
    assert execution_statuses(client, "later") == {}
    assert [j["jobId"] for j in client.list_jobs(status="SCHEDULED")["jobs"]] == ["later"]
    # A scheduled job is cancelled (or deleted) before it starts.
    client.cancel_job(jobId="later")
    assert client.describe_job(jobId="later")["job"]["status"] == "CANCELED"

    for config in (
        {"startTime": schedule_time(10)},
        {"startTime": schedule_time(90), "endTime": schedule_time(100)},
        {"startTime": "tomorrow"},
        {"startTime": schedule_time(90), "endBehavior": "LATER"},
        {"startTime": schedule_time(90),
         "maintenanceWindows": [{"startTime": "cron(0 0 L * ? *)", "durationInMinutes": 60}]},
        {"maintenanceWindows": [{"startTime": "cron(0 0 * * ? *)", "durationInMinutes": 1431}]},
    ):
        expect_error(
            client, "InvalidRequestException", client.create_job,
            jobId="bad", targets=[thing_arn("later")], document=DOCUMENT, schedulingConfig=config,
        )
    assert [j["jobId"] for j in client.list_jobs()["jobs"]] == ["later"]


def test_maintenance_windows_gate_the_rollout(client):
    client.create_thing(thingName="w1")
    # Open every minute for a minute: always open; and once, years away.
    always = [{"startTime": "cron(* * * * ? *)", "durationInMinutes": 1}]
    client.create_job(
        jobId="open", targets=[thing_arn("w1")], document=DOCUMENT, schedulingConfig={"maintenanceWindows": always}
    )
    assert execution_statuses(client, "open") == {thing_arn("w1"): "QUEUED"}
    far = [{"startTime": "cron(30 2 ? JAN MON 2199)", "durationInMinutes": 120}]
    client.create_job(
        jobId="far", targets=[thing_arn("w1")], document=DOCUMENT, schedulingConfig={"maintenanceWindows": far}
    )
    assert execution_statuses(client, "far") == {}
    job = client.describe_job(jobId="far")["job"]
    assert job["status"] == "IN_PROGRESS"
    assert job["schedulingConfig"]["maintenanceWindows"] == far


def test_documents_from_the_documents_directory(herald, client):
    """`documentSource` names an S3 object; Herald reads it from its documents directory."""
    client.create_thing(thingName="t1")
    documents = herald.registry_dir / "documents" / "firmware" / "v2"
    documents.mkdir(parents=True, exist_ok=True)
    (documents / "job.json").write_text(DOCUMENT)
    source = "https://s3.us-east-1.amazonaws.com/firmware/v2/job.json"
    client.create_job(jobId="from-s3", targets=[thing_arn("t1")], documentSource=source)
    assert client.describe_job(jobId="from-s3")["documentSource"] == source
    assert client.get_job_document(jobId="from-s3")["document"] == DOCUMENT
    client.create_job_template(jobTemplateId="from-s3", description="s3", documentSource="s3://firmware/v2/job.json")
    described = client.describe_job_template(jobTemplateId="from-s3")
    assert (described["document"], described["documentSource"]) == (DOCUMENT, "s3://firmware/v2/job.json")
    (documents / "broken.json").write_text("not json")
    for bad in ("s3://firmware/v2/broken.json", "s3://firmware/../registry/job.json", "https://example.com/job.json"):
        expect_error(
            client, "InvalidRequestException", client.create_job,
            jobId="bad", targets=[thing_arn("t1")], documentSource=bad,
        )


def test_job_errors(client):
    client.create_thing(thingName="t1")
    client.create_job(jobId="taken", targets=[thing_arn("t1")], document=DOCUMENT)
    t1 = [thing_arn("t1")]
    cases = [
        ("ResourceAlreadyExistsException", dict(jobId="taken", targets=t1, document=DOCUMENT)),
        ("InvalidRequestException", dict(jobId="bad id", targets=t1, document=DOCUMENT)),
        ("InvalidRequestException", dict(jobId="x" * 65, targets=t1, document=DOCUMENT)),
        ("InvalidRequestException", dict(jobId="doc", targets=t1, document="[1]")),
        ("InvalidRequestException", dict(jobId="no-doc", targets=t1)),
        ("InvalidRequestException", dict(jobId="s3", targets=t1, documentSource="https://s3/x")),
        ("InvalidRequestException", dict(jobId="s3", targets=t1, documentSource="s3://fw/none.json")),
        (
            "InvalidRequestException",
            dict(jobId="params", targets=t1, document=DOCUMENT, documentParameters={"pathToHandler": "/usr/bin"}),
        ),
        (
            "InvalidRequestException",
            dict(jobId="s3", targets=t1, document=DOCUMENT, documentSource="s3://fw/none.json"),
        ),
        ("ResourceNotFoundException", dict(jobId="ghost", targets=[thing_arn("ghost")], document=DOCUMENT)),
        ("ResourceNotFoundException", dict(jobId="ghost-g", targets=[group_arn("none")], document=DOCUMENT)),
        (
            "InvalidRequestException",
            dict(jobId="foreign", targets=["arn:aws:iot:eu-west-1:999999999999:thing/t1"], document=DOCUMENT),
        ),
        (
            "InvalidRequestException",
            dict(
                jobId="rollout", targets=t1, document=DOCUMENT,
                jobExecutionsRolloutConfig={"maximumPerMinute": 1001},
            ),
        ),
        (
            "InvalidRequestException",
            dict(jobId="timeout", targets=t1, document=DOCUMENT, timeoutConfig={"inProgressTimeoutInMinutes": 0}),
        ),
    ]
    for code, kwargs in cases:
        expect_error(client, code, client.create_job, **kwargs)
    assert [j["jobId"] for j in client.list_jobs()["jobs"]] == ["taken"]
    expect_error(client, "ResourceNotFoundException", client.describe_job, jobId="nothing")
    expect_error(client, "ResourceNotFoundException", client.cancel_job, jobId="nothing")
    expect_error(client, "InvalidRequestException", client.cancel_job, jobId="taken", reasonCode="lower")
    expect_error(
        client, "ResourceNotFoundException", client.list_job_executions_for_thing, thingName="nobody"
    )
    expect_error(client, "InvalidRequestException", client.list_jobs, maxResults=251)
    client.cancel_job(jobId="taken")
    # A cancelled job stays cancelled; completing it again is refused.
    assert client.describe_job(jobId="taken")["job"]["status"] == "CANCELED"


# ---------------------------------------------------------------- the device side (iot-jobs-data)


def test_a_device_runs_its_jobs_over_http(client, jobs_data):
    client.create_thing(thingName="dev-1")
    client.create_job(jobId="first", targets=[thing_arn("dev-1")], document=DOCUMENT)
    client.create_job(jobId="second", targets=[thing_arn("dev-1")], document='{"op":"reboot"}')

    pending = jobs_data.get_pending_job_executions(thingName="dev-1")
    assert pending["inProgressJobs"] == []
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["first", "second"]
    queued = pending["queuedJobs"][0]
    assert queued["versionNumber"] == 1
    assert queued["executionNumber"] == 1
    assert isinstance(queued["queuedAt"], int)

    started = jobs_data.start_next_pending_job_execution(
        thingName="dev-1", statusDetails={"step": "download"}, stepTimeoutInMinutes=5
    )["execution"]
    # The step timeout counts down from the start.
    assert 0 < started["approximateSecondsBeforeTimedOut"] <= 300
    assert started["jobId"] == "first"
    assert started["thingName"] == "dev-1"
    assert started["status"] == "IN_PROGRESS"
    assert started["statusDetails"] == {"step": "download"}
    assert started["versionNumber"] == 2
    assert json.loads(started["jobDocument"]) == json.loads(DOCUMENT)

    described = jobs_data.describe_job_execution(thingName="dev-1", jobId="$next")["execution"]
    assert described["jobId"] == "first"
    assert "jobDocument" in described
    assert 0 < described["approximateSecondsBeforeTimedOut"] <= 300
    control = client.describe_job_execution(jobId="first", thingName="dev-1")["execution"]
    assert 0 < control["approximateSecondsBeforeTimedOut"] <= 300
    # `$next` is the device side's alone.
    expect_error(client, "InvalidRequestException", client.describe_job_execution, jobId="$next", thingName="dev-1")
    without = jobs_data.describe_job_execution(
        thingName="dev-1", jobId="first", includeJobDocument=False
    )["execution"]
    assert "jobDocument" not in without

    expect_error(
        jobs_data,
        "InvalidStateTransitionException",
        jobs_data.update_job_execution,
        thingName="dev-1",
        jobId="first",
        status="QUEUED",
    )
    updated = jobs_data.update_job_execution(
        thingName="dev-1",
        jobId="first",
        status="SUCCEEDED",
        statusDetails={"step": "done"},
        expectedVersion=2,
        includeJobExecutionState=True,
        includeJobDocument=True,
    )
    assert updated["executionState"] == {
        "status": "SUCCEEDED",
        "statusDetails": {"step": "done"},
        "versionNumber": 3,
    }
    assert json.loads(updated["jobDocument"]) == json.loads(DOCUMENT)
    expect_error(
        jobs_data,
        "InvalidStateTransitionException",
        jobs_data.update_job_execution,
        thingName="dev-1",
        jobId="first",
        status="FAILED",
    )
    assert client.describe_job(jobId="first")["job"]["status"] == "COMPLETED"

    # The same path on the control plane is another operation.
    listed = client.list_job_executions_for_thing(thingName="dev-1")["executionSummaries"]
    assert sorted(s["jobId"] for s in listed) == ["first", "second"]
    pending = jobs_data.get_pending_job_executions(thingName="dev-1")
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["second"]

    jobs_data.update_job_execution(thingName="dev-1", jobId="second", status="REJECTED")
    assert jobs_data.start_next_pending_job_execution(thingName="dev-1").get("execution") is None
    expect_error(
        jobs_data,
        "ResourceNotFoundException",
        jobs_data.describe_job_execution,
        thingName="dev-1",
        jobId="$next",
    )
    expect_error(
        jobs_data,
        "ResourceNotFoundException",
        jobs_data.update_job_execution,
        thingName="dev-1",
        jobId="nothing",
        status="SUCCEEDED",
    )
