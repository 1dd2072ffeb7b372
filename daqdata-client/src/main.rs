//! `daqdata`: the DaqData command line. Accepts the Python demo client's
//! options (`python -m panoseti_grpc.daq_data.cli`), plus `--json`,
//! `--snapshot` and the `bench` load generator.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use daqdata_client::{hosts_from_configs, DaqClient, Host, HpIoConfig};

mod cmd {
    pub mod bench;
    pub mod credentials;
    pub mod hashpipe;
    pub mod live;
    pub mod logs;
    pub mod web;
}

/// See what a PANOSETI telescope sees: ping DaqData servers on the DAQ
/// nodes, initialize their trackers, and stream the newest frames into a
/// live view, PNG snapshots or JSON lines.
#[derive(Debug, Parser)]
#[command(
    name = "daqdata",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
        daqdata --host localhost --ping\n  \
        daqdata daq_config.json network_config.json --status\n  \
        daqdata --host localhost --init-sim --plot-view\n  \
        daqdata daq_config.json network_config.json --init hp_io_config.json --plot-phdist --module-ids 1 3\n  \
        daqdata --host unix:///tmp/daq_data.sock --plot-view --snapshot view.png\n  \
        daqdata --host localhost --json | head -3\n  \
        daqdata daq_config.json network_config.json --hashpipe-status\n  \
        daqdata --host tls://daq1:50052 --tls-ca ca.pem --token-file ~/.daqdata_token --init-sim --ping\n  \
        daqdata web daq_config.json network_config.json --listen 127.0.0.1:8080\n  \
        daqdata bench --host localhost --clients 50 --duration 20 --json"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    demo: DemoArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load generator for end-to-end benchmarks: many concurrent streams
    /// (or uploads) against one server, with latency and server CPU/RSS.
    Bench(cmd::bench::BenchArgs),
    /// Live view in a web browser: every host's modules on one page (heat
    /// maps, pulse-height distributions, host status), for any number of
    /// tabs from one stream per host. Open it from a laptop through
    /// `ssh -L 8080:localhost:8080 DAQ_NODE`.
    Web(WebCmd),
}

/// `daqdata web`'s options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    daqdata web --host localhost\n  \
    daqdata web daq_config.json network_config.json --module-ids 1 3\n  \
    daqdata web --host daq1 --host daq2 --listen 0.0.0.0:8080")]
struct WebCmd {
    #[command(flatten)]
    targets: Targets,
    #[command(flatten)]
    web: cmd::web::WebArgs,
    #[command(flatten, next_help_heading = "Access (servers with [access] or TLS)")]
    credentials: cmd::credentials::CredentialArgs,
}

/// Which servers, and which of their modules, as the Python client names them.
#[derive(Debug, Args)]
struct Targets {
    /// The observing run's daq_config.json: its daq_nodes[].ip_addr are the
    /// hosts (unless --host picks some of them).
    daq_config: Option<PathBuf>,
    /// The run's network_config.json: nodes reached through port
    /// forwarding (port_forwarding.status = true) are dialed at gw_ip.
    net_config: Option<PathBuf>,
    /// DaqData server: HOST, HOST:PORT (default port 50051),
    /// tls://HOST:PORT (TLS; see --tls-ca) or unix:///path.sock. Repeat for
    /// several. Default: localhost:50051.
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Stream only these modules (e.g. --module-ids 1 3); none = all.
    #[arg(long, num_args = 0.., value_name = "ID")]
    module_ids: Vec<pff::ModuleId>,
}

/// The Python demo client's options, as its users type them.
#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    targets: Targets,
    /// Check that each host's server answers.
    #[arg(long)]
    ping: bool,
    /// Show every configured host and whether it answers.
    #[arg(long)]
    list_hosts: bool,
    /// Print each host's Status: whether its hp_io runs, and what it
    /// follows or why it does not (one line per host; with --json, one JSON
    /// object per host). Fails if a host does not answer.
    #[arg(long)]
    status: bool,
    /// Hashpipe's status buffer on every node (SPEC §9): a table that
    /// refreshes in place every --refresh-period, like
    /// hashpipe_status_monitor but for all nodes at once: thread states,
    /// packets/s, losses/s, NETDROPS, the age of the read, and what is
    /// wrong (a thread blocked or exited, a stale buffer) in red. With
    /// --json, one JSON object per read. Runs until Ctrl-C.
    #[arg(long)]
    hashpipe_status: bool,
    /// List the gRPC services and DaqData methods each host offers.
    #[arg(long)]
    reflect_services: bool,
    /// Initialize the servers' trackers with this hp_io_config.json
    /// (data_dir, update_interval_seconds, force, simulate_daq, module_ids).
    #[arg(long = "init", value_name = "CFG_PATH")]
    init: Option<PathBuf>,
    /// Initialize the servers' trackers to replay a simulated run.
    #[arg(long)]
    init_sim: bool,
    /// Live view: per module, the newest pulse-height and movie images as
    /// heat maps (press q to quit).
    #[arg(long)]
    plot_view: bool,
    /// Live histograms of each pulse-height image's maximum pixel over the
    /// last 10 s, 60 s and 600 s, per module.
    #[arg(long)]
    plot_phdist: bool,
    /// Print delivered images per second, each second (a quick speed test;
    /// `daqdata bench` measures properly).
    #[arg(long)]
    plot_speed: bool,
    /// Seconds between view refreshes; also the update interval asked of
    /// the servers for --plot-view and --json.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    refresh_period: f64,
    /// How much the client logs (to stderr; in a live view, at its foot).
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Print each received image as one JSON line on stdout (for scripts).
    #[arg(long)]
    json: bool,
    /// With --plot-view or --plot-phdist: draw the view into this PNG after
    /// --snapshot-frames images and exit, instead of a live terminal view.
    #[arg(long, value_name = "FILE.png")]
    snapshot: Option<PathBuf>,
    /// Images to take before a --snapshot is drawn.
    #[arg(long, default_value_t = 100, value_name = "N")]
    snapshot_frames: u64,
    /// Draw the --snapshot after this many seconds even if fewer images
    /// came (fail if none did).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    snapshot_timeout: f64,
    #[command(flatten, next_help_heading = "Access (servers with [access] or TLS)")]
    credentials: cmd::credentials::CredentialArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    fn filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical => "error",
        }
    }
}

impl DemoArgs {
    fn live_terminal(&self) -> bool {
        (self.plot_view || self.plot_phdist) && self.snapshot.is_none() && !self.json
    }

    fn streams(&self) -> bool {
        // --status --json and --hashpipe-status --json print those as
        // JSON, and stream no images.
        self.plot_view
            || self.plot_phdist
            || self.plot_speed
            || (self.json && !self.status && !self.hashpipe_status)
    }
}

impl Targets {
    /// The hosts to talk to, and whether the user named them (then every
    /// one must work; otherwise nodes that do not answer are skipped).
    fn hosts(&self) -> anyhow::Result<(Vec<Host>, bool)> {
        let named = self
            .hosts
            .iter()
            .map(|h| h.parse::<Host>())
            .collect::<Result<Vec<_>, _>>()?;
        let Some(daq_config) = &self.daq_config else {
            if named.is_empty() {
                return Ok((vec!["localhost".parse()?], false));
            }
            return Ok((named, true));
        };
        let configured = hosts_from_configs(daq_config, self.net_config.as_deref())?;
        if named.is_empty() {
            return Ok((configured, false));
        }
        for host in &named {
            if !configured.contains(host) {
                let known: Vec<String> = configured.iter().map(Host::to_string).collect();
                bail!(
                    "invalid host {host}: not a DAQ node of {} (its nodes: {})",
                    daq_config.display(),
                    known.join(", ")
                );
            }
        }
        Ok((named, true))
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = cli.demo.log_level.filter();
    let logs = cmd::logs::init(level, cli.command.is_none() && cli.demo.live_terminal());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Bench(args)) => cmd::bench::run(args).await,
            Some(Command::Web(args)) => run_web(args).await,
            None => run_demo(cli.demo, &logs).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `daqdata web`: every host, whether it answers yet or not: the page
/// shows which do.
async fn run_web(args: WebCmd) -> anyhow::Result<()> {
    let (hosts, _) = args.targets.hosts()?;
    let credentials = args.credentials.load()?;
    let client = DaqClient::with_credentials(hosts, &credentials)?;
    cmd::web::run(&args.web, &client, &args.targets.module_ids).await
}

async fn run_demo(args: DemoArgs, logs: &cmd::logs::LogLines) -> anyhow::Result<()> {
    if args.init.is_some() && args.init_sim {
        bail!("give --init CFG_PATH or --init-sim, not both");
    }
    if args.snapshot.is_some() && !(args.plot_view || args.plot_phdist) {
        bail!("--snapshot draws a view: add --plot-view or --plot-phdist");
    }
    let (hosts, named) = args.targets.hosts()?;
    let credentials = args.credentials.load()?;
    let all = DaqClient::with_credentials(hosts.clone(), &credentials)?;
    let (did_something, mut failures) = ask_every_host(&args, &all).await;
    if args.hashpipe_status && args.streams() {
        bail!("--hashpipe-status is a view of its own: the live views show Hashpipe's state in their host bar");
    }
    let needs_live_hosts = args.reflect_services
        || args.init.is_some()
        || args.init_sim
        || args.streams()
        || args.hashpipe_status;
    if !needs_live_hosts {
        return done_without_live_hosts(&hosts, did_something, failures);
    }

    // The Python client works with the nodes that answer and names the
    // others; hosts the user typed must all answer.
    let targets = if named {
        hosts
    } else {
        // Those that do not answer are logged (with why) and skipped.
        all.valid_hosts().await?
    };
    let client = all.only(&targets);
    if args.reflect_services {
        failures += reflect_services(&client).await;
    }
    init_hp_io(&args, &client).await?;
    if args.hashpipe_status {
        // Every node, reachable or not: the table says which is which.
        cmd::hashpipe::run(&all, args.refresh_period, args.json).await?;
    }
    if args.streams() {
        live_view(&args)
            .run(&client, logs)
            .await
            .context("streaming images")?;
    }
    if failures > 0 {
        bail!("{failures} request(s) failed");
    }
    Ok(())
}

/// `--ping`, `--list-hosts` and `--status`, to every host (answering or
/// not): whether any was asked for, and how many hosts failed.
async fn ask_every_host(args: &DemoArgs, all: &DaqClient) -> (bool, usize) {
    let mut did_something = false;
    let mut failures = 0usize;
    if args.ping {
        did_something = true;
        for (host, status) in all.host_status().await {
            match status {
                Ok(()) => println!("PING {host}: success"),
                Err(e) => {
                    failures += 1;
                    println!("PING {host}: failed: {e}");
                }
            }
        }
    }
    if args.list_hosts {
        did_something = true;
        println!("DAQ host status (true = answers, false = does not):");
        for (host, status) in all.host_status().await {
            println!("  {host}: {}", status.is_ok());
        }
    }
    if args.status {
        did_something = true;
        for (host, status) in all.status().await {
            if status.is_err() {
                failures += 1;
            }
            println!("{}", status_line(&host, &status, args.json));
        }
    }
    (did_something, failures)
}

/// The end of a run that needed no answering host: a hint when nothing
/// was asked for, an error when a host failed.
fn done_without_live_hosts(
    hosts: &[Host],
    did_something: bool,
    failures: usize,
) -> anyhow::Result<()> {
    if !did_something {
        println!(
            "Nothing to do. Hosts: {}",
            hosts
                .iter()
                .map(Host::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("Try --ping, --init-sim, --plot-view or --help.");
    }
    if failures > 0 {
        bail!("{failures} host(s) did not answer")
    }
    Ok(())
}

/// Prints each host's services; how many could not be listed.
async fn reflect_services(client: &DaqClient) -> usize {
    let mut failures = 0;
    for host in client.hosts() {
        match client.reflect_services(host).await {
            Ok(listing) => print!("{listing}"),
            Err(e) => {
                failures += 1;
                eprintln!("Error reflecting services: {e}");
            }
        }
    }
    failures
}

/// `--init CFG_PATH` or `--init-sim`, when given: an error only when no
/// host took it.
async fn init_hp_io(args: &DemoArgs, client: &DaqClient) -> anyhow::Result<()> {
    let config = match (&args.init, args.init_sim) {
        (Some(path), _) => HpIoConfig::load(path)?,
        (None, true) => HpIoConfig::simulate(),
        (None, false) => return Ok(()),
    };
    println!(
        "Initializing hp_io with config: {}",
        serde_json::to_string(&config)?
    );
    let mut ok = 0;
    for (host, result) in client.init_hp_io(&config).await {
        match result {
            Ok(()) => {
                ok += 1;
                println!("InitHpIo {host}: success");
            }
            Err(e) => eprintln!("InitHpIo {host}: {e}"),
        }
    }
    if ok == 0 {
        bail!("InitHpIo failed on every host");
    }
    Ok(())
}

/// The live views the flags ask for.
fn live_view(args: &DemoArgs) -> cmd::live::Live {
    cmd::live::Live {
        plot_view: args.plot_view,
        plot_phdist: args.plot_phdist,
        plot_speed: args.plot_speed,
        json: args.json,
        refresh_period: args.refresh_period,
        module_ids: args.targets.module_ids.clone(),
        snapshot: args.snapshot.clone(),
        snapshot_frames: args.snapshot_frames,
        snapshot_timeout: args.snapshot_timeout,
    }
}

/// One host's answer to `--status`, as a line for people or a JSON object.
fn status_line(
    host: &Host,
    status: &Result<daqdata_client::HpIoStatus, daqdata_client::Error>,
    json: bool,
) -> String {
    match (status, json) {
        (Ok(s), false) => {
            let state = if s.initialized {
                "initialized"
            } else {
                "not initialized"
            };
            format!("STATUS {host}: {state}: {}", s.message)
        }
        (Err(e), false) => format!("STATUS {host}: unreachable: {e}"),
        (Ok(s), true) => serde_json::json!({
            "host": host.to_string(),
            "hp_io_initialized": s.initialized,
            "message": s.message,
        })
        .to_string(),
        (Err(e), true) => serde_json::json!({
            "host": host.to_string(),
            "error": e.to_string(),
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("daqdata").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn the_python_demo_commands_parse() {
        let cli = parse(&[
            "--host",
            "localhost",
            "--init-sim",
            "--plot-view",
            "--plot-phdist",
            "--module-ids",
            "1",
            "3",
        ]);
        let d = &cli.demo;
        assert!(cli.command.is_none());
        assert_eq!(d.targets.hosts, vec!["localhost"]);
        assert!(d.init_sim && d.plot_view && d.plot_phdist);
        assert_eq!(d.targets.module_ids, vec![1, 3]);
        assert_eq!(d.refresh_period, 1.0);
        assert_eq!(d.log_level, LogLevel::Info);

        let cli = parse(&[
            "daq_config.json",
            "network_config.json",
            "--init",
            "hp_io_config.json",
            "--refresh-period",
            "0.5",
            "--log-level",
            "debug",
            "--reflect-services",
            "--list-hosts",
            "--ping",
            "--plot-speed",
        ]);
        let d = &cli.demo;
        assert_eq!(d.targets.daq_config, Some("daq_config.json".into()));
        assert_eq!(d.targets.net_config, Some("network_config.json".into()));
        assert_eq!(d.init, Some("hp_io_config.json".into()));
        assert_eq!(d.refresh_period, 0.5);
        assert!(d.reflect_services && d.list_hosts && d.ping && d.plot_speed);
        assert!(d.targets.module_ids.is_empty());

        // --module-ids with no ids (nargs="*") means all modules.
        let cli = parse(&["--plot-phdist", "--module-ids"]);
        assert!(cli.demo.targets.module_ids.is_empty());
        let cli = parse(&[
            "--host",
            "a",
            "--host",
            "unix:///tmp/daq_data.sock",
            "--json",
        ]);
        assert_eq!(cli.demo.targets.hosts.len(), 2);

        let cli = parse(&[
            "--host",
            "tls://daq1:50052",
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "me.pem",
            "--tls-key",
            "me.key",
            "--token-file",
            "tok",
        ]);
        let c = &cli.demo.credentials;
        assert_eq!(c.tls_ca, Some("ca.pem".into()));
        assert_eq!(c.token_file, Some("tok".into()));
        assert!(Cli::try_parse_from(["daqdata", "--tls-cert", "me.pem"]).is_err());
    }

    #[test]
    fn bench_is_a_subcommand_with_its_own_options() {
        let cli = parse(&[
            "bench",
            "--host",
            "localhost",
            "--clients",
            "50",
            "--shared-connection",
            "--json",
        ]);
        let Some(Command::Bench(b)) = cli.command else {
            panic!("bench not parsed")
        };
        assert_eq!(b.clients, 50);
        assert!(b.shared_connection && b.json);
    }

    #[test]
    fn web_takes_the_same_hosts_as_the_other_modes() {
        let cli = parse(&[
            "web",
            "daq_config.json",
            "network_config.json",
            "--module-ids",
            "1",
            "3",
            "--listen",
            "0.0.0.0:9000",
            "--token-file",
            "tok",
        ]);
        let Some(Command::Web(w)) = cli.command else {
            panic!("web not parsed")
        };
        assert_eq!(w.targets.daq_config, Some("daq_config.json".into()));
        assert_eq!(w.targets.module_ids, vec![1, 3]);
        assert_eq!(w.web.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(w.credentials.token_file, Some("tok".into()));
        let Some(Command::Web(w)) = parse(&["web", "--host", "a", "--host", "b"]).command else {
            panic!("web not parsed")
        };
        assert_eq!(w.targets.hosts, vec!["a", "b"]);
        assert_eq!(w.web.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn named_hosts_must_be_nodes_of_the_daq_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("daq_config.json");
        std::fs::write(
            &cfg,
            r#"{"daq_nodes": [{"ip_addr": "daq1"}, {"ip_addr": "daq2"}]}"#,
        )
        .unwrap();
        let cfg = cfg.to_str().unwrap();
        let (hosts, named) = parse(&[cfg]).demo.targets.hosts().unwrap();
        assert_eq!((hosts.len(), named), (2, false));
        let (hosts, named) = parse(&[cfg, "--host", "daq2"])
            .demo
            .targets
            .hosts()
            .unwrap();
        assert_eq!((hosts, named), (vec!["daq2".parse().unwrap()], true));
        let err = parse(&[cfg, "--host", "daq3"])
            .demo
            .targets
            .hosts()
            .unwrap_err()
            .to_string();
        assert!(err.contains("daq3") && err.contains("daq1:50051"), "{err}");
        let (hosts, _) = parse(&[]).demo.targets.hosts().unwrap();
        assert_eq!(hosts, vec!["localhost:50051".parse().unwrap()]);
    }

    #[test]
    fn help_explains_every_option() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "--host",
            "--init",
            "--init-sim",
            "--plot-view",
            "--plot-phdist",
            "--module-ids",
            "--status",
            "--snapshot",
            "--json",
            "--token-file",
            "DAQDATA_TOKEN",
            "--tls-ca",
            "--tls-cert",
            "--tls-key",
            "tls://",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }
}
