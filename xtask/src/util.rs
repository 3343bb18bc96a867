//! What every subcommand uses: the error type, the project root, running cargo
//! and other tools, and waiting for a TCP port.

use std::{
    ffi::OsStr,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

/// xtask's error: a message, with the causes joined by `: ` (like anyhow's `{:#}`).
pub(crate) struct Error(String);

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn msg(msg: impl fmt::Display) -> Error {
        Error(msg.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Error {
        Error(err.to_string())
    }
}

/// `format_err!("...")`: an [`Error`] from a format string.
macro_rules! format_err {
    ($($arg:tt)*) => { $crate::util::Error::msg(format!($($arg)*)) };
}

/// `bail!("...")`: return an [`Error`] from a format string.
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::util::format_err!($($arg)*)) };
}

pub(crate) use {bail, format_err};

/// Adds what was being done to an error, as anyhow's `Context` does.
pub(crate) trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| format_err!("{what}: {e}"))
    }

    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| format_err!("{}: {e}", what()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(what))
    }

    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| Error::msg(what()))
    }
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn project_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dir.parent()
        .expect("xtask lives inside the workspace")
        .to_owned()
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` if set, else `<root>/target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// A `cargo` command run from the project root. Uses `CARGO`, the cargo that
/// runs us, so that `cargo +toolchain xtask` stays on that toolchain.
pub(crate) fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root);
    cmd
}

/// Runs `cmd` to completion with inherited stdio, echoing it first; fails
/// unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    eprintln!("$ {shown}");
    let status = cmd.status().with_context(|| format!("run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({})", describe(status));
    }
    Ok(())
}

/// Whether `cmd` runs and exits 0, with its output discarded.
pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.status().is_ok_and(|status| status.success())
}

/// `cargo build --bins` as one line: the program's file name, then the arguments.
pub(crate) fn show(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(OsStr::new("?"));
    let mut shown = program.to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}

/// `exit status 1`, `signal 15 (SIGTERM)`: how a process ended.
pub(crate) fn describe(status: ExitStatus) -> String {
    status.to_string().replace(": ", " ")
}

/// The exit code to pass on for a child's status: its own code, or 128 + the
/// signal that killed it (as a shell reports it).
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

/// Where to connect to reach a listener bound to `addr`: an unspecified
/// address (`0.0.0.0`, `::`) is reached through loopback.
pub(crate) fn connect_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Whether something accepts TCP connections at `addr` right now.
pub(crate) fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&connect_addr(addr), Duration::from_millis(250)).is_ok()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn context_joins_the_causes() {
        let err: Result<()> = Err(format_err!("no such file"));
        let err = err
            .context("read registry.toml")
            .context("load settings")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "load settings: read registry.toml: no such file"
        );
        let none: Option<u8> = None;
        assert_eq!(
            none.context("no bench named").unwrap_err().to_string(),
            "no bench named"
        );
    }

    #[test]
    fn unspecified_addresses_are_reached_through_loopback() {
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert_eq!(connect_addr(any), "127.0.0.1:50051".parse().unwrap());
        let any6: SocketAddr = "[::]:1883".parse().unwrap();
        assert_eq!(connect_addr(any6), "[::1]:1883".parse().unwrap());
        let fixed: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(connect_addr(fixed), fixed);
    }

    #[test]
    fn accepts_tcp_sees_a_bound_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(accepts_tcp(addr));
        drop(listener);
        assert!(!accepts_tcp(addr));
    }

    #[test]
    fn commands_are_shown_as_typed() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["clippy", "--", "-D", "warnings"]);
        assert_eq!(show(&cmd), "cargo clippy -- -D warnings");
    }
}
