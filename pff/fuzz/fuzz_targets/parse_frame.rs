//! Feeds arbitrary bytes to every frame reader, for every data product.
//!
//! Beyond "never panics", it checks the one property a reader of live
//! files relies on: whatever parses as a frame writes back to exactly the
//! bytes it was read from, and the cheap check of `RawFrame` agrees with
//! the full parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pff::{DataProduct, Frame, RawFrame};

fuzz_target!(|data: &[u8]| {
    let header_len = pff::header_len(data);
    for dp in DataProduct::ALL {
        let parsed = Frame::parse(data, dp);
        if let Ok((frame, len)) = &parsed {
            assert_eq!(
                frame.to_bytes(),
                &data[..*len],
                "{dp}: parsed frame does not write back"
            );
            assert_eq!(header_len.as_ref().ok(), Some(&(len - dp.image_bytes())));
        }
        if let Ok(raw) = RawFrame::new(data.to_vec(), dp) {
            let again = RawFrame::with_header_len(data.to_vec(), dp, raw.header_len());
            assert!(
                again.is_ok(),
                "{dp}: RawFrame::new accepts what with_header_len refuses"
            );
            if let Ok(frame) = raw.parse() {
                let (whole, len) = parsed.as_ref().expect("a RawFrame that parses is a Frame");
                assert_eq!((whole, *len), (&frame, data.len()));
            }
        }
    }
});
