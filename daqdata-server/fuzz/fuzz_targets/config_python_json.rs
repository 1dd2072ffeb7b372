//! Feeds arbitrary text to the server's reading of the Python server's
//! `daq_data_server_config.json`, `Config::load` on a `.json` file (it
//! takes a path, so each input is written to one file in a private
//! temporary directory first).
//!
//! Beyond "never panics": what loads has passed `validate`, every relative
//! path in it was made absolute, and loading the same text again gives the
//! same config.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    daqdata_server_fuzz::check_server_config("daq_data_server_config.json", data);
});
