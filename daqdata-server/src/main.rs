//! `daqdata-server`: run the DaqData gRPC server on a DAQ node.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use daqdata_server::{Config, InitOnStart, Server};

/// Streams the newest PANOSETI frames of the live DAQ run to any number of
/// viewers over gRPC (a drop-in for panoseti-grpc's Python server).
///
/// With no options it listens on [::]:50051 and unix:///tmp/daq_data.sock
/// and waits for a client to call InitHpIo (`daqdata --init CONFIG` or
/// `daqdata --init-sim`). With --init-sim it starts on simulated data at
/// once.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Configuration file: TOML, or the Python server's
    /// daq_data_server_config.json (name ending in .json).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT or unix:///abs/path.sock; repeat for
    /// several. Replaces the configured list.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    listen: Vec<daqdata_net::Address>,
    /// Where to serve Prometheus metrics (GET /metrics), HOST:PORT; an
    /// empty value turns them off. Replaces the config's metrics_listen
    /// (default 127.0.0.1:9108).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Relay this server's frames as a gateway (SPEC §8): HOST:PORT,
    /// unix:///abs/path.sock or tls://HOST:PORT of a DAQ node or another
    /// gateway; repeat for several. Adds to the config's [gateway] upstreams.
    #[arg(long, value_name = "ADDR", value_parser = parse_upstream)]
    upstream: Vec<daqdata_net::Address>,
    /// Start tracking a simulated DAQ run (the built-in fixtures) at once.
    #[arg(long, conflicts_with = "init")]
    init_sim: bool,
    /// Apply this hp_io_config.json at start (data_dir, update_interval_seconds, ...).
    #[arg(long, value_name = "HP_IO_CONFIG")]
    init: Option<PathBuf>,
    /// Log level or filter: error, warn, info, debug, trace, or e.g.
    /// "daqdata_server=debug,hpio=info".
    #[arg(long, default_value = "info", env = "DAQDATA_LOG")]
    log_level: String,
    /// Log line format on stderr: text for people (coloured only when
    /// stderr is a terminal, so journald and files get plain text), or json
    /// (one object per line) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Check this configuration file (and the hp_io_config.json and
    /// fixtures it names, and every listen address) and exit without
    /// listening: 0 when it is good, 1 with the reason when not. Use it
    /// before restarting a running server.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "init_sim", "init"])]
    check_config: Option<PathBuf>,
    /// Follow PFF files by polling only, never by file-system notifications
    /// (for NFS, whose notifications miss other machines' writes).
    #[arg(long, env = "HPIO_POLL_ONLY", value_parser = clap::builder::FalseyValueParser::new())]
    poll_only: bool,
    #[command(flatten)]
    env: FromEnvironment,
}

/// What the server takes from its environment (no option: environment
/// variables only), as Hashpipe and the shell set them.
#[derive(clap::Args, Debug)]
struct FromEnvironment {
    /// Hashpipe's status key (SPEC §9).
    #[arg(long, env = "HASHPIPE_STATUS_KEY", hide = true)]
    hashpipe_status_key: Option<String>,
    /// Hashpipe's status semaphore name.
    #[arg(long, env = "HASHPIPE_STATUS_SEMNAME", hide = true)]
    hashpipe_status_semname: Option<String>,
    /// Hashpipe's keyfile, before $HOME.
    #[arg(long, env = "HASHPIPE_KEYFILE", hide = true)]
    hashpipe_keyfile: Option<PathBuf>,
    #[arg(long, env = "HOME", hide = true)]
    home: Option<PathBuf>,
    #[arg(long, env = "HOSTNAME", hide = true)]
    hostname: Option<String>,
}

/// A --listen address, as the config's `listen` takes it.
fn parse_listen(text: &str) -> Result<daqdata_net::Address, String> {
    daqdata_server::parse_listen_address(text).map_err(|e| e.to_string())
}

fn parse_upstream(text: &str) -> Result<daqdata_net::Address, String> {
    text.parse().map_err(|e: daqdata_net::Error| e.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("--log-level {:?} is not a level or filter", args.log_level))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }

    if let Some(path) = &args.check_config {
        let checked = daqdata_server::check_config(path)?;
        println!("{}: good. {checked}", path.display());
        return Ok(());
    }

    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    if !args.upstream.is_empty() {
        let gateway = config.gateway.get_or_insert_with(Default::default);
        gateway.upstreams.extend(args.upstream.iter().cloned());
    }
    if let Some(addr) = &args.metrics_listen {
        config.metrics_listen = addr.clone();
    }
    config.poll_only = args.poll_only;
    config.host_name = args.env.hostname.clone();
    config.hashpipe_status.env = hpio::status::HashpipeEnv {
        status_key: args.env.hashpipe_status_key.clone(),
        status_semname: args.env.hashpipe_status_semname.clone(),
        keyfile: args.env.hashpipe_keyfile.clone(),
        home: args.env.home.clone(),
    };
    let init = if args.init_sim {
        Some(InitOnStart::Simulate)
    } else if let Some(path) = &args.init {
        Some(InitOnStart::Config(daqdata_proto::HpIoConfig::load(path)?))
    } else {
        None
    };
    let mut server = Server::start(config, init).await?;

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; tracing::info!("SIGINT: shutting down"); }
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        r = server.wait_for_error() => { r?; }
    }
    server.shutdown().await?;
    Ok(())
}
