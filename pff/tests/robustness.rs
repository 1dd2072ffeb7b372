//! Whatever bytes a file holds, reading it gives frames or errors, never a
//! panic: random bytes, torn frames, a wrong marker, headers that are not
//! JSON, absurd sizes. And any values Hashpipe could stamp survive writing
//! and reading back.

use std::io::Write;

use proptest::prelude::*;

use pff::{header_len, DataProduct, Frame, Header, Layout, PffFile, Pixels, Quabo, RawFrame};

fn any_dp() -> impl Strategy<Value = DataProduct> {
    prop::sample::select(DataProduct::ALL.to_vec())
}

fn any_quabo() -> impl Strategy<Value = Quabo> + Clone {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
        any::<u32>(),
    )
        .prop_map(|(pkt_num, pkt_tai, pkt_nsec, tv_sec, tv_usec)| Quabo {
            pkt_num,
            pkt_tai,
            pkt_nsec,
            tv_sec,
            tv_usec,
        })
}

/// Stamps as Hashpipe writes them: within the fixed widths.
fn hashpipe_quabo() -> impl Strategy<Value = Quabo> + Clone {
    (
        any::<u32>(),
        0u32..1024,
        0u32..1_000_000_000,
        1_000_000_000i64..9_999_999_999,
        0u32..1_000_000,
    )
        .prop_map(|(pkt_num, pkt_tai, pkt_nsec, tv_sec, tv_usec)| Quabo {
            pkt_num,
            pkt_tai,
            pkt_nsec,
            tv_sec,
            tv_usec,
        })
}

fn pixels_of(dp: DataProduct, raw: &[u8]) -> Pixels {
    let mut bytes = raw.to_vec();
    bytes.resize(dp.image_bytes(), 0);
    Pixels::from_le_bytes(dp, &bytes).unwrap()
}

/// A frame of `dp` with the header layout its product uses.
fn any_frame(
    stamps: impl Strategy<Value = Quabo> + Clone,
) -> impl Strategy<Value = (DataProduct, Frame)> {
    (
        any_dp(),
        prop::array::uniform4(stamps),
        0u8..4,
        prop::collection::vec(any::<u8>(), 2048),
    )
        .prop_map(|(dp, quabos, quabo_num, image)| {
            let header = match dp {
                DataProduct::Ph256 => Header::new_quabo(quabo_num, quabos[0]),
                _ => Header::new_module(quabos),
            };
            let frame = Frame {
                header,
                pixels: pixels_of(dp, &image),
            };
            (dp, frame)
        })
}

/// Every reader of one frame's bytes, for every data product; none may
/// panic, whatever the bytes.
fn read_every_way(bytes: &[u8]) {
    let _ = header_len(bytes);
    for dp in DataProduct::ALL {
        let _ = Frame::parse(bytes, dp);
        if let Ok(raw) = RawFrame::new(bytes.to_vec(), dp) {
            let _ = raw.header_text();
            let _ = raw.parse();
            // The quick check of a known header length agrees with the search.
            assert!(RawFrame::with_header_len(bytes.to_vec(), dp, raw.header_len()).is_ok());
        }
        for hlen in [0, 1, 4, 5, bytes.len(), usize::MAX] {
            let _ = RawFrame::with_header_len(bytes.to_vec(), dp, hlen);
        }
        let _ = Pixels::from_le_bytes(dp, bytes);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = Header::parse(text);
    }
}

proptest! {
    #[test]
    fn random_bytes_give_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        read_every_way(&bytes);
    }

    #[test]
    fn random_bytes_after_an_open_brace_give_errors_not_panics(
        tail in prop::collection::vec(prop::sample::select(b"{}\n*\":, 0123456789abc".to_vec()), 0..3000),
    ) {
        let mut bytes = vec![b'{'];
        bytes.extend(tail);
        read_every_way(&bytes);
    }

    #[test]
    fn written_frames_read_back_equal((dp, frame) in any_frame(any_quabo())) {
        let bytes = frame.to_bytes();
        let (back, len) = Frame::parse(&bytes, dp).unwrap();
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(&back, &frame);
        let raw = RawFrame::new(bytes.clone(), dp).unwrap();
        prop_assert_eq!(raw.parse().unwrap(), frame);
        prop_assert!(RawFrame::with_header_len(bytes, dp, raw.header_len()).is_ok());
    }

    #[test]
    fn hashpipe_headers_keep_their_width_whatever_the_stamps(
        (dp, frame) in any_frame(hashpipe_quabo()),
        other in hashpipe_quabo(),
    ) {
        // Fixed widths are what let a reader seek: any stamps within them
        // give a frame of the same size.
        let restamped = Frame {
            header: frame.header.map_quabos(|_| other),
            pixels: frame.pixels.clone(),
        };
        prop_assert_eq!(restamped.to_bytes().len(), frame.to_bytes().len());
        let (back, _) = Frame::parse(&restamped.to_bytes(), dp).unwrap();
        prop_assert_eq!(back.header.first_quabo(), Some(&other));
    }

    #[test]
    fn a_quabo_num_beyond_3_is_an_error(n in 4u8.., q in any_quabo()) {
        let frame = Frame { header: Header::new_quabo(n, q), pixels: pixels_of(DataProduct::Ph256, &[]) };
        let err = Frame::parse(&frame.to_bytes(), DataProduct::Ph256).unwrap_err();
        prop_assert!(err.to_string().contains("quabo_num"), "{}", err);
    }

    #[test]
    fn a_truncated_frame_is_a_torn_frame_error((dp, frame) in any_frame(any_quabo()), cut in any::<prop::sample::Index>()) {
        let bytes = frame.to_bytes();
        let cut = cut.index(bytes.len());
        let torn = &bytes[..cut];
        let err = Frame::parse(torn, dp).unwrap_err();
        prop_assert!(cut == 0 || err.to_string().contains("torn"), "cut at {}: {}", cut, err);
        prop_assert!(RawFrame::new(torn.to_vec(), dp).is_err());
        let hlen = bytes.len() - dp.image_bytes();
        prop_assert!(RawFrame::with_header_len(torn.to_vec(), dp, hlen).is_err());
    }

    #[test]
    fn a_wrong_marker_is_an_error((dp, frame) in any_frame(any_quabo()), marker in any::<u8>()) {
        prop_assume!(marker != b'*');
        let mut bytes = frame.to_bytes();
        let hlen = bytes.len() - dp.image_bytes();
        bytes[hlen - 1] = marker;
        prop_assert!(Frame::parse(&bytes, dp).is_err());
        prop_assert!(RawFrame::new(bytes.clone(), dp).is_err());
        prop_assert!(RawFrame::with_header_len(bytes, dp, hlen).is_err());
    }

    #[test]
    fn a_header_that_is_not_json_is_an_error(
        dp in any_dp(),
        text in "\\{[^*]{0,300}",
    ) {
        prop_assume!(!text.contains("\n\n"));
        prop_assume!(serde_json::from_str::<serde_json::Value>(&text).is_err());
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\n\n*");
        bytes.resize(bytes.len() + dp.image_bytes(), 0);
        let err = Frame::parse(&bytes, dp).unwrap_err();
        prop_assert!(err.to_string().contains("JSON"), "{}", err);
    }

    #[test]
    fn absurd_sizes_are_errors(dp in any_dp(), extra in 0usize..64, len in any::<u64>(), size in any::<u64>()) {
        // A header with no end within the limit.
        let mut bytes = vec![b'{'];
        bytes.resize(pff::MAX_HEADER_BYTES + extra, b' ');
        let err = Frame::parse(&bytes, dp).unwrap_err();
        prop_assert!(err.to_string().contains("within"), "{}", err);
        // An image of the wrong size.
        prop_assert!(Pixels::from_le_bytes(dp, &bytes[..dp.image_bytes() + 1 + extra]).is_err());
        // Any file length and frame size split into frames and a tail.
        let layout = Layout::of(len, size);
        if size > 0 {
            prop_assert_eq!(layout.frames * size + layout.tail_bytes, len);
        }
    }
}

fn pff_name(dp: DataProduct) -> String {
    format!(
        "start_2024-07-25T04_34_46Z.dp_{dp}.bpp_{}.module_1.seqno_0.pff",
        dp.bytes_per_pixel()
    )
}

/// Everything a reader of a file can ask; none may panic.
fn read_file_every_way(file: &PffFile) {
    let _ = file.layout();
    let _ = file.last_complete();
    for n in [0, 1, 2, u64::MAX / 2, u64::MAX] {
        let _ = file.read_raw(n);
        let _ = file.read_frame(n);
    }
    if let Ok(frames) = file.frames() {
        for frame in frames.take(8) {
            let _ = frame;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn files_of_random_bytes_give_errors_not_panics(
        dp in any_dp(),
        bytes in prop::collection::vec(any::<u8>(), 0..8192),
        brace in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(pff_name(dp));
        let mut bytes = bytes;
        if brace && !bytes.is_empty() {
            bytes[0] = b'{';
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(file) = PffFile::open(&path) {
            read_file_every_way(&file);
        }
    }

    #[test]
    fn a_truncated_file_shows_its_whole_frames_and_never_the_torn_one(
        (dp, frame) in any_frame(hashpipe_quabo()),
        frames in 1usize..6,
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(pff_name(dp));
        let one = frame.to_bytes();
        let all = one.repeat(frames);
        let cut = cut.index(all.len() + 1);
        std::fs::write(&path, &all[..cut]).unwrap();
        let hlen = one.len() - dp.image_bytes();
        let Ok(file) = PffFile::open(&path) else {
            // Only a file whose first header is not yet whole cannot open.
            prop_assert!(cut < hlen);
            return Ok(());
        };
        read_file_every_way(&file);
        let layout = file.layout().unwrap();
        prop_assert_eq!(layout.frames as usize, cut / one.len());
        prop_assert_eq!(layout.tail_bytes as usize, cut % one.len());
        match file.last_complete().unwrap() {
            None => prop_assert!(cut < one.len()),
            Some((n, raw)) => {
                prop_assert_eq!(n as usize, cut / one.len() - 1);
                prop_assert_eq!(raw.as_bytes(), &one[..]);
            }
        }
        let whole: Vec<_> = file.frames().unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(whole.len(), cut / one.len());
    }
}

#[test]
fn a_frame_of_another_size_inside_a_file_is_an_error_not_a_misaligned_frame() {
    let q = Quabo {
        pkt_num: 1,
        pkt_tai: 529,
        pkt_nsec: 691_007_488,
        tv_sec: 1_721_882_092,
        tv_usec: 691_344,
    };
    let frame = |q: Quabo| Frame {
        header: Header::new_module([q; 4]),
        pixels: Pixels::U16(vec![0; 1024]),
    };
    // tv_usec wider than its 6 columns makes that frame one byte longer.
    let long = Quabo {
        tv_usec: 1_234_567,
        ..q
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(pff_name(DataProduct::Img16));
    let mut f = std::fs::File::create(&path).unwrap();
    for q in [q, long, q] {
        f.write_all(&frame(q).to_bytes()).unwrap();
    }
    drop(f);
    let file = PffFile::open(&path).unwrap();
    assert_eq!(file.read_frame(0).unwrap(), frame(q));
    let err = file.last_complete().unwrap_err();
    assert!(err.to_string().contains("misaligned"), "{err}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
}

#[test]
fn the_shortest_possible_header_is_checked_alike_by_both_raw_checks() {
    // Found by the fuzzer: `{` alone as a header (not JSON, but a frame's
    // shape) passed RawFrame::new and failed with_header_len.
    let mut bytes = b"{\n\n*".to_vec();
    bytes.resize(4 + DataProduct::Img8.image_bytes(), 0);
    let raw = RawFrame::new(bytes.clone(), DataProduct::Img8).unwrap();
    assert_eq!(raw.header_len(), 4);
    assert!(RawFrame::with_header_len(bytes.clone(), DataProduct::Img8, 4).is_ok());
    assert!(raw.parse().is_err());
    assert!(Frame::parse(&bytes, DataProduct::Img8).is_err());
}
