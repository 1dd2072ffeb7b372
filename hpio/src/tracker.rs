//! The tracker thread: wake on a write or a tick, read what changed, emit.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inotify::EventMask;
use pff::{ModuleId, ModuleProduct};

use crate::demand::Demand;
use crate::follow::Followed;
use crate::tree::Tree;
use crate::wake::{Notice, Wake, Woken};
use crate::warn::{Cause, Warnings};
use crate::Error;

/// While every directory is watched, directory changes are notified; ticks
/// still stat the directories this often, for file systems (NFS) whose
/// notifications miss changes made by other machines. Likewise a file
/// notified within this time is known to be notified, and ticks leave it
/// alone: checking it on each tick too only doubled the work.
const RESCAN: Duration = Duration::from_millis(100);

/// What to follow and how often to look.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// The DAQ data directory (`module_M/RUN.pffd/*.pff` or `RUN.pffd/*.pff`).
    pub data_dir: PathBuf,
    /// How often every followed file and directory is checked even without
    /// a notification; down to 1 ms. Polling mode sees writes only then.
    pub interval: Duration,
    /// Modules to follow (by the module in the file name); empty = all.
    pub modules: Vec<ModuleId>,
    /// Never use file-system notifications, only the interval: for file
    /// systems that do not deliver them (NFS), and to compare both modes.
    /// Binaries set it from the environment variable `HPIO_POLL_ONLY`.
    pub poll_only: bool,
    /// Read frames only while someone holds the tracker's [`Demand`]
    /// ([`Tracker::demand`]); between holds, nothing is read or emitted.
    pub on_demand: bool,
    /// Counts the tracker thread's wake-ups (to look at files, or on a
    /// notification), for whoever watches its cost; share one counter
    /// across trackers to keep a running total.
    pub wakeups: Arc<AtomicU64>,
}

impl TrackerConfig {
    /// Follows every module of `data_dir`, checking every 100 ms and on
    /// each notified write.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        TrackerConfig {
            data_dir: data_dir.into(),
            interval: Duration::from_millis(100),
            modules: Vec::new(),
            poll_only: false,
            on_demand: false,
            wakeups: Arc::default(),
        }
    }
}

/// A new newest complete frame of one (module, data product).
#[derive(Clone, Debug)]
pub struct FrameEvent {
    /// The module, from the file name.
    pub module: ModuleId,
    /// The data product, from the file name.
    pub dp: pff::DataProduct,
    /// The PFF file name, without its directory.
    pub file: Arc<str>,
    /// 0-based index of the frame in that file.
    pub frame_index: u64,
    /// Rises by one with each event of this (module, data product), across
    /// files and runs, so a consumer can tell new from seen.
    pub seq: u64,
    /// The whole frame as written, checked to be complete and aligned.
    pub frame: pff::RawFrame,
    /// When the tracker read it, to measure how fresh it is.
    pub read_at: Instant,
}

impl FrameEvent {
    /// Which module's which data product this frame is of.
    pub fn module_product(&self) -> ModuleProduct {
        ModuleProduct {
            module: self.module,
            dp: self.dp,
        }
    }
}

/// Follows a data directory on its own thread until stopped or dropped.
pub struct Tracker {
    /// Written to (or closed) to stop the thread.
    stop: UnixStream,
    thread: Option<JoinHandle<()>>,
    demand: Demand,
}

impl Tracker {
    /// Starts following `config.data_dir` on a thread named `hpio-tracker`
    /// that hands each new newest complete frame to `sink`. At start it
    /// hands on the newest complete frame of every (module, data product)
    /// of the newest runs.
    ///
    /// The sink runs on the tracker thread, so it should be quick (publish
    /// and return); a slow sink delays every frame after it.
    ///
    /// Fails at once if the data directory is missing or cannot be listed.
    pub fn spawn(
        config: TrackerConfig,
        sink: impl FnMut(FrameEvent) + Send + 'static,
    ) -> Result<Tracker, Error> {
        Error::check_data_dir(&config.data_dir)?;
        let path = config.data_dir.clone();
        let thread_error = |source| Error::Thread {
            path: path.clone(),
            source,
        };
        let (stop, stop_rx) = crate::wake::stop_pair().map_err(thread_error)?;
        let (demand, demand_rx) = crate::demand::pair().map_err(thread_error)?;
        let wanted = config.on_demand.then(|| demand.clone());
        let thread = std::thread::Builder::new()
            .name("hpio-tracker".into())
            .spawn(move || {
                let _span =
                    tracing::info_span!("tracker", data_dir = %config.data_dir.display()).entered();
                let wake = Wake::new(stop_rx, demand_rx, !config.poll_only, config.interval);
                TrackerThread::new(config, wake, wanted, sink).run();
            })
            .map_err(thread_error)?;
        Ok(Tracker {
            stop,
            thread: Some(thread),
            demand,
        })
    }

    /// The handle that wakes an on-demand tracker
    /// ([`TrackerConfig::on_demand`]); of no effect otherwise.
    pub fn demand(&self) -> Demand {
        self.demand.clone()
    }

    /// Stops the thread and waits for it; returns within about one check
    /// of the files, well under the interval.
    pub fn stop(mut self) {
        // Drop does the same, so stopping is also what dropping a Tracker
        // means; this only says it where a caller wants it said.
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // The thread sees end-of-stream and returns. (A shutdown, not a
        // write: if the thread is already gone, it cannot raise SIGPIPE.)
        let _ = self.stop.shutdown(std::net::Shutdown::Write);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the tracker thread panicked");
            }
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The state of the tracker thread: the tree, the file followed for each
/// (module, data product), and what notifications marked for a look.
struct TrackerThread<S> {
    interval: Duration,
    tree: Tree,
    wake: Wake,
    followed: HashMap<ModuleProduct, Followed>,
    /// Name of each followed file, to route notifications.
    by_name: HashMap<OsString, ModuleProduct>,
    /// When directories are next stat'ed on a tick, while notified.
    next_rescan: Instant,
    seq: HashMap<ModuleProduct, u64>,
    warnings: Warnings,
    sink: S,
    /// For an on-demand tracker: frames are read only while it is held.
    wanted: Option<Demand>,
    /// Filled from notifications between checks.
    marked: Marked,
    wakeups: Arc<AtomicU64>,
}

/// What notifications marked for a look, gathered between checks.
#[derive(Default)]
struct Marked {
    /// The kernel dropped notifications: look at everything.
    overflowed: bool,
    /// Followed files that were written (or renamed, removed).
    files: Vec<ModuleProduct>,
    /// Directories to list again.
    dirs: HashSet<PathBuf>,
}

impl<S: FnMut(FrameEvent)> TrackerThread<S> {
    fn new(config: TrackerConfig, wake: Wake, wanted: Option<Demand>, sink: S) -> Self {
        TrackerThread {
            wakeups: config.wakeups.clone(),
            interval: config.interval.max(Duration::from_micros(100)),
            tree: Tree::new(config.data_dir, config.modules),
            wake,
            followed: HashMap::new(),
            by_name: HashMap::new(),
            next_rescan: Instant::now(),
            seq: HashMap::new(),
            warnings: Warnings::default(),
            sink,
            wanted,
            marked: Marked::default(),
        }
    }

    fn run(mut self) {
        let mut next_tick = Instant::now();
        let mut dormant = false;
        loop {
            if self.wanted.as_ref().is_some_and(|d| !d.is_held()) {
                // No one wants frames: read nothing, not even notifications
                // (the kernel keeps them, or says it dropped some).
                dormant = true;
                let woken = self.wake.wait(RESCAN, false);
                self.wakeups.fetch_add(1, Ordering::Relaxed);
                if woken == Woken::Stop {
                    return;
                }
                continue;
            }
            if std::mem::take(&mut dormant) {
                // wake_up just looked at everything. (A tick at once
                // instead would look again: a mutant of cost only.)
                self.wake_up();
                next_tick = Instant::now() + self.interval;
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick();
                // The `+=` and the guard below only keep the ticks on their
                // grid; a mutant of either (`-=`, or catching up in a burst
                // after a slow sink) changes when ticks come, not what they
                // find. A tick never due, or always due, is caught by the
                // wake-up count (an_idle_tracker_wakes_at_most_once_per_interval).
                next_tick += self.interval;
                if next_tick <= now {
                    // Fell behind (a slow sink or disk), or skipped ticks
                    // with nothing to do: do not catch up in a burst.
                    next_tick = now + self.interval;
                }
            }
            let wake_at = self.next_useful_tick(next_tick);
            let woken = self
                .wake
                .wait(wake_at.saturating_duration_since(Instant::now()), true);
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            match woken {
                Woken::Stop => return,
                Woken::Notified => {
                    self.on_notified();
                }
                Woken::Timeout => {}
            }
        }
    }

    /// The first tick, from `next_tick` on, that has something to do.
    /// While notifications cover every followed file and directory, that is
    /// the next safety-net look, not the next interval: a wake-up costs
    /// more than the checks it would make.
    fn next_useful_tick(&self, next_tick: Instant) -> Instant {
        if !self.wake.notifying() {
            return next_tick;
        }
        let mut due = self.next_rescan;
        for followed in self.followed.values() {
            match followed.notified_at {
                Some(at) => due = due.min(at + RESCAN),
                None => return next_tick,
            }
        }
        due.max(next_tick)
    }

    /// Everything, whether notified or not.
    fn tick(&mut self) {
        let now = Instant::now();
        // Polling, every tick lists what changed; notified, the rescan
        // comes every RESCAN. (Sooner, as with `now - RESCAN`, costs more
        // and finds the same.)
        if !self.wake.notifying() || now >= self.next_rescan {
            self.next_rescan = now + RESCAN;
            self.refresh_tree(&|_| false);
        }
        let mut keys = std::mem::take(&mut self.marked.files);
        keys.clear();
        // Ticks look at files that are not (or no longer) notified: idle
        // ones, and those on file systems without notifications. (`<=` for
        // `<` differs at one instant: equivalent.)
        for (key, followed) in &self.followed {
            let notified = followed
                .notified_at
                .is_some_and(|at| now.saturating_duration_since(at) < RESCAN);
            if !notified {
                keys.push(*key);
            }
        }
        for &key in &keys {
            self.check(key);
        }
        keys.clear();
        self.marked.files = keys;
    }

    /// Back from dormancy: whatever was written meanwhile is news. The
    /// notifications of that time are dropped unread (the kernel may have
    /// dropped some too); everything is looked at instead, and the newest
    /// frame of every file is handed on again, for the new watchers.
    fn wake_up(&mut self) {
        // Unread, these would be read later and find nothing new: skipping
        // them (a mutant of the loop), or rescanning at the next tick
        // (`- RESCAN` below), costs more and misses nothing.
        while self.wake.drain(|_| {}) > 0 {}
        self.marked.files.clear();
        self.marked.dirs.clear();
        self.marked.overflowed = false;
        self.next_rescan = Instant::now() + RESCAN;
        // Before the refresh, which checks files it starts to follow: those
        // are handed on there, the others after it, each once.
        for followed in self.followed.values_mut() {
            followed.forget_sent();
        }
        self.look_at_everything();
    }

    /// Lists every directory again and checks every followed file (its
    /// path too): for when notifications cannot be trusted to say what
    /// changed.
    fn look_at_everything(&mut self) {
        for followed in self.followed.values_mut() {
            followed.recheck_path();
        }
        self.refresh_tree(&|_| true);
        self.marked.files.clear();
        self.marked.dirs.clear();
        let keys: Vec<ModuleProduct> = self.followed.keys().copied().collect();
        for key in keys {
            self.check(key);
        }
    }

    /// Every write is a notification: take all that are pending, then
    /// check each file once.
    fn on_notified(&mut self) {
        let TrackerThread {
            wake,
            followed,
            by_name,
            marked,
            ..
        } = self;
        wake.drain(|notice| marked.mark(notice, followed, by_name));
        if std::mem::take(&mut self.marked.overflowed) {
            tracing::debug!("file-system notifications overflowed; looking at everything");
            self.look_at_everything();
            return;
        }
        if !self.marked.dirs.is_empty() {
            let dirty = std::mem::take(&mut self.marked.dirs);
            self.refresh_tree(&|dir| dirty.contains(dir));
        }
        let mut dirty = std::mem::take(&mut self.marked.files);
        dirty.sort_unstable();
        dirty.dedup();
        let now = Instant::now();
        for &key in &dirty {
            if let Some(followed) = self.followed.get_mut(&key) {
                followed.notified_at = Some(now);
            }
            self.check(key);
        }
        dirty.clear();
        self.marked.files = dirty;
    }

    fn refresh_tree(&mut self, forced: &dyn Fn(&Path) -> bool) {
        let mut relisted = Vec::new();
        let changed = self
            .tree
            .refresh(forced, &mut self.wake, &mut self.warnings, &mut relisted);
        for followed in self.followed.values_mut() {
            let dir = followed.entry.path.parent();
            if dir.is_some_and(|d| relisted.iter().any(|r| r == d)) {
                followed.recheck_path();
            }
        }
        for (dir, e) in std::mem::take(&mut self.wake.failed) {
            self.warnings.once(
                &dir,
                Cause::Unwatched,
                format_args!(
                    "cannot watch directory ({e}); it is polled every {:?}",
                    self.interval
                ),
            );
        }
        if changed {
            self.follow_active_files();
        }
    }

    /// Switches each (module, data product) to its active file.
    fn follow_active_files(&mut self) {
        let active: HashMap<ModuleProduct, _> = self
            .tree
            .active_files()
            .into_iter()
            .map(|(k, e)| (k, e.clone()))
            .collect();
        let gone: Vec<ModuleProduct> = self
            .followed
            .iter()
            .filter(|(k, f)| active.get(k).is_none_or(|e| e.path != f.entry.path))
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            // Hashpipe closes a full file before it opens the next: its
            // last frames may not have been seen yet.
            self.check(key);
            if let Some(old) = self.followed.remove(&key) {
                self.by_name
                    .remove(std::ffi::OsStr::new(&*old.entry.file_name));
                tracing::debug!(file = %old.entry.path.display(), "no longer the active file");
            }
        }
        let mut added = Vec::new();
        for (key, entry) in active {
            if self.followed.contains_key(&key) {
                continue;
            }
            tracing::info!(module = key.module.get(), dp = %key.dp, file = %entry.path.display(), "following file");
            self.by_name.insert(OsString::from(&*entry.file_name), key);
            self.followed.insert(key, Followed::new(entry));
            added.push(key);
        }
        // A new file's first frames are news at once.
        for key in added {
            self.check(key);
        }
    }

    fn check(&mut self, key: ModuleProduct) {
        let Some(followed) = self.followed.get_mut(&key) else {
            return;
        };
        let Some(read) = followed.check(&mut self.warnings) else {
            return;
        };
        let seq = self.seq.entry(key).or_insert(0);
        *seq += 1;
        (self.sink)(FrameEvent {
            module: key.module,
            dp: key.dp,
            file: read.file,
            frame_index: read.index,
            seq: *seq,
            frame: read.frame,
            read_at: Instant::now(),
        });
    }
}

impl Marked {
    /// Routes one notification: a write marks its file, anything else
    /// (create, delete, rename, attributes) marks its directory for
    /// listing. `by_name` finds the followed file a name belongs to.
    fn mark(
        &mut self,
        notice: Notice<'_>,
        followed: &mut HashMap<ModuleProduct, Followed>,
        by_name: &HashMap<OsString, ModuleProduct>,
    ) {
        let Some(dir) = notice.dir else {
            self.overflowed = true;
            return;
        };
        let file = notice.name.and_then(|name| {
            let key = *by_name.get(name)?;
            let in_dir = followed
                .get(&key)?
                .entry
                .path
                .parent()
                .is_some_and(|p| p.as_os_str() == dir.as_os_str());
            in_dir.then_some(key)
        });
        // (Distinct flags: `^` for `|` is the same mask.)
        if notice
            .mask
            .intersects(EventMask::MODIFY | EventMask::CLOSE_WRITE)
        {
            if let Some(key) = file {
                self.files.push(key);
            }
            return;
        }
        if let Some(key) = file {
            self.files.push(key);
            if let Some(f) = followed.get_mut(&key) {
                f.recheck_path();
            }
        }
        self.dirs.insert(dir.to_path_buf());
        match notice.name {
            // A new or removed entry: perhaps a module or run directory.
            Some(name) => {
                self.dirs.insert(dir.join(name));
            }
            // The watched directory itself went: its parent changed.
            None => {
                if let Some(parent) = dir.parent() {
                    self.dirs.insert(parent.to_path_buf());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pff::{DataProduct, PffName, RunName, StartTime};
    use std::cell::RefCell;
    use std::fs;
    use std::io::Write;
    use std::rc::Rc;

    /// The first frame of the repository's real recording of `dp`.
    fn real_frame(dp: DataProduct) -> Vec<u8> {
        let sample = testdata::fixture(dp.name(), 1);
        let file = pff::PffFile::open(&sample.path).unwrap();
        file.read_raw(0).unwrap().as_bytes().to_vec()
    }

    /// The file names of the frames a tracker handed on.
    type Seen = Rc<RefCell<Vec<Arc<str>>>>;

    /// A tracker stepped by hand on this thread (no thread of its own), what
    /// it hands on, and the other end of its stop channel, to keep open.
    fn tracker(
        data_dir: &Path,
        poll_only: bool,
    ) -> (TrackerThread<impl FnMut(FrameEvent)>, Seen, UnixStream) {
        let config = TrackerConfig {
            interval: Duration::from_millis(1),
            poll_only,
            ..TrackerConfig::new(data_dir)
        };
        let (stop, stop_rx) = crate::wake::stop_pair().unwrap();
        let (_demand, demand_rx) = crate::demand::pair().unwrap();
        let wake = Wake::new(stop_rx, demand_rx, !poll_only, config.interval);
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = {
            let seen = seen.clone();
            move |e: FrameEvent| seen.borrow_mut().push(e.file)
        };
        (TrackerThread::new(config, wake, None, sink), seen, stop)
    }

    /// Hashpipe at 1000 frames/s rotates every 10 s and a DAQ node runs for
    /// weeks: whatever the tracker keeps per file, per run directory or per
    /// watched directory must be there for the newest ones only, or its
    /// memory grows with every file it ever followed. (The soak's slow RSS
    /// rise is not this: the server's heap in use stayed at 8.6 MiB while
    /// the tracker rotated through 21,000 files.)
    #[test]
    fn rotating_through_many_files_and_runs_keeps_bookkeeping_for_the_newest_only() {
        let frames = [DataProduct::Img16, DataProduct::Ph256].map(|dp| (dp, real_frame(dp)));
        for poll_only in [false, true] {
            let daq = tempfile::tempdir().unwrap();
            let module_dir = daq.path().join("module_1");
            let (mut t, seen, _stop) = tracker(daq.path(), poll_only);
            let mut old_runs = Vec::new();
            for run_no in 0..4_i64 {
                let start = StartTime::from_unix(1_721_882_000 + 600 * run_no);
                let run = module_dir.join(RunName::new("TEST", start.clone(), "test").to_string());
                fs::create_dir_all(&run).unwrap();
                // As the soak's pruning does: a run that ended goes later.
                if old_runs.len() > 1 {
                    fs::remove_dir_all(old_runs.remove(0)).unwrap();
                }
                old_runs.push(run.clone());
                for seqno in 0..60_u32 {
                    let mut wanted = Vec::new();
                    for (dp, frame) in &frames {
                        let name =
                            PffName::new(start.clone(), *dp, ModuleId::new(1), seqno).to_string();
                        let mut f = fs::File::create(run.join(&name)).unwrap();
                        f.write_all(frame).unwrap();
                        wanted.push(name);
                        // Files two seqnos behind are deleted as they age.
                        if let Some(old) = seqno.checked_sub(2) {
                            let old =
                                PffName::new(start.clone(), *dp, ModuleId::new(1), old).to_string();
                            fs::remove_file(run.join(old)).unwrap();
                        }
                    }
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !wanted
                        .iter()
                        .all(|w| seen.borrow().iter().any(|s| **s == **w))
                    {
                        assert!(
                            Instant::now() < deadline,
                            "poll_only={poll_only}: {wanted:?} never handed on"
                        );
                        if !poll_only {
                            t.on_notified();
                        }
                        t.tick();
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    seen.borrow_mut().clear();

                    let what = format!("poll_only={poll_only}, run {run_no}, seqno {seqno}");
                    assert_eq!(t.followed.len(), 2, "{what}: followed files");
                    assert_eq!(t.by_name.len(), 2, "{what}: names routed");
                    assert_eq!(t.seq.len(), 2, "{what}: sequence counters");
                    assert_eq!(t.tree.listed_files(), 2, "{what}: files listed");
                    assert_eq!(t.warnings.count(), 0, "{what}: warnings remembered");
                    // The data directory, module_1 and the newest run.
                    let watched = if poll_only { 0 } else { 3 };
                    assert_eq!(t.wake.watched(), watched, "{what}: watches");
                    assert!(t.marked.dirs.is_empty(), "{what}: directories marked");
                }
            }
        }
    }

    /// A tracker with one followed img16 file in `module_1/RUN/` that it
    /// has handed on once.
    fn following_one_file(
        daq: &Path,
        poll_only: bool,
    ) -> (
        TrackerThread<impl FnMut(FrameEvent)>,
        Seen,
        UnixStream,
        PathBuf,
    ) {
        let file = first_run_file(daq, 0);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, real_frame(DataProduct::Img16)).unwrap();
        let (mut t, seen, stop) = tracker(daq, poll_only);
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.borrow().is_empty() {
            assert!(Instant::now() < deadline, "the file was never handed on");
            if !poll_only {
                t.on_notified();
            }
            t.tick();
            std::thread::sleep(Duration::from_millis(1));
        }
        seen.borrow_mut().clear();
        (t, seen, stop, file)
    }

    /// While notifications cover every followed file, the tracker sleeps
    /// until the next look it owes (a file's safety-net look, or the
    /// rescan), never before the interval's tick; anything notifications do
    /// not cover (a file not notified yet, polling)
    /// brings back the interval.
    #[test]
    fn a_notified_tracker_sleeps_until_the_next_look_it_owes() {
        let daq = tempfile::tempdir().unwrap();
        let (mut t, _seen, _stop, _file) = following_one_file(daq.path(), false);
        let at = Instant::now();
        let next_tick = at + Duration::from_millis(1);

        for f in t.followed.values_mut() {
            f.notified_at = None;
        }
        assert_eq!(
            t.next_useful_tick(next_tick),
            next_tick,
            "a file never notified"
        );

        for f in t.followed.values_mut() {
            f.notified_at = Some(at);
        }
        t.next_rescan = at + RESCAN * 2;
        assert_eq!(
            t.next_useful_tick(next_tick),
            at + RESCAN,
            "the file's look"
        );
        t.next_rescan = at + RESCAN / 2;
        assert_eq!(t.next_useful_tick(next_tick), at + RESCAN / 2, "the rescan");
        let late_tick = at + RESCAN * 3;
        assert_eq!(
            t.next_useful_tick(late_tick),
            late_tick,
            "never before the tick"
        );

        let polled = tempfile::tempdir().unwrap();
        let (t, _seen, _stop, _file) = following_one_file(polled.path(), true);
        assert_eq!(t.next_useful_tick(next_tick), next_tick, "polling");
    }

    /// A tick leaves a file notified within the last RESCAN to its
    /// notifications (they will say when it grows) and looks at one whose
    /// last notification is older: the safety net for a lost event.
    #[test]
    fn a_tick_looks_only_at_files_notifications_no_longer_cover() {
        let daq = tempfile::tempdir().unwrap();
        let (mut t, seen, _stop, file) = following_one_file(daq.path(), false);
        let mut f = fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&real_frame(DataProduct::Img16)).unwrap();

        let now = Instant::now();
        t.next_rescan = now + RESCAN;
        for followed in t.followed.values_mut() {
            followed.notified_at = Some(now);
        }
        t.tick();
        assert!(
            seen.borrow().is_empty(),
            "a covered file is left to its notifications"
        );

        let long_ago = now
            .checked_sub(RESCAN * 2)
            .expect("the monotonic clock started over 0.2 s ago");
        for followed in t.followed.values_mut() {
            followed.notified_at = Some(long_ago);
        }
        t.tick();
        assert_eq!(seen.borrow().len(), 1, "an uncovered file is looked at");
    }

    /// The file names handed on so far, as strings.
    fn names(seen: &Seen) -> Vec<String> {
        seen.borrow().iter().map(|s| s.to_string()).collect()
    }

    fn file_name(path: &Path) -> String {
        path.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// The img16 file `seqno` of the run `following_one_file` starts.
    fn first_run_file(daq: &Path, seqno: u32) -> PathBuf {
        let start = StartTime::from_unix(1_721_882_000);
        daq.join("module_1")
            .join(RunName::new("TEST", start.clone(), "test").to_string())
            .join(PffName::new(start, DataProduct::Img16, ModuleId::new(1), seqno).to_string())
    }

    /// Back from dormancy (an on-demand tracker's first watcher arrives),
    /// the newest frame of every followed file is handed on again, for the
    /// new watchers; and a run begun while nothing was read, whose
    /// notifications went unread, is found and followed at once.
    #[test]
    fn back_from_dormancy_the_newest_frames_are_handed_on_and_a_new_run_is_found() {
        let daq = tempfile::tempdir().unwrap();
        let (mut t, seen, _stop, file) = following_one_file(daq.path(), false);
        t.wake_up();
        assert_eq!(names(&seen), [file_name(&file)], "for the new watchers");
        let seq: Vec<u64> = t.seq.values().copied().collect();
        assert_eq!(seq, [2], "the second event of this (module, data product)");
        seen.borrow_mut().clear();

        let start = StartTime::from_unix(1_721_882_600);
        let run = daq
            .path()
            .join("module_1")
            .join(RunName::new("TEST", start.clone(), "test").to_string());
        fs::create_dir_all(&run).unwrap();
        let newer =
            run.join(PffName::new(start, DataProduct::Img16, ModuleId::new(1), 0).to_string());
        fs::write(&newer, real_frame(DataProduct::Img16)).unwrap();
        t.wake_up();
        let handed = names(&seen);
        assert_eq!(
            handed.last(),
            Some(&file_name(&newer)),
            "the new run's frame, last: {handed:?}"
        );
        assert_eq!(t.followed.len(), 1, "only the new run's file is followed");
    }

    /// A file that appears is followed as soon as its notification is read,
    /// without waiting for a tick.
    #[test]
    fn a_new_file_is_followed_on_its_notification() {
        let daq = tempfile::tempdir().unwrap();
        let (mut t, seen, _stop, _file) = following_one_file(daq.path(), false);
        let next = first_run_file(daq.path(), 1);
        fs::write(&next, real_frame(DataProduct::Img16)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !names(&seen).contains(&file_name(&next)) {
            assert!(
                Instant::now() < deadline,
                "never followed: {:?}",
                names(&seen)
            );
            t.on_notified();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Polling, each tick lists the directories that changed: a new file
    /// is followed at the next tick, not at the next rescan.
    #[test]
    fn polling_follows_a_new_file_at_the_next_tick() {
        let daq = tempfile::tempdir().unwrap();
        let (mut t, seen, _stop, _file) = following_one_file(daq.path(), true);
        let next = first_run_file(daq.path(), 1);
        fs::write(&next, real_frame(DataProduct::Img16)).unwrap();
        t.next_rescan = Instant::now() + Duration::from_secs(3600);
        t.tick();
        assert_eq!(names(&seen), [file_name(&next)]);
    }

    /// Polling, with no notification to say so: a followed file moved
    /// aside and replaced under its name (the old one still linked, so its
    /// handle shows no change) is found when its directory is listed again,
    /// and the new file's newest frame is handed on.
    #[test]
    fn a_file_replaced_under_its_name_while_the_old_one_lives_on_is_found_by_polling() {
        let daq = tempfile::tempdir().unwrap();
        let (mut t, seen, _stop, file) = following_one_file(daq.path(), true);
        fs::rename(&file, file.with_extension("kept")).unwrap();
        let frame = real_frame(DataProduct::Img16);
        fs::write(&file, [frame.as_slice(), &frame].concat()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.borrow().is_empty() {
            assert!(Instant::now() < deadline, "the new file was never read");
            t.tick();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(names(&seen), [file_name(&file)]);
    }

    /// How a notification is routed: a write marks its file alone; a new,
    /// removed or renamed entry marks its directory and the entry itself
    /// for listing (and its file, if followed); the watched directory going
    /// marks its parent; an overflow marks everything.
    #[test]
    fn each_notification_marks_what_it_concerns() {
        let daq = tempfile::tempdir().unwrap();
        let (mut t, _seen, _stop, file) = following_one_file(daq.path(), false);
        let key = *t.followed.keys().next().unwrap();
        let run = file.parent().unwrap();
        let name = file.file_name().unwrap();
        let mut mark = |dir: Option<&Path>, name: Option<&std::ffi::OsStr>, mask| {
            let mut marked = Marked::default();
            marked.mark(Notice { dir, mask, name }, &mut t.followed, &t.by_name);
            let mut dirs: Vec<PathBuf> = marked.dirs.into_iter().collect();
            dirs.sort();
            (marked.files, dirs, marked.overflowed)
        };
        for write in [EventMask::MODIFY, EventMask::CLOSE_WRITE] {
            assert_eq!(
                mark(Some(run), Some(name), write),
                (vec![key], vec![], false),
                "{write:?}"
            );
        }
        assert_eq!(
            mark(Some(daq.path()), Some(name), EventMask::MODIFY),
            (vec![], vec![], false),
            "the same name in another directory"
        );
        assert_eq!(
            mark(Some(run), Some(name), EventMask::MOVED_FROM),
            (vec![key], vec![run.to_path_buf(), file.clone()], false)
        );
        let parent = run.parent().unwrap().to_path_buf();
        assert_eq!(
            mark(Some(run), None, EventMask::DELETE_SELF),
            (vec![], vec![parent, run.to_path_buf()], false)
        );
        assert_eq!(
            mark(None, None, EventMask::Q_OVERFLOW),
            (vec![], vec![], true)
        );
    }
}
