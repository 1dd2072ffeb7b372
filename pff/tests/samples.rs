//! The real recorded samples in `../shared/pff-samples/` read as SOURCES.md
//! says, and the writer reproduces them byte for byte.

use std::path::PathBuf;

use pff::{DataProduct, Frame, Header, PffFile, PffName, Pixels};

fn sample(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/pff-samples"
    ))
    .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} not found (the shared samples are not beside this checkout)",
            p.display()
        );
        None
    }
}

const LICK_IMG16: &str = "lick-2024-07-25/start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_0.debug_TRUNCATED.pff";
const LICK_PH256_M1: &str = "lick-2024-07-25/start_2024-07-25T04_34_46Z.dp_ph256.bpp_2.module_1.seqno_0.debug_TRUNCATED.pff";
const LICK_PH256_M3: &str = "lick-2024-07-25/start_2024-07-25T04_34_46Z.dp_ph256.bpp_2.module_3.seqno_0.debug_TRUNCATED.pff";
const PYPFF_PH256: &str =
    "pypff-2025-08-02/start_2025-08-02T05_31_36Z.dp_ph256.bpp_2.module_254.seqno_0.pff";

/// What SOURCES.md says of each sample: product, module, complete frames,
/// frame size, torn-tail bytes.
const SAMPLES: [(&str, DataProduct, u32, u64, u64, u64); 4] = [
    (LICK_IMG16, DataProduct::Img16, 1, 4128, 2540, 640),
    (LICK_PH256_M1, DataProduct::Ph256, 1, 16487, 636, 28),
    (LICK_PH256_M3, DataProduct::Ph256, 3, 16487, 636, 28),
    (PYPFF_PH256, DataProduct::Ph256, 254, 88, 636, 0),
];

#[test]
fn every_sample_has_the_frames_and_tail_that_sources_md_lists() {
    for (rel, dp, module, frames, size, tail) in SAMPLES {
        let Some(path) = sample(rel) else {
            continue;
        };
        let name = PffName::parse(path.file_name().unwrap().to_str().unwrap()).unwrap();
        assert_eq!((name.dp, name.module), (dp, module), "{rel}");
        let file = PffFile::open(&path).unwrap();
        assert_eq!(file.data_product(), dp, "{rel}");
        let layout = file.layout().unwrap();
        assert_eq!(
            (layout.frames, layout.frame_size, layout.tail_bytes),
            (frames, size, tail),
            "{rel}"
        );
    }
}

#[test]
fn every_frame_of_every_sample_parses_and_the_torn_tail_is_never_returned() {
    for (rel, dp, _, frames, size, tail) in SAMPLES {
        let Some(path) = sample(rel) else {
            continue;
        };
        let bytes = std::fs::read(&path).unwrap();
        let file = PffFile::open(&path).unwrap();
        let parsed: Vec<Frame> = file.frames().unwrap().map(Result::unwrap).collect();
        assert_eq!(parsed.len() as u64, frames, "{rel}");
        for frame in &parsed {
            assert_eq!(frame.pixels.len(), dp.pixels(), "{rel}");
        }

        // The last complete frame is the last whole one, not the torn tail.
        let (n, raw) = file.last_complete().unwrap().unwrap();
        assert_eq!(n, frames - 1, "{rel}");
        let start = (n * size) as usize;
        assert_eq!(
            raw.as_bytes(),
            &bytes[start..start + size as usize],
            "{rel}"
        );
        assert_eq!(
            bytes.len() - (start + size as usize),
            tail as usize,
            "{rel}"
        );
        assert_eq!(&raw.parse().unwrap(), parsed.last().unwrap(), "{rel}");

        // Reading past the last complete frame is an error, never a torn frame.
        assert!(file.read_raw(frames).is_err(), "{rel}");
        if tail > 0 {
            let (_, len) = Frame::parse(&bytes[start..], dp).unwrap();
            assert_eq!(len as u64, size);
            assert!(Frame::parse(&bytes[start + len..], dp).is_err(), "{rel}");
        }
    }
}

#[test]
fn every_img16_frame_written_back_gives_the_original_bytes() {
    let Some(path) = sample(LICK_IMG16) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let file = PffFile::open(&path).unwrap();
    assert_eq!(file.data_product(), DataProduct::Img16);
    let size = file.frame_size() as usize;
    let mut n = 0;
    for (i, frame) in file.frames().unwrap().enumerate() {
        let frame = frame.unwrap();
        assert_eq!(
            frame.to_bytes(),
            &bytes[i * size..(i + 1) * size],
            "frame {i}"
        );
        let remade = Header::new_module([0, 1, 2, 3].map(|q| *frame.header.quabo(q).unwrap()));
        assert_eq!(remade, frame.header, "frame {i}");
        n += 1;
    }
    assert_eq!(n, 4128);
    let (last, _) = Frame::parse(&bytes[4127 * size..], DataProduct::Img16).unwrap();
    assert_eq!(
        file.last_complete().unwrap().unwrap().1.parse().unwrap(),
        last
    );
}

#[test]
fn every_ph256_frame_written_back_gives_the_original_bytes() {
    for rel in [LICK_PH256_M1, LICK_PH256_M3, PYPFF_PH256] {
        let Some(path) = sample(rel) else {
            continue;
        };
        let bytes = std::fs::read(&path).unwrap();
        let file = PffFile::open(&path).unwrap();
        let size = file.frame_size() as usize;
        for (i, frame) in file.frames().unwrap().enumerate() {
            let frame = frame.unwrap();
            assert_eq!(
                frame.to_bytes(),
                &bytes[i * size..(i + 1) * size],
                "{rel} frame {i}"
            );
            let n = frame.header.quabo_num().unwrap();
            let remade = Header::new_quabo(n, *frame.header.quabo(usize::from(n)).unwrap());
            assert_eq!(remade, frame.header, "{rel} frame {i}");
        }
    }
}

#[test]
fn ph256_headers_name_a_quabo_and_carry_sane_times() {
    // (file, first and last Unix second the run can have written in,
    // whether White Rabbit was locked to the node's clock)
    let lick = (1_721_882_086, 1_721_882_086 + 86_400);
    let cases = [
        (LICK_PH256_M1, lick, true),
        (LICK_PH256_M3, lick, true),
        // pypff's example data was recorded without White Rabbit time.
        (PYPFF_PH256, (1_754_112_696, 1_754_112_696 + 86_400), false),
    ];
    for (rel, (from, to), wr_locked) in cases {
        let Some(path) = sample(rel) else {
            continue;
        };
        let file = PffFile::open(&path).unwrap();
        let mut seen_quabos = [false; 4];
        for (i, frame) in file.frames().unwrap().enumerate() {
            let frame = frame.unwrap();
            let n = frame
                .header
                .quabo_num()
                .expect("ph256 headers have quabo_num");
            assert!(n < 4, "{rel} frame {i}: quabo_num {n}");
            seen_quabos[usize::from(n)] = true;
            let q = frame.header.first_quabo().unwrap();
            assert_eq!(Some(q), frame.header.quabo(usize::from(n)));
            assert!((from..to).contains(&q.tv_sec), "{rel} frame {i}: {q:?}");
            assert!(q.tv_usec < 1_000_000, "{rel} frame {i}: {q:?}");
            assert!(q.pkt_nsec < 1_000_000_000, "{rel} frame {i}: {q:?}");
            assert!(q.pkt_tai < 1024, "{rel} frame {i}: {q:?}");
            if wr_locked {
                let (secs, _) = q.wr_time().unwrap();
                assert!((secs - q.tv_sec).abs() <= 1, "{rel} frame {i}: {q:?}");
            }
            assert!(matches!(frame.pixels, Pixels::I16(_)));
        }
        assert!(
            seen_quabos.iter().filter(|&&s| s).count() > 1,
            "{rel}: events from one quabo only"
        );
    }
}

#[test]
fn img16_frames_come_in_time_order_from_four_quabos() {
    let Some(path) = sample(LICK_IMG16) else {
        return;
    };
    let file = PffFile::open(&path).unwrap();
    let mut previous = f64::MIN;
    for (i, frame) in file.frames().unwrap().enumerate() {
        let frame = frame.unwrap();
        assert_eq!(frame.header.quabo_num(), None);
        for q in 0..4 {
            assert!(frame.header.quabo(q).is_some(), "frame {i} quabo {q}");
        }
        let t = frame.header.first_quabo().unwrap().node_time();
        assert!(t >= previous, "frame {i} is older than frame {}", i - 1);
        previous = t;
    }
}
