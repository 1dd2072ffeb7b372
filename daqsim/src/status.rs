//! A simulated Hashpipe status buffer (SPEC §9): a real System V segment
//! and named semaphore under the simulation's own keyfile, written the way
//! Hashpipe's `hput*` write cards, with counters and thread states that
//! move.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hpio::status::{StatusImage, StatusLocation, StatusWriter};

use crate::Error;

/// What the simulated buffer looks like.
#[derive(Debug, Clone)]
pub struct StatusSimConfig {
    /// The keyfile the key and semaphore name come from (it must exist).
    pub keyfile: PathBuf,
    /// The Hashpipe instance (PANOSETI runs 0).
    pub instance: u32,
    /// How often the cards change.
    pub interval: Duration,
    /// Packets per second while the net thread is receiving.
    pub packets_per_second: u64,
}

impl StatusSimConfig {
    /// Instance 0, four updates a second, 10,000 packets/s.
    pub fn new(keyfile: impl Into<PathBuf>) -> StatusSimConfig {
        StatusSimConfig {
            keyfile: keyfile.into(),
            instance: 0,
            interval: Duration::from_millis(250),
            packets_per_second: 10_000,
        }
    }
}

/// The net thread's states over one cycle of the simulation, in updates:
/// receiving most of the time, starved (`blocked`, which Hashpipe
/// rewrites every 250 ms) for a while, then receiving again.
const CYCLE: [(&str, u32); 2] = [("receiving", 32), ("blocked", 8)];

/// A simulated status buffer, updated on its own thread until stopped or
/// dropped; its segment and semaphore are removed then.
#[derive(Debug)]
pub struct StatusSim {
    location: StatusLocation,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatusSim {
    /// Creates the buffer (Hashpipe's cleared buffer plus its settings
    /// cards) and starts changing it.
    pub fn start(config: StatusSimConfig) -> Result<StatusSim, Error> {
        let location = StatusLocation::new(&config.keyfile, config.instance)
            .map_err(|e| Error::Config(format!("simulated Hashpipe status buffer: {e}")))?;
        let mut writer = StatusWriter::create(location.clone()).map_err(|e| {
            Error::Config(format!(
                "simulated Hashpipe status buffer under {}: {e}",
                config.keyfile.display()
            ))
        })?;
        let io = |e: std::io::Error| {
            Error::io("writing the simulated status buffer of", &config.keyfile, e)
        };
        writer
            .update(|image| write_settings(image, &config))
            .map_err(io)?
            .map_err(|e| Error::Config(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("daqsim-status".into())
                .spawn(move || run(writer, config, &stop))
                .map_err(|e| {
                    Error::io(
                        "starting the status thread for",
                        location.keyfile.clone().unwrap_or_default(),
                        e,
                    )
                })?
        };
        Ok(StatusSim {
            location,
            stop,
            thread: Some(thread),
        })
    }

    /// Where the buffer is.
    pub fn location(&self) -> &StatusLocation {
        &self.location
    }

    /// Stops updating and removes the segment and semaphore.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the simulated status buffer's thread panicked");
            }
        }
    }
}

impl Drop for StatusSim {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The settings cards panoseti_daq's threads write once at start.
fn write_settings(
    image: &mut StatusImage,
    config: &StatusSimConfig,
) -> Result<(), hpio::status::ImageFull> {
    image.put_int("INSTANCE", i64::from(config.instance & 0x3f))?;
    image.put_str("BINDHOST", "127.0.0.1")?;
    image.put_int("BINDPORT", 60001)?;
    image.put_int("SSINT", 1000)?;
    image.put_str("CONFIG", "simulated")?;
    image.put_str("OBS", "SIM")?;
    image.put_int("MAXFILES", 0)?;
    image.put_int("GROUPPHF", 0)?;
    for (key, state) in [
        ("NETSTAT", "init"),
        ("COMPUTESTAT", "init"),
        ("OUTSTAT", "init"),
    ] {
        image.put_str(key, state)?;
    }
    Ok(())
}

/// Changes the cards every interval until `stop`.
fn run(mut writer: StatusWriter, config: StatusSimConfig, stop: &AtomicBool) {
    let per_update =
        (config.packets_per_second as f64 * config.interval.as_secs_f64()).round() as i64;
    let cycle: u32 = CYCLE.iter().map(|(_, n)| n).sum();
    let mut packets: i64 = 0;
    let mut lost: i64 = 0;
    let mut blocks: i64 = 0;
    let mut tick: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(config.interval);
        let phase = tick % cycle;
        tick = tick.wrapping_add(1);
        let net = if phase < CYCLE[0].1 {
            CYCLE[0].0
        } else {
            CYCLE[1].0
        };
        let receiving = net == "receiving";
        let (received, dropped) = if receiving {
            // One lost packet every few updates, a kernel drop now and then.
            let gap = i64::from(phase % 5 == 0);
            (per_update, gap)
        } else {
            (0, 0)
        };
        packets += received;
        lost += dropped;
        blocks += received / 16_384;
        let result = writer.update(|image| -> Result<(), hpio::status::ImageFull> {
            image.put_str("NETSTAT", net)?;
            image.put_str(
                "COMPUTESTAT",
                if receiving { "processing" } else { "waiting" },
            )?;
            image.put_str("OUTSTAT", if receiving { "writing" } else { "waiting" })?;
            image.put_int("NPACKETS", packets)?;
            image.put_int("NPHEVENT", packets / 10)?;
            image.put_int("NETRECV", received)?;
            image.put_int("NETDROPS", dropped)?;
            image.put_int("TPKTLST", lost)?;
            image.put_int("M1PKTLST", lost / 2)?;
            image.put_int("NETBKOUT", blocks)?;
            image.put_int("COMBLKIN", blocks)?;
            image.put_int("OUTBLKIN", blocks)
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("simulated status buffer: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!("simulated status buffer: cannot take its semaphore: {e}");
                return;
            }
        }
    }
}
