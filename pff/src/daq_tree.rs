//! The names in a DAQ node's data directory (SPEC §4), as Hashpipe and the
//! PANOSETI start and stop scripts make them:
//!
//! ```text
//! DATA_DIR/daq_hashpipe_pid          the running Hashpipe's process id
//! DATA_DIR/daq_run_name              the current run directory's name
//! DATA_DIR/module_M/RUN.pffd/        one run of module M (RUN: RunName)
//!     start_....pff                  image files (PffName)
//!     hk.pff                         housekeeping, not images
//!     recording_ended                written when the run stops
//! DATA_DIR/RUN.pffd/                 a run outside any module directory
//! ```
//!
//! Readers and writers of such a tree (`hpio`, `daqsim`) take every name
//! from here.

use std::path::Path;

use crate::ModuleId;

/// Hashpipe's start script writes its process id here, in `DATA_DIR`.
pub const HASHPIPE_PID_FILE: &str = "daq_hashpipe_pid";

/// The start script writes the current run directory's name here, in
/// `DATA_DIR`.
pub const RUN_NAME_FILE: &str = "daq_run_name";

/// The stop script leaves this file in each run directory when the run
/// stops.
pub const RECORDING_ENDED: &str = "recording_ended";

/// Housekeeping, in a run directory: a `.pff` file that holds no images.
pub const HOUSEKEEPING_FILE: &str = "hk.pff";

/// A module directory's name is this and the module id.
const MODULE_DIR_PREFIX: &str = "module_";

/// Every run directory's name ends so (`obs_NAME.start_TIME.runtype_TYPE.pffd`).
pub(crate) const RUN_DIR_SUFFIX: &str = ".pffd";

/// Every PFF file's name ends so.
pub(crate) const PFF_SUFFIX: &str = ".pff";

/// The directory name of `module`'s runs: `module_224`.
pub fn module_dir_name(module: ModuleId) -> String {
    format!("{MODULE_DIR_PREFIX}{module}")
}

/// The module of a module directory's name (`module_224` -> 224), or `None`
/// for any other name. The id is a decimal `u32` as Rust parses one, so
/// `module_007` is module 7, while `module_`, `module_-1` and ids too large
/// for a `u32` are no module directories.
pub fn parse_module_dir(name: &str) -> Option<ModuleId> {
    name.strip_prefix(MODULE_DIR_PREFIX)?.parse().ok()
}

/// Whether `name` is a run directory's name by its ending; [`crate::RunName`]
/// says whether the rest is well formed. A file may have such a name too:
/// see [`is_run_dir`].
pub fn is_run_dir_name(name: &str) -> bool {
    name.ends_with(RUN_DIR_SUFFIX)
}

/// Whether `path` is a run directory: a directory (or a link to one) whose
/// name ends in `.pffd`.
pub fn is_run_dir(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(is_run_dir_name)
        && path.is_dir()
}

/// Whether a file of a run directory may hold images: a `.pff` name other
/// than [`HOUSEKEEPING_FILE`]. [`crate::PffName`] says whether the rest of
/// the name is well formed.
pub fn is_image_file_name(name: &str) -> bool {
    name.ends_with(PFF_SUFFIX) && name != HOUSEKEEPING_FILE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_directory_names_go_both_ways() {
        for id in [0, 1, 224, u32::MAX] {
            let id = ModuleId::new(id);
            assert_eq!(parse_module_dir(&module_dir_name(id)), Some(id));
        }
        assert_eq!(module_dir_name(ModuleId::new(3)), "module_3");
        assert_eq!(parse_module_dir("module_007"), Some(ModuleId::new(7)));
    }

    #[test]
    fn hostile_module_directory_names_are_no_modules() {
        for name in [
            "module_",
            "module_-1",
            "module_99999999999",
            "module_4294967296",
            "module_٣",
            "module_3é",
            "module_ 3",
            "module_3 ",
            "module_0x10",
            "Module_3",
            "module3",
            "modules_3",
            "xmodule_3",
            "",
            "module_3/..",
        ] {
            assert_eq!(parse_module_dir(name), None, "{name:?}");
        }
    }

    #[test]
    fn run_directories_are_directories_named_pffd() {
        assert!(is_run_dir_name(
            "obs_Lick.start_2024-07-25T04:34:06Z.runtype_sci-data.pffd"
        ));
        assert!(is_run_dir_name("x.pffd"));
        for name in ["x.pff", "x.pffd.tmp", "pffd", "x.PFFD", "ünïcödé"] {
            assert!(!is_run_dir_name(name), "{name:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x.pffd")).unwrap();
        std::fs::write(dir.path().join("file.pffd"), "").unwrap();
        std::fs::create_dir(dir.path().join("not_a_run")).unwrap();
        assert!(is_run_dir(&dir.path().join("x.pffd")));
        assert!(!is_run_dir(&dir.path().join("file.pffd")));
        assert!(!is_run_dir(&dir.path().join("not_a_run")));
        assert!(!is_run_dir(&dir.path().join("missing.pffd")));
    }

    #[test]
    fn housekeeping_and_other_names_hold_no_images() {
        assert!(is_image_file_name(
            "start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_0.pff"
        ));
        for name in [
            HOUSEKEEPING_FILE,
            RECORDING_ENDED,
            "x.pffd",
            "x.pff.tmp",
            "",
        ] {
            assert!(!is_image_file_name(name), "{name:?}");
        }
    }
}
