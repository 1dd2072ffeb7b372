//! What the config-loader targets share: the loaders take a path, so each
//! input is written to one file in a private directory first (in /dev/shm
//! where there is one, so the disk is not worn by millions of writes).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `data` as the file `name` in this process's scratch directory.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("daqdata-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory for the fuzz inputs");
        dir
    });
    let path = dir.join(name);
    std::fs::write(&path, data).expect("the fuzz input written to its scratch file");
    path
}

/// Loads `data` as the server config file `name` (its extension picks the
/// format) and checks what loads: it passed `validate`, every relative
/// path was made absolute, and loading the same text again gives the same
/// config.
pub fn check_server_config(name: &str, data: &[u8]) {
    use daqdata_server::Config;
    let path = scratch_file(name, data);
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
}
