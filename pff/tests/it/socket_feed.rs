//! Hashpipe's socket feed, cut however the kernel cuts it: the same
//! messages come out whatever the read sizes, real recorded frames come out
//! byte for byte, and no input makes the decoder panic or hand out a frame
//! that is not exactly what was sent.

use std::sync::OnceLock;

use proptest::prelude::*;

use pff::{encode_message, DataProduct, PffFile, SocketDecoder, SocketMessage};

/// The first frames of every sample file (fixtures, and the shared
/// recordings when present), with their data product.
fn real_frames() -> &'static [(DataProduct, Vec<u8>)] {
    static FRAMES: OnceLock<Vec<(DataProduct, Vec<u8>)>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let mut out = Vec::new();
        for sample in testdata::samples() {
            let dp: DataProduct = sample.dp.parse().unwrap();
            let file = PffFile::open(&sample.path).unwrap();
            for n in 0..sample.frames.min(8) {
                out.push((dp, file.read_raw(n).unwrap().as_bytes().to_vec()));
            }
        }
        assert!(out.len() >= 40, "the fixtures hold frames of every product");
        out
    })
}

/// Feeds `stream` in pieces cut at `cuts` and collects every message, or
/// the first error.
fn decode(dp: DataProduct, stream: &[u8], cuts: &[usize]) -> Result<Vec<SocketMessage>, String> {
    let mut d = SocketDecoder::new(dp);
    let mut out = Vec::new();
    let mut at = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    for end in ends {
        d.extend(&stream[at..end]);
        at = end;
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(out)
}

/// Several real frames of one product, each prefixed by a module id.
fn real_stream() -> impl Strategy<Value = (DataProduct, Vec<(u16, Vec<u8>)>)> {
    prop::sample::select(DataProduct::ALL.to_vec()).prop_flat_map(|dp| {
        let frames: Vec<Vec<u8>> = real_frames()
            .iter()
            .filter(|(d, _)| *d == dp)
            .map(|(_, f)| f.clone())
            .collect();
        let one = (any::<u16>(), prop::sample::select(frames));
        (Just(dp), prop::collection::vec(one, 1..6))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn real_frames_round_trip_byte_exact_however_the_reads_are_cut(
        (dp, messages) in real_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream: Vec<u8> = messages.iter().flat_map(|(m, f)| encode_message(*m, f)).collect();
        let got = decode(dp, &stream, &cuts).unwrap();
        prop_assert_eq!(got.len(), messages.len());
        for (g, (module, frame)) in got.iter().zip(&messages) {
            prop_assert_eq!(g.module.get(), u32::from(*module));
            prop_assert_eq!(g.frame.as_bytes(), &frame[..]);
            prop_assert_eq!(g.frame.data_product(), dp);
        }
    }

    #[test]
    fn garbage_never_panics_and_whatever_decodes_was_sent(
        dp in prop::sample::select(DataProduct::ALL.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        if let Ok(got) = decode(dp, &bytes, &cuts) {
            let again: Vec<u8> = got
                .iter()
                .flat_map(|m| encode_message(u16::try_from(m.module.get()).unwrap(), m.frame.as_bytes()))
                .collect();
            prop_assert!(bytes.starts_with(&again));
        }
    }

    #[test]
    fn a_real_stream_with_one_byte_broken_decodes_a_prefix_or_fails_cleanly(
        (dp, messages) in real_stream(),
        at in any::<usize>(),
        byte in any::<u8>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut stream: Vec<u8> = messages.iter().flat_map(|(m, f)| encode_message(*m, f)).collect();
        let at = at % stream.len();
        stream[at] = byte;
        let whole = decode(dp, &stream, &[]);
        // However it is cut, the same outcome.
        prop_assert_eq!(decode(dp, &stream, &cuts), whole.clone());
        if let Ok(got) = whole {
            for m in &got {
                prop_assert!(m.frame.parse().is_ok());
            }
        }
    }
}

#[test]
fn every_single_split_point_of_a_real_stream_gives_the_same_messages() {
    for dp in DataProduct::ALL {
        let frames: Vec<&Vec<u8>> = real_frames()
            .iter()
            .filter(|(d, _)| *d == dp)
            .map(|(_, f)| f)
            .take(3)
            .collect();
        let stream: Vec<u8> = frames
            .iter()
            .enumerate()
            .flat_map(|(i, f)| encode_message(i as u16, f))
            .collect();
        let whole = decode(dp, &stream, &[]).unwrap();
        assert_eq!(whole.len(), frames.len());
        for cut in 0..=stream.len() {
            assert_eq!(
                decode(dp, &stream, &[cut]).unwrap(),
                whole,
                "{dp} cut at {cut}"
            );
        }
    }
}

#[test]
fn a_megabyte_header_is_refused_after_64_kib() {
    let mut d = SocketDecoder::new(DataProduct::Img16);
    d.extend(&[0, 1, b'{']);
    let chunk = vec![b'x'; 4096];
    let mut fed = 3;
    let err = loop {
        match d.next_message() {
            Ok(None) => {}
            Ok(Some(m)) => panic!("a frame out of a megabyte of x: {m:?}"),
            Err(e) => break e,
        }
        assert!(fed < 1 << 20, "no error within a megabyte");
        d.extend(&chunk);
        fed += chunk.len();
    };
    assert_eq!(err.kind, pff::SocketErrorKind::HeaderTooLong);
    assert!(
        fed <= pff::MAX_SOCKET_HEADER_BYTES + 2 * chunk.len(),
        "{fed}"
    );
}
