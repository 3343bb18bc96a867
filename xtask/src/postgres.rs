//! A PostgreSQL server of Herald's own, from the machine's PostgreSQL
//! binaries (Debian's `postgresql` package: `initdb` and `pg_ctl` under
//! `/usr/lib/postgresql/<version>/bin`): created in a folder on first use,
//! listening on 127.0.0.1 only, with trust authentication for the `herald`
//! user (loopback, development and tests). PostgreSQL refuses to run as
//! root, so as root the server runs as the `postgres` user (or `nobody`).

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::util::{self, Context, Result, bail};

/// A running server, stopped when dropped.
pub(crate) struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    user: Option<String>,
    pub(crate) port: u16,
    stopped: bool,
}

/// The directory holding `initdb` and `pg_ctl`, if PostgreSQL is installed.
pub(crate) fn binaries() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "createdb"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_all(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| has_all(dir))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A free loopback port, as the system hands one out.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

impl Postgres {
    /// Starts the server whose data is in `dir` (created if empty) on `port`.
    pub(crate) fn start(dir: &Path, port: u16) -> Result<Postgres> {
        let Some(bin) = binaries() else {
            bail!(
                "PostgreSQL is not installed (initdb and pg_ctl); on Debian: apt-get install postgresql"
            );
        };
        let user = is_root().then(|| {
            let has_postgres = Command::new("id")
                .arg("postgres")
                .output()
                .is_ok_and(|out| out.status.success());
            if has_postgres { "postgres" } else { "nobody" }.to_owned()
        });
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let data = dir.join("data");
        let socket = dir.join("socket");
        std::fs::create_dir_all(&socket)?;
        let server = Postgres {
            bin,
            data,
            user,
            port,
            stopped: false,
        };
        if let Some(user) = &server.user {
            util::run(Command::new("chown").args(["-R", user]).arg(&dir))?;
        }
        if !server.data.join("PG_VERSION").exists() {
            let mut initdb = server.command("initdb");
            initdb.arg("-D").arg(&server.data).args([
                "-U",
                "herald",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ]);
            let out = initdb.output().context("run initdb")?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let hint = match &server.user {
                    Some(user) if err.contains("Permission denied") => format!(
                        "\n(PostgreSQL runs as {user}, which must reach {}: every folder above it must be searchable, o+x)",
                        dir.display()
                    ),
                    _ => String::new(),
                };
                bail!("initdb failed: {}{hint}", err.trim());
            }
        }
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            socket.display()
        );
        let mut start = server.command("pg_ctl");
        start
            .arg("-D")
            .arg(&server.data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        let out = start.output().context("run pg_ctl start")?;
        if !out.status.success() {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !util::accepts_tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
            if Instant::now() > deadline {
                bail!("PostgreSQL does not accept connections on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Creates `database` unless it exists.
    pub(crate) fn create_database(&self, database: &str) -> Result<()> {
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "herald",
                database,
            ])
            .output()
            .context("run createdb")?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !err.contains("already exists") {
            bail!("createdb {database} failed: {}", err.trim());
        }
        Ok(())
    }

    /// The URL of `database` on this server.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://herald@127.0.0.1:{}/{database}", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    /// Stops the server now (fast shutdown: sessions are ended, data kept);
    /// it is not stopped again when dropped.
    pub(crate) fn stop_now(&mut self) {
        if !self.stopped {
            self.stopped = true;
            if let Err(e) = self.stop() {
                eprintln!("warning: {e}");
            }
        }
    }

    fn stop(&self) -> Result<()> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .context("run pg_ctl stop")?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_now();
    }
}
