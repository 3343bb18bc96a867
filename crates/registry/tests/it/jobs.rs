//! Jobs through the registry's `Jobs` gRPC service: creating jobs on things
//! and groups, the device flow, cancelling and deleting, continuous jobs
//! following their groups, and the events each change logs.

use herald_proto::{
    error::ErrorType,
    registry::v1::{jobs_client::JobsClient, *},
};
use tonic::transport::Channel;

use crate::{
    groups::create_group,
    membership::add_to_group,
    support::{Client, TestRegistry, expect_err},
    things::{arn, assert_no_events_after, create_thing, events_after, last_sequence, summary},
};

type Jobs = JobsClient<Channel>;

const DOCUMENT: &str = r#"{"operation":"update","url":"https://example.com/fw.bin"}"#;

async fn clients(registry: &TestRegistry) -> (Client, Jobs) {
    let jobs = JobsClient::connect(format!("http://{}", registry.addr))
        .await
        .unwrap();
    (registry.client().await, jobs)
}

fn create_req(id: &str, targets: &[String], selection: TargetSelection) -> CreateJobRequest {
    CreateJobRequest {
        job_id: id.into(),
        targets: targets.to_vec(),
        document: Some(DOCUMENT.into()),
        description: Some("firmware 2".into()),
        target_selection: selection as i32,
        ..Default::default()
    }
}

async fn describe(jobs: &mut Jobs, id: &str) -> Job {
    jobs.describe_job(DescribeJobRequest { job_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap()
}

async fn execution(jobs: &mut Jobs, id: &str, thing: &str) -> JobExecution {
    jobs.describe_job_execution(DescribeJobExecutionRequest {
        job_id: id.into(),
        thing_name: thing.into(),
        execution_number: None,
    })
    .await
    .unwrap()
    .into_inner()
    .execution
    .unwrap()
}

async fn update(
    jobs: &mut Jobs,
    id: &str,
    thing: &str,
    status: JobExecutionStatus,
    expected_version: Option<i64>,
) -> Result<JobExecution, tonic::Status> {
    jobs.update_job_execution(UpdateJobExecutionRequest {
        job_id: id.into(),
        thing_name: thing.into(),
        status: status as i32,
        status_details: Some(StatusDetails {
            entries: [("step".to_owned(), "flashed".to_owned())].into(),
        }),
        expected_version,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().execution.unwrap())
}

fn counts(job: &Job) -> (u64, u64, u64, u64, u64) {
    let d = job.job_process_details.clone().unwrap_or_default();
    (
        d.number_of_queued_things,
        d.number_of_in_progress_things,
        d.number_of_succeeded_things,
        d.number_of_canceled_things,
        d.number_of_removed_things,
    )
}

async fn statuses(jobs: &mut Jobs, id: &str) -> Vec<(String, JobExecutionStatus)> {
    jobs.list_job_executions_for_job(ListJobExecutionsForJobRequest {
        job_id: id.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .executions
    .into_iter()
    .map(|e| (e.thing_name.clone(), e.status()))
    .collect()
}

/// A job targets a thing and a group: every thing of the group and of the
/// groups below it gets one QUEUED execution, each thing once.
#[tokio::test]
async fn a_job_queues_one_execution_per_thing_it_reaches() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    for thing in ["t1", "t2", "t3", "t4"] {
        create_thing(&mut client, thing).await;
    }
    create_group(&mut client, "fleet", None).await;
    create_group(&mut client, "fleet-eu", Some("fleet")).await;
    add_to_group(&mut client, "fleet", "t1").await;
    add_to_group(&mut client, "fleet-eu", "t2").await;
    let before = last_sequence(&mut client).await;
    let created = jobs
        .create_job(create_req(
            "fw-2",
            &[
                arn("thinggroup", "fleet"),
                arn("thing", "t1"),
                arn("thing", "t3"),
            ],
            TargetSelection::Snapshot,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.job_id, "fw-2");
    assert_eq!(created.job_arn, arn("job", "fw-2"));
    assert_eq!(created.description.as_deref(), Some("firmware 2"));
    // No "queued" event (AWS has none); each thing's devices are told.
    let mut expected = Vec::new();
    for thing in ["t1", "t2", "t3"] {
        expected.push(format!(r#"JOBS_NOTIFY_KIND_NOTIFY {thing} ["fw-2"]"#));
        expected.push(format!(r#"JOBS_NOTIFY_KIND_NOTIFY_NEXT {thing} ["fw-2"]"#));
    }
    assert_eq!(summary(&events_after(&mut client, before).await), expected);

    let job = describe(&mut jobs, "fw-2").await;
    assert_eq!(job.status(), JobStatus::InProgress);
    assert_eq!(job.target_selection(), TargetSelection::Snapshot);
    assert_eq!(counts(&job), (3, 0, 0, 0, 0));
    assert_eq!(
        statuses(&mut jobs, "fw-2").await,
        ["t1", "t2", "t3"].map(|t| (t.to_owned(), JobExecutionStatus::Queued))
    );
    let e = execution(&mut jobs, "fw-2", "t2").await;
    assert_eq!(
        (e.execution_number, e.version_number, e.thing_arn.as_str()),
        (1, 1, arn("thing", "t2").as_str())
    );
    let document = jobs
        .get_job_document(GetJobDocumentRequest {
            job_id: "fw-2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .document;
    assert_eq!(document, DOCUMENT);
    let listed = jobs
        .list_jobs(ListJobsRequest {
            thing_group_name: Some("fleet".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].job_id, "fw-2");
    let none = jobs
        .list_jobs(ListJobsRequest {
            status: JobStatus::Completed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(none.is_empty());
    let for_thing = jobs
        .list_job_executions_for_thing(ListJobExecutionsForThingRequest {
            thing_name: "t3".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .executions;
    assert_eq!(for_thing.len(), 1);
    assert_eq!(for_thing[0].job_id, "fw-2");
    registry.stop().await;
}

/// Bad requests get AWS's errors and change nothing.
#[tokio::test]
async fn bad_job_requests_are_refused_and_change_nothing() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    create_thing(&mut client, "t1").await;
    let t1 = arn("thing", "t1");
    jobs.create_job(create_req(
        "taken",
        std::slice::from_ref(&t1),
        TargetSelection::Snapshot,
    ))
    .await
    .unwrap();
    let before = last_sequence(&mut client).await;
    let cases: Vec<(CreateJobRequest, ErrorType)> = vec![
        (
            create_req(
                "taken",
                std::slice::from_ref(&t1),
                TargetSelection::Snapshot,
            ),
            ErrorType::ResourceAlreadyExists,
        ),
        (
            create_req(
                "bad id",
                std::slice::from_ref(&t1),
                TargetSelection::Snapshot,
            ),
            ErrorType::InvalidRequest,
        ),
        (
            create_req(
                &"x".repeat(65),
                std::slice::from_ref(&t1),
                TargetSelection::Snapshot,
            ),
            ErrorType::InvalidRequest,
        ),
        (
            create_req("no-targets", &[], TargetSelection::Snapshot),
            ErrorType::InvalidRequest,
        ),
        (
            create_req("ghost", &[arn("thing", "ghost")], TargetSelection::Snapshot),
            ErrorType::ResourceNotFound,
        ),
        (
            create_req(
                "ghost-group",
                &[arn("thinggroup", "none")],
                TargetSelection::Snapshot,
            ),
            ErrorType::ResourceNotFound,
        ),
        (
            create_req(
                "foreign",
                &["arn:aws:iot:eu-west-1:999999999999:thing/t1".to_owned()],
                TargetSelection::Snapshot,
            ),
            ErrorType::InvalidRequest,
        ),
        (
            CreateJobRequest {
                document: Some("[not an object]".into()),
                ..create_req(
                    "bad-doc",
                    std::slice::from_ref(&t1),
                    TargetSelection::Snapshot,
                )
            },
            ErrorType::InvalidRequest,
        ),
        (
            CreateJobRequest {
                document: Some(format!(r#"{{"x":"{}"}}"#, "a".repeat(32_768))),
                ..create_req(
                    "big-doc",
                    std::slice::from_ref(&t1),
                    TargetSelection::Snapshot,
                )
            },
            ErrorType::InvalidRequest,
        ),
        (
            CreateJobRequest {
                document: None,
                ..create_req(
                    "no-doc",
                    std::slice::from_ref(&t1),
                    TargetSelection::Snapshot,
                )
            },
            ErrorType::InvalidRequest,
        ),
        (
            CreateJobRequest {
                in_progress_timeout_in_minutes: Some(0),
                ..create_req(
                    "timeout",
                    std::slice::from_ref(&t1),
                    TargetSelection::Snapshot,
                )
            },
            ErrorType::InvalidRequest,
        ),
    ];
    for (request, expected) in cases {
        let id = request.job_id.clone();
        expect_err(jobs.create_job(request).await, expected);
        if id != "taken" {
            let absent = if id.chars().count() > 64 || id.contains(' ') {
                ErrorType::InvalidRequest
            } else {
                ErrorType::ResourceNotFound
            };
            expect_err(
                jobs.describe_job(DescribeJobRequest { job_id: id }).await,
                absent,
            );
        }
    }
    let executions = jobs
        .list_job_executions_for_thing(ListJobExecutionsForThingRequest {
            thing_name: "t1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .executions;
    assert_eq!(executions.len(), 1, "only the first job reached t1");
    assert_no_events_after(&mut client, before).await;
    expect_err(
        jobs.list_jobs(ListJobsRequest {
            max_results: 251,
            ..Default::default()
        })
        .await,
        ErrorType::InvalidRequest,
    );
    registry.stop().await;
}

/// The device takes its executions through IN_PROGRESS to a final status;
/// versions guard each update; the last final execution completes a
/// snapshot job, and each step logs AWS's event.
#[tokio::test]
async fn devices_run_executions_to_the_end_and_the_job_completes() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    for thing in ["t1", "t2"] {
        create_thing(&mut client, thing).await;
    }
    jobs.create_job(create_req(
        "fw",
        &[arn("thing", "t1"), arn("thing", "t2")],
        TargetSelection::Snapshot,
    ))
    .await
    .unwrap();
    let pending = jobs
        .get_pending_job_executions(GetPendingJobExecutionsRequest {
            thing_name: "t1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pending.in_progress_jobs.is_empty());
    assert_eq!(pending.queued_jobs.len(), 1);
    let before = last_sequence(&mut client).await;

    let started = jobs
        .start_next_pending_job_execution(StartNextPendingJobExecutionRequest {
            thing_name: "t1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.job_document, DOCUMENT);
    let e = started.execution.unwrap();
    assert_eq!(
        (e.status(), e.version_number),
        (JobExecutionStatus::InProgress, 2)
    );
    assert!(e.started_at_ms.is_some());
    // Started again: the same execution, unchanged.
    let again = jobs
        .start_next_pending_job_execution(StartNextPendingJobExecutionRequest {
            thing_name: "t1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .execution
        .unwrap();
    assert_eq!(again.version_number, 2);

    let stale = update(
        &mut jobs,
        "fw",
        "t1",
        JobExecutionStatus::Succeeded,
        Some(1),
    )
    .await;
    expect_err(stale, ErrorType::VersionConflict);
    let queued_again = update(&mut jobs, "fw", "t1", JobExecutionStatus::Queued, None).await;
    expect_err(queued_again, ErrorType::InvalidStateTransition);
    let done = update(
        &mut jobs,
        "fw",
        "t1",
        JobExecutionStatus::Succeeded,
        Some(2),
    )
    .await
    .unwrap();
    assert_eq!(
        (done.status(), done.version_number),
        (JobExecutionStatus::Succeeded, 3)
    );
    assert_eq!(
        done.status_details.get("step").map(String::as_str),
        Some("flashed")
    );
    let after_end = update(&mut jobs, "fw", "t1", JobExecutionStatus::Failed, None).await;
    expect_err(after_end, ErrorType::InvalidStateTransition);
    assert_eq!(
        describe(&mut jobs, "fw").await.status(),
        JobStatus::InProgress
    );

    // Straight from QUEUED to REJECTED: the last execution completes the job.
    update(&mut jobs, "fw", "t2", JobExecutionStatus::Rejected, None)
        .await
        .unwrap();
    let job = describe(&mut jobs, "fw").await;
    assert_eq!(job.status(), JobStatus::Completed);
    assert!(job.completed_at_ms.is_some());
    let d = job.job_process_details.unwrap();
    assert_eq!(
        (d.number_of_succeeded_things, d.number_of_rejected_things),
        (1, 1)
    );
    assert!(d.processing_targets.is_empty());
    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        [
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_SUCCEEDED t1",
            "JOBS_NOTIFY_KIND_NOTIFY t1 []",
            "JOBS_NOTIFY_KIND_NOTIFY_NEXT t1 []",
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_REJECTED t2",
            "JOBS_NOTIFY_KIND_NOTIFY t2 []",
            "JOBS_NOTIFY_KIND_NOTIFY_NEXT t2 []",
            "JOB JOB_EVENT_KIND_COMPLETED",
        ]
    );
    for event in &events {
        assert_eq!(event.operation(), Operation::Unspecified);
    }
    let Some(change_event::Event::Job(completed)) = &events[6].event else {
        panic!("a job event: {:?}", events[6]);
    };
    let completed = completed.job.as_ref().unwrap();
    assert_eq!(completed.job_arn, arn("job", "fw"));
    assert_eq!(
        completed
            .job_process_details
            .as_ref()
            .unwrap()
            .number_of_succeeded_things,
        1
    );
    // Unknown executions.
    expect_err(
        update(
            &mut jobs,
            "fw",
            "nobody",
            JobExecutionStatus::Succeeded,
            None,
        )
        .await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        update(
            &mut jobs,
            "nojob",
            "t1",
            JobExecutionStatus::Succeeded,
            None,
        )
        .await,
        ErrorType::ResourceNotFound,
    );
    registry.stop().await;
}

/// CancelJob cancels what is queued (and with `force` what is in
/// progress); DeleteJob needs `force` while the job is in progress. Each
/// logs its in-progress event, the executions' events, then its own.
#[tokio::test]
async fn cancelling_and_deleting_jobs() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    for thing in ["t1", "t2"] {
        create_thing(&mut client, thing).await;
    }
    let targets = [arn("thing", "t1"), arn("thing", "t2")];
    jobs.create_job(create_req("fw", &targets, TargetSelection::Snapshot))
        .await
        .unwrap();
    update(&mut jobs, "fw", "t1", JobExecutionStatus::InProgress, None)
        .await
        .unwrap();
    expect_err(
        jobs.delete_job(DeleteJobRequest {
            job_id: "fw".into(),
            force: false,
        })
        .await,
        ErrorType::InvalidStateTransition,
    );
    expect_err(
        jobs.cancel_job(CancelJobRequest {
            job_id: "fw".into(),
            reason_code: Some("lower case".into()),
            ..Default::default()
        })
        .await,
        ErrorType::InvalidRequest,
    );
    let before = last_sequence(&mut client).await;
    jobs.cancel_job(CancelJobRequest {
        job_id: "fw".into(),
        reason_code: Some("BAD_BUILD".into()),
        comment: Some("rolled back".into()),
        force: false,
    })
    .await
    .unwrap();
    let job = describe(&mut jobs, "fw").await;
    assert_eq!(job.status(), JobStatus::Canceled);
    assert_eq!(
        (
            job.reason_code.as_deref(),
            job.comment.as_deref(),
            job.force_canceled
        ),
        (Some("BAD_BUILD"), Some("rolled back"), false)
    );
    assert_eq!(
        statuses(&mut jobs, "fw").await,
        [
            ("t1".to_owned(), JobExecutionStatus::InProgress),
            ("t2".to_owned(), JobExecutionStatus::Canceled),
        ]
    );
    assert_eq!(
        summary(&events_after(&mut client, before).await),
        [
            "JOB JOB_EVENT_KIND_CANCELLATION_IN_PROGRESS",
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_CANCELED t2",
            "JOBS_NOTIFY_KIND_NOTIFY t2 []",
            "JOBS_NOTIFY_KIND_NOTIFY_NEXT t2 []",
            "JOB JOB_EVENT_KIND_CANCELED",
        ]
    );
    // Cancelled again without force: nothing changes.
    let before = last_sequence(&mut client).await;
    jobs.cancel_job(CancelJobRequest {
        job_id: "fw".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_no_events_after(&mut client, before).await;
    // With force, what is still in progress is cancelled too.
    jobs.cancel_job(CancelJobRequest {
        job_id: "fw".into(),
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let e = execution(&mut jobs, "fw", "t1").await;
    assert_eq!(
        (e.status(), e.force_canceled),
        (JobExecutionStatus::Canceled, true)
    );
    assert!(describe(&mut jobs, "fw").await.force_canceled);

    let before = last_sequence(&mut client).await;
    jobs.delete_job(DeleteJobRequest {
        job_id: "fw".into(),
        force: false,
    })
    .await
    .unwrap();
    assert_eq!(
        summary(&events_after(&mut client, before).await),
        [
            "JOB JOB_EVENT_KIND_DELETION_IN_PROGRESS",
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_DELETED t1",
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_DELETED t2",
            "JOB JOB_EVENT_KIND_DELETED",
        ]
    );
    expect_err(
        jobs.describe_job(DescribeJobRequest {
            job_id: "fw".into(),
        })
        .await,
        ErrorType::ResourceNotFound,
    );
    let left = jobs
        .list_job_executions_for_thing(ListJobExecutionsForThingRequest {
            thing_name: "t1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .executions;
    assert!(left.is_empty(), "{left:?}");
    // A job in progress goes with force, its executions with it.
    jobs.create_job(create_req("fw", &targets, TargetSelection::Snapshot))
        .await
        .unwrap();
    jobs.delete_job(DeleteJobRequest {
        job_id: "fw".into(),
        force: true,
    })
    .await
    .unwrap();
    expect_err(
        execution_result(&mut jobs, "fw", "t1").await,
        ErrorType::ResourceNotFound,
    );
    registry.stop().await;
}

async fn execution_result(
    jobs: &mut Jobs,
    id: &str,
    thing: &str,
) -> Result<tonic::Response<DescribeJobExecutionResponse>, tonic::Status> {
    jobs.describe_job_execution(DescribeJobExecutionRequest {
        job_id: id.into(),
        thing_name: thing.into(),
        execution_number: None,
    })
    .await
}

/// CancelJobExecution and DeleteJobExecution: force for what is in
/// progress, the expected version checked.
#[tokio::test]
async fn cancelling_and_deleting_one_execution() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    for thing in ["t1", "t2"] {
        create_thing(&mut client, thing).await;
    }
    jobs.create_job(create_req(
        "fw",
        &[arn("thing", "t1"), arn("thing", "t2")],
        TargetSelection::Snapshot,
    ))
    .await
    .unwrap();
    update(&mut jobs, "fw", "t1", JobExecutionStatus::InProgress, None)
        .await
        .unwrap();
    let cancel =
        |thing: &str, force: bool, expected_version: Option<i64>| CancelJobExecutionRequest {
            job_id: "fw".into(),
            thing_name: thing.into(),
            force,
            expected_version,
            status_details: None,
        };
    expect_err(
        jobs.cancel_job_execution(cancel("t1", false, None)).await,
        ErrorType::InvalidStateTransition,
    );
    expect_err(
        jobs.cancel_job_execution(cancel("t1", true, Some(1))).await,
        ErrorType::VersionConflict,
    );
    expect_err(
        jobs.delete_job_execution(DeleteJobExecutionRequest {
            job_id: "fw".into(),
            thing_name: "t2".into(),
            execution_number: 1,
            force: false,
        })
        .await,
        ErrorType::InvalidStateTransition,
    );
    let before = last_sequence(&mut client).await;
    jobs.cancel_job_execution(cancel("t1", true, Some(2)))
        .await
        .unwrap();
    expect_err(
        jobs.cancel_job_execution(cancel("t1", true, None)).await,
        ErrorType::InvalidStateTransition,
    );
    jobs.delete_job_execution(DeleteJobExecutionRequest {
        job_id: "fw".into(),
        thing_name: "t2".into(),
        execution_number: 1,
        force: true,
    })
    .await
    .unwrap();
    assert_eq!(
        summary(&events_after(&mut client, before).await),
        [
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_CANCELED t1",
            "JOBS_NOTIFY_KIND_NOTIFY t1 []",
            "JOBS_NOTIFY_KIND_NOTIFY_NEXT t1 []",
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_DELETED t2",
            "JOBS_NOTIFY_KIND_NOTIFY t2 []",
            "JOBS_NOTIFY_KIND_NOTIFY_NEXT t2 []",
            "JOB JOB_EVENT_KIND_COMPLETED",
        ]
    );
    expect_err(
        jobs.delete_job_execution(DeleteJobExecutionRequest {
            job_id: "fw".into(),
            thing_name: "t1".into(),
            execution_number: 7,
            force: true,
        })
        .await,
        ErrorType::ResourceNotFound,
    );
    registry.stop().await;
}

/// A continuous job follows its group: a thing that joins (directly or
/// through a group below) gets an execution, one that leaves has its
/// pending execution REMOVED, and coming back starts a new attempt; a
/// deleted thing's execution is REMOVED too. A snapshot job on the same
/// group ignores later members.
#[tokio::test]
async fn continuous_jobs_follow_their_groups() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    for thing in ["t1", "t2"] {
        create_thing(&mut client, thing).await;
    }
    create_group(&mut client, "fleet", None).await;
    create_group(&mut client, "fleet-eu", Some("fleet")).await;
    let group = [arn("thinggroup", "fleet")];
    jobs.create_job(create_req("follow", &group, TargetSelection::Continuous))
        .await
        .unwrap();
    jobs.create_job(create_req("once", &group, TargetSelection::Snapshot))
        .await
        .unwrap();
    // A snapshot job on an empty group has nothing to do: complete at once.
    assert_eq!(
        describe(&mut jobs, "once").await.status(),
        JobStatus::Completed
    );
    assert_eq!(
        describe(&mut jobs, "follow").await.status(),
        JobStatus::InProgress
    );

    add_to_group(&mut client, "fleet-eu", "t1").await;
    add_to_group(&mut client, "fleet", "t2").await;
    assert_eq!(
        statuses(&mut jobs, "follow").await,
        ["t1", "t2"].map(|t| (t.to_owned(), JobExecutionStatus::Queued))
    );
    assert!(statuses(&mut jobs, "once").await.is_empty());

    let before = last_sequence(&mut client).await;
    client
        .remove_thing_from_thing_group(RemoveThingFromThingGroupRequest {
            thing_group_name: Some("fleet-eu".into()),
            thing_name: Some("t1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let events = summary(&events_after(&mut client, before).await);
    assert_eq!(
        events,
        [
            "THING_GROUP_MEMBERSHIP REMOVED",
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_REMOVED t1",
            "JOBS_NOTIFY_KIND_NOTIFY t1 []",
            "JOBS_NOTIFY_KIND_NOTIFY_NEXT t1 []",
        ]
    );
    add_to_group(&mut client, "fleet-eu", "t1").await;
    let e = execution(&mut jobs, "follow", "t1").await;
    assert_eq!(
        (e.status(), e.execution_number),
        (JobExecutionStatus::Queued, 2)
    );
    let first = jobs
        .describe_job_execution(DescribeJobExecutionRequest {
            job_id: "follow".into(),
            thing_name: "t1".into(),
            execution_number: Some(1),
        })
        .await
        .unwrap()
        .into_inner()
        .execution
        .unwrap();
    assert_eq!(first.status(), JobExecutionStatus::Removed);

    let before = last_sequence(&mut client).await;
    client
        .delete_thing(DeleteThingRequest {
            thing_name: "t2".into(),
            expected_version: None,
        })
        .await
        .unwrap();
    let events = summary(&events_after(&mut client, before).await);
    assert!(
        events.contains(&"JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_REMOVED t2".to_owned()),
        "{events:?}"
    );
    let job = describe(&mut jobs, "follow").await;
    assert_eq!(
        job.status(),
        JobStatus::InProgress,
        "a continuous job never completes"
    );
    assert_eq!(counts(&job), (1, 0, 0, 0, 1));
    registry.stop().await;
}

/// `notify` when an execution joins or leaves a thing's pending list,
/// `notify-next` only when the head of the list changes; starting an
/// execution changes neither.
#[tokio::test]
async fn devices_are_notified_when_their_pending_list_changes() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    create_thing(&mut client, "t1").await;
    let t1 = [arn("thing", "t1")];
    jobs.create_job(create_req("first", &t1, TargetSelection::Snapshot))
        .await
        .unwrap();
    let before = last_sequence(&mut client).await;
    jobs.create_job(create_req("second", &t1, TargetSelection::Snapshot))
        .await
        .unwrap();
    assert_eq!(
        summary(&events_after(&mut client, before).await),
        [r#"JOBS_NOTIFY_KIND_NOTIFY t1 ["first", "second"]"#]
    );
    let before = last_sequence(&mut client).await;
    jobs.start_next_pending_job_execution(StartNextPendingJobExecutionRequest {
        thing_name: "t1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_no_events_after(&mut client, before).await;
    update(
        &mut jobs,
        "first",
        "t1",
        JobExecutionStatus::Succeeded,
        None,
    )
    .await
    .unwrap();
    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        [
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_SUCCEEDED t1",
            r#"JOBS_NOTIFY_KIND_NOTIFY t1 ["second"]"#,
            r#"JOBS_NOTIFY_KIND_NOTIFY_NEXT t1 ["second"]"#,
            "JOB JOB_EVENT_KIND_COMPLETED",
        ]
    );
    let Some(change_event::Event::JobsNotify(next)) = &events[2].event else {
        panic!("a notification: {:?}", events[2]);
    };
    assert_eq!(next.queued[0].job_id, "second");
    assert_eq!(next.queued[0].thing_arn, arn("thing", "t1"));
    registry.stop().await;
}

/// The registry with one minute of job timeout lasting `minute_ms`.
async fn with_short_minutes(minute_ms: u64) -> TestRegistry {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = herald_registry::Settings::for_test(dir.path().join("registry"));
    settings.jobs.minute_ms = minute_ms;
    settings.jobs.timer_interval_ms = 20;
    TestRegistry::start_in(dir, settings).await
}

async fn status_of(jobs: &mut Jobs, id: &str, thing: &str) -> Option<JobExecutionStatus> {
    Some(execution(jobs, id, thing).await.status())
}

/// An execution that stays IN_PROGRESS past its job's in-progress timeout,
/// or past the step timeout its device set, becomes TIMED_OUT, with its
/// event; one that finishes in time does not.
#[tokio::test]
async fn executions_in_progress_too_long_time_out() {
    // A "minute" long enough for the quick device to finish in time on a
    // busy machine.
    let registry = with_short_minutes(1000).await;
    let (mut client, mut jobs) = clients(&registry).await;
    for thing in ["slow", "quick", "stepper"] {
        create_thing(&mut client, thing).await;
    }
    let timed = CreateJobRequest {
        in_progress_timeout_in_minutes: Some(1),
        ..create_req(
            "timed",
            &[arn("thing", "slow"), arn("thing", "quick")],
            TargetSelection::Snapshot,
        )
    };
    jobs.create_job(timed).await.unwrap();
    jobs.create_job(create_req(
        "stepped",
        &[arn("thing", "stepper")],
        TargetSelection::Snapshot,
    ))
    .await
    .unwrap();
    let before = last_sequence(&mut client).await;
    for thing in ["slow", "quick"] {
        update(
            &mut jobs,
            "timed",
            thing,
            JobExecutionStatus::InProgress,
            None,
        )
        .await
        .unwrap();
    }
    update(
        &mut jobs,
        "timed",
        "quick",
        JobExecutionStatus::Succeeded,
        None,
    )
    .await
    .unwrap();
    // No job-level timeout: only the device's step timeout applies.
    jobs.start_next_pending_job_execution(StartNextPendingJobExecutionRequest {
        thing_name: "stepper".into(),
        step_timeout_in_minutes: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();

    for (job, thing) in [("timed", "slow"), ("stepped", "stepper")] {
        crate::support::eventually(10, "the execution to time out", || {
            let mut jobs = jobs.clone();
            async move {
                (status_of(&mut jobs, job, thing).await == Some(JobExecutionStatus::TimedOut))
                    .then_some(())
            }
        })
        .await;
    }
    assert_eq!(
        status_of(&mut jobs, "timed", "quick").await,
        Some(JobExecutionStatus::Succeeded)
    );
    // A state change can be read a moment before its event is durable in
    // the log: wait for the log to hold both.
    let expected = [
        "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_TIMED_OUT slow",
        "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_TIMED_OUT stepper",
    ];
    crate::support::eventually(10, "both timeouts in the log", || {
        let mut client = client.clone();
        async move {
            let events = summary(&events_after(&mut client, before).await);
            expected
                .iter()
                .all(|e| events.contains(&(*e).to_owned()))
                .then_some(())
        }
    })
    .await;
    let job = describe(&mut jobs, "timed").await;
    assert_eq!(job.status(), JobStatus::Completed);
    let d = job.job_process_details.unwrap();
    assert_eq!(
        (d.number_of_timed_out_things, d.number_of_succeeded_things),
        (1, 1)
    );
    // A timed-out execution is final for its device.
    expect_err(
        update(
            &mut jobs,
            "timed",
            "slow",
            JobExecutionStatus::Succeeded,
            None,
        )
        .await,
        ErrorType::InvalidStateTransition,
    );
    registry.stop().await;
}

/// The deadline is state: a registry stopped before it and started again
/// after it still times the execution out.
#[tokio::test]
async fn a_deadline_survives_a_restart() {
    let registry = with_short_minutes(300).await;
    let (mut client, mut jobs) = clients(&registry).await;
    create_thing(&mut client, "t1").await;
    let timed = CreateJobRequest {
        in_progress_timeout_in_minutes: Some(1),
        ..create_req("timed", &[arn("thing", "t1")], TargetSelection::Snapshot)
    };
    jobs.create_job(timed).await.unwrap();
    update(
        &mut jobs,
        "timed",
        "t1",
        JobExecutionStatus::InProgress,
        None,
    )
    .await
    .unwrap();
    let dir = registry.stop().await;
    // The deadline (one 300 ms "minute" after the start) passes while the
    // registry is down: this waits for time itself, not for a service.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let mut settings = herald_registry::Settings::for_test(dir.path().join("registry"));
    settings.jobs.minute_ms = 300;
    settings.jobs.timer_interval_ms = 20;
    let registry = TestRegistry::start_in(dir, settings).await;
    let (_, mut jobs) = clients(&registry).await;
    crate::support::eventually(10, "the execution to time out after the restart", || {
        let mut jobs = jobs.clone();
        async move {
            (status_of(&mut jobs, "timed", "t1").await == Some(JobExecutionStatus::TimedOut))
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        describe(&mut jobs, "timed").await.status(),
        JobStatus::Completed
    );
    registry.stop().await;
}

/// With `jobExecutionsRetryConfig`, an execution that fails is queued
/// again as a new attempt, as often as its criterion allows; the job
/// completes once no attempt is left.
#[tokio::test]
async fn failed_executions_are_retried() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    create_thing(&mut client, "t1").await;
    let retried = CreateJobRequest {
        retry_criteria: vec![RetryCriterion {
            failure_type: "FAILED".into(),
            number_of_retries: 1,
        }],
        ..create_req("retried", &[arn("thing", "t1")], TargetSelection::Snapshot)
    };
    jobs.create_job(retried).await.unwrap();
    let before = last_sequence(&mut client).await;
    update(&mut jobs, "retried", "t1", JobExecutionStatus::Failed, None)
        .await
        .unwrap();
    let again = execution(&mut jobs, "retried", "t1").await;
    assert_eq!(
        (again.status(), again.execution_number, again.retry_attempt),
        (JobExecutionStatus::Queued, 2, 1)
    );
    assert_eq!(
        describe(&mut jobs, "retried").await.status(),
        JobStatus::InProgress
    );
    // The failed attempt left the pending list and the new one joined it:
    // the device is told of the new attempt, once.
    assert_eq!(
        summary(&events_after(&mut client, before).await),
        [
            "JOB_EXECUTION JOB_EXECUTION_EVENT_KIND_FAILED t1",
            r#"JOBS_NOTIFY_KIND_NOTIFY t1 ["retried"]"#,
            r#"JOBS_NOTIFY_KIND_NOTIFY_NEXT t1 ["retried"]"#,
        ]
    );
    update(&mut jobs, "retried", "t1", JobExecutionStatus::Failed, None)
        .await
        .unwrap();
    let last = execution(&mut jobs, "retried", "t1").await;
    assert_eq!(
        (last.status(), last.execution_number),
        (JobExecutionStatus::Failed, 2)
    );
    let job = describe(&mut jobs, "retried").await;
    assert_eq!(job.status(), JobStatus::Completed);
    assert_eq!(job.retry_criteria.len(), 1);
    let bad = CreateJobRequest {
        retry_criteria: vec![RetryCriterion {
            failure_type: "REJECTED".into(),
            number_of_retries: 1,
        }],
        ..create_req(
            "bad-retry",
            &[arn("thing", "t1")],
            TargetSelection::Snapshot,
        )
    };
    expect_err(jobs.create_job(bad).await, ErrorType::InvalidRequest);
    registry.stop().await;
}

/// With `abortConfig`, the job is cancelled once enough of its executed
/// things failed: what is still queued is cancelled with it.
#[tokio::test]
async fn a_job_is_aborted_when_enough_executions_fail() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    let things = ["t1", "t2", "t3", "t4"];
    for thing in things {
        create_thing(&mut client, thing).await;
    }
    let aborting = CreateJobRequest {
        abort_criteria: vec![AbortCriterion {
            failure_type: "FAILED".into(),
            action: "CANCEL".into(),
            threshold_percentage: 50.0,
            min_number_of_executed_things: 2,
        }],
        ..create_req(
            "aborting",
            &things.map(|t| arn("thing", t)),
            TargetSelection::Snapshot,
        )
    };
    jobs.create_job(aborting).await.unwrap();
    update(
        &mut jobs,
        "aborting",
        "t1",
        JobExecutionStatus::Failed,
        None,
    )
    .await
    .unwrap();
    // One executed thing: below the minimum.
    assert_eq!(
        describe(&mut jobs, "aborting").await.status(),
        JobStatus::InProgress
    );
    let before = last_sequence(&mut client).await;
    update(
        &mut jobs,
        "aborting",
        "t2",
        JobExecutionStatus::Succeeded,
        None,
    )
    .await
    .unwrap();
    let job = describe(&mut jobs, "aborting").await;
    assert_eq!(job.status(), JobStatus::Canceled);
    assert!(job.comment.unwrap().contains("abortConfig"));
    assert_eq!(
        statuses(&mut jobs, "aborting").await,
        [
            ("t1".to_owned(), JobExecutionStatus::Failed),
            ("t2".to_owned(), JobExecutionStatus::Succeeded),
            ("t3".to_owned(), JobExecutionStatus::Canceled),
            ("t4".to_owned(), JobExecutionStatus::Canceled),
        ]
    );
    let events = summary(&events_after(&mut client, before).await);
    assert!(
        events.contains(&"JOB JOB_EVENT_KIND_CANCELED".to_owned()),
        "{events:?}"
    );
    let bad = CreateJobRequest {
        abort_criteria: vec![AbortCriterion {
            failure_type: "FAILED".into(),
            action: "CANCEL".into(),
            threshold_percentage: 0.0,
            min_number_of_executed_things: 1,
        }],
        ..create_req(
            "bad-abort",
            &[arn("thing", "t1")],
            TargetSelection::Snapshot,
        )
    };
    expect_err(jobs.create_job(bad).await, ErrorType::InvalidRequest);
    registry.stop().await;
}

/// Deleting a thing's latest attempt deletes its earlier ones too: a new
/// execution starts again at number 1 and finds no stale attempt.
#[tokio::test]
async fn deleting_the_latest_attempt_takes_the_earlier_ones() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    create_thing(&mut client, "t1").await;
    create_group(&mut client, "fleet", None).await;
    jobs.create_job(create_req(
        "follow",
        &[arn("thinggroup", "fleet")],
        TargetSelection::Continuous,
    ))
    .await
    .unwrap();
    add_to_group(&mut client, "fleet", "t1").await;
    client
        .remove_thing_from_thing_group(RemoveThingFromThingGroupRequest {
            thing_group_name: Some("fleet".into()),
            thing_name: Some("t1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    add_to_group(&mut client, "fleet", "t1").await;
    assert_eq!(
        execution(&mut jobs, "follow", "t1").await.execution_number,
        2
    );
    jobs.delete_job_execution(DeleteJobExecutionRequest {
        job_id: "follow".into(),
        thing_name: "t1".into(),
        execution_number: 2,
        force: true,
    })
    .await
    .unwrap();
    let first = jobs
        .describe_job_execution(DescribeJobExecutionRequest {
            job_id: "follow".into(),
            thing_name: "t1".into(),
            execution_number: Some(1),
        })
        .await;
    expect_err(first, ErrorType::ResourceNotFound);
    client
        .remove_thing_from_thing_group(RemoveThingFromThingGroupRequest {
            thing_group_name: Some("fleet".into()),
            thing_name: Some("t1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    add_to_group(&mut client, "fleet", "t1").await;
    let again = execution(&mut jobs, "follow", "t1").await;
    assert_eq!(
        (again.execution_number, again.status()),
        (1, JobExecutionStatus::Queued)
    );
    registry.stop().await;
}

/// A thing moved from one group to another under the same continuous job's
/// target (one UpdateThingGroupsForThing) keeps its execution.
#[tokio::test]
async fn a_thing_moved_between_targeted_subgroups_keeps_its_execution() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    create_thing(&mut client, "t1").await;
    create_group(&mut client, "fleet", None).await;
    create_group(&mut client, "fleet-eu", Some("fleet")).await;
    create_group(&mut client, "fleet-us", Some("fleet")).await;
    add_to_group(&mut client, "fleet-eu", "t1").await;
    jobs.create_job(create_req(
        "follow",
        &[arn("thinggroup", "fleet")],
        TargetSelection::Continuous,
    ))
    .await
    .unwrap();
    update(
        &mut jobs,
        "follow",
        "t1",
        JobExecutionStatus::InProgress,
        None,
    )
    .await
    .unwrap();
    client
        .update_thing_groups_for_thing(UpdateThingGroupsForThingRequest {
            thing_name: "t1".into(),
            thing_groups_to_add: vec!["fleet-us".into()],
            thing_groups_to_remove: vec!["fleet-eu".into()],
            override_dynamic_groups: false,
        })
        .await
        .unwrap();
    let e = execution(&mut jobs, "follow", "t1").await;
    assert_eq!(
        (e.status(), e.execution_number),
        (JobExecutionStatus::InProgress, 1)
    );
    registry.stop().await;
}

/// The registry with a job "minute" of `minute_ms` and a schedule lead of
/// `lead_minutes` of them.
async fn with_clock(minute_ms: u64, lead_minutes: u64) -> TestRegistry {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = herald_registry::Settings::for_test(dir.path().join("registry"));
    settings.jobs.minute_ms = minute_ms;
    settings.jobs.timer_interval_ms = 20;
    settings.jobs.schedule_lead_minutes = lead_minutes;
    TestRegistry::start_in(dir, settings).await
}

async fn executions_of(jobs: &mut Jobs, id: &str) -> Vec<JobExecution> {
    jobs.list_job_executions_for_job(ListJobExecutionsForJobRequest {
        job_id: id.into(),
        max_results: 250,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .executions
}

async fn wait_for_executions(jobs: &Jobs, id: &'static str, count: usize) -> Vec<JobExecution> {
    crate::support::eventually(20, "every execution of the rollout", || {
        let mut jobs = jobs.clone();
        async move {
            let executions = executions_of(&mut jobs, id).await;
            (executions.len() == count).then_some(executions)
        }
    })
    .await
}

fn rollout(maximum_per_minute: u32) -> Option<RolloutConfig> {
    Some(RolloutConfig {
        maximum_per_minute: Some(maximum_per_minute),
        exponential_rate: None,
    })
}

/// With `jobExecutionsRolloutConfig.maximumPerMinute`, CreateJob creates
/// that many executions and the others follow a minute at a time: never
/// more than the rate within a minute, by the registry's own timestamps.
#[tokio::test]
async fn a_rollout_creates_executions_at_its_rate() {
    let registry = with_clock(300, 30).await;
    let (mut client, mut jobs) = clients(&registry).await;
    create_group(&mut client, "fleet", None).await;
    for i in 0..7 {
        let thing = format!("r{i}");
        create_thing(&mut client, &thing).await;
        add_to_group(&mut client, "fleet", &thing).await;
    }
    let rolled = CreateJobRequest {
        rollout_config: rollout(3),
        ..create_req(
            "rolled",
            &[arn("thinggroup", "fleet")],
            TargetSelection::Snapshot,
        )
    };
    jobs.create_job(rolled).await.unwrap();
    assert_eq!(executions_of(&mut jobs, "rolled").await.len(), 3);
    let job = describe(&mut jobs, "rolled").await;
    assert_eq!(job.status(), JobStatus::InProgress);
    assert_eq!(job.rollout_config, rollout(3));
    assert_eq!(job.job_process_details.unwrap().number_of_queued_things, 3);
    let executions = wait_for_executions(&jobs, "rolled", 7).await;
    let mut queued: Vec<i64> = executions.iter().map(|e| e.queued_at_ms).collect();
    queued.sort_unstable();
    for window in queued.windows(4) {
        assert!(
            window[3] - window[0] >= 300,
            "four executions queued within a minute: {queued:?}"
        );
    }
    // Only when every thing had its execution and finished it is the
    // snapshot job complete.
    for e in &executions {
        update(
            &mut jobs,
            "rolled",
            &e.thing_name,
            JobExecutionStatus::Succeeded,
            None,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        describe(&mut jobs, "rolled").await.status(),
        JobStatus::Completed
    );
    registry.stop().await;
}

/// An exponential rate starts at its base and grows by its factor; a
/// cancelled rollout creates nothing more; bad rates are refused.
#[tokio::test]
async fn an_exponential_rollout_grows_and_a_cancel_stops_it() {
    let registry = with_clock(250, 30).await;
    let (mut client, mut jobs) = clients(&registry).await;
    let mut targets = Vec::new();
    for i in 0..9 {
        let thing = format!("x{i}");
        create_thing(&mut client, &thing).await;
        targets.push(arn("thing", &thing));
    }
    let exponential = Some(RolloutConfig {
        maximum_per_minute: Some(100),
        exponential_rate: Some(ExponentialRate {
            base_rate_per_minute: 2,
            increment_factor: 2.0,
            number_of_notified_things: Some(2),
            number_of_succeeded_things: None,
        }),
    });
    let grown = CreateJobRequest {
        rollout_config: exponential,
        ..create_req("grown", &targets[..6], TargetSelection::Snapshot)
    };
    jobs.create_job(grown).await.unwrap();
    assert_eq!(executions_of(&mut jobs, "grown").await.len(), 2);
    // 2, then 4: all six in the second minute.
    let executions = wait_for_executions(&jobs, "grown", 6).await;
    let mut queued: Vec<i64> = executions.iter().map(|e| e.queued_at_ms).collect();
    queued.sort_unstable();
    assert!(queued[2] - queued[0] >= 250, "{queued:?}");
    assert!(queued[5] - queued[2] < 250, "{queued:?}");

    let canceled = CreateJobRequest {
        rollout_config: rollout(1),
        ..create_req("canceled", &targets[6..], TargetSelection::Snapshot)
    };
    jobs.create_job(canceled).await.unwrap();
    jobs.cancel_job(CancelJobRequest {
        job_id: "canceled".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let executions = executions_of(&mut jobs, "canceled").await;
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].status(), JobExecutionStatus::Canceled);
    assert_eq!(
        describe(&mut jobs, "canceled").await.status(),
        JobStatus::Canceled
    );

    for (rate, factor, notified, succeeded) in [
        (0, 2.0, Some(1), None),
        (1_001, 2.0, Some(1), None),
        (2, 1.0, Some(1), None),
        (2, 1.55, Some(1), None),
        (2, 2.0, None, None),
        (2, 2.0, Some(1), Some(1)),
    ] {
        let bad = CreateJobRequest {
            rollout_config: Some(RolloutConfig {
                maximum_per_minute: None,
                exponential_rate: Some(ExponentialRate {
                    base_rate_per_minute: rate,
                    increment_factor: factor,
                    number_of_notified_things: notified,
                    number_of_succeeded_things: succeeded,
                }),
            }),
            ..create_req("bad", &targets[..1], TargetSelection::Snapshot)
        };
        expect_err(jobs.create_job(bad).await, ErrorType::InvalidRequest);
    }
    registry.stop().await;
}

/// The rollout's progress is state: a registry restarted in the middle of
/// a rollout goes on with it.
#[tokio::test]
async fn a_rollout_goes_on_after_a_restart() {
    let registry = with_clock(300, 30).await;
    let (mut client, mut jobs) = clients(&registry).await;
    let mut targets = Vec::new();
    for i in 0..4 {
        let thing = format!("s{i}");
        create_thing(&mut client, &thing).await;
        targets.push(arn("thing", &thing));
    }
    let rolled = CreateJobRequest {
        rollout_config: rollout(1),
        ..create_req("survivor", &targets, TargetSelection::Snapshot)
    };
    jobs.create_job(rolled).await.unwrap();
    let dir = registry.stop().await;
    let mut settings = herald_registry::Settings::for_test(dir.path().join("registry"));
    settings.jobs.minute_ms = 300;
    settings.jobs.timer_interval_ms = 20;
    let registry = TestRegistry::start_in(dir, settings).await;
    let (_, jobs) = clients(&registry).await;
    let executions = wait_for_executions(&jobs, "survivor", 4).await;
    let mut queued: Vec<i64> = executions.iter().map(|e| e.queued_at_ms).collect();
    queued.sort_unstable();
    for pair in queued.windows(2) {
        assert!(pair[1] - pair[0] >= 300, "{queued:?}");
    }
    registry.stop().await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn wait_for_job_status(jobs: &Jobs, id: &'static str, status: JobStatus) {
    crate::support::eventually(20, "the job's status", || {
        let mut jobs = jobs.clone();
        async move { (describe(&mut jobs, id).await.status() == status).then_some(()) }
    })
    .await;
}

/// A job with a `schedulingConfig.startTime` is SCHEDULED, with no
/// execution, until then; at its `endTime` it is cancelled (CANCEL) or
/// stops its rollout (STOP_ROLLOUT). Times too close are refused.
#[tokio::test]
async fn a_scheduled_job_starts_and_ends_on_time() {
    // A "minute" of 100 ms; a start at least 3 of them ahead.
    let registry = with_clock(100, 3).await;
    let (mut client, mut jobs) = clients(&registry).await;
    create_thing(&mut client, "sch").await;
    let start = now_ms() + 400;
    let scheduled = CreateJobRequest {
        scheduling_config: Some(SchedulingConfig {
            start_time_ms: Some(start),
            end_time_ms: Some(start + 400),
            end_behavior: "CANCEL".into(),
            maintenance_windows: Vec::new(),
        }),
        ..create_req(
            "scheduled",
            &[arn("thing", "sch")],
            TargetSelection::Snapshot,
        )
    };
    jobs.create_job(scheduled).await.unwrap();
    let job = describe(&mut jobs, "scheduled").await;
    assert_eq!(job.status(), JobStatus::Scheduled);
    assert_eq!(
        job.scheduling_config.unwrap().end_behavior,
        "CANCEL".to_owned()
    );
    assert!(executions_of(&mut jobs, "scheduled").await.is_empty());
    wait_for_job_status(&jobs, "scheduled", JobStatus::InProgress).await;
    assert!(now_ms() >= start);
    assert_eq!(
        status_of(&mut jobs, "scheduled", "sch").await,
        Some(JobExecutionStatus::Queued)
    );
    wait_for_job_status(&jobs, "scheduled", JobStatus::Canceled).await;
    assert!(now_ms() >= start + 400);
    assert_eq!(
        status_of(&mut jobs, "scheduled", "sch").await,
        Some(JobExecutionStatus::Canceled)
    );

    // One execution a "minute", the end 5 "minutes" later: the rollout
    // stops before it reaches all ten things, and the job completes once
    // the executions it made are done.
    let mut targets = Vec::new();
    for i in 0..10 {
        let thing = format!("r{i}");
        create_thing(&mut client, &thing).await;
        targets.push(arn("thing", &thing));
    }
    let created = now_ms();
    let stopped = CreateJobRequest {
        rollout_config: rollout(1),
        scheduling_config: Some(SchedulingConfig {
            start_time_ms: None,
            end_time_ms: Some(created + 500),
            end_behavior: "STOP_ROLLOUT".into(),
            maintenance_windows: Vec::new(),
        }),
        ..create_req("stopped", &targets, TargetSelection::Snapshot)
    };
    jobs.create_job(stopped).await.unwrap();
    assert_eq!(executions_of(&mut jobs, "stopped").await.len(), 1);
    let done = crate::support::eventually(20, "the stopped rollout to complete", || {
        let mut jobs = jobs.clone();
        async move {
            let executions = executions_of(&mut jobs, "stopped").await;
            for e in &executions {
                if e.status() == JobExecutionStatus::Queued {
                    update(
                        &mut jobs,
                        "stopped",
                        &e.thing_name,
                        JobExecutionStatus::Succeeded,
                        None,
                    )
                    .await
                    .unwrap();
                }
            }
            (describe(&mut jobs, "stopped").await.status() == JobStatus::Completed)
                .then_some(executions)
        }
    })
    .await;
    assert!(now_ms() >= created + 500);
    assert!((1..10).contains(&done.len()), "{done:?}");
    assert!(
        done.iter().all(|e| e.queued_at_ms < created + 600),
        "{done:?}"
    );

    for (start, end) in [
        (Some(now_ms() + 100), None),
        (Some(now_ms() + 1_000), Some(now_ms() + 1_100)),
        (None, Some(now_ms() + 50)),
    ] {
        let bad = CreateJobRequest {
            scheduling_config: Some(SchedulingConfig {
                start_time_ms: start,
                end_time_ms: end,
                end_behavior: String::new(),
                maintenance_windows: Vec::new(),
            }),
            ..create_req("bad", &[arn("thing", "sch")], TargetSelection::Snapshot)
        };
        expect_err(jobs.create_job(bad).await, ErrorType::InvalidRequest);
    }
    let bad = CreateJobRequest {
        scheduling_config: Some(SchedulingConfig {
            start_time_ms: Some(now_ms() + 1_000),
            end_time_ms: None,
            end_behavior: "LATER".into(),
            maintenance_windows: Vec::new(),
        }),
        ..create_req("bad", &[arn("thing", "sch")], TargetSelection::Snapshot)
    };
    expect_err(jobs.create_job(bad).await, ErrorType::InvalidRequest);
    registry.stop().await;
}

/// With `maintenanceWindows`, executions are created only within a window:
/// a job whose window is open (every minute, for a minute) reaches its
/// things at once; one whose only window is years away reaches none and
/// waits; a bad cron expression is refused.
#[tokio::test]
async fn maintenance_windows_gate_the_rollout() {
    let registry = TestRegistry::start().await;
    let (mut client, mut jobs) = clients(&registry).await;
    for thing in ["w1", "w2"] {
        create_thing(&mut client, thing).await;
    }
    let targets = [arn("thing", "w1"), arn("thing", "w2")];
    let windowed = |id: &str, cron: &str| CreateJobRequest {
        scheduling_config: Some(SchedulingConfig {
            start_time_ms: None,
            end_time_ms: None,
            end_behavior: String::new(),
            maintenance_windows: vec![MaintenanceWindow {
                start_time: cron.into(),
                duration_in_minutes: 1,
            }],
        }),
        ..create_req(id, &targets, TargetSelection::Snapshot)
    };
    jobs.create_job(windowed("open", "cron(* * * * ? *)"))
        .await
        .unwrap();
    assert_eq!(executions_of(&mut jobs, "open").await.len(), 2);
    jobs.create_job(windowed("later", "cron(0 0 1 JAN ? 2199)"))
        .await
        .unwrap();
    assert!(executions_of(&mut jobs, "later").await.is_empty());
    let later = describe(&mut jobs, "later").await;
    assert_eq!(later.status(), JobStatus::InProgress);
    assert_eq!(
        later.scheduling_config.unwrap().maintenance_windows[0].start_time,
        "cron(0 0 1 JAN ? 2199)"
    );
    // Waiting things keep a snapshot job from completing.
    for thing in ["w1", "w2"] {
        update(
            &mut jobs,
            "open",
            thing,
            JobExecutionStatus::Succeeded,
            None,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        describe(&mut jobs, "open").await.status(),
        JobStatus::Completed
    );
    assert_eq!(
        describe(&mut jobs, "later").await.status(),
        JobStatus::InProgress
    );
    for (cron, minutes) in [
        ("cron(0 1 * * * *)", 60),
        ("cron(0 1 L * ? *)", 60),
        ("0 1 * * ? *", 60),
        ("cron(0 1 * * ? *)", 0),
        ("cron(0 1 * * ? *)", 1431),
    ] {
        let mut bad = windowed("bad", cron);
        bad.scheduling_config.as_mut().unwrap().maintenance_windows[0].duration_in_minutes =
            minutes;
        expect_err(jobs.create_job(bad).await, ErrorType::InvalidRequest);
    }
    registry.stop().await;
}
