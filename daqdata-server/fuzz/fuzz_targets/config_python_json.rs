//! Feeds arbitrary text to the server's reading of the Python server's
//! `daq_data_server_config.json`, `Config::load` on a `.json` file (it
//! takes a path, so each input is written to one file in a private
//! temporary directory first).
//!
//! Beyond "never panics": what loads has passed `validate`, every relative
//! path in it was made absolute, and loading the same text again gives the
//! same config.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use daqdata_server::Config;
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("daqdata-fuzz-config-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("daq_data_server_config.json");
    std::fs::write(&path, data).unwrap();
    let Ok(config) = Config::load(&path) else {
        return;
    };
    assert!(
        config.validate().is_ok(),
        "a loaded config does not validate"
    );
    if let Some(p) = &config.init_hp_io_config {
        assert!(p.is_absolute(), "{} was left relative", p.display());
    }
    let again = Config::load(&path).expect("the same text loads twice");
    assert_eq!(format!("{config:?}"), format!("{again:?}"));
});
