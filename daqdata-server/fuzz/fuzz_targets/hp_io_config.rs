//! Feeds arbitrary text to `HpIoConfig::load`, the reader of the Python
//! project's `hp_io_config.json` (it takes a path, so each input is written
//! to one file in a private temporary directory first).
//!
//! Beyond "never panics": what loads was a JSON object, writes back as
//! JSON that loads again to the same settings, and converts to an
//! InitHpIo request.
#![no_main]

use daqdata_proto::daqdata::InitHpIoRequest;
use daqdata_proto::HpIoConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = daqdata_server_fuzz::scratch_file("hp_io_config.json", data);
    let Ok(config) = HpIoConfig::load(&path) else {
        return;
    };
    assert!(
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data).is_ok(),
        "loaded something that is not a JSON object"
    );
    let _ = InitHpIoRequest::from(&config);
    let written = serde_json::to_vec(&config).expect("a loaded config writes as JSON");
    std::fs::write(&path, &written).unwrap();
    let again = HpIoConfig::load(&path).expect("what was written loads again");
    // serde_json reads a float to within one unit in the last place.
    let (a, b) = (
        config.update_interval_seconds,
        again.update_interval_seconds,
    );
    assert!(
        (a - b).abs() <= a.abs() * 4.0 * f64::EPSILON,
        "{a} became {b}"
    );
    assert_eq!(
        (
            &config.data_dir,
            config.force,
            config.simulate_daq,
            &config.module_ids
        ),
        (
            &again.data_dir,
            again.force,
            again.simulate_daq,
            &again.module_ids
        )
    );
});
