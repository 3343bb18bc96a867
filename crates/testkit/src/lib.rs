//! What Herald's test suites share (a dev-dependency only): polling with a
//! deadline instead of sleeping, checking the AWS error type of a failed
//! gRPC call, running a service in-process on 127.0.0.1, port 0, and
//! ([`process`]) a service binary as a child process, ([`postgres`]) a
//! PostgreSQL database and ([`nats`]) a NATS server of the test's own.

pub mod nats;
pub mod postgres;
pub mod process;

use std::{future::Future, net::SocketAddr, time::Duration};

use herald_proto::error::{AwsError, ErrorType};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Asserts that a call failed with the given AWS error type and a message;
/// returns the error.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    expected: ErrorType,
) -> AwsError {
    let status = result.expect_err("the call should have failed");
    let err = AwsError::from_status(&status);
    assert_eq!(
        err.error_type, expected,
        "unexpected error: {err} ({status:?})"
    );
    assert!(!err.message.is_empty(), "an error needs a message");
    err
}

/// Polls `check` until it returns `Some`, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A service's `run(listener, shutdown)` running in this process on an
/// ephemeral port of 127.0.0.1.
pub struct Service {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    /// Binds 127.0.0.1:0 and spawns `run` on it.
    pub async fn spawn<F, Fut>(run: F) -> Service
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("read the bound address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, shutdown.clone()));
        Service {
            addr,
            shutdown,
            task,
        }
    }

    /// `http://ADDR`, for a gRPC client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service and asserts that it shut down cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("the service task panicked")
            .expect("the service failed");
    }
}
