//! The registry, started in-process on a runtime of its own so that the load
//! clients (on another runtime) reach it through real gRPC over loopback.

use std::{net::SocketAddr, path::Path};

use anyhow::Context;
use tempfile::TempDir;
use tokio::{net::TcpListener, runtime::Runtime, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// The registry's runtime gets this many worker threads.
pub(crate) const WORKER_THREADS: usize = 2;

/// Under the current directory, like the reports: a real disk, where `/tmp`
/// may be a tmpfs whose flushes cost nothing.
const DATA_PARENT: &str = "target/bench";

pub(crate) struct InProcessRegistry {
    addr: SocketAddr,
    runtime: Runtime,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    dir: TempDir,
}

impl InProcessRegistry {
    /// Starts the registry with a fresh data dir on an ephemeral loopback port.
    pub(crate) fn start() -> anyhow::Result<InProcessRegistry> {
        InProcessRegistry::start_on("sled")
    }

    /// [`InProcessRegistry::start`] with its state in `store` (`"sled"` or
    /// a PostgreSQL URL).
    pub(crate) fn start_on(store: &str) -> anyhow::Result<InProcessRegistry> {
        let dir = data_dir()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("registry")
            .enable_all()
            .build()
            .context("building the registry's runtime")?;
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .context("binding the registry's listener")?;
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        let mut settings = herald_registry::Settings::for_test(dir.path().join("registry"));
        settings.store = store.to_owned();
        let shutdown = CancellationToken::new();
        let task = runtime.spawn(herald_registry::run(settings, listener, shutdown.clone()));
        Ok(InProcessRegistry {
            addr,
            runtime,
            shutdown,
            task,
            dir,
        })
    }

    /// The URI that clients connect to.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Cancels the service, waits for `run` to return, then removes the data.
    pub(crate) fn stop(self) -> anyhow::Result<()> {
        let InProcessRegistry {
            runtime,
            shutdown,
            task,
            dir,
            ..
        } = self;
        shutdown.cancel();
        let outcome = runtime.block_on(task);
        drop(runtime);
        drop(dir);
        outcome
            .context("the registry task panicked")?
            .context("herald_registry::run failed")
    }
}

pub(crate) fn data_dir() -> anyhow::Result<TempDir> {
    std::fs::create_dir_all(DATA_PARENT).with_context(|| format!("creating {DATA_PARENT}"))?;
    tempfile::Builder::new()
        .prefix("registry-data-")
        .tempdir_in(DATA_PARENT)
        .with_context(|| format!("creating a data dir under {DATA_PARENT}"))
}
