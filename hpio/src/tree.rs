//! Where the frames are: the module and run directories of a data
//! directory, listed again only when they change.
//!
//! A DAQ node keeps every run it ever recorded, so a data directory may
//! hold thousands of finished runs. Each tick therefore only stats the few
//! directories that can bring news (the data directory, each module
//! directory, the newest run directory of each) and lists one again only
//! when its modification time changed or a notification says so.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pff::daq_tree::{is_image_file_name, is_run_dir_name, parse_module_dir};
use pff::{ModuleId, ModuleProduct, PffName, RunName, StartTime};

use crate::warn::{Cause, Warnings};

/// Directory times come from a coarse kernel clock (a few milliseconds):
/// an entry added in the same clock step as a listing leaves the time
/// unchanged. A directory changed this recently is listed again next time.
const SETTLE: Duration = Duration::from_millis(50);

/// A directory's modification time when it was last listed.
#[derive(Default)]
struct Stamp {
    /// Kept open so that each check is an `fstat`, a third of the cost of
    /// a `stat` by path. A directory replaced under the same name is found
    /// when its parent is listed again, which resets this stamp.
    dir: Option<fs::File>,
    mtime: Option<SystemTime>,
    settled: bool,
}

impl Stamp {
    /// Stats `dir` by its open handle; true if it must be listed (again).
    fn stale(&mut self, dir: &Path, forced: bool) -> io::Result<bool> {
        let meta = match &self.dir {
            Some(open) => open.metadata()?,
            None => {
                let open = fs::File::open(dir)?;
                let meta = open.metadata()?;
                self.dir = Some(open);
                meta
            }
        };
        if meta.nlink() == 0 {
            self.dir = None;
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "directory was removed",
            ));
        }
        self.judge(&meta, forced)
    }

    /// Like [`Stamp::stale`], by path: for the data directory, which has no
    /// parent here to notice that it was replaced.
    fn stale_by_path(&mut self, dir: &Path, forced: bool) -> io::Result<bool> {
        self.judge(&fs::metadata(dir)?, forced)
    }

    fn judge(&mut self, meta: &fs::Metadata, forced: bool) -> io::Result<bool> {
        let mtime = meta.modified()?;
        let stale = forced || !self.settled || self.mtime != Some(mtime);
        if stale {
            self.mtime = Some(mtime);
            self.settled = pff::time::now()
                .duration_since(mtime)
                .is_ok_and(|age| age > SETTLE);
        }
        Ok(stale)
    }

    /// Forgets the open directory and its time: the next check opens the
    /// path again and lists it.
    fn reset(&mut self) {
        *self = Stamp::default();
    }
}

/// A PFF file of a run directory, as named.
#[derive(Clone, Debug)]
pub(crate) struct PffEntry {
    pub path: PathBuf,
    /// The file name alone, shared by every event from this file.
    pub file_name: Arc<str>,
    pub name: PffName,
}

/// The newest run directory of a location, and its PFF files.
struct RunDir {
    path: PathBuf,
    start: StartTime,
    stamp: Stamp,
    files: Vec<PffEntry>,
}

impl RunDir {
    fn new(path: PathBuf, start: StartTime) -> Self {
        RunDir {
            path,
            start,
            stamp: Stamp::default(),
            files: Vec::new(),
        }
    }
}

/// A module directory (`module_M`): its runs, of which only the newest counts.
#[derive(Default)]
struct ModuleDir {
    stamp: Stamp,
    newest: Option<RunDir>,
}

/// Asks the watcher to follow or forget a directory.
pub(crate) trait Watches {
    fn watch(&mut self, dir: &Path);
    fn unwatch(&mut self, dir: &Path);
}

/// The cached shape of a data directory.
pub(crate) struct Tree {
    data_dir: PathBuf,
    root: Stamp,
    /// The newest bare run, `DATA_DIR/RUN.pffd`.
    bare: Option<RunDir>,
    modules: BTreeMap<PathBuf, ModuleDir>,
    /// Modules to follow; empty = all.
    filter: Vec<ModuleId>,
}

impl Tree {
    pub(crate) fn new(data_dir: PathBuf, filter: Vec<ModuleId>) -> Self {
        Tree {
            data_dir,
            root: Stamp::default(),
            bare: None,
            modules: BTreeMap::new(),
            filter,
        }
    }

    /// Lists again what changed since the last call (and every directory in
    /// `forced`, named by a notification). True if the set of PFF files in
    /// newest runs may have changed. Run directories listed again are added
    /// to `relisted`: a file in them may have been replaced.
    pub(crate) fn refresh(
        &mut self,
        forced: &dyn Fn(&Path) -> bool,
        watches: &mut dyn Watches,
        warnings: &mut Warnings,
        relisted: &mut Vec<PathBuf>,
    ) -> bool {
        let mut changed = false;
        match self
            .root
            .stale_by_path(&self.data_dir, forced(&self.data_dir))
        {
            Ok(false) => {}
            Ok(true) => match list_root(&self.data_dir) {
                Ok((module_dirs, newest_bare)) => {
                    warnings.recovered(&self.data_dir, Cause::Unlistable);
                    watches.watch(&self.data_dir);
                    // A child may have been replaced under the same name.
                    for module in self.modules.values_mut() {
                        module.stamp.reset();
                    }
                    changed |= self.adopt_modules(module_dirs, watches);
                    changed |= replace_run(&mut self.bare, newest_bare, watches);
                }
                Err(e) => changed |= self.root_failed(e, watches, warnings),
            },
            Err(e) => changed |= self.root_failed(e, watches, warnings),
        }

        let mut vanished = Vec::new();
        for (dir, module) in &mut self.modules {
            match module.stamp.stale(dir, forced(dir)) {
                Ok(false) => {}
                Ok(true) => match newest_run(dir) {
                    Ok(newest) => {
                        warnings.recovered(dir, Cause::Unlistable);
                        changed |= replace_run(&mut module.newest, newest, watches);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => vanished.push(dir.clone()),
                    Err(e) => warnings.once(
                        dir,
                        Cause::Unlistable,
                        format_args!("cannot list module directory: {e}"),
                    ),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => vanished.push(dir.clone()),
                Err(e) => warnings.once(
                    dir,
                    Cause::Unlistable,
                    format_args!("cannot stat module directory: {e}"),
                ),
            }
        }
        for dir in vanished {
            tracing::info!(dir = %dir.display(), "module directory vanished");
            if let Some(mut module) = self.modules.remove(&dir) {
                replace_run(&mut module.newest, None, watches);
            }
            watches.unwatch(&dir);
            changed = true;
        }

        let runs = self
            .bare
            .iter_mut()
            .chain(self.modules.values_mut().filter_map(|m| m.newest.as_mut()));
        for run in runs {
            let (files_changed, listed) = refresh_run(run, forced(&run.path), warnings);
            changed |= files_changed;
            if listed {
                relisted.push(run.path.clone());
            }
        }
        changed
    }

    /// The data directory cannot be listed; if it is gone, so is everything
    /// in it. True if that changed what is followed.
    fn root_failed(
        &mut self,
        e: io::Error,
        watches: &mut dyn Watches,
        warnings: &mut Warnings,
    ) -> bool {
        let cause = if e.kind() == io::ErrorKind::NotFound {
            Cause::Vanished
        } else {
            Cause::Unlistable
        };
        warnings.once(
            &self.data_dir,
            cause,
            format_args!("cannot list the data directory: {e}"),
        );
        self.root = Stamp::default();
        cause == Cause::Vanished
            && (self.adopt_modules(Vec::new(), watches)
                | replace_run(&mut self.bare, None, watches))
    }

    /// Follows the module directories now present, forgets the others.
    fn adopt_modules(&mut self, dirs: Vec<PathBuf>, watches: &mut dyn Watches) -> bool {
        let mut changed = false;
        let gone: Vec<PathBuf> = self
            .modules
            .keys()
            .filter(|d| !dirs.contains(d))
            .cloned()
            .collect();
        for dir in gone {
            if let Some(mut module) = self.modules.remove(&dir) {
                replace_run(&mut module.newest, None, watches);
            }
            watches.unwatch(&dir);
            changed = true;
        }
        for dir in dirs {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.modules.entry(dir) {
                tracing::debug!(dir = %slot.key().display(), "following module directory");
                watches.watch(slot.key());
                slot.insert(ModuleDir::default());
                changed = true;
            }
        }
        changed
    }

    /// How many PFF files the followed runs hold, as last listed.
    #[cfg(test)]
    pub(crate) fn listed_files(&self) -> usize {
        let runs = self
            .bare
            .iter()
            .chain(self.modules.values().filter_map(|m| m.newest.as_ref()));
        runs.map(|r| r.files.len()).sum()
    }

    /// The file each (module, data product) should follow: the highest
    /// seqno in that module's newest run.
    pub(crate) fn active_files(&self) -> HashMap<ModuleProduct, &PffEntry> {
        let runs: Vec<&RunDir> = self
            .bare
            .iter()
            .chain(self.modules.values().filter_map(|m| m.newest.as_ref()))
            .collect();
        let wanted = |m: ModuleId| self.filter.is_empty() || self.filter.contains(&m);
        // A module may record into a module directory and a bare run at
        // once; only its newest run counts.
        let mut newest: HashMap<ModuleId, &StartTime> = HashMap::new();
        for run in &runs {
            for f in run.files.iter().filter(|f| wanted(f.name.module)) {
                let start = newest.entry(f.name.module).or_insert(&run.start);
                if run.start > **start {
                    *start = &run.start;
                }
            }
        }
        let mut active: HashMap<ModuleProduct, &PffEntry> = HashMap::new();
        for run in &runs {
            for f in &run.files {
                if newest.get(&f.name.module) != Some(&&run.start) {
                    continue;
                }
                let key = ModuleProduct::new(f.name.module, f.name.dp);
                let slot = active.entry(key).or_insert(f);
                if (f.name.seqno, &f.file_name) > (slot.name.seqno, &slot.file_name) {
                    *slot = f;
                }
            }
        }
        active
    }
}

/// Lists a run directory again if it changed; whether its files changed,
/// and whether it was listed.
fn refresh_run(run: &mut RunDir, forced: bool, warnings: &mut Warnings) -> (bool, bool) {
    let listed = run.stamp.stale(&run.path, forced).and_then(|stale| {
        if stale {
            list_pff(&run.path).map(Some)
        } else {
            Ok(None)
        }
    });
    match listed {
        Ok(None) => (false, false),
        Ok(Some(files)) => {
            warnings.recovered(&run.path, Cause::Unlistable);
            let same = files.len() == run.files.len()
                && files.iter().zip(&run.files).all(|(a, b)| a.path == b.path);
            run.files = files;
            (!same, true)
        }
        Err(e) => {
            let cause = if e.kind() == io::ErrorKind::NotFound {
                Cause::Vanished
            } else {
                Cause::Unlistable
            };
            warnings.once(
                &run.path,
                cause,
                format_args!("cannot list run directory: {e}"),
            );
            run.stamp = Stamp::default();
            let had = !run.files.is_empty();
            if cause == Cause::Vanished {
                run.files.clear();
            }
            (had && cause == Cause::Vanished, false)
        }
    }
}

/// Makes `newest` the followed run of a location; true if that changed.
fn replace_run(
    slot: &mut Option<RunDir>,
    newest: Option<(PathBuf, StartTime)>,
    watches: &mut dyn Watches,
) -> bool {
    if slot.as_ref().map(|r| &r.path) == newest.as_ref().map(|(p, _)| p) {
        // The same name, but perhaps a new directory.
        if let Some(run) = slot {
            run.stamp.reset();
        }
        return false;
    }
    if let Some(old) = slot.take() {
        watches.unwatch(&old.path);
    }
    if let Some((path, start)) = newest {
        tracing::info!(run = %path.display(), "following run");
        watches.watch(&path);
        *slot = Some(RunDir::new(path, start));
    }
    true
}

fn is_dir(entry: &fs::DirEntry) -> bool {
    match entry.file_type() {
        Ok(t) if t.is_symlink() => entry.path().is_dir(),
        Ok(t) => t.is_dir(),
        Err(_) => false,
    }
}

/// The module directories of a data directory, and its newest bare run.
#[allow(clippy::type_complexity)]
fn list_root(dir: &Path) -> io::Result<(Vec<PathBuf>, Option<(PathBuf, StartTime)>)> {
    let mut modules = Vec::new();
    let mut newest: Option<(PathBuf, StartTime)> = None;
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if parse_module_dir(name).is_some() && is_dir(&entry) {
            modules.push(entry.path());
        } else if is_run_dir_name(name) && is_dir(&entry) {
            consider_run(&mut newest, name, entry.path());
        }
    }
    Ok((modules, newest))
}

/// The newest run directory in `dir`, by the start time in its name.
fn newest_run(dir: &Path) -> io::Result<Option<(PathBuf, StartTime)>> {
    let mut newest = None;
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_run_dir_name(name) && is_dir(&entry) {
            consider_run(&mut newest, name, entry.path());
        }
    }
    Ok(newest)
}

fn consider_run(newest: &mut Option<(PathBuf, StartTime)>, name: &str, path: PathBuf) {
    let Ok(run) = RunName::parse(name) else {
        tracing::debug!(dir = %path.display(), "not a run directory name; ignored");
        return;
    };
    // Equal start times: the later name wins, so the choice is stable.
    let newer = newest
        .as_ref()
        .is_none_or(|(p, s)| (&run.start, path.as_path()) > (s, p.as_path()));
    if newer {
        *newest = Some((path, run.start));
    }
}

/// The PFF files of a run directory; `hk.pff` and other names are ignored.
/// The PFF files of a run directory that can be active: the newest
/// (highest seqno) of each (module, data product). Older files of a long
/// run, which Hashpipe has closed, are not kept, so the tracker's memory
/// does not grow with the number of files a run has rotated through.
fn list_pff(dir: &Path) -> io::Result<Vec<PffEntry>> {
    let mut newest: HashMap<ModuleProduct, PffEntry> = HashMap::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_image_file_name(name) {
            continue;
        }
        let Ok(parsed) = PffName::parse(name) else {
            continue;
        };
        let key = ModuleProduct::new(parsed.module, parsed.dp);
        if newest
            .get(&key)
            .is_some_and(|f| (f.name.seqno, &*f.file_name) >= (parsed.seqno, name))
        {
            continue;
        }
        newest.insert(
            key,
            PffEntry {
                path: entry.path(),
                file_name: Arc::from(name),
                name: parsed,
            },
        );
    }
    let mut files: Vec<PffEntry> = newest.into_values().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pff::DataProduct;

    #[test]
    fn a_run_keeps_only_its_newest_file_of_each_product() {
        let dir = tempfile::tempdir().unwrap();
        let name = |dp: &str, module: u32, seqno: u32| {
            format!("start_2024-07-25T04_34_46Z.dp_{dp}.bpp_2.module_{module}.seqno_{seqno}.pff")
        };
        for seqno in 0..50 {
            fs::write(dir.path().join(name("img16", 1, seqno)), b"").unwrap();
        }
        fs::write(dir.path().join(name("ph256", 1, 0)), b"").unwrap();
        fs::write(dir.path().join(name("img16", 2, 3)), b"").unwrap();
        fs::write(dir.path().join("hk.pff"), b"").unwrap();
        let mut kept: Vec<String> = list_pff(dir.path())
            .unwrap()
            .iter()
            .map(|f| f.file_name.to_string())
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                name("img16", 1, 49),
                name("img16", 2, 3),
                name("ph256", 1, 0)
            ]
        );
    }

    #[test]
    fn the_newest_run_is_chosen_by_its_start_time_not_its_name() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "obs_A.start_2025-01-01T00:00:00Z.runtype_sci.pffd",
            "obs_B.start_2024-01-01T00_00_00Z.runtype_sci.pffd",
            "obs_C.start_2023-06-01T00:00:00Z.runtype_sci.pffd",
            "not_a_run.pffd",
        ] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        // A file is not a run directory, whatever its name.
        fs::write(
            dir.path()
                .join("obs_Z.start_2030-01-01T00:00:00Z.runtype_sci.pffd"),
            "",
        )
        .unwrap();
        let (path, start) = newest_run(dir.path()).unwrap().unwrap();
        assert!(path.ends_with("obs_A.start_2025-01-01T00:00:00Z.runtype_sci.pffd"));
        assert_eq!(start.as_str(), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn only_pff_file_names_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "start_2024-07-25T04:34:46Z.dp_img16.bpp_2.module_1.seqno_0.pff",
            "hk.pff",
            "recording_ended",
            "start_2024-07-25T04:34:46Z.dp_img32.bpp_2.module_1.seqno_0.pff",
        ] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let files = list_pff(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name.dp, DataProduct::Img16);
    }

    #[test]
    fn a_directory_is_listed_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let old = pff::time::now() - Duration::from_secs(10);
        fs::File::open(dir.path())
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut stamp = Stamp::default();
        assert!(stamp.stale(dir.path(), false).unwrap());
        assert!(!stamp.stale(dir.path(), false).unwrap());
        assert!(stamp.stale(dir.path(), true).unwrap());
        fs::write(dir.path().join("new"), "").unwrap();
        assert!(stamp.stale(dir.path(), false).unwrap());
        // Changed within the kernel clock's step: looked at again.
        assert!(stamp.stale(dir.path(), false).unwrap());
    }
}
