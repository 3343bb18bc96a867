//! Starts the registry in-process for a test and hands out clients.

use std::net::SocketAddr;

use herald_proto::registry::v1::registry_client::RegistryClient;
use herald_registry::Settings;
use tempfile::TempDir;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub(crate) use herald_testkit::{eventually, expect_err};

pub(crate) type Client = RegistryClient<Channel>;

/// A registry running in this process on an ephemeral port.
pub(crate) struct TestRegistry {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    pub(crate) dir: TempDir,
}

impl TestRegistry {
    pub(crate) async fn start() -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::for_test(dir.path().join("registry"));
        TestRegistry::start_in(dir, settings).await
    }

    /// Starts with `settings` (whose `data_dir` should lie inside `dir`).
    pub(crate) async fn start_in(dir: TempDir, settings: Settings) -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herald_registry::run(settings, listener, shutdown.clone()));
        TestRegistry {
            addr,
            shutdown,
            task,
            dir,
        }
    }

    pub(crate) async fn client(&self) -> Client {
        RegistryClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Stops the service and asserts that it shut down cleanly; returns the data folder.
    pub(crate) async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.dir
    }
}
