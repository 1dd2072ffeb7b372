//! The real recorded samples in `../shared/pff-samples/` read as SOURCES.md
//! says, and the writer reproduces them byte for byte.

use std::path::PathBuf;

use pff::{DataProduct, Frame, PffFile};

fn sample(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/pff-samples")
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
        let remade = pff::Header::new_module([0, 1, 2, 3].map(|q| *frame.header.quabo(q).unwrap()));
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
