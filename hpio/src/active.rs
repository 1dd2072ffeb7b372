//! SPEC §3 "active run": is Hashpipe recording under a data directory?

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pff::daq_tree::{self, HASHPIPE_PID_FILE as PID_FILE};

use crate::Error;

/// Whether a run is active under `data_dir`: a process named `hashpipe`
/// runs (the Python server's rule), `daq_hashpipe_pid` names a live
/// process, or a PFF file of a run directory (`module_*/RUN.pffd/*.pff`
/// or `RUN.pffd/*.pff`) was written within `idle`. Returns why, for logs,
/// or `None` when nothing is recording.
///
/// Stats every PFF file when no process is found, newest runs first; meant
/// for InitHpIo, not for every tick.
pub fn active_run(data_dir: &Path, idle: Duration) -> Result<Option<String>, Error> {
    Error::check_data_dir(data_dir)?;
    if let Some(pid) = hashpipe_process() {
        return Ok(Some(format!(
            "{HASHPIPE_PROCESS} is running (process {pid})"
        )));
    }
    if let Some(pid) = live_hashpipe(data_dir) {
        return Ok(Some(format!("{PID_FILE} names running process {pid}")));
    }
    let now = pff::time::now();
    for run in run_dirs(data_dir) {
        let Ok(entries) = fs::read_dir(&run) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !daq_tree::is_image_file_name(name) {
                continue;
            }
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            // A clock step can put a write in the future: that is recent.
            let age = now.duration_since(modified).unwrap_or_default();
            if age <= idle {
                return Ok(Some(format!(
                    "{} was written {:.1} s ago",
                    entry.path().display(),
                    age.as_secs_f64()
                )));
            }
        }
    }
    Ok(None)
}

/// Hashpipe's process name, as panoseti's `control_utils` looks for it.
const HASHPIPE_PROCESS: &str = "hashpipe";

/// The id of a running `hashpipe` process, if any.
pub(crate) fn hashpipe_process() -> Option<u32> {
    process_named(HASHPIPE_PROCESS)
}

/// A process whose name (Linux: `/proc/PID/comm`) is `name`, if any.
fn process_named(name: &str) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(entry.path().join("comm")).ok()?;
        (comm.trim_end() == name).then_some(pid)
    })
}

/// The process id in the pid file, if that process is alive.
fn live_hashpipe(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join(PID_FILE)).ok()?;
    let pid: u32 = text.trim().parse().ok().filter(|&p| p > 0)?;
    // Linux: a live process (zombies aside) has a /proc entry.
    let alive = Path::new("/proc").join(pid.to_string()).exists();
    if !alive {
        tracing::debug!("{PID_FILE} names process {pid}, which is not running");
    }
    alive.then_some(pid)
}

/// Every run directory under `data_dir`, newest name first (the start time
/// is in the name, so a recent write is usually found at once).
fn run_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let mut runs = Vec::new();
    let mut locations = vec![data_dir.to_path_buf()];
    if let Ok(entries) = fs::read_dir(data_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let module = name.to_str().and_then(daq_tree::parse_module_dir);
            if module.is_some() && entry.path().is_dir() {
                locations.push(entry.path());
            }
        }
    }
    for location in locations {
        let Ok(entries) = fs::read_dir(&location) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if daq_tree::is_run_dir(&path) {
                runs.push(path);
            }
        }
    }
    let start = |p: &PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| pff::RunName::parse(n).ok())
            .map(|r| r.start)
    };
    runs.sort_by_cached_key(|p| std::cmp::Reverse(start(p)));
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_found_by_its_name() {
        // This test's own process has a name; a made-up one has none.
        let me = fs::read_to_string("/proc/self/comm").unwrap();
        assert!(process_named(me.trim_end()).is_some());
        assert_eq!(process_named("no-such-process-name"), None);
    }
}
