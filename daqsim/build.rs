//! Lists the repository's `fixtures/` for `Fixtures::embedded`, so the
//! frames are compiled in and a server started from any directory can
//! simulate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let fixtures = manifest.join("../fixtures");
    println!("cargo:rerun-if-changed={}", fixtures.display());
    let mut files = Vec::new();
    collect(&fixtures, &fixtures, &mut files);
    files.sort();
    let mut code = String::from("pub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        let _ = writeln!(code, "    ({rel:?}, include_bytes!({abs:?})),");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("writing {}: {e}", out.display());
    }
}

/// Every `*.pff` and `data_config.json` under `dir`, as (path relative to
/// `root`, absolute path).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".pff") || name == "data_config.json" {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let abs = path.canonicalize().unwrap_or(path.clone());
            out.push((
                rel.to_string_lossy().into_owned(),
                abs.to_string_lossy().into_owned(),
            ));
        }
    }
}
