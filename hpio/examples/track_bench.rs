//! How fresh are the frames a tracker hands on, and what does it cost?
//!
//! Writes like Hashpipe on a busy node: N modules x {img16, ph256}, each
//! file appended by its own thread at a fixed rate (real Lick frames: the
//! full-size shared samples when present, else the repository's fixtures). Every write time is recorded by frame index;
//! the sink takes the age of each frame it gets (write -> event), and the
//! news delay of each frame written (write -> the event of it or of a
//! newer frame of its file). The tracker thread's CPU time is read from
//! /proc.
//!
//! ```text
//! cargo run --release -p hpio --example track_bench -- --seconds 10
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use pff::daq_tree::{module_dir_name, RECORDING_ENDED};
use pff::{DataProduct, PffName, RunName, StartTime};
use procfs::process::Process;

#[derive(Parser)]
#[command(about = "Frame age at emission and tracker CPU, with Hashpipe-like writers")]
struct Args {
    /// Seconds of writing per mode.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Frames per second written to each file.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Modules, each writing img16 and ph256.
    #[arg(long, default_value_t = 4)]
    modules: u32,
    /// Finished runs (10 PFF files each) to put beside the live one, to
    /// show that old runs cost nothing per tick.
    #[arg(long, default_value_t = 0)]
    old_runs: u32,
    /// Modes to run: notify-1ms, notify-10ms, poll-1ms, poll-10ms.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "notify-1ms,notify-10ms,poll-1ms,poll-10ms"
    )]
    modes: Vec<String>,
    /// No writers: the files hold 10 frames each and do not grow, to see
    /// the cost of ticks alone.
    #[arg(long)]
    idle: bool,
}

const START: i64 = 1_721_882_046;

fn main() -> TextResult {
    let args = Args::parse();
    println!(
        "{} module(s) x {{img16, ph256}} at {} frames/s each, {} s per mode, {} old runs; {} CPUs",
        args.modules,
        args.rate,
        args.seconds,
        args.old_runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| mode | events/s | of written | age p50 / p99 / max | news delay p50 / p99 / max | tracker CPU (one core) |");
    println!("|---|---|---|---|---|---|");
    for mode in &args.modes {
        let (poll_only, interval) = match mode.as_str() {
            "notify-1ms" => (false, 1),
            "notify-10ms" => (false, 10),
            "poll-1ms" => (true, 1),
            "poll-10ms" => (true, 10),
            other => return Err(format!("unknown mode {other}")),
        };
        run(&args, poll_only, Duration::from_millis(interval), mode)?;
    }
    Ok(())
}

/// Up to `n` real frames to write, per data product: of the full-size
/// shared sample when present (more distinct frames), else of the fixture.
fn frames(dp: DataProduct, n: usize) -> Vec<Vec<u8>> {
    let sample = testdata::lick_samples(dp.name(), 1)
        .pop()
        .unwrap_or_else(|| panic!("fixtures/ holds no {dp} recording of module 1"));
    let file = pff::PffFile::open(&sample.path)
        .unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()));
    (0..sample.frames.min(n as u64))
        .map(|i| {
            file.read_raw(i)
                .unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()))
                .as_bytes()
                .to_vec()
        })
        .collect()
}

/// The write time of each frame of one file, by index, in ns since `base`.
struct Written {
    base: Instant,
    at: Vec<AtomicU64>,
}

fn run(args: &Args, poll_only: bool, interval: Duration, mode: &str) -> TextResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let n = (args.seconds * f64::from(args.rate)) as usize;
    let products = [DataProduct::Img16, DataProduct::Ph256];
    let mut files = Vec::new();
    for m in 1..=args.modules {
        let run = dir
            .path()
            .join(module_dir_name(m.into()))
            .join(RunName::new("BENCH", StartTime::from_unix(START), "bench").to_string());
        fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        for dp in products {
            files.push((
                m,
                dp,
                run.join(PffName::new(StartTime::from_unix(START), dp, m.into(), 0).to_string()),
            ));
        }
    }
    make_old_runs(dir.path(), args.old_runs, args.modules.max(1))?;
    if args.idle {
        // A run that stopped writing but is still the newest.
        for (_, dp, path) in &files {
            fs::write(path, frames(*dp, 10).concat()).map_err(|e| e.to_string())?;
        }
    }
    let base = Instant::now();
    // Index into `written` by (module, dp).
    let written: Arc<Vec<Written>> = Arc::new(
        files
            .iter()
            .map(|_| Written {
                base,
                at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            })
            .collect(),
    );
    let slot = move |module: u32, dp: DataProduct| {
        (module as usize - 1) * 2 + usize::from(dp == DataProduct::Ph256)
    };

    // (file slot, frame index, age, emission time in ns since base).
    let ages = Arc::new(Mutex::new(Vec::<(usize, u64, u64, u64)>::with_capacity(
        n * files.len(),
    )));
    let sink_ages = ages.clone();
    let sink_written = written.clone();
    let recording = Arc::new(AtomicBool::new(false));
    let sink_recording = recording.clone();
    let config = hpio::TrackerConfig {
        interval,
        poll_only,
        ..hpio::TrackerConfig::new(dir.path())
    };
    let tracker = hpio::Tracker::spawn(config, move |e| {
        let now = Instant::now();
        if !sink_recording.load(Ordering::Relaxed) {
            return;
        }
        let k = slot(e.module.get(), e.dp);
        let w = &sink_written[k];
        let Some(at) = w.at.get(e.frame_index as usize) else {
            return;
        };
        let at = at.load(Ordering::Acquire);
        if at == 0 {
            return;
        }
        let t = now.duration_since(w.base).as_nanos() as u64;
        if let Ok(mut ages) = sink_ages.lock() {
            ages.push((k, e.frame_index, t - at, t));
        }
    })
    .map_err(|e| e.to_string())?;
    // Let the tracker find the (still empty) files' directories.
    std::thread::sleep(Duration::from_millis(200));
    let threads = tracker_threads();
    let cpu_before: Vec<u64> = threads.iter().map(|t| cpu_ns(*t)).collect();
    recording.store(true, Ordering::Relaxed);
    let started = Instant::now();

    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let writers: Vec<_> = if args.idle {
        Vec::new()
    } else {
        files
            .iter()
            .enumerate()
            .map(|(i, (_, dp, path))| {
                let frames = frames(*dp, 2000);
                let path = path.clone();
                let written = written.clone();
                std::thread::spawn(move || write(&path, &frames, &written[i], n, period, started))
            })
            .collect()
    };
    if args.idle {
        std::thread::sleep(Duration::from_secs_f64(args.seconds));
    }
    for w in writers {
        w.join().map_err(|_| "a writer panicked".to_string())??;
    }
    std::thread::sleep(Duration::from_millis(50));
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after: Vec<u64> = threads.iter().map(|t| cpu_ns(*t)).collect();
    let cpu: Vec<f64> = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| 100.0 * a.saturating_sub(*b) as f64 / 1e9 / elapsed)
        .collect();
    recording.store(false, Ordering::Relaxed);
    tracker.stop();

    let events = ages.lock().map_err(|_| "poisoned")?.clone();
    let mut ages = histogram()?;
    for e in &events {
        ages.record(e.2).map_err(|e| e.to_string())?;
    }
    // News delay: for each frame written, how long until it or a newer
    // frame of its file was handed on (what a viewer waits for news).
    let mut delays = histogram()?;
    for (k, w) in written.iter().enumerate() {
        let emitted: Vec<&(usize, u64, u64, u64)> = events.iter().filter(|e| e.0 == k).collect();
        let mut j = 0;
        for (i, at) in w.at.iter().enumerate() {
            let at = at.load(Ordering::Acquire);
            if at == 0 {
                continue;
            }
            while j < emitted.len() && emitted[j].1 < i as u64 {
                j += 1;
            }
            let Some(e) = emitted.get(j) else { break };
            delays
                .record(e.3.saturating_sub(at))
                .map_err(|e| e.to_string())?;
        }
    }
    let pct = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            f64::NAN
        } else {
            h.value_at_quantile(p) as f64 / 1e6
        }
    };
    let total_written = if args.idle { 0 } else { n * files.len() };
    println!(
        "| {mode}{} | {:.0} | {:.1}% | {:.3} / {:.3} / {:.3} ms | {:.3} / {:.3} / {:.3} ms | {:.2}% |",
        if args.old_runs > 0 {
            format!(" +{} old runs", args.old_runs)
        } else {
            String::new()
        },
        ages.len() as f64 / elapsed,
        100.0 * ages.len() as f64 / total_written.max(1) as f64,
        pct(&ages, 0.5),
        pct(&ages, 0.99),
        pct(&ages, 1.0),
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        pct(&delays, 1.0),
        cpu.iter().sum::<f64>(),
    );
    Ok(())
}

/// Appends `n` frames to `path`, one every `period` from `start`, noting
/// each one's write time just before it is written.
fn write(
    path: &Path,
    frames: &[Vec<u8>],
    written: &Written,
    n: usize,
    period: Duration,
    start: Instant,
) -> TextResult {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    for i in 0..n {
        let due = start + period * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let at = Instant::now().duration_since(written.base).as_nanos() as u64;
        written.at[i].store(at.max(1), Ordering::Release);
        file.write_all(&frames[i % frames.len()])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Finished runs, older than the live one, 10 small files each.
fn make_old_runs(data_dir: &Path, runs: u32, modules: u32) -> TextResult {
    let frame = frames(DataProduct::Ph256, 1).remove(0);
    for r in 0..runs {
        let m = r % modules + 1;
        let start = StartTime::from_unix(START - 60 * (i64::from(r) + 1));
        let run = data_dir
            .join(module_dir_name(m.into()))
            .join(RunName::new("BENCH", start.clone(), "bench").to_string());
        fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        for s in 0..10 {
            let name = PffName::new(start.clone(), DataProduct::Ph256, m.into(), s).to_string();
            fs::write(run.join(name), &frame).map_err(|e| e.to_string())?;
        }
        fs::write(run.join(RECORDING_ENDED), "").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Nanoseconds, to three significant digits.
fn histogram() -> TextResult<Histogram<u64>> {
    Histogram::new(3).map_err(|e| e.to_string())
}

/// Thread ids of the tracker.
fn tracker_threads() -> Vec<i32> {
    let Ok(tasks) = Process::myself().and_then(|me| me.tasks()) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| t.stat().is_ok_and(|s| s.comm.starts_with("hpio-tracker")))
        .map(|t| t.tid)
        .collect()
}

/// CPU time of a thread so far, in ns (schedstat: time on the CPU).
fn cpu_ns(tid: i32) -> u64 {
    Process::myself()
        .and_then(|me| me.task_from_tid(tid)?.schedstat())
        .map_or(0, |s| s.sum_exec_runtime)
}

/// A result whose error is text: a benchmark only reports errors.
type TextResult<T = ()> = Result<T, String>;
