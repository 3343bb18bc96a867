//! Crash safety of the real binary: SIGKILL it while clients write, restart it
//! on the same data, and check that every acknowledged mutation and its event
//! survived exactly once; finally SIGTERM it and expect a clean exit.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::Path,
    process::ExitStatus,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use herald_proto::registry::v1::{
    AttributePayload, ChangeEvent, CreateThingRequest, DescribeThingRequest,
    GetChangeLogInfoRequest, ListThingsRequest, Operation, Page, UpdateThingRequest,
    WatchChangesRequest, change_event::Event, registry_client::RegistryClient,
};
use herald_testkit::process::Process;
use tokio::{
    task::JoinHandle,
    time::{Instant, timeout},
};

use crate::support::Client;

/// Acknowledged mutations per round before the kill.
const MUTATIONS_BEFORE_KILL: usize = 300;
const CLIENTS: usize = 8;
const ROUNDS: usize = 2;

// ---------------------------------------------------------------- the binary

/// A running `registry` binary.
struct Server {
    process: Process,
    addr: SocketAddr,
}

impl Server {
    /// Starts the binary on `data_dir` and waits (with a deadline) for its address.
    async fn start(data_dir: &Path) -> Server {
        let process = Process::start(
            Path::new(env!("CARGO_BIN_EXE_registry")),
            "registry",
            &[
                ("DATA_DIR", data_dir.display().to_string()),
                ("GRPC__LISTEN_ADDR", "127.0.0.1:0".into()),
            ],
            "grpc",
        )
        .await;
        let addr = process.addr("grpc").await;
        Server { process, addr }
    }

    async fn client(&self) -> Client {
        RegistryClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect to the registry")
    }

    async fn kill_9(self) {
        self.process.kill_9().await;
    }

    /// Sends SIGTERM and returns how the process exited, and its log.
    async fn terminate(self) -> (ExitStatus, String) {
        self.process.terminate().await
    }
}

// ---------------------------------------------------------------- writers

#[derive(Debug, Clone)]
enum Mutation {
    Create {
        thing: String,
        client: usize,
    },
    /// A merge of `n={n}` that makes the thing's version `version`.
    Update {
        thing: String,
        n: usize,
        version: i64,
    },
}

/// What one client got done before the registry died under it.
#[derive(Debug, Default)]
struct ClientReport {
    acknowledged: Vec<Mutation>,
    /// The mutation that failed (the registry died mid-call): applied or not.
    in_flight: Option<Mutation>,
}

/// Creates `r{round}-t-{client}-{i}`, and every third iteration updates one of its
/// own things instead, until a call fails or `stop` is set.
async fn run_client(
    mut client: Client,
    round: usize,
    id: usize,
    counter: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> ClientReport {
    let mut report = ClientReport::default();
    let mut versions: Vec<(String, i64)> = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (mutation, call) = if i % 3 == 2 && !versions.is_empty() {
            // The first few things get several updates each, so versions climb past 2.
            let slot = (i / 3) % versions.len().min(4);
            let (thing, version) = &versions[slot];
            let mutation = Mutation::Update {
                thing: thing.clone(),
                n: i,
                version: version + 1,
            };
            let request = UpdateThingRequest {
                thing_name: thing.clone(),
                attribute_payload: Some(AttributePayload {
                    attributes: HashMap::from([("n".to_string(), i.to_string())]),
                    merge: true,
                }),
                ..Default::default()
            };
            let call = client.update_thing(request).await.map(|_| ());
            (mutation, call)
        } else {
            let thing = format!("r{round}-t-{id}-{i}");
            let mutation = Mutation::Create {
                thing: thing.clone(),
                client: id,
            };
            let request = CreateThingRequest {
                thing_name: thing,
                attribute_payload: Some(AttributePayload {
                    attributes: HashMap::from([("client".to_string(), id.to_string())]),
                    merge: false,
                }),
                ..Default::default()
            };
            let call = client.create_thing(request).await.map(|_| ());
            (mutation, call)
        };
        if call.is_err() {
            report.in_flight = Some(mutation);
            break;
        }
        match &mutation {
            Mutation::Create { thing, .. } => versions.push((thing.clone(), 1)),
            Mutation::Update { thing, version, .. } => {
                let slot = versions.iter_mut().find(|(t, _)| t == thing).unwrap();
                slot.1 = *version;
            }
        }
        report.acknowledged.push(mutation);
        counter.fetch_add(1, Ordering::SeqCst);
    }
    report
}

/// Runs the clients against `server` until enough mutations are acknowledged,
/// SIGKILLs the server mid-flight, and returns what each client saw.
async fn write_then_kill(server: Server, round: usize) -> Vec<ClientReport> {
    let counter = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients: Vec<JoinHandle<ClientReport>> = Vec::new();
    for id in 0..CLIENTS {
        let client = server.client().await;
        clients.push(tokio::spawn(run_client(
            client,
            round,
            id,
            counter.clone(),
            stop.clone(),
        )));
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    while counter.load(Ordering::SeqCst) < MUTATIONS_BEFORE_KILL {
        if clients.iter().all(|c| c.is_finished()) {
            let reports: Vec<ClientReport> = join_clients(clients).await;
            panic!(
                "every client stopped after {} acknowledged mutations (the service refused a call?): in flight {:?}\n{}",
                counter.load(Ordering::SeqCst),
                reports.iter().map(|r| &r.in_flight).collect::<Vec<_>>(),
                server.process.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "only {} mutations acknowledged within a minute",
            counter.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let running = clients.iter().filter(|c| !c.is_finished()).count();
    assert_eq!(
        running, CLIENTS,
        "every client should still be writing when the registry is killed"
    );

    server.kill_9().await;
    stop.store(true, Ordering::SeqCst);
    timeout(Duration::from_secs(30), join_clients(clients))
        .await
        .expect("clients stop once the registry is gone")
}

async fn join_clients(handles: Vec<JoinHandle<ClientReport>>) -> Vec<ClientReport> {
    let mut reports = Vec::new();
    for handle in handles {
        reports.push(handle.await.expect("a client task panicked"));
    }
    reports
}

// ---------------------------------------------------------------- checks

/// Reads the whole log, from the oldest event to `last_sequence`.
async fn read_log(client: &mut Client) -> Vec<ChangeEvent> {
    let info = client
        .get_change_log_info(GetChangeLogInfoRequest {})
        .await
        .expect("GetChangeLogInfo")
        .into_inner();
    assert_eq!(
        info.first_sequence, 1,
        "nothing is old enough to be removed: {info:?}"
    );
    let mut stream = client
        .watch_changes(WatchChangesRequest { after_sequence: 0 })
        .await
        .expect("WatchChanges from 0")
        .into_inner();
    let mut events: Vec<ChangeEvent> = Vec::new();
    let read = timeout(Duration::from_secs(30), async {
        while events.last().map_or(0, |e| e.sequence) < info.last_sequence {
            match stream.message().await {
                Ok(Some(batch)) => events.extend(batch.events),
                other => panic!(
                    "the log stream stopped after {} events: {other:?}",
                    events.len()
                ),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "timed out reading the log: {} of {} events",
        events.len(),
        info.last_sequence
    );
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=info.last_sequence).collect::<Vec<_>>(),
        "the log has no gaps or repeats"
    );
    events
}

async fn list_thing_names(client: &mut Client) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut next_token = String::new();
    loop {
        let page = client
            .list_things(ListThingsRequest {
                page: Some(Page {
                    next_token: next_token.clone(),
                    max_results: 250,
                }),
                ..Default::default()
            })
            .await
            .expect("ListThings")
            .into_inner();
        names.extend(page.things.into_iter().map(|t| t.thing_name));
        if page.next_token.is_empty() {
            return names;
        }
        next_token = page.next_token;
    }
}

/// Asserts that the restarted registry holds every acknowledged mutation exactly
/// once, in its state and in its log, and in-flight ones at most once.
async fn assert_survived(client: &mut Client, reports: &[ClientReport]) {
    let events = read_log(client).await;
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");

    let mut created: HashMap<&str, usize> = HashMap::new();
    let mut updated: HashMap<&str, Vec<i64>> = HashMap::new();
    for event in &events {
        let Some(Event::Thing(thing)) = &event.event else {
            panic!("only THING events were caused: {event:?}");
        };
        match event.operation() {
            Operation::Created => *created.entry(&thing.thing_name).or_default() += 1,
            Operation::Updated => updated
                .entry(&thing.thing_name)
                .or_default()
                .push(thing.version_number),
            other => panic!("unexpected {other:?} event: {event:?}"),
        }
    }
    for (thing, count) in &created {
        assert_eq!(*count, 1, "{thing} was logged as created {count} times");
    }

    // The state and the log agree: exactly the logged creations exist.
    let existing = list_thing_names(client).await;
    let logged: HashSet<String> = created.keys().map(|t| t.to_string()).collect();
    assert_eq!(
        existing, logged,
        "the things that exist are exactly those logged as created"
    );

    // Per thing: the version acknowledged, its last acknowledged `n`, and an update in flight.
    let mut acked: HashMap<&str, (i64, Option<usize>)> = HashMap::new();
    let mut in_flight_update: HashMap<&str, usize> = HashMap::new();
    for report in reports {
        for mutation in &report.acknowledged {
            match mutation {
                Mutation::Create { thing, .. } => {
                    assert!(
                        existing.contains(thing),
                        "acknowledged create of {thing} was lost"
                    );
                    acked.insert(thing, (1, None));
                }
                Mutation::Update { thing, n, version } => {
                    acked.insert(thing, (*version, Some(*n)));
                }
            }
        }
        if let Some(Mutation::Update { thing, n, .. }) = &report.in_flight {
            in_flight_update.insert(thing, *n);
        }
    }

    for (thing, (acked_version, acked_n)) in &acked {
        let described = client
            .describe_thing(DescribeThingRequest {
                thing_name: thing.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged thing {thing} is missing: {e:?}"))
            .into_inner();
        let pending = in_flight_update.get(thing).copied();
        let expected_n = if described.version == *acked_version {
            *acked_n
        } else {
            assert!(
                described.version == acked_version + 1 && pending.is_some(),
                "{thing}: version {} but {acked_version} acknowledged (update in flight: {pending:?})",
                described.version
            );
            pending
        };
        assert_eq!(
            described.attributes.get("n"),
            expected_n.map(|n| n.to_string()).as_ref(),
            "{thing}: the last applied update's attribute"
        );
        let client_id = reports
            .iter()
            .flat_map(|r| &r.acknowledged)
            .find_map(|m| match m {
                Mutation::Create { thing: t, client } if t == thing => Some(*client),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            described.attributes.get("client"),
            Some(&client_id.to_string()),
            "{thing}"
        );

        let mut versions = updated.get(thing).cloned().unwrap_or_default();
        versions.sort_unstable();
        assert_eq!(
            versions,
            (2..=described.version).collect::<Vec<_>>(),
            "{thing}: one Updated event per applied update, versions 2..={}",
            described.version
        );
    }
}

// ---------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_mutations_and_their_events_survive_kill_9_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("registry");
    let mut reports: Vec<ClientReport> = Vec::new();

    let mut server = Server::start(&data_dir).await;
    for round in 0..ROUNDS {
        reports.extend(write_then_kill(server, round).await);
        let acknowledged: usize = reports.iter().map(|r| r.acknowledged.len()).sum();
        assert!(
            acknowledged >= MUTATIONS_BEFORE_KILL * (round + 1),
            "{acknowledged} acknowledged"
        );

        server = Server::start(&data_dir).await;
        let mut client = server.client().await;
        assert_survived(&mut client, &reports).await;
    }

    let (status, log) = server.terminate().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM should end the registry cleanly ({status:?}):\n{log}"
    );
}
