//! Feeds arbitrary bytes, as a status segment's contents, to the card
//! parser: it never panics, and what it reads is what the buffer says.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hpio::status::check_parse(data);
});
