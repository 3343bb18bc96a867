//! PostgreSQL as the durable home of a service's state and change log, for
//! Herald beyond one machine.
//!
//! The rows are the same key-value records sled holds: `herald_state`
//! (service, partition, key, value), `herald_log` (service, partition,
//! sequence, record) and `herald_heads` (service, partition, the last
//! sequence number). One replica of a service writes at a time: it holds the
//! service's session advisory lock, and it bumps the service's epoch in
//! `herald_leaders` when it takes over. Every commit is one transaction that
//! reads that epoch `FOR SHARE` (a replica that took over since makes it
//! fail) and moves the partition's head row from the sequence the writer
//! knows to the new one (compare-and-set), then writes the state changes and
//! the log records. So the log's order is dense and equals commit order, and
//! a deposed writer can never fork it.
//!
//! The writing replica serves reads and followers from a local cache: a sled
//! database filled from PostgreSQL when it takes over, which the writer
//! updates as it applies each mutation. Followers stream only what
//! PostgreSQL has committed, exactly as with sled they stream only what is
//! flushed. A commit that fails leaves the cache ahead of PostgreSQL, so the
//! replica gives up its role ([`Remote::lost`]) and its service stops, to be
//! restarted and filled again; a standby replica waits for the lock, then
//! fills its cache and serves.

use std::{collections::BTreeMap, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio_postgres::{Client, Config, Statement, config::SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use crate::error::StoreError;

/// Where a service keeps its state: the embedded sled database (the
/// default), or PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres {
        /// A `postgres://` URL (or key-value connection string).
        url: String,
        /// The CA that signs the server's certificate: TLS to PostgreSQL is
        /// verified against it. Without one, the connection is plain unless
        /// the URL says `sslmode=require`, which then fails to start.
        ca_file: Option<PathBuf>,
    },
}

impl Backend {
    /// `"sled"`, or a `postgres://` / `postgresql://` URL.
    pub fn parse(store: &str, ca_file: Option<PathBuf>) -> anyhow::Result<Backend> {
        if store == "sled" {
            return Ok(Backend::Sled);
        }
        if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            Config::from_str(store).context("the store's PostgreSQL URL")?;
            return Ok(Backend::Postgres {
                url: store.to_owned(),
                ca_file,
            });
        }
        anyhow::bail!("store must be \"sled\" or a postgres:// URL")
    }
}

/// The tables, created once by whichever service gets there first.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS herald_state (
    service text NOT NULL, partition text NOT NULL, key bytea NOT NULL, value bytea NOT NULL,
    PRIMARY KEY (service, partition, key));
CREATE TABLE IF NOT EXISTS herald_log (
    service text NOT NULL, partition text NOT NULL, seq bigint NOT NULL, record bytea NOT NULL,
    PRIMARY KEY (service, partition, seq));
CREATE TABLE IF NOT EXISTS herald_heads (
    service text NOT NULL, partition text NOT NULL, seq bigint NOT NULL,
    PRIMARY KEY (service, partition));
CREATE TABLE IF NOT EXISTS herald_leaders (
    service text PRIMARY KEY, epoch bigint NOT NULL);
";

/// The advisory lock's first key: Herald's namespace (the second is the
/// service name's hash).
const LOCK_NAMESPACE: i32 = 0x4845_5241; // "HERA"
/// How often a standby asks for the lock.
const STANDBY_POLL: Duration = Duration::from_millis(250);
/// How long to wait before trying an unreachable PostgreSQL again.
const CONNECT_RETRY: Duration = Duration::from_secs(1);
/// Rows per page when the cache is filled.
const FILL_PAGE: i64 = 5_000;

/// A service's connection to PostgreSQL as its writer: what every store
/// handle of the service shares.
pub(crate) struct Shared {
    config: Config,
    tls: MakeRustlsConnect,
    service: String,
    epoch: i64,
    /// For retention's deletes (the writers have connections of their own).
    client: Client,
    /// Holds the advisory lock for as long as it lives.
    _lock: Client,
    handle: Handle,
    lost: CancellationToken,
}

/// One partition's view of the service's PostgreSQL.
#[derive(Clone)]
pub(crate) struct Remote {
    shared: Arc<Shared>,
    partition: String,
}

fn tls(url: &str, ca_file: Option<&PathBuf>) -> anyhow::Result<(Config, MakeRustlsConnect)> {
    let mut config = Config::from_str(url).context("the store's PostgreSQL URL")?;
    with_timeouts(&mut config);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::{CertificateDer, pem::PemObject as _};
            let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(cert.with_context(|| format!("parse {}", path.display()))?)
                    .context("add the store's CA certificate")?;
            }
            // Given a CA, TLS is required: `prefer` would let a man in the
            // middle refuse TLS and get a plain session.
            if config.get_ssl_mode() == SslMode::Prefer {
                config.ssl_mode(SslMode::Require);
            }
        }
        None => match config.get_ssl_mode() {
            SslMode::Require => {
                anyhow::bail!("sslmode=require needs store_ca_file, the CA that signs the server")
            }
            _ => {
                config.ssl_mode(SslMode::Disable);
            }
        },
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(client)))
}

/// Bounds how long a dead server or network can go unnoticed, where the
/// URL does not say (`connect_timeout`, `tcp_user_timeout`,
/// `keepalives_idle`, ...): a connection attempt gives up after 10 s, and a
/// connection whose data goes unacknowledged for 30 s, or that stays idle
/// without keepalive answers for about as long, is dropped (the writer then
/// stops and a standby takes over).
fn with_timeouts(config: &mut Config) {
    const CONNECT: Duration = Duration::from_secs(10);
    const UNACKNOWLEDGED: Duration = Duration::from_secs(30);
    const IDLE: Duration = Duration::from_secs(15);
    const LIBPQ_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(UNACKNOWLEDGED);
    }
    if config.get_keepalives_idle() == LIBPQ_IDLE {
        config.keepalives_idle(IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(5));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
}

/// Connects, and cancels `lost` when the connection ends.
async fn connect(
    config: &Config,
    tls: &MakeRustlsConnect,
    lost: &CancellationToken,
    what: &'static str,
) -> anyhow::Result<Client> {
    // Named in `pg_stat_activity` after its role, unless the URL names it.
    let mut config = config.clone();
    if config.get_application_name().is_none() {
        config.application_name(format!("herald {what}"));
    }
    let (client, connection) = config
        .connect(tls.clone())
        .await
        .with_context(|| format!("connect to PostgreSQL ({what})"))?;
    let lost = lost.clone();
    tokio::spawn(async move {
        match connection.await {
            Ok(()) => tracing::debug!(what, "PostgreSQL connection closed"),
            Err(e) => tracing::error!(what, error = %e, "PostgreSQL connection failed"),
        }
        lost.cancel();
    });
    Ok(client)
}

/// Waits on `lock` until this replica holds `service`'s writer lock; an
/// error when the connection is lost or `shutdown` fires.
async fn stand_by(
    lock: &Client,
    lost: &CancellationToken,
    service: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut waiting = false;
    loop {
        let row = lock
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_NAMESPACE, &service],
            )
            .await
            .context("ask for the writer lock")?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        if !waiting {
            tracing::info!(service, "another replica writes; standing by");
            waiting = true;
        }
        tokio::select! {
            () = tokio::time::sleep(STANDBY_POLL) => {}
            () = shutdown.cancelled() => anyhow::bail!("stopped while standing by"),
            () = lost.cancelled() => anyhow::bail!("lost PostgreSQL while standing by"),
        }
    }
}

impl Shared {
    /// Connects as `service`'s writer: waits (as a standby) until no other
    /// replica holds the role or `shutdown` fires, creates the tables, and
    /// takes the next epoch.
    pub(crate) async fn connect(
        url: &str,
        ca_file: Option<&PathBuf>,
        service: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Shared> {
        let (config, tls) = tls(url, ca_file)?;
        // PostgreSQL may start after Herald, be failing over, or drop a
        // standby's connection: connect again and stand by again.
        let (lock, lost) = loop {
            let lost = CancellationToken::new();
            let attempt = async {
                let lock = connect(&config, &tls, &lost, "writer lock").await?;
                stand_by(&lock, &lost, service, shutdown).await?;
                anyhow::Ok(lock)
            };
            match attempt.await {
                Ok(lock) => break (lock, lost),
                Err(_) if shutdown.is_cancelled() => {
                    anyhow::bail!("stopped while waiting for PostgreSQL")
                }
                Err(e) => {
                    tracing::warn!(
                        service,
                        error = format!("{e:#}"),
                        "PostgreSQL is not reachable or dropped the connection; retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(CONNECT_RETRY) => {}
                        () = shutdown.cancelled() => anyhow::bail!("stopped while waiting for PostgreSQL"),
                    }
                }
            }
        };
        let mut client = connect(&config, &tls, &lost, "store").await?;
        let tx = client.transaction().await?;
        // Two services starting together must not race on CREATE TABLE.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&i64::from(LOCK_NAMESPACE)],
        )
        .await?;
        tx.batch_execute(SCHEMA)
            .await
            .context("create the tables")?;
        let epoch: i64 = tx
            .query_one(
                "INSERT INTO herald_leaders (service, epoch) VALUES ($1, 1)
                 ON CONFLICT (service) DO UPDATE SET epoch = herald_leaders.epoch + 1
                 RETURNING epoch",
                &[&service],
            )
            .await?
            .get(0);
        tx.commit().await.context("take the writer's epoch")?;
        tracing::info!(service, epoch, "writing to PostgreSQL");
        Ok(Shared {
            config,
            tls,
            service: service.to_owned(),
            epoch,
            client,
            _lock: lock,
            handle: Handle::current(),
            lost,
        })
    }

    /// The partitions PostgreSQL holds for this service ("" is the default).
    pub(crate) async fn partitions(&self) -> anyhow::Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT partition FROM herald_heads WHERE service = $1
                 UNION SELECT DISTINCT partition FROM herald_state WHERE service = $1",
                &[&self.service],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Copies one partition's state and retained log into `tree`.
    pub(crate) async fn fill(&self, partition: &str, tree: &sled::Tree) -> anyhow::Result<()> {
        let mut after: Vec<u8> = Vec::new();
        loop {
            let rows = self
                .client
                .query(
                    "SELECT key, value FROM herald_state
                     WHERE service = $1 AND partition = $2 AND key > $3 ORDER BY key LIMIT $4",
                    &[&self.service, &partition, &after, &FILL_PAGE],
                )
                .await?;
            let mut batch = sled::Batch::default();
            for row in &rows {
                let key: Vec<u8> = row.get(0);
                let value: Vec<u8> = row.get(1);
                batch.insert(key.as_slice(), value);
                after = key;
            }
            tree.apply_batch(batch)?;
            if (rows.len() as i64) < FILL_PAGE {
                break;
            }
        }
        let mut after: i64 = 0;
        loop {
            let rows = self
                .client
                .query(
                    "SELECT seq, record FROM herald_log
                     WHERE service = $1 AND partition = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                    &[&self.service, &partition, &after, &FILL_PAGE],
                )
                .await?;
            let mut batch = sled::Batch::default();
            for row in &rows {
                let seq: i64 = row.get(0);
                let record: Vec<u8> = row.get(1);
                batch.insert(&crate::store::log_key(seq as u64), record);
                after = seq;
            }
            tree.apply_batch(batch)?;
            if (rows.len() as i64) < FILL_PAGE {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn lost(&self) -> &CancellationToken {
        &self.lost
    }
}

impl Remote {
    pub(crate) fn new(shared: Arc<Shared>, partition: String) -> Remote {
        Remote { shared, partition }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Removes this partition's log records before `first` (retention,
    /// after the cache removed the same ones).
    pub(crate) async fn prune_below(&self, first: u64) -> Result<(), StoreError> {
        self.shared
            .client
            .execute(
                "DELETE FROM herald_log WHERE service = $1 AND partition = $2 AND seq < $3",
                &[&self.shared.service, &self.partition, &(first as i64)],
            )
            .await
            .map(drop)
            .map_err(StoreError::storage)
    }

    /// Gives up the writer's role: the service must stop.
    pub(crate) fn give_up(&self, why: &str) {
        tracing::error!(service = %self.shared.service, partition = %self.partition, why,
            "giving up the writer's role");
        self.shared.lost.cancel();
    }

    /// A connection for this partition's writer thread, which commits on it.
    /// Called on that thread (not a runtime's).
    pub(crate) fn writer(&self) -> Result<RemoteWriter, StoreError> {
        let shared = Arc::clone(&self.shared);
        let partition = self.partition.clone();
        self.shared.handle.block_on(async move {
            let client = connect(&shared.config, &shared.tls, &shared.lost, "writer")
                .await
                .map_err(StoreError::storage)?;
            let statements = Statements::prepare(&client)
                .await
                .map_err(StoreError::storage)?;
            Ok(RemoteWriter {
                shared,
                partition,
                client,
                statements,
                pending: Pending::default(),
            })
        })
    }
}

struct Statements {
    epoch: Statement,
    head: Statement,
    advance: Statement,
    delete: Statement,
    upsert: Statement,
    append: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            epoch: client
                .prepare("SELECT epoch FROM herald_leaders WHERE service = $1 FOR SHARE")
                .await?,
            head: client
                .prepare(
                    "INSERT INTO herald_heads (service, partition, seq) VALUES ($1, $2, 0)
                     ON CONFLICT DO NOTHING",
                )
                .await?,
            advance: client
                .prepare(
                    "UPDATE herald_heads SET seq = $4
                     WHERE service = $1 AND partition = $2 AND seq = $3",
                )
                .await?,
            delete: client
                .prepare(
                    "DELETE FROM herald_state
                     WHERE service = $1 AND partition = $2 AND key = ANY($3)",
                )
                .await?,
            upsert: client
                .prepare(
                    "INSERT INTO herald_state (service, partition, key, value)
                     SELECT $1, $2, k, v FROM unnest($3::bytea[], $4::bytea[]) AS t(k, v)
                     ON CONFLICT (service, partition, key) DO UPDATE SET value = EXCLUDED.value",
                )
                .await?,
            append: client
                .prepare(
                    "INSERT INTO herald_log (service, partition, seq, record)
                     SELECT $1, $2, s, r FROM unnest($3::int8[], $4::bytea[]) AS t(s, r)",
                )
                .await?,
        })
    }
}

/// What the writer applied to the cache since its last commit.
#[derive(Default)]
struct Pending {
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    records: Vec<(i64, Vec<u8>)>,
}

/// A partition's writer's own connection and the changes it has not yet
/// committed to PostgreSQL.
pub(crate) struct RemoteWriter {
    shared: Arc<Shared>,
    partition: String,
    client: Client,
    statements: Statements,
    pending: Pending,
}

impl RemoteWriter {
    /// Adds one mutation's writes and records to the next commit.
    pub(crate) fn add(
        &mut self,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        records: Vec<(u64, Vec<u8>)>,
    ) {
        self.pending.writes.extend(writes);
        self.pending
            .records
            .extend(records.into_iter().map(|(seq, r)| (seq as i64, r)));
    }

    /// Commits what is pending in one transaction, moving the head from
    /// `from` to `to`. Called on the writer thread.
    pub(crate) fn commit(&mut self, from: u64, to: u64) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        let handle = self.shared.handle.clone();
        handle
            .block_on(self.transaction(pending, from as i64, to as i64))
            .map_err(|e| StoreError::Storage(format!("PostgreSQL commit: {e:#}")))
    }

    async fn transaction(&mut self, pending: Pending, from: i64, to: i64) -> anyhow::Result<()> {
        let service = &self.shared.service;
        let partition = &self.partition;
        let s = &self.statements;
        let tx = self.client.transaction().await?;
        let epoch: i64 = tx.query_one(&s.epoch, &[service]).await?.get(0);
        if epoch != self.shared.epoch {
            anyhow::bail!(
                "fenced: another replica took over (epoch {epoch}, ours {})",
                self.shared.epoch
            );
        }
        tx.execute(&s.head, &[service, partition]).await?;
        if tx
            .execute(&s.advance, &[service, partition, &from, &to])
            .await?
            != 1
        {
            anyhow::bail!("fenced: the change log's head is no longer {from}");
        }
        let mut removed = Vec::new();
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for (k, v) in pending.writes {
            match v {
                Some(v) => {
                    keys.push(k);
                    values.push(v);
                }
                None => removed.push(k),
            }
        }
        if !removed.is_empty() {
            tx.execute(&s.delete, &[service, partition, &removed])
                .await?;
        }
        if !keys.is_empty() {
            tx.execute(&s.upsert, &[service, partition, &keys, &values])
                .await?;
        }
        if !pending.records.is_empty() {
            let (seqs, records): (Vec<i64>, Vec<Vec<u8>>) = pending.records.into_iter().unzip();
            tx.execute(&s.append, &[service, partition, &seqs, &records])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) fn give_up(&self, why: &str) {
        tracing::error!(service = %self.shared.service, partition = %self.partition, why,
            "giving up the writer's role");
        self.shared.lost.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_bounded_unless_the_url_sets_them() {
        let (config, _) = tls("postgres://herald@127.0.0.1:5432/herald", None).unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(30))
        );
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(15));
        let (config, _) = tls(
            "postgres://herald@127.0.0.1:5432/herald?connect_timeout=3&keepalives_idle=60",
            None,
        )
        .unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
    }
}
