//! One contract, two backends: every scenario here runs on embedded sled and
//! on PostgreSQL (a database of its own on the tests' server; see
//! `herald_testkit::postgres`), and must behave the same on both. The
//! PostgreSQL-only scenarios at the end are about its replicas: a standby
//! that takes over, and a deposed writer that cannot fork the log.

use std::time::Duration;

use herald_store::{
    Backend, ChangeLog, Record, Store, StoreError, Writer, WriterThread, key, prefix,
};
use herald_testkit::eventually;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const GRACE: Duration = Duration::from_secs(10);

/// Where a scenario's store lives; each [`Fixture::open`] is a process
/// (re)starting on it: the same sled folder, or a new replica (a new cache
/// folder) on the same PostgreSQL database.
struct Fixture {
    backend: Backend,
    dirs: Vec<tempfile::TempDir>,
    sled: tempfile::TempDir,
}

impl Fixture {
    fn sled() -> Fixture {
        Fixture {
            backend: Backend::Sled,
            dirs: Vec::new(),
            sled: tempfile::tempdir().unwrap(),
        }
    }

    async fn postgres(test: &str) -> Option<Fixture> {
        let url = herald_testkit::postgres::database(test).await?;
        Some(Fixture {
            backend: Backend::Postgres { url, ca_file: None },
            dirs: Vec::new(),
            sled: tempfile::tempdir().unwrap(),
        })
    }

    fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    async fn open(&mut self) -> Store {
        self.open_as(&CancellationToken::new()).await.unwrap()
    }

    async fn open_as(&mut self, shutdown: &CancellationToken) -> anyhow::Result<Store> {
        let dir = match self.backend {
            Backend::Sled => self.sled.path().to_path_buf(),
            Backend::Postgres { .. } => {
                self.dirs.push(tempfile::tempdir().unwrap());
                self.dirs.last().unwrap().path().to_path_buf()
            }
        };
        Store::open_with(&self.backend, &dir, "test", shutdown).await
    }
}

impl Fixture {
    /// Another replica of the same database, opening as a standby.
    fn standby(&self) -> tokio::task::JoinHandle<(anyhow::Result<Store>, Fixture)> {
        let mut standby = Fixture {
            backend: self.backend.clone(),
            dirs: Vec::new(),
            sled: tempfile::tempdir().unwrap(),
        };
        tokio::spawn(async move {
            let store = standby.open_as(&CancellationToken::new()).await;
            (store, standby)
        })
    }
}

/// The store of a standby once it took over (within three grace periods).
async fn taken_over(
    standby: tokio::task::JoinHandle<(anyhow::Result<Store>, Fixture)>,
) -> (Store, Fixture) {
    let (store, fixture) = tokio::time::timeout(GRACE * 3, standby)
        .await
        .expect("the standby takes over")
        .unwrap();
    (store.unwrap(), fixture)
}

type TestWriter = Writer<String, StoreError>;

fn start(store: &Store) -> (TestWriter, ChangeLog, WriterThread) {
    Writer::start(store.clone(), "test-writer").unwrap()
}

async fn create(writer: &TestWriter, name: &str) -> Result<(), StoreError> {
    let name = name.to_owned();
    writer
        .mutate(move |c| {
            c.put(key(&["thing", &name]), &name)?;
            c.log(format!("created {name}"));
            Ok(())
        })
        .await
}

/// Every durable event after `cursor`, as the log streams them, until `n` came.
async fn follow(log: &ChangeLog, cursor: u64, n: usize) -> Vec<Record<String>> {
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    tokio::spawn(
        log.clone()
            .follow::<String>(cursor, false, tx, stop.clone()),
    );
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(GRACE, rx.recv())
            .await
            .expect("the log streams within the deadline")
            .expect("the follower runs")
            .expect("the follower reads");
        out.extend(batch);
    }
    stop.cancel();
    out
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Fixture::sled()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(f) = super::Fixture::postgres(stringify!($scenario)).await {
                        super::$scenario(f).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    a_mutation_commits_its_state_and_events_and_a_refused_one_nothing,
    concurrent_mutations_get_a_dense_log_in_commit_order,
    state_and_log_survive_a_restart_and_sequences_continue,
    partitions_keep_their_own_state_and_log_across_restarts,
    retention_keeps_the_newest_event_and_reports_out_of_range,
);

async fn a_mutation_commits_its_state_and_events_and_a_refused_one_nothing(mut f: Fixture) {
    let store = f.open().await;
    let (writer, log, thread) = start(&store);
    create(&writer, "a").await.unwrap();
    let refused = writer
        .mutate(|c| {
            c.put(key(&["thing", "b"]), &"b")?;
            c.log("created b".to_owned());
            Err::<(), _>(StoreError::InvalidPage("refused".into()))
        })
        .await;
    assert_eq!(refused, Err(StoreError::InvalidPage("refused".into())));
    // A mutation that writes without logging, and one that removes.
    writer
        .mutate(|c| c.put(key(&["thing", "c"]), &"c"))
        .await
        .unwrap();
    writer
        .mutate(|c| {
            c.remove(key(&["thing", "a"]));
            c.log("deleted a".to_owned());
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(store.keys(&prefix(&["thing"])).unwrap(), ["c"]);
    assert_eq!(log.last_sequence(), 2);
    let events: Vec<String> = follow(&log, 0, 2)
        .await
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(events, ["created a", "deleted a"]);
    drop(writer);
    thread.stop(GRACE).await.unwrap();

    // What a restart finds is exactly what was acknowledged.
    drop((store, log));
    let store = f.open().await;
    assert_eq!(store.keys(&prefix(&["thing"])).unwrap(), ["c"]);
    assert_eq!(
        store.get::<String>(&key(&["thing", "c"])).unwrap(),
        Some("c".into())
    );
}

async fn concurrent_mutations_get_a_dense_log_in_commit_order(mut f: Fixture) {
    let store = f.open().await;
    let (writer, log, thread) = start(&store);
    let mut tasks = Vec::new();
    for client in 0..64 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                create(&writer, &format!("{client}-{i}")).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.last_sequence(), 640);
    let records = follow(&log, 0, 640).await;
    let sequences: Vec<u64> = records.iter().map(|r| r.sequence).collect();
    assert_eq!(sequences, (1..=640).collect::<Vec<_>>());
    // Each client's mutations are in the log in the order it made them.
    for client in 0..64 {
        let mine: Vec<&str> = records
            .iter()
            .filter_map(|r| r.event.strip_prefix(&format!("created {client}-")))
            .collect();
        assert_eq!(mine, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }
    assert_eq!(store.keys(&prefix(&["thing"])).unwrap().len(), 640);
    drop(writer);
    thread.stop(GRACE).await.unwrap();
}

async fn state_and_log_survive_a_restart_and_sequences_continue(mut f: Fixture) {
    let ids = {
        let store = f.open().await;
        let (writer, log, thread) = start(&store);
        for name in ["a", "b", "c"] {
            create(&writer, name).await.unwrap();
        }
        let ids: Vec<String> = follow(&log, 0, 3)
            .await
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        drop(writer);
        thread.stop(GRACE).await.unwrap();
        ids
    };
    let store = f.open().await;
    let (writer, log, thread) = start(&store);
    assert_eq!(log.last_sequence(), 3);
    assert_eq!(store.keys(&prefix(&["thing"])).unwrap(), ["a", "b", "c"]);
    create(&writer, "d").await.unwrap();
    let records = follow(&log, 0, 4).await;
    assert_eq!(
        records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // A replayed event keeps its id.
    assert_eq!(
        records[..3]
            .iter()
            .map(|r| r.event_id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(follow(&log, 2, 2).await[0].event, "created c");
    drop(writer);
    thread.stop(GRACE).await.unwrap();
}

async fn partitions_keep_their_own_state_and_log_across_restarts(mut f: Fixture) {
    {
        let default = f.open().await;
        let other = default.partition("111122223333/eu-west-1").unwrap();
        let (w1, _, t1) = start(&default);
        let (w2, _, t2) = start(&other);
        create(&w1, "x").await.unwrap();
        create(&w2, "y").await.unwrap();
        create(&w2, "z").await.unwrap();
        drop((w1, w2));
        t1.stop(GRACE).await.unwrap();
        t2.stop(GRACE).await.unwrap();
    }
    let default = f.open().await;
    assert_eq!(default.partition_names(), ["111122223333/eu-west-1"]);
    let other = default.partition("111122223333/eu-west-1").unwrap();
    assert_eq!(default.keys(&prefix(&["thing"])).unwrap(), ["x"]);
    assert_eq!(other.keys(&prefix(&["thing"])).unwrap(), ["y", "z"]);
    let (w2, log2, t2) = start(&other);
    assert_eq!(log2.last_sequence(), 2);
    create(&w2, "w").await.unwrap();
    assert_eq!(log2.last_sequence(), 3);
    drop(w2);
    t2.stop(GRACE).await.unwrap();
}

async fn retention_keeps_the_newest_event_and_reports_out_of_range(mut f: Fixture) {
    {
        let store = f.open().await;
        let (writer, log, thread) = start(&store);
        for name in ["a", "b", "c"] {
            create(&writer, name).await.unwrap();
        }
        let stop = CancellationToken::new();
        let retention = tokio::spawn(log.clone().retain(
            Duration::from_millis(1),
            Duration::from_millis(100),
            stop.clone(),
        ));
        eventually(10, "retention removes all but the newest event", || {
            let log = log.clone();
            async move { (log.first_sequence().unwrap() == 3).then_some(()) }
        })
        .await;
        if f.is_postgres() {
            // Retention reaches PostgreSQL too (on its next round).
            let Backend::Postgres { url, .. } = &f.backend else {
                unreachable!()
            };
            let url = url.clone();
            eventually(10, "retention removes the old rows in PostgreSQL", || {
                let url = url.clone();
                async move {
                    let old = herald_testkit::postgres::execute(
                        &url,
                        "SELECT seq FROM herald_log WHERE seq < 3",
                    )
                    .await;
                    (old == 0).then_some(())
                }
            })
            .await;
        }
        stop.cancel();
        retention.await.unwrap();
        let err = log.start(1).unwrap_err();
        assert!(err.is_out_of_range(), "{}", err.message());
        assert_eq!(log.start(2).unwrap(), 2);
        drop(writer);
        thread.stop(GRACE).await.unwrap();
    }
    // The same after a restart: the floor, the head and OUT_OF_RANGE.
    let store = f.open().await;
    let (writer, log, thread) = start(&store);
    assert_eq!((log.first_sequence().unwrap(), log.last_sequence()), (3, 3));
    assert!(log.start(1).unwrap_err().is_out_of_range());
    assert!(log.start(4).unwrap_err().is_out_of_range());
    create(&writer, "d").await.unwrap();
    assert_eq!(
        follow(&log, 2, 2)
            .await
            .iter()
            .map(|r| r.sequence)
            .collect::<Vec<_>>(),
        [3, 4]
    );
    drop(writer);
    thread.stop(GRACE).await.unwrap();
}

/// PostgreSQL only: a second replica stands by while the first writes, and
/// takes over with every acknowledged mutation and its events once the
/// first is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_standby_takes_over_with_everything_acknowledged() {
    let Some(mut f) = Fixture::postgres("a_standby_takes_over").await else {
        return;
    };
    let first = f.open().await;
    let (writer, _log, thread) = start(&first);
    for i in 0..20 {
        create(&writer, &format!("t{i}")).await.unwrap();
    }
    let standby = f.standby();
    // The standby waits while the first replica writes.
    create(&writer, "while-standing-by").await.unwrap();
    assert!(
        !standby.is_finished(),
        "the standby must wait for the writer's lock"
    );

    // The first replica goes away (its connections close, as when its
    // process is killed); the standby takes over.
    drop(writer);
    thread.stop(GRACE).await.unwrap();
    drop((first, _log));
    let (store, _standby_fixture) = taken_over(standby).await;
    assert_eq!(store.keys(&prefix(&["thing"])).unwrap().len(), 21);
    let (writer, log, thread) = start(&store);
    assert_eq!(log.last_sequence(), 21);
    create(&writer, "after").await.unwrap();
    let records = follow(&log, 0, 22).await;
    assert_eq!(records.last().unwrap().event, "created after");
    assert_eq!(records.last().unwrap().sequence, 22);
    drop(writer);
    thread.stop(GRACE).await.unwrap();
}

/// PostgreSQL only: a standby whose connection PostgreSQL drops (a
/// restart, a failover, an administrator) connects again and stands by
/// again, and still takes over once the writer is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_standby_that_loses_its_connection_stands_by_again() {
    let Some(mut f) = Fixture::postgres("a_standby_reconnects").await else {
        return;
    };
    let Backend::Postgres { url, .. } = f.backend.clone() else {
        unreachable!()
    };
    let first = f.open().await;
    let (writer, _log, thread) = start(&first);
    create(&writer, "before").await.unwrap();
    let standby = f.standby();
    let lock_sessions =
        "SELECT 1 FROM pg_stat_activity WHERE application_name = 'herald writer lock'
         AND datname = current_database()";
    let standing_by = || {
        let url = url.clone();
        async move { (herald_testkit::postgres::execute(&url, lock_sessions).await == 2).then_some(()) }
    };
    eventually(10, "the standby's lock session", standing_by).await;
    let ended = herald_testkit::postgres::execute(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'herald writer lock' AND datname = current_database()
         AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
    )
    .await;
    assert_eq!(ended, 1);
    // It comes back and waits: the writer still writes.
    eventually(10, "the standby's new lock session", standing_by).await;
    create(&writer, "while-standing-by").await.unwrap();
    assert!(!standby.is_finished(), "the standby must stand by again");

    drop(writer);
    thread.stop(GRACE).await.unwrap();
    drop((first, _log));
    let (store, _standby_fixture) = taken_over(standby).await;
    assert_eq!(store.keys(&prefix(&["thing"])).unwrap().len(), 2);
}

/// PostgreSQL only: a writer whose role was taken (its lock's session ended,
/// another replica took over) cannot commit, so the log never forks; it
/// reports the loss so that its service stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_deposed_writer_cannot_fork_the_log() {
    let Some(mut f) = Fixture::postgres("a_deposed_writer").await else {
        return;
    };
    let Backend::Postgres { url, .. } = f.backend.clone() else {
        unreachable!()
    };
    let old = f.open().await;
    let (old_writer, _old_log, old_thread) = start(&old);
    create(&old_writer, "before").await.unwrap();

    // The old writer's lock session ends while its process lives on (a
    // network partition, say); a new replica takes over.
    let ended = herald_testkit::postgres::execute(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(ended, 1);
    eventually(10, "the old replica notices it lost its role", || {
        let lost = old.lost();
        async move { lost.is_cancelled().then_some(()) }
    })
    .await;
    let new = f.open().await;
    let (new_writer, new_log, new_thread) = start(&new);
    assert_eq!(new_log.last_sequence(), 1);

    // The old writer's next commit is refused: nothing of it reaches the log.
    let refused = create(&old_writer, "forked").await;
    assert!(
        matches!(refused, Err(StoreError::Storage(_))),
        "{refused:?}"
    );
    create(&new_writer, "after").await.unwrap();
    let events: Vec<String> = follow(&new_log, 0, 2)
        .await
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(events, ["created before", "created after"]);
    let forked = herald_testkit::postgres::execute(
        &url,
        "SELECT 1 FROM herald_state WHERE key = decode('7468696e6700666f726b6564', 'hex')",
    )
    .await;
    assert_eq!(forked, 0);
    drop((old_writer, new_writer));
    old_thread.stop(GRACE).await.unwrap();
    new_thread.stop(GRACE).await.unwrap();
}

/// A replica started before PostgreSQL waits for it (retrying), and gives up
/// only when told to stop.
#[tokio::test]
async fn an_unreachable_postgres_is_waited_for_until_shutdown() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = Backend::Postgres {
        url: format!("postgres://herald@127.0.0.1:{port}/herald"),
        ca_file: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let opening = tokio::spawn({
        let shutdown = shutdown.clone();
        let dir = dir.path().to_path_buf();
        async move { Store::open_with(&backend, &dir, "test", &shutdown).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!opening.is_finished(), "it keeps trying");
    shutdown.cancel();
    let err = tokio::time::timeout(GRACE, opening)
        .await
        .expect("it stops when told")
        .unwrap()
        .err()
        .expect("no store");
    assert!(err.to_string().contains("stopped while waiting"), "{err:#}");
}

#[test]
fn a_store_setting_is_sled_or_a_postgres_url() {
    assert_eq!(Backend::parse("sled", None).unwrap(), Backend::Sled);
    assert!(matches!(
        Backend::parse("postgres://h@127.0.0.1:5432/d", None).unwrap(),
        Backend::Postgres { .. }
    ));
    let err = Backend::parse("mysql://x", None).unwrap_err();
    assert!(err.to_string().contains("postgres://"), "{err}");
}
