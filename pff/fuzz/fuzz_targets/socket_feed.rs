//! Feeds arbitrary bytes to the socket-feed decoder, for every data
//! product, whole and cut in two at a point the input chooses.
//!
//! Beyond "never panics": the outcome does not depend on how the bytes
//! were cut, and every message handed out re-encodes to exactly the bytes
//! it was cut from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pff::{encode_message, DataProduct, SocketDecoder};

fn decode(dp: DataProduct, pieces: &[&[u8]]) -> (Vec<u8>, Option<pff::SocketError>) {
    let mut d = SocketDecoder::new(dp);
    let mut out = Vec::new();
    for piece in pieces {
        d.extend(piece);
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.extend(encode_message(u16::try_from(m.module.get()).unwrap(), m.frame.as_bytes())),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) * data.len() / 256;
    for dp in DataProduct::ALL {
        let whole = decode(dp, &[data]);
        assert!(
            data.starts_with(&whole.0),
            "{dp}: a message that was not sent"
        );
        let split = decode(dp, &[&data[..cut], &data[cut..]]);
        assert_eq!(whole, split, "{dp}: cutting at {cut} changed the outcome");
    }
});
