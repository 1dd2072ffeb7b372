//! An on-demand tracker reads nothing while no one holds its demand, and
//! hands on every newest frame the moment someone does.

mod common;

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use hpio::{Tracker, TrackerConfig};
use pff::DataProduct::{Img16, Ph256};

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
            interval: Duration::from_millis(5),
            poll_only,
            on_demand: true,
            ..TrackerConfig::new(daq.path())
        };
        let tracker = Tracker::spawn(config, move |e| {
            let _ = tx.lock().unwrap().send(e);
        })
        .unwrap();

        // Written while no one watches: nothing is handed on.
        append(&img_path, &frames[10..20]);
        assert!(
            rx.recv_timeout(Duration::from_millis(400)).is_err(),
            "poll_only={poll_only}: an event with no demand"
        );

        // A watcher arrives: the newest frame of each file, at once.
        let demand = tracker.demand();
        let hold = demand.hold();
        let mut newest = Vec::new();
        while newest.len() < 2 {
            let e = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("no event after the demand was held");
            newest.push((e.dp, e.frame_index));
        }
        newest.sort();
        assert_eq!(newest, [(Img16, 19), (Ph256, 9)], "poll_only={poll_only}");

        // While held, writes are followed as usual.
        append(&ph_path, &ph[10..12]);
        let e = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((e.dp, e.frame_index), (Ph256, 11), "poll_only={poll_only}");

        // Released: quiet again; held again: the newest again, even unchanged.
        drop(hold);
        std::thread::sleep(Duration::from_millis(300));
        while rx.try_recv().is_ok() {}
        append(&img_path, &frames[20..25]);
        assert!(rx.recv_timeout(Duration::from_millis(400)).is_err());
        let _hold = demand.hold();
        let mut again: Vec<_> = (0..2)
            .map(|_| {
                let e = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                (e.dp, e.frame_index)
            })
            .collect();
        again.sort();
        assert_eq!(again, [(Img16, 24), (Ph256, 11)], "poll_only={poll_only}");
        tracker.stop();
    }
}
