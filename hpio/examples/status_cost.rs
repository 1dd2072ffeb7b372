//! What reading Hashpipe's status buffer costs Hashpipe and the reader.
//!
//! Makes a real buffer (System V segment and named semaphore, under a
//! temporary keyfile) holding as many cards as fit: the worst case for
//! the copy under the lock. Then reads it N times and reports the time the
//! reader holds the lock (what Hashpipe's net thread could wait for), the
//! whole read (lock wait, copy, parse), and the CPU time per read, which at
//! one read per second is the poller's CPU share. The server's poller also
//! looks for a `hashpipe` process in /proc on each read; that is measured
//! apart.
//!
//! ```text
//! cargo run --release -p hpio --example status_cost -- --reads 10000
//! cargo run --release -p hpio --example status_cost -- --reads 10000 --cards 60
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use hpio::status::{hashpipe_running, StatusLocation, StatusReader, StatusWriter};
use procfs::process::Process;

#[derive(Parser)]
#[command(about = "Lock hold time and CPU of reading a full Hashpipe status buffer")]
struct Args {
    /// Reads to time.
    #[arg(long, default_value_t = 10_000)]
    reads: u32,
    /// Cards in the buffer; default: as many as fit (2303).
    #[arg(long)]
    cards: Option<u32>,
}

type TextResult = Result<(), Box<dyn std::error::Error>>;

fn main() -> TextResult {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut writer = StatusWriter::create(StatusLocation::new(dir.path(), 0)?)?;
    let cards = writer.update(|image| {
        let mut n = 0;
        while args.cards.is_none_or(|max| n < max)
            && image
                .put_str(
                    &format!("K{n:07}"),
                    "receiving and writing a 67-character value......",
                )
                .is_ok()
        {
            n += 1;
        }
        n
    })?;
    let mut reader = StatusReader::new(writer.location().clone());
    reader.read()?;
    println!(
        "buffer: {cards} cards, {} bytes copied per read",
        reader.copied().len()
    );

    let mut held = Histogram::<u64>::new(3)?;
    let mut whole = Histogram::<u64>::new(3)?;
    let cpu_before = cpu_seconds()?;
    for _ in 0..args.reads {
        let start = Instant::now();
        let hold = reader.copy()?;
        let snapshot = hpio::status::parse_cards(reader.copied())?;
        std::hint::black_box(snapshot);
        whole.record(start.elapsed().as_nanos() as u64)?;
        held.record(hold.as_nanos() as u64)?;
    }
    let cpu_per_read = (cpu_seconds()? - cpu_before) / f64::from(args.reads);
    report("lock held", &held, args.reads);
    report("whole read (wait, copy, parse)", &whole, args.reads);
    println!(
        "CPU per read: {:.1} us, so {:.4} % of one core at one read per second",
        cpu_per_read * 1e6,
        cpu_per_read * 100.0
    );

    let scans = 200;
    let cpu_before = cpu_seconds()?;
    for _ in 0..scans {
        std::hint::black_box(hashpipe_running());
    }
    let per_scan = (cpu_seconds()? - cpu_before) / f64::from(scans);
    let processes = std::fs::read_dir("/proc")?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    println!(
        "the server's process check (/proc scan, {processes} processes): {:.0} us CPU each, {:.3} % of a core at 1/s",
        per_scan * 1e6,
        per_scan * 100.0
    );
    drop(writer);
    Ok(())
}

fn report(what: &str, h: &Histogram<u64>, n: u32) {
    let us = |q: f64| Duration::from_nanos(h.value_at_quantile(q)).as_secs_f64() * 1e6;
    println!(
        "{what} over {n} reads: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        us(0.5),
        us(0.99),
        h.max() as f64 / 1e3
    );
}

/// This process's user + system CPU time.
fn cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = Process::myself()?.stat()?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}
