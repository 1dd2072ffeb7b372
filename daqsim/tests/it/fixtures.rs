//! The fixtures: what they hold, and that the compiled-in copy is the same.
//! That the commands in fixtures/README.md regenerate them is `cli.rs`.

use daqsim::Fixtures;
use pff::{DataProduct, ModuleId};
use testdata::fixtures_dir;

#[test]
fn the_fixtures_cover_all_four_data_products() {
    let f = Fixtures::load(&fixtures_dir()).unwrap();
    assert_eq!(
        f.streams()
            .into_iter()
            .map(|(m, dp)| (m.get(), dp))
            .collect::<Vec<_>>(),
        [
            (1, DataProduct::Img16),
            (1, DataProduct::Ph256),
            (2, DataProduct::Img8),
            (2, DataProduct::Ph1024),
            (3, DataProduct::Ph256),
        ]
    );
    // data_config.json: integration_time_usec 1000.
    assert_eq!(
        f.cadence(ModuleId::new(1), DataProduct::Img16),
        Some(1000.0)
    );
    let ph = f.cadence(ModuleId::new(3), DataProduct::Ph256).unwrap();
    assert!(ph > 1.0 && ph < 100.0, "recorded pulse-height rate {ph}");
}

#[test]
fn the_embedded_fixtures_equal_the_fixtures_directory() {
    assert!(Fixtures::embedded() == Fixtures::load(&fixtures_dir()).unwrap());
}

#[test]
fn a_directory_without_pff_files_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = Fixtures::load(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn loading_a_lick_run_directory_keeps_only_whole_frames() {
    // fixtures/ always; the shared Lick directory, whose files end in torn
    // frames, when present.
    for dir in testdata::lick_dirs() {
        let f = Fixtures::load(&dir).unwrap();
        for (dp, module) in [(DataProduct::Img16, 1), (DataProduct::Ph256, 3)] {
            let sample = testdata::lick_samples(dp.name(), module)
                .into_iter()
                .find(|s| s.path.parent() == Some(dir.as_path()))
                .unwrap();
            assert_eq!(
                f.frame_count(module.into(), dp),
                sample.frames as usize,
                "{sample}"
            );
            let last = f
                .frame(module.into(), dp, sample.frames as usize - 1)
                .unwrap();
            let on_disk = pff::PffFile::open(&sample.path)
                .unwrap()
                .read_raw(sample.frames - 1)
                .unwrap();
            assert_eq!(last.as_bytes(), on_disk.as_bytes(), "{sample}");
        }
        assert_eq!(
            f.cadence(ModuleId::new(1), DataProduct::Img16),
            Some(1000.0)
        );
    }
}
