//! Real recorded frames read as their READMEs say, and the writer
//! reproduces them byte for byte: the repository's fixtures always, the
//! full-size shared samples (with their torn tails) too when present.

use std::path::{Path, PathBuf};

use pff::{DataProduct, Frame, Header, PffFile, PffName, Pixels};
use testdata::Sample;

fn dp_of(sample: &Sample) -> DataProduct {
    sample.dp.parse().unwrap()
}

#[test]
fn every_sample_has_the_frames_and_tail_that_its_readme_lists() {
    for s in testdata::samples() {
        let dp = dp_of(&s);
        let name = PffName::parse(s.file_name()).unwrap();
        assert_eq!((name.dp, name.module.get()), (dp, s.module), "{s}");
        let file = PffFile::open(&s.path).unwrap();
        assert_eq!(file.data_product(), dp, "{s}");
        let layout = file.layout().unwrap();
        assert_eq!(
            (layout.frames, layout.frame_size, layout.tail_bytes),
            (s.frames, s.frame_size, s.tail_bytes),
            "{s}"
        );
    }
}

/// Every frame of `path` parses; the last complete one is the last whole
/// one and never the torn tail of `tail` bytes.
fn check_frames_and_tail(path: &Path, dp: DataProduct, frames: u64, size: u64, tail: u64) {
    let what = path.display();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len() as u64, frames * size + tail, "{what}");
    let file = PffFile::open(path).unwrap();
    let parsed: Vec<Frame> = file.frames().unwrap().map(Result::unwrap).collect();
    assert_eq!(parsed.len() as u64, frames, "{what}");
    for frame in &parsed {
        assert_eq!(frame.pixels.len(), dp.pixels(), "{what}");
    }

    // The last complete frame is the last whole one, not the torn tail.
    let (n, raw) = file.last_complete().unwrap().unwrap();
    assert_eq!(n, frames - 1, "{what}");
    let start = (n * size) as usize;
    assert_eq!(
        raw.as_bytes(),
        &bytes[start..start + size as usize],
        "{what}"
    );
    assert_eq!(&raw.parse().unwrap(), parsed.last().unwrap(), "{what}");

    // Reading past the last complete frame is an error, never a torn frame.
    assert!(file.read_raw(frames).is_err(), "{what}");
    let (_, len) = Frame::parse(&bytes[start..], dp).unwrap();
    assert_eq!(len as u64, size, "{what}");
    if tail > 0 {
        assert!(Frame::parse(&bytes[start + len..], dp).is_err(), "{what}");
    }
}

/// A copy of `sample` in `dir` that ends in the first `tail` bytes of its
/// first frame, as a file Hashpipe is still writing does.
fn with_torn_tail(sample: &Sample, dir: &Path, tail: u64) -> PathBuf {
    let mut bytes = std::fs::read(&sample.path).unwrap();
    let head = bytes[..tail as usize].to_vec();
    bytes.extend_from_slice(&head);
    let path = dir.join(sample.file_name());
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn every_frame_of_every_sample_parses_and_the_torn_tail_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    for s in testdata::samples() {
        let dp = dp_of(&s);
        check_frames_and_tail(&s.path, dp, s.frames, s.frame_size, s.tail_bytes);
        if s.tail_bytes == 0 {
            // Torn inside the header, at the marker, and inside the image.
            let hlen = s.frame_size - dp.image_bytes() as u64;
            for tail in [1, hlen - 1, hlen, s.frame_size - 1] {
                let torn = with_torn_tail(&s, dir.path(), tail);
                check_frames_and_tail(&torn, dp, s.frames, s.frame_size, tail);
            }
        }
    }
}

#[test]
fn every_movie_and_ph1024_frame_written_back_gives_the_original_bytes() {
    let mut checked = 0;
    for s in testdata::samples() {
        let dp = dp_of(&s);
        if dp == DataProduct::Ph256 {
            continue;
        }
        let bytes = std::fs::read(&s.path).unwrap();
        let file = PffFile::open(&s.path).unwrap();
        assert_eq!(file.data_product(), dp);
        let size = file.frame_size() as usize;
        let mut n = 0;
        for (i, frame) in file.frames().unwrap().enumerate() {
            let frame = frame.unwrap();
            assert_eq!(
                frame.to_bytes(),
                &bytes[i * size..(i + 1) * size],
                "{s} frame {i}"
            );
            let remade = Header::new_module([0, 1, 2, 3].map(|q| *frame.header.quabo(q).unwrap()));
            assert_eq!(remade, frame.header, "{s} frame {i}");
            n += 1;
        }
        assert_eq!(n, s.frames, "{s}");
        let last = (s.frames - 1) as usize;
        let (last, _) = Frame::parse(&bytes[last * size..], dp).unwrap();
        assert_eq!(
            file.last_complete().unwrap().unwrap().1.parse().unwrap(),
            last,
            "{s}"
        );
        checked += 1;
    }
    // img16, img8 and ph1024 of the fixtures at least.
    assert!(checked >= 3, "{checked} files checked");
}

#[test]
fn every_ph256_frame_written_back_gives_the_original_bytes() {
    let ph256: Vec<Sample> = testdata::samples()
        .into_iter()
        .filter(|s| s.dp == "ph256")
        .collect();
    assert!(ph256.len() >= 2);
    for s in ph256 {
        let bytes = std::fs::read(&s.path).unwrap();
        let file = PffFile::open(&s.path).unwrap();
        let size = file.frame_size() as usize;
        let mut n = 0;
        for (i, frame) in file.frames().unwrap().enumerate() {
            let frame = frame.unwrap();
            assert_eq!(
                frame.to_bytes(),
                &bytes[i * size..(i + 1) * size],
                "{s} frame {i}"
            );
            let q = frame.header.quabo_num().unwrap();
            let remade = Header::new_quabo(q, *frame.header.quabo(usize::from(q)).unwrap());
            assert_eq!(remade, frame.header, "{s} frame {i}");
            n += 1;
        }
        assert_eq!(n, s.frames, "{s}");
    }
}

#[test]
fn ph256_headers_name_a_quabo_and_carry_sane_times() {
    let mut checked = 0;
    for s in testdata::samples() {
        if s.dp != "ph256" {
            continue;
        }
        // First and last Unix second the run can have written in, and
        // whether White Rabbit was locked to the node's clock: pypff's
        // example data was recorded without White Rabbit time.
        let ((from, to), wr_locked) = if s.lick {
            ((1_721_882_086, 1_721_882_086 + 86_400), true)
        } else {
            ((1_754_112_696, 1_754_112_696 + 86_400), false)
        };
        let file = PffFile::open(&s.path).unwrap();
        let mut seen_quabos = [false; 4];
        for (i, frame) in file.frames().unwrap().enumerate() {
            let frame = frame.unwrap();
            let n = frame
                .header
                .quabo_num()
                .expect("ph256 headers have quabo_num");
            assert!(n < 4, "{s} frame {i}: quabo_num {n}");
            seen_quabos[usize::from(n)] = true;
            let q = frame.header.timing_quabo().unwrap();
            assert_eq!(Some(q), frame.header.quabo(usize::from(n)));
            assert!((from..to).contains(&q.tv_sec), "{s} frame {i}: {q:?}");
            assert!(q.tv_usec < 1_000_000, "{s} frame {i}: {q:?}");
            assert!(q.pkt_nsec < 1_000_000_000, "{s} frame {i}: {q:?}");
            assert!(q.pkt_tai < 1024, "{s} frame {i}: {q:?}");
            if wr_locked {
                let (secs, _) = q.wr_time().unwrap();
                assert!((secs - q.tv_sec).abs() <= 1, "{s} frame {i}: {q:?}");
            }
            assert!(matches!(frame.pixels, Pixels::I16(_)));
        }
        // (The pypff fixture is one frame: one event, one quabo.)
        assert!(
            s.frames == 1 || seen_quabos.iter().filter(|&&q| q).count() > 1,
            "{s}: events from one quabo only"
        );
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn img16_frames_come_in_time_order_from_four_quabos() {
    let img16 = testdata::lick_samples("img16", 1);
    assert!(!img16.is_empty());
    for s in img16 {
        let file = PffFile::open(&s.path).unwrap();
        let mut previous = f64::MIN;
        for (i, frame) in file.frames().unwrap().enumerate() {
            let frame = frame.unwrap();
            assert_eq!(frame.header.quabo_num(), None);
            for q in 0..4 {
                assert!(frame.header.quabo(q).is_some(), "{s} frame {i} quabo {q}");
            }
            let t = frame.header.timing_quabo().unwrap().node_time();
            assert!(
                t >= previous,
                "{s}: frame {i} is older than frame {}",
                i - 1
            );
            previous = t;
        }
    }
}

#[test]
fn the_fixtures_are_the_first_frames_of_the_shared_samples() {
    // fixtures/README.md: cut from the same recordings, bytes unchanged.
    // Without the shared samples the fixtures still hold the run's first
    // frames, whose stamps are known.
    for (dp, module) in [("img16", 1), ("ph256", 1), ("ph256", 3)] {
        let fixture = testdata::fixture(dp, module);
        let kept = std::fs::read(&fixture.path).unwrap();
        if let Some(shared) = testdata::shared_sample(dp, module) {
            let full = std::fs::read(&shared.path).unwrap();
            assert!(
                full.starts_with(&kept),
                "{fixture} is not a cut of {shared}"
            );
        }
        let first = PffFile::open(&fixture.path).unwrap().read_frame(0).unwrap();
        let q = first.header.timing_quabo().unwrap();
        assert_eq!(
            pff::time::iso_utc(q.tv_sec, q.tv_usec)[..16],
            *"2024-07-25T04:34",
            "{fixture}"
        );
    }
}
