//! What a consumer of the tracker sees while Hashpipe writes.

use crate::common;

use std::time::Duration;

use common::*;
use pff::DataProduct::{Img16, Ph256};

const START: i64 = 1_721_882_046;

/// Real frames written in real time: each event is byte for byte the
/// frame written at its index, and the last one written is handed on. The
/// fixtures' frames, and the last frames of the full-size samples when
/// present.
fn every_event_is_a_written_frame(pace: Pace) {
    let imgs = real_frame_sets(Img16, 1, 300);
    let phs = real_frame_sets(Ph256, 3, 300);
    assert_eq!(imgs.len(), phs.len());
    for ((img, ph), poll_only) in imgs
        .iter()
        .zip(&phs)
        .flat_map(|set| MODES.map(|mode| (set, mode)))
    {
        let daq = Daq::new();
        let run = daq.run(Some(1), START);
        let img_path = run.file(Img16, 1, 0);
        let ph_path = run.file(Ph256, 1, 0);
        let mut tracked = track(daq.path(), poll_only, vec![]);
        let writers = [
            write_frames(img_path.clone(), img.clone(), pace),
            write_frames(ph_path.clone(), ph.clone(), pace),
        ];
        for w in writers {
            w.join().unwrap();
        }
        tracked.until("the last frames", |ev| {
            has(ev, &img_path, 299) && has(ev, &ph_path, 299)
        });
        tracked.stop();
        assert_ordered(&tracked.events);
        for (dp, written) in [(Img16, img), (Ph256, ph)] {
            let events = tracked.of(1, dp);
            // More than a handful, or the writer was not followed live.
            assert!(
                events.len() > 5,
                "poll_only={poll_only}: only {} {dp} events",
                events.len()
            );
            for e in events {
                assert_eq!(
                    e.frame.as_bytes(),
                    &written[e.frame_index as usize][..],
                    "poll_only={poll_only}: {dp} frame {}",
                    e.frame_index
                );
            }
        }
    }
}

#[test]
fn every_event_is_a_complete_frame_that_was_written() {
    every_event_is_a_written_frame(Pace::Whole(Duration::from_millis(1)));
}

#[test]
fn a_frame_written_in_two_parts_is_handed_on_only_whole() {
    every_event_is_a_written_frame(Pace::Split(Duration::from_millis(2)));
}

#[test]
fn at_start_the_newest_complete_frame_of_each_file_is_handed_on() {
    let imgs = testdata::lick_samples("img16", 1);
    let phs = testdata::lick_samples("ph256", 3);
    assert_eq!(imgs.len(), phs.len());
    for (img, ph) in imgs.iter().zip(&phs) {
        let daq = Daq::new();
        // The shared samples end in a torn frame, as a file being written
        // does; the fixtures get one.
        let run = daq.run(Some(1), START);
        let img_file = run.file(Img16, 1, 0);
        std::fs::copy(&img.path, &img_file).unwrap();
        let run3 = daq.run(Some(3), START);
        let ph_file = run3.file(Ph256, 3, 0);
        std::fs::copy(&ph.path, &ph_file).unwrap();
        for (s, copy) in [(img, &img_file), (ph, &ph_file)] {
            if s.tail_bytes == 0 {
                let first = std::fs::read(&s.path).unwrap();
                append(copy, &[first[..s.frame_size as usize / 2].to_vec()]);
            }
        }
        for poll_only in MODES {
            let mut tracked = track(daq.path(), poll_only, vec![]);
            tracked.until("one frame of each", |ev| ev.len() >= 2);
            tracked.drain(Duration::from_millis(300));
            tracked.stop();
            let img_event = tracked.of(1, Img16);
            let ph_event = tracked.of(3, Ph256);
            assert_eq!(img_event.len(), 1, "{img}");
            assert_eq!(ph_event.len(), 1, "{ph}");
            assert_eq!(
                (img_event[0].frame_index, img_event[0].seq),
                (img.frames - 1, 1),
                "{img}"
            );
            assert_eq!(ph_event[0].frame_index, ph.frames - 1, "{ph}");
            let on_disk = pff::PffFile::open(&img.path)
                .unwrap()
                .read_raw(img.frames - 1)
                .unwrap();
            assert_eq!(img_event[0].frame, on_disk, "{img}");
            assert_eq!(
                &*img_event[0].file,
                img_file.file_name().unwrap().to_str().unwrap()
            );
        }
    }
}

/// With notifications a write is handed on when it happens, not at the
/// next tick: a tracker whose interval is an hour still sees each frame.
#[test]
fn notifications_hand_a_frame_on_without_waiting_for_the_tick() {
    let frames = sample_frames(Ph256, 1, 3);
    let daq = Daq::new();
    let f = daq.run(Some(1), START).file(Ph256, 1, 0);
    append(&f, &frames[..1]);
    let mut tracked = track_with(hpio::TrackerConfig {
        interval: Duration::from_secs(3600),
        ..hpio::TrackerConfig::new(daq.path())
    });
    tracked.until("the frame there at start", |ev| has(ev, &f, 0));
    append(&f, &frames[1..3]);
    tracked.until(
        "the frames written since, long before the hourly tick",
        |ev| has(ev, &f, 2),
    );
    tracked.stop();
}

/// A tracker with nothing new to read sleeps between its looks: at most
/// one wake-up per interval, in both modes, also after a slow sink made it
/// fall behind once. The bound is the point: a schedule that lost its
/// place (a tick never due, or always due) wakes thousands of times a
/// second and takes a core from Hashpipe. A busy machine can only make the
/// wake-ups fewer.
#[test]
fn an_idle_tracker_wakes_at_most_once_per_interval() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let daq = Daq::new();
    let f = daq.run(Some(1), START).file(Img16, 1, 0);
    append(&f, &sample_frames(Img16, 1, 1));
    let interval = Duration::from_millis(20);
    for poll_only in MODES {
        let wakeups = std::sync::Arc::new(AtomicU64::new(0));
        let config = hpio::TrackerConfig {
            interval,
            poll_only,
            wakeups: wakeups.clone(),
            ..hpio::TrackerConfig::new(daq.path())
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        // Slow: the look that hands on the first frame takes three
        // intervals, and the schedule must find its place again.
        let tracker = hpio::Tracker::spawn(config, move |e| {
            std::thread::sleep(interval * 3);
            let _ = tx.lock().map(|tx| tx.send(e.frame_index));
        })
        .unwrap();
        rx.recv_timeout(PATIENCE)
            .expect("the frame there at start was never handed on");
        let (before, since) = (wakeups.load(Relaxed), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(500));
        let (woke, idle) = (wakeups.load(Relaxed) - before, since.elapsed());
        let most = idle.as_nanos() / interval.as_nanos() + 2;
        assert!(
            u128::from(woke) <= most,
            "poll_only={poll_only}: woke {woke} times in {idle:?} of nothing to do, at a {interval:?} interval"
        );
        tracker.stop();
    }
}

#[test]
fn a_full_file_rotates_to_the_next_seqno_without_losing_its_first_frame() {
    let frames = sample_frames(Ph256, 1, 40);
    for poll_only in MODES {
        let daq = Daq::new();
        let run = daq.run(Some(1), START);
        let first = run.file(Ph256, 1, 0);
        let second = run.file(Ph256, 1, 1);
        append(&first, &frames[..20]);
        let mut tracked = track(daq.path(), poll_only, vec![]);
        tracked.until("the first file", |ev| has(ev, &first, 19));
        // Hashpipe closes the full file and opens the next.
        append(&second, &frames[20..21]);
        tracked.until("frame 0 of the next file", |ev| has(ev, &second, 0));
        append(&second, &frames[21..40]);
        tracked.until("the end of the next file", |ev| has(ev, &second, 19));
        tracked.stop();
        assert_ordered(&tracked.events);
        let e = tracked
            .events
            .iter()
            .find(|e| e.frame_index == 0 && has(std::slice::from_ref(e), &second, 0))
            .unwrap();
        assert_eq!(e.frame.as_bytes(), &frames[20][..]);
    }
}

#[test]
fn a_new_run_is_followed_and_the_old_one_is_not_news() {
    let frames = sample_frames(Img16, 1, 30);
    for poll_only in MODES {
        let daq = Daq::new();
        let old = daq.run(Some(1), START);
        let old_file = old.file(Img16, 1, 0);
        append(&old_file, &frames[..10]);
        let mut tracked = track(daq.path(), poll_only, vec![]);
        tracked.until("the old run", |ev| has(ev, &old_file, 9));

        let new = daq.run(Some(1), START + 600);
        let new_file = new.file(Img16, 1, 0);
        append(&new_file, &frames[10..11]);
        tracked.until("the new run's first frame", |ev| has(ev, &new_file, 0));
        // Writes to the older run are never news again.
        append(&old_file, &frames[11..20]);
        append(&new_file, &frames[20..22]);
        tracked.until("the new run's third frame", |ev| has(ev, &new_file, 2));
        tracked.drain(Duration::from_millis(300));
        tracked.stop();
        assert_ordered(&tracked.events);
        let old_name = old_file.file_name().unwrap().to_str().unwrap();
        let after_switch = tracked.events.iter().skip_while(|e| &*e.file == old_name);
        assert!(
            after_switch.clone().all(|e| &*e.file != old_name),
            "poll_only={poll_only}: an old-run frame came after the new run"
        );
    }
}

#[test]
fn an_older_run_is_never_followed_even_when_it_is_written() {
    let frames = sample_frames(Ph256, 1, 20);
    let daq = Daq::new();
    let newest = daq.run(Some(1), START + 60);
    let newest_file = newest.file(Ph256, 1, 0);
    append(&newest_file, &frames[..2]);
    // Hundreds of finished runs, one of them still growing.
    let mut old_files = Vec::new();
    for i in 0..200 {
        let run = daq.run(Some(1), START - 60 * i);
        let f = run.file(Ph256, 1, 0);
        append(&f, &frames[..1]);
        old_files.push(f);
    }
    let mut tracked = track(daq.path(), false, vec![]);
    tracked.until("the newest run", |ev| has(ev, &newest_file, 1));
    append(&old_files[3], &frames[1..10]);
    append(&newest_file, &frames[2..3]);
    tracked.until("the newest run's next frame", |ev| has(ev, &newest_file, 2));
    tracked.drain(Duration::from_millis(300));
    tracked.stop();
    let newest_name = newest_file.file_name().unwrap().to_str().unwrap();
    assert!(tracked.events.iter().all(|e| &*e.file == newest_name));
}

#[test]
fn a_module_or_data_product_that_appears_later_is_followed_and_a_bare_run_too() {
    let (img, ph) = (sample_frames(Img16, 1, 5), sample_frames(Ph256, 3, 5));
    for poll_only in MODES {
        let daq = Daq::new();
        let run1 = daq.run(Some(1), START);
        append(&run1.file(Img16, 1, 0), &img[..2]);
        // Not frames: ignored.
        common::create(&run1.dir.join("hk.pff"), b"housekeeping");
        common::create(&run1.dir.join("notes.txt"), b"notes");
        let mut tracked = track(daq.path(), poll_only, vec![]);
        tracked.until("module 1", |ev| ev.iter().any(|e| e.module == 1));

        let run3 = daq.run(Some(3), START);
        let f3 = run3.file(Ph256, 3, 0);
        append(&f3, &ph[..3]);
        tracked.until("module 3", |ev| has(ev, &f3, 2));

        // A data product that starts later in the same run.
        let ph1 = run1.file(Ph256, 1, 0);
        append(&ph1, &ph[..2]);
        tracked.until("module 1's ph256", |ev| has(ev, &ph1, 1));

        let bare = daq.run(None, START);
        let f7 = bare.file(Img16, 7, 0);
        append(&f7, &img[..4]);
        tracked.until("module 7 in a bare run", |ev| has(ev, &f7, 3));
        tracked.stop();
        assert!(tracked.events.iter().all(|e| e.file.starts_with("start_")));
        let e7 = tracked.of(7, Img16);
        assert_eq!(e7.last().unwrap().frame.as_bytes(), &img[3][..]);
    }
}

#[test]
fn the_module_in_the_file_name_wins_over_the_directory() {
    let ph = sample_frames(Ph256, 3, 3);
    let daq = Daq::new();
    let run = daq.run(Some(2), START);
    let f = run.file(Ph256, 3, 0);
    append(&f, &ph);
    let mut tracked = track(daq.path(), false, vec![]);
    tracked.until("the file", |ev| has(ev, &f, 2));
    tracked.stop();
    assert!(tracked.events.iter().all(|e| e.module == 3));
}

#[test]
fn the_modules_filter_keeps_other_modules_out() {
    let (img, ph) = (sample_frames(Img16, 1, 10), sample_frames(Ph256, 3, 10));
    for poll_only in MODES {
        let daq = Daq::new();
        let run1 = daq.run(Some(1), START);
        let run3 = daq.run(Some(3), START);
        let f1 = run1.file(Img16, 1, 0);
        let f3 = run3.file(Ph256, 3, 0);
        append(&f1, &img[..5]);
        append(&f3, &ph[..5]);
        let mut tracked = track(daq.path(), poll_only, vec![3]);
        tracked.until("module 3", |ev| has(ev, &f3, 4));
        append(&f1, &img[5..10]);
        append(&f3, &ph[5..10]);
        tracked.until("module 3 again", |ev| has(ev, &f3, 9));
        tracked.drain(Duration::from_millis(200));
        tracked.stop();
        assert!(
            tracked.events.iter().all(|e| e.module == 3),
            "poll_only={poll_only}"
        );
    }
}

#[test]
fn a_missing_data_directory_fails_at_once() {
    let daq = Daq::new();
    let missing = daq.path().join("nope");
    let err = hpio::Tracker::spawn(hpio::TrackerConfig::new(&missing), |_| {})
        .err()
        .unwrap();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn stop_ends_the_tracker_even_with_a_long_interval() {
    let daq = Daq::new();
    let f = daq.run(Some(1), START).file(Img16, 1, 0);
    let frames = sample_frames(Img16, 1, 2);
    append(&f, &frames[..1]);
    for poll_only in MODES {
        // The sink holds `alive`: once the tracker's thread has ended and
        // dropped the sink, only this test holds it.
        let alive = std::sync::Arc::new(());
        let in_sink = alive.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let config = hpio::TrackerConfig {
            interval: Duration::from_secs(3600),
            poll_only,
            ..hpio::TrackerConfig::new(daq.path())
        };
        let tracker = hpio::Tracker::spawn(config, move |e| {
            let _keep = &in_sink;
            let _ = tx.lock().unwrap().send(e.frame_index);
        })
        .unwrap();
        // Working, not waiting for the first tick an hour away.
        let first = rx
            .recv_timeout(PATIENCE)
            .expect("the frame already written");
        assert_eq!(first, 0, "poll_only={poll_only}");

        // Stop must not wait for a tick either. On a thread, so that a
        // hang fails here, with a message, instead of hanging the run.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tracker.stop();
            let _ = done_tx.send(());
        });
        done_rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!("poll_only={poll_only}: stop did not return within {PATIENCE:?}")
        });
        assert_eq!(
            std::sync::Arc::strong_count(&alive),
            1,
            "poll_only={poll_only}: the tracker still holds its sink after stop"
        );
        // Nothing is read after stop.
        append(&f, &frames[1..2]);
        assert!(
            rx.recv().is_err(),
            "poll_only={poll_only}: an event after stop"
        );
        std::fs::write(&f, &frames[0]).unwrap();
    }

    // Dropping a tracker stops it too.
    let alive = std::sync::Arc::new(());
    let in_sink = alive.clone();
    let dropped = hpio::Tracker::spawn(hpio::TrackerConfig::new(daq.path()), move |_| {
        let _keep = &in_sink;
    })
    .unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(dropped);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("drop did not return within {PATIENCE:?}"));
    assert_eq!(
        std::sync::Arc::strong_count(&alive),
        1,
        "the dropped tracker still holds its sink"
    );
}
