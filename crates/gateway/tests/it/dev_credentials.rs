//! The gateway binary refuses to serve the documented development
//! credentials beyond loopback: a deployment that forgot to give its own
//! access keys stops at start, instead of accepting a key anyone can read.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;

/// How long the refusal may take to arrive.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the gateway binary with `settings` (`HERALD_GATEWAY__*`) and waits
/// for it to exit; the exit status and everything it printed.
async fn run_until_exit(settings: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(key);
        }
    }
    command
        .env("NO_COLOR", "1")
        .env("HERALD_GATEWAY__DATA_DIR", dir.path().join("gateway"))
        // Nothing listens there: the check comes before any upstream call.
        .env("HERALD_GATEWAY__REGISTRY_URL", "http://127.0.0.1:9")
        .env("HERALD_GATEWAY__CONFIG_URL", "http://127.0.0.1:9")
        .env("HERALD_GATEWAY__HTTP__LISTEN_ADDR", "127.0.0.1:0")
        .env("HERALD_GATEWAY__MQTT__LISTEN_ADDR", "127.0.0.1:0")
        .env("HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR", "127.0.0.1:0")
        .env("HERALD_GATEWAY__METRICS__LISTEN_ADDR", "127.0.0.1:0");
    for (key, value) in settings {
        command.env(format!("HERALD_GATEWAY__{key}"), value);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway binary");
    let output = timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the gateway kept running with the development credentials beyond loopback")
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, text)
}

#[tokio::test]
async fn the_binary_refuses_the_development_key_on_a_public_listener() {
    // The HTTP API on every interface (port 0: nothing is reachable for long),
    // with the built-in key and MQTT user, as the old deploy/base/gateway.toml had it.
    let (status, log) = run_until_exit(&[("HTTP__LISTEN_ADDR", "0.0.0.0:0")]).await;
    assert!(!status.success(), "exited {status}:\n{log}");
    assert!(log.contains("refusing to start"), "{log}");
    assert!(log.contains(herald_gateway::DEV_ACCESS_KEY_ID), "{log}");
    assert!(log.contains("allow_dev_credentials"), "{log}");
    assert!(!log.contains("http listening"), "{log}");
}
