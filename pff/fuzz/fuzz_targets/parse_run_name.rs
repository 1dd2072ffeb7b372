//! Feeds arbitrary text to the run-directory and module-directory name
//! parsers.
//!
//! Beyond "never panics": a run name that parses writes back to exactly the
//! text it was read from and parses again to the same value; a module
//! directory's id names a directory that parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pff::daq_tree::{is_run_dir_name, module_dir_name, parse_module_dir};
use pff::RunName;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(run) = RunName::parse(text) {
        assert!(is_run_dir_name(text));
        assert_eq!(
            run.to_string(),
            text,
            "a parsed run name does not write back"
        );
        assert_eq!(RunName::parse(&run.to_string()).ok().as_ref(), Some(&run));
    }
    if let Some(module) = parse_module_dir(text) {
        assert_eq!(parse_module_dir(&module_dir_name(module)), Some(module));
    }
});
