//! An on-demand tracker reads nothing while no one holds its demand, and
//! hands on every newest frame the moment someone does.
//!
//! Nothing here is timed: events are waited for (PATIENCE is a guard
//! against a hang, never a threshold), and what is checked is which frames
//! come, in what order, by file and index.

use crate::common;

use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;

use common::*;
use hpio::{FrameEvent, Tracker, TrackerConfig};
use pff::DataProduct::{self, Img16, Ph256};

/// The next event, or a failure naming what was awaited.
fn next(rx: &Receiver<FrameEvent>, what: &str) -> FrameEvent {
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("no event within {PATIENCE:?}: waited for {what}"))
}

#[test]
fn nothing_is_read_until_someone_wants_it_then_the_newest_of_every_file() {
    let frames = synthetic_frames(Img16, 40);
    let ph = synthetic_frames(Ph256, 40);
    for poll_only in MODES {
        let daq = Daq::new();
        let run = daq.run(Some(1), 1_721_882_046);
        let img_path = run.file(Img16, 1, 0);
        let ph_path = run.file(Ph256, 1, 0);
        append(&img_path, &frames[..10]);
        append(&ph_path, &ph[..10]);

        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let config = TrackerConfig {
            interval: std::time::Duration::from_millis(5),
            poll_only,
            on_demand: true,
            ..TrackerConfig::new(daq.path())
        };
        let tracker = Tracker::spawn(config, move |e| {
            let _ = tx.lock().unwrap().send(e);
        })
        .unwrap();

        // Written while no one watches.
        append(&img_path, &frames[10..20]);

        // A watcher arrives. Whatever the tracker had handed on before
        // would be queued ahead; so the first events are the newest frame
        // of each file, fresher than anything written before the demand,
        // and the first of their (module, product).
        let demand = tracker.demand();
        assert!(!demand.is_held());
        let hold = demand.hold();
        let mut first: Vec<(DataProduct, u64, u64)> = (0..2)
            .map(|_| {
                let e = next(&rx, "the newest frames once demanded");
                (e.dp, e.frame_index, e.seq)
            })
            .collect();
        first.sort();
        assert_eq!(
            first,
            [(Img16, 19, 1), (Ph256, 9, 1)],
            "poll_only={poll_only}: (product, frame, seq) of the first events"
        );

        // While held, writes are followed as usual: the next events are
        // ph256 frames 10 and 11 (or 11 alone, if both were seen at once).
        append(&ph_path, &ph[10..12]);
        let mut followed = Vec::new();
        while followed.last() != Some(&(Ph256, 11)) {
            let e = next(&rx, "ph256 frame 11 while held");
            assert_eq!(
                e.frame.as_bytes(),
                &ph[e.frame_index as usize][..],
                "poll_only={poll_only}"
            );
            followed.push((e.dp, e.frame_index));
        }
        assert!(
            followed == [(Ph256, 11)] || followed == [(Ph256, 10), (Ph256, 11)],
            "poll_only={poll_only}: {followed:?}"
        );

        // Released, then written to, then held again: the first img16
        // frame handed on after the release is one written after it, and
        // the newest (24) comes; no older frame is ever sent again. (Had
        // the tracker not yet noticed the release, it follows the writes
        // as while held: frames 20..24, in order.)
        drop(hold);
        append(&img_path, &frames[20..25]);
        let _hold = demand.hold();
        let mut after = Vec::new();
        while after.last().map(|e: &FrameEvent| (e.dp, e.frame_index)) != Some((Img16, 24)) {
            after.push(next(&rx, "img16 frame 24 after demand was held again"));
        }
        let mut last_img = 19;
        for e in &after {
            match e.dp {
                Img16 => {
                    assert!(
                        e.frame_index > last_img && e.frame_index <= 24,
                        "poll_only={poll_only}: img16 frame {} after {last_img}",
                        e.frame_index
                    );
                    last_img = e.frame_index;
                    assert_eq!(e.frame.as_bytes(), &frames[e.frame_index as usize][..]);
                }
                // Only the unchanged newest, handed on again for the new
                // watcher.
                _ => assert_eq!((e.dp, e.frame_index), (Ph256, 11), "poll_only={poll_only}"),
            }
        }
        assert_ordered(&after);
        tracker.stop();
    }
}

#[test]
fn a_tracker_that_is_not_on_demand_reads_without_a_hold() {
    // The demand handle of an ordinary tracker changes nothing.
    let frames = sample_frames(Ph256, 1, 4);
    let daq = Daq::new();
    let f = daq.run(Some(1), 1_721_882_046).file(Ph256, 1, 0);
    append(&f, &frames[..2]);
    let mut tracked = track(daq.path(), false, vec![]);
    assert!(!tracked.tracker.as_ref().unwrap().demand().is_held());
    tracked.until("frame 1 with no hold", |ev| has(ev, &f, 1));
    append(&f, &frames[2..4]);
    tracked.until("frame 3 with no hold", |ev| has(ev, &f, 3));
    tracked.stop();
    assert_eq!(tracked.events[0].frame_index, 1);
}
