//! Feeds arbitrary text to the server's TOML config loader,
//! `Config::load` on a `.toml` file (it takes a path, so each input is
//! written to one file in a private temporary directory first).
//!
//! Beyond "never panics": what loads has passed `validate`, every relative
//! path in it was made absolute, and loading the same text again gives the
//! same config.
#![no_main]

use daqdata_server::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = daqdata_server_fuzz::scratch_file("server.toml", data);
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
