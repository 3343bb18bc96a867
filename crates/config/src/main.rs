use std::path::PathBuf;

use anyhow::{Context, bail};
use herald_config::{
    Settings,
    internal_pki::{self, PkiOptions},
};
use tokio::net::TcpListener;

const PKI_USAGE: &str =
    "usage: config internal-pki --out DIR [--namespace NS] [--dns NAME]... [--days N]";

/// `config internal-pki ...`: creates the internal CA and the services'
/// certificates, then exits.
fn internal_pki(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut args = args;
    let mut out: Option<PathBuf> = None;
    let mut options = PkiOptions::default();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value; {PKI_USAGE}"))
        };
        match arg.as_str() {
            "--out" => out = Some(value()?.into()),
            "--namespace" => options.namespace = value()?,
            "--dns" => options.dns.push(value()?),
            "--days" => {
                options.days = value()?
                    .parse()
                    .with_context(|| format!("--days needs a number of days; {PKI_USAGE}"))?;
            }
            "--help" | "-h" => {
                eprintln!("{PKI_USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; {PKI_USAGE}"),
        }
    }
    let Some(out) = out else {
        bail!("--out is required; {PKI_USAGE}");
    };
    let files = internal_pki::create(&out, &options)?;
    for file in &files {
        eprintln!("wrote {}", file.display());
    }
    eprintln!(
        "Give each service {} as internal_tls.ca_file and its own <name>.pem and <name>.key \
         as internal_tls.cert_file and key_file (see docs/internal-tls.md). The CA's private \
         key was not kept: to renew or add a name, create a new set and replace them all.",
        internal_pki::CA_FILE
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("internal-pki") {
        args.next();
        return internal_pki(args);
    }
    let settings: Settings =
        herald_runtime::settings::load(herald_config::ENV_PREFIX).context("load settings")?;
    herald_runtime::telemetry::init(&settings.log).context("set up logging")?;
    let shutdown = herald_runtime::shutdown::on_signal()?;
    let served = if settings.store == "sled" {
        let addr = settings.grpc.listen_addr;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        herald_config::run(settings, listener, shutdown).await
    } else {
        // One of several replicas: bind once this one is the writer.
        let addr = settings.grpc.listen_addr;
        herald_config::run(settings, addr, shutdown).await
    };
    served.inspect_err(|e| tracing::error!("failed to {e:#}"))
}
