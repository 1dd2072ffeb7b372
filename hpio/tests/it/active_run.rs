//! SPEC §3: a run is active while Hashpipe lives or PFF files grow.

use crate::common;

use std::fs;
use std::time::Duration;

use common::*;
use pff::DataProduct::Img16;

const IDLE: Duration = Duration::from_secs(30);

#[test]
fn a_live_hashpipe_pid_is_an_active_run() {
    let daq = Daq::new();
    fs::write(
        daq.path().join("daq_hashpipe_pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let why = hpio::active_run(daq.path(), IDLE).unwrap().unwrap();
    assert!(why.contains(&std::process::id().to_string()), "{why}");
}

#[test]
fn a_dead_pid_and_an_idle_tree_are_no_active_run() {
    let daq = Daq::new();
    // Above the kernel's largest pid: no process can have it, now or later.
    let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = pid_max + 1;
    fs::write(daq.path().join("daq_hashpipe_pid"), pid.to_string()).unwrap();
    let run = daq.run(Some(1), 1_721_882_046);
    let f = run.file(Img16, 1, 0);
    append(&f, &synthetic_frames(Img16, 3));
    let hour_ago = pff::time::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    assert_eq!(hpio::active_run(daq.path(), IDLE).unwrap(), None);
    // Not a number: ignored, not an error.
    fs::write(daq.path().join("daq_hashpipe_pid"), "hashpipe").unwrap();
    assert_eq!(hpio::active_run(daq.path(), IDLE).unwrap(), None);
}

#[test]
fn a_recently_written_file_is_an_active_run_bare_or_in_a_module() {
    for module in [Some(2), None] {
        let daq = Daq::new();
        let old = daq.run(module, 1_721_882_046);
        let f = old.file(Img16, 2, 0);
        append(&f, &synthetic_frames(Img16, 1));
        let why = hpio::active_run(daq.path(), IDLE).unwrap().unwrap();
        assert!(
            why.contains(f.file_name().unwrap().to_str().unwrap()),
            "{why}"
        );
    }
}

#[test]
fn housekeeping_and_other_files_do_not_make_a_run_active() {
    let daq = Daq::new();
    let run = daq.run(Some(1), 1_721_882_046);
    fs::write(run.dir.join("hk.pff"), "hk").unwrap();
    fs::write(run.dir.join("notes.txt"), "notes").unwrap();
    fs::write(daq.path().join("fresh.pff"), "not in a run").unwrap();
    assert_eq!(hpio::active_run(daq.path(), IDLE).unwrap(), None);
}

#[test]
fn a_missing_data_directory_is_an_error() {
    let daq = Daq::new();
    let err = hpio::active_run(&daq.path().join("gone"), IDLE).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
