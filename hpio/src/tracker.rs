//! The tracker thread: wake on a write or a tick, read what changed, emit.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::follow::Followed;
use crate::tree::{Key, Tree, Watches};
use crate::warn::{Cause, Warnings};
use crate::Error;

/// What to follow and how often to look.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// The DAQ data directory (`module_M/RUN.pffd/*.pff` or `RUN.pffd/*.pff`).
    pub data_dir: PathBuf,
    /// How often every followed file and directory is checked even without
    /// a notification; down to 1 ms. Polling mode sees writes only then.
    pub interval: Duration,
    /// Modules to follow (by the module in the file name); empty = all.
    pub modules: Vec<u32>,
    /// Never use file-system notifications, only the interval: for file
    /// systems that do not deliver them (NFS), and to compare both modes.
    /// [`TrackerConfig::new`] sets it when the environment variable
    /// `HPIO_POLL_ONLY` is set to anything but `0` or empty.
    pub poll_only: bool,
}

impl TrackerConfig {
    /// Follows every module of `data_dir`, checking every 100 ms and on
    /// each notified write.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let poll_only = std::env::var("HPIO_POLL_ONLY").is_ok_and(|v| !v.is_empty() && v != "0");
        TrackerConfig {
            data_dir: data_dir.into(),
            interval: Duration::from_millis(100),
            modules: Vec::new(),
            poll_only,
        }
    }
}

/// A new newest complete frame of one (module, data product).
#[derive(Clone, Debug)]
pub struct FrameEvent {
    /// The module, from the file name.
    pub module: u32,
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

/// Follows a data directory on its own thread until stopped or dropped.
pub struct Tracker {
    stop: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

enum Msg {
    Stop,
    Fs(notify::Result<notify::Event>),
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
        let (tx, rx) = mpsc::channel();
        let watcher = if config.poll_only {
            tracing::info!(
                "file-system notifications off; polling every {:?}",
                config.interval
            );
            None
        } else {
            let events = tx.clone();
            match RecommendedWatcher::new(
                move |event| {
                    let _ = events.send(Msg::Fs(event));
                },
                notify::Config::default(),
            ) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(
                        "file-system notifications unavailable ({e}); polling every {:?}",
                        config.interval
                    );
                    None
                }
            }
        };
        let path = config.data_dir.clone();
        let thread = std::thread::Builder::new()
            .name("hpio-tracker".into())
            .spawn(move || Loop::new(config, watcher, sink).run(rx))
            .map_err(|source| Error::Thread { path, source })?;
        Ok(Tracker {
            stop: tx,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it; returns within about one check
    /// of the files, well under the interval.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(Msg::Stop);
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

/// The notification watcher, if any, and the directories it watches.
struct DirWatches {
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    failed: Vec<(PathBuf, String)>,
}

impl Watches for DirWatches {
    fn watch(&mut self, dir: &Path) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        if self.watched.contains(dir) {
            return;
        }
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
            }
            Err(e) => self.failed.push((dir.to_path_buf(), e.to_string())),
        }
    }

    fn unwatch(&mut self, dir: &Path) {
        if self.watched.remove(dir) {
            if let Some(watcher) = self.watcher.as_mut() {
                // Fails when the directory is gone, which also ends the watch.
                let _ = watcher.unwatch(dir);
            }
        }
    }
}

/// The state of the tracker thread.
struct Loop<S> {
    interval: Duration,
    tree: Tree,
    watches: DirWatches,
    followed: HashMap<Key, Followed>,
    /// Path of each followed file, to route notifications.
    by_path: HashMap<PathBuf, Key>,
    seq: HashMap<Key, u64>,
    warnings: Warnings,
    sink: S,
    /// Filled from notifications between checks.
    dirty_files: Vec<Key>,
    dirty_dirs: HashSet<PathBuf>,
}

impl<S: FnMut(FrameEvent)> Loop<S> {
    fn new(config: TrackerConfig, watcher: Option<RecommendedWatcher>, sink: S) -> Self {
        Loop {
            interval: config.interval.max(Duration::from_micros(100)),
            tree: Tree::new(config.data_dir, config.modules),
            watches: DirWatches {
                watcher,
                watched: HashSet::new(),
                failed: Vec::new(),
            },
            followed: HashMap::new(),
            by_path: HashMap::new(),
            seq: HashMap::new(),
            warnings: Warnings::default(),
            sink,
            dirty_files: Vec::new(),
            dirty_dirs: HashSet::new(),
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.tick();
                next_tick += self.interval;
                if next_tick <= now {
                    // Fell behind (a slow sink or disk): do not catch up in a burst.
                    next_tick = now + self.interval;
                }
            }
            match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Fs(event)) => {
                    self.note(event);
                    // Every write is a notification: take all that are
                    // pending and check each file once.
                    loop {
                        match rx.try_recv() {
                            Ok(Msg::Fs(event)) => self.note(event),
                            Ok(Msg::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                            Err(mpsc::TryRecvError::Empty) => break,
                        }
                    }
                    self.on_notified();
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Everything, whether notified or not.
    fn tick(&mut self) {
        let dirty = std::mem::take(&mut self.dirty_dirs);
        self.refresh_tree(&|dir| dirty.contains(dir));
        self.dirty_files.clear();
        let keys: Vec<Key> = self.followed.keys().copied().collect();
        for key in keys {
            self.check(key);
        }
    }

    fn on_notified(&mut self) {
        if !self.dirty_dirs.is_empty() {
            let dirty = std::mem::take(&mut self.dirty_dirs);
            self.refresh_tree(&|dir| dirty.contains(dir));
        }
        let mut dirty = std::mem::take(&mut self.dirty_files);
        dirty.sort_unstable();
        dirty.dedup();
        for &key in &dirty {
            self.check(key);
        }
        dirty.clear();
        self.dirty_files = dirty;
    }

    /// Routes one notification: a write marks its file, anything else
    /// (create, delete, rename) marks its directory for listing.
    fn note(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                // Lost or overflowed notifications: the ticks still see
                // everything; list every directory at the next one.
                tracing::debug!("file-system notification error: {e}");
                return;
            }
        };
        use notify::event::{AccessKind, AccessMode, ModifyKind};
        match event.kind {
            // Our own opens and reads are notified too: not news.
            EventKind::Modify(ModifyKind::Data(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                for path in &event.paths {
                    if let Some(&key) = self.by_path.get(path) {
                        self.dirty_files.push(key);
                    }
                }
                return;
            }
            EventKind::Access(_) => return,
            _ => {}
        }
        // Create, delete, rename, attributes: list the directory again.
        for path in event.paths {
            if let Some(&key) = self.by_path.get(&path) {
                self.dirty_files.push(key);
            }
            if let Some(parent) = path.parent() {
                self.dirty_dirs.insert(parent.to_path_buf());
            }
            self.dirty_dirs.insert(path);
        }
    }

    fn refresh_tree(&mut self, forced: &dyn Fn(&Path) -> bool) {
        let changed = self
            .tree
            .refresh(forced, &mut self.watches, &mut self.warnings);
        for (dir, e) in std::mem::take(&mut self.watches.failed) {
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
        let active: HashMap<Key, _> = self
            .tree
            .active_files()
            .into_iter()
            .map(|(k, e)| (k, e.clone()))
            .collect();
        let gone: Vec<Key> = self
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
                self.by_path.remove(&old.entry.path);
                tracing::debug!(file = %old.entry.path.display(), "no longer the active file");
            }
        }
        let mut added = Vec::new();
        for (key, entry) in active {
            if self.followed.contains_key(&key) {
                continue;
            }
            tracing::info!(module = key.0, dp = %key.1, file = %entry.path.display(), "following file");
            self.by_path.insert(entry.path.clone(), key);
            self.followed.insert(key, Followed::new(entry));
            added.push(key);
        }
        // A new file's first frames are news at once.
        for key in added {
            self.check(key);
        }
    }

    fn check(&mut self, key: Key) {
        let Some(followed) = self.followed.get_mut(&key) else {
            return;
        };
        let Some(read) = followed.check(&mut self.warnings) else {
            return;
        };
        let seq = self.seq.entry(key).or_insert(0);
        *seq += 1;
        (self.sink)(FrameEvent {
            module: key.0,
            dp: key.1,
            file: read.file,
            frame_index: read.index,
            seq: *seq,
            frame: read.frame,
            read_at: Instant::now(),
        });
    }
}
