//! `daqsim`: replay archived PANOSETI frames into a fake DAQ tree, and cut
//! the fixtures it replays.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use daqsim::{Fixtures, Replay, ReplayConfig};
use pff::ModuleId;

mod fixture_tools;

#[derive(Parser)]
#[command(
    version,
    about = "Replay archived PANOSETI frames into a live fake DAQ tree, as Hashpipe writes it.",
    long_about = "Replay archived PANOSETI frames into a live fake DAQ tree, as Hashpipe writes it.\n\n\
        Writes OUT/module_M/obs_SIM.start_TIME.runtype_sim.pffd/start_TIME.dp_DP.bpp_B.module_M.seqno_S.pff, \
        plus OUT/daq_run_name and OUT/daq_hashpipe_pid while it runs. Ctrl-C (or SIGTERM) stops it \
        cleanly: recording_ended is written into each run directory and the pid file removed.\n\n\
        Point a DaqData server (InitHpIo data_dir) or the pff tool at OUT.",
    after_help = "Examples:\n  \
        daqsim --replay fixtures/                          # until Ctrl-C, output printed at start\n  \
        daqsim --replay fixtures/ --out /tmp/daq --modules 1:200,3:201 --rate 50\n  \
        daqsim --replay fixtures/ --rate 5000 --frames 50000 --frames-per-file 10000\n  \
        daqsim --replay fixtures/ --to-sockets '/tmp/hashpipe_grpc.dp_{dp_name}.sock' --rate 100\n  \
        daqsim --replay fixtures/ --out /tmp/daq --hashpipe-status  # status buffer keyed on /tmp/daq\n  \
        daqsim --hashpipe-status --hashpipe-keyfile /tmp/daq      # the status buffer alone\n  \
        daqsim cut SAMPLE.pff --frames 300 --out fixtures/\n  \
        daqsim synth --img16 IMG16.pff --ph256 PH256.pff --frames 200 --module 2 --out fixtures/",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    replay: ReplayArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args)]
struct ReplayArgs {
    /// Directory of fixture *.pff files to replay (searched recursively), e.g. fixtures/.
    #[arg(long, value_name = "DIR")]
    replay: Option<PathBuf>,
    /// The DATA_DIR to write into (created if missing). Default: a fresh directory under the temp dir.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Frames per second per module and data product. Default: the fixture's recorded cadence
    /// where known (1000/s for the Lick movie frames), else 100.
    #[arg(long, value_name = "FPS")]
    rate: Option<f64>,
    /// Map fixture modules onto output module ids, FROM:TO pairs separated by commas
    /// (1:200,1:201,3:202). A fixture module may feed several outputs; unnamed fixture
    /// modules are not replayed. Default: every fixture module under its own id.
    #[arg(long, value_name = "FROM:TO,...", value_delimiter = ',', value_parser = parse_module_pair)]
    modules: Vec<(ModuleId, ModuleId)>,
    /// Close each file after this many frames and open the next seqno. Default: never.
    #[arg(long, value_name = "N")]
    frames_per_file: Option<u64>,
    /// Stop after N frames per stream (the fixture loops as needed). Default: run until Ctrl-C.
    #[arg(long, value_name = "N")]
    frames: Option<u64>,
    /// Rewrite tv_sec/tv_usec/pkt_tai/pkt_nsec to the time of writing (the default).
    #[arg(long, overrides_with = "no_restamp")]
    restamp: bool,
    /// Keep the recorded time stamps.
    #[arg(long)]
    no_restamp: bool,
    /// Write each frame in two parts with a pause between, so readers meet torn frames.
    /// With --to-sockets: also, every 50 messages, a second connection sends garbage or a
    /// message cut short, so the server must close it and keep the good one.
    #[arg(long)]
    torn: bool,
    /// Push frames into Hashpipe's unix sockets instead of writing files, as Hashpipe's
    /// snapshot.c does: a 2-byte big-endian module id and one PFF frame per message, one
    /// socket per data product ({dp_name} is replaced by img16, ph256, ...), reconnecting
    /// when the server goes away. E.g. "/tmp/hashpipe_grpc.dp_{dp_name}.sock".
    #[arg(long, value_name = "TEMPLATE", conflicts_with_all = ["out", "frames_per_file", "frames"])]
    to_sockets: Option<String>,
    /// With --to-sockets: seconds between attempts to connect (Hashpipe: 15).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 15.0,
        requires = "to_sockets"
    )]
    reconnect_seconds: f64,
    /// Also keep a real Hashpipe status buffer (a System V segment and a named semaphore,
    /// as Hashpipe's hashpipe_status.c makes them) with moving counters and thread states;
    /// removed on exit. Alone (without --replay) it runs only the buffer.
    #[arg(long)]
    hashpipe_status: bool,
    /// The keyfile of --hashpipe-status (key ftok(KEYFILE, 0x40), semaphore from its path).
    /// Default: OUT when replaying into files, else a fresh directory under the temp dir.
    /// A server reads it with [hashpipe_status] keyfile = KEYFILE.
    #[arg(long, value_name = "PATH", requires = "hashpipe_status")]
    hashpipe_keyfile: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Copy N whole frames of a recorded PFF file into a fixture file (torn tail and extra
    /// name pairs such as debug_TRUNCATED dropped).
    Cut {
        /// The recorded file (its name says data product and module).
        file: PathBuf,
        /// Frames to copy.
        #[arg(long, default_value_t = 300)]
        frames: u64,
        /// Frames to skip first.
        #[arg(long, default_value_t = 0)]
        skip: u64,
        /// Directory to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Make synthetic img8 and ph1024 fixtures from real img16 and ph256 frames: img8 is
    /// img16 / 4 (saturating at 255) with the same stamps; ph1024 tiles four consecutive
    /// ph256 frames as quabos 0..3.
    Synth {
        /// An img16 fixture to derive img8 frames from.
        #[arg(long, value_name = "FILE")]
        img16: PathBuf,
        /// A ph256 fixture to derive ph1024 frames from.
        #[arg(long, value_name = "FILE")]
        ph256: PathBuf,
        /// Frames to make of each.
        #[arg(long, default_value_t = 200)]
        frames: usize,
        /// Module id of the synthetic files.
        #[arg(long, default_value_t = ModuleId::new(2))]
        module: ModuleId,
        /// Directory to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn parse_module_pair(pair: &str) -> Result<(ModuleId, ModuleId), String> {
    let (from, to) = pair
        .split_once(':')
        .ok_or_else(|| format!("{pair:?} is not FROM:TO (e.g. 1:200)"))?;
    let id = |v: &str| {
        v.trim()
            .parse::<ModuleId>()
            .map_err(|e| format!("{v:?} in {pair:?} is not a module id: {e}"))
    };
    Ok((id(from)?, id(to)?))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Cut {
            file,
            frames,
            skip,
            out,
        }) => {
            let written = fixture_tools::cut(&file, skip, frames, &out)?;
            println!("{}", written.display());
            Ok(())
        }
        Some(Command::Synth {
            img16,
            ph256,
            frames,
            module,
            out,
        }) => {
            for written in fixture_tools::synth(&img16, &ph256, frames, module, &out)? {
                println!("{}", written.display());
            }
            Ok(())
        }
        None => replay(cli.replay),
    }
}

fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let Some(dir) = args.replay else {
        if args.hashpipe_status {
            return status_only(args.hashpipe_keyfile);
        }
        bail!("nothing to do: give --replay DIR (e.g. --replay fixtures/), or see --help");
    };
    let fixtures =
        Fixtures::load(&dir).with_context(|| format!("loading fixtures from {}", dir.display()))?;
    if let Some(template) = args.to_sockets {
        let reconnect = Duration::try_from_secs_f64(args.reconnect_seconds)
            .context("--reconnect-seconds must be a number of seconds")?;
        let config = daqsim::SocketPushConfig {
            template,
            rate: args.rate,
            modules: args.modules,
            restamp: !args.no_restamp,
            torn: args.torn,
            reconnect,
        };
        let keyfile = match args.hashpipe_keyfile {
            Some(path) => Some(path),
            None if args.hashpipe_status => Some(fresh_keyfile()?),
            None => None,
        };
        let _status = keyfile.map(start_status).transpose()?;
        return push(fixtures, config);
    }
    let mut config = ReplayConfig {
        rate: args.rate,
        modules: args.modules,
        frames_per_file: args.frames_per_file,
        frames: args.frames,
        restamp: !args.no_restamp,
        torn: args.torn,
        ..ReplayConfig::default()
    };
    if let Some(out) = args.out {
        config.out = out;
    }
    // Ctrl-C and SIGTERM only ask the main loop to stop; the writer then
    // finishes its frame and ends the run.
    let (interrupt, interrupted) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = interrupt.send(());
    })
    .context("installing the Ctrl-C handler")?;

    let replay = Replay::start(fixtures, config).context("starting the replay")?;
    println!("writing to {}", replay.out().display());
    let _status = if args.hashpipe_status {
        let keyfile = args
            .hashpipe_keyfile
            .unwrap_or_else(|| replay.out().to_path_buf());
        Some(start_status(keyfile)?)
    } else {
        None
    };
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let mut last_log = Instant::now();
    // Until Ctrl-C, or until --frames are all written.
    let tick = Duration::from_millis(100);
    while let Err(mpsc::RecvTimeoutError::Timeout) = interrupted.recv_timeout(tick) {
        if replay.is_finished() {
            break;
        }
        if last_log.elapsed() >= every {
            last_log = Instant::now();
            progress(&replay.stats(), tty);
        }
    }
    let out = replay.out().to_path_buf();
    let stats = replay
        .stop()
        .with_context(|| format!("replaying into {}", out.display()))?;
    if tty {
        eprintln!();
    }
    println!(
        "wrote {} frames ({:.1} MB) in {:.1} s: {:.0} frames/s over {} streams, \
         {} frames over {} ms late, worst {:.1} ms; run ended in {}",
        stats.frames,
        stats.bytes as f64 / 1e6,
        stats.elapsed.as_secs_f64(),
        stats.rate(),
        stats.streams,
        stats.late_frames,
        daqsim::LATE.as_millis(),
        stats.worst_lag.as_secs_f64() * 1e3,
        out.display()
    );
    Ok(())
}

/// `--to-sockets`: push until Ctrl-C, logging progress now and then.
fn push(fixtures: Fixtures, config: daqsim::SocketPushConfig) -> anyhow::Result<()> {
    let (interrupt, interrupted) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = interrupt.send(());
    })
    .context("installing the Ctrl-C handler")?;
    let template = config.template.clone();
    let push = daqsim::SocketPush::start(fixtures, config).context("starting the push")?;
    println!("pushing into {template}");
    let report = |s: daqsim::PushStats| {
        format!(
            "{} messages sent, {} dropped while no server listened, {} connections, {} bad ones sent on purpose",
            s.messages, s.dropped, s.connections, s.hostile
        )
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) =
        interrupted.recv_timeout(Duration::from_secs(5))
    {
        tracing::info!("{}", report(push.stats()));
    }
    let stats = push.stop().context("stopping the push")?;
    println!("{}", report(stats));
    Ok(())
}

/// A directory of its own to key a status buffer on.
fn fresh_keyfile() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("daqsim-status-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn start_status(keyfile: PathBuf) -> anyhow::Result<daqsim::StatusSim> {
    let sim = daqsim::StatusSim::start(daqsim::StatusSimConfig::new(&keyfile))
        .context("starting the Hashpipe status buffer")?;
    let location = sim.location();
    println!(
        "Hashpipe status buffer: keyfile {}, key {:#010x}, semaphore {}",
        keyfile.display(),
        location.key,
        location.semaphore
    );
    Ok(sim)
}

/// `--hashpipe-status` alone: the buffer until Ctrl-C.
fn status_only(keyfile: Option<PathBuf>) -> anyhow::Result<()> {
    let keyfile = match keyfile {
        Some(path) => path,
        None => fresh_keyfile()?,
    };
    let (interrupt, interrupted) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = interrupt.send(());
    })
    .context("installing the Ctrl-C handler")?;
    let sim = start_status(keyfile)?;
    let _ = interrupted.recv();
    sim.stop();
    println!("status buffer removed");
    Ok(())
}

fn progress(stats: &daqsim::Stats, tty: bool) {
    let line = format!(
        "{} frames written, {:.0} frames/s over {} streams",
        stats.frames,
        stats.rate(),
        stats.streams
    );
    if tty {
        eprint!("\r{line}   ");
    } else {
        tracing::info!("{line}");
    }
}
