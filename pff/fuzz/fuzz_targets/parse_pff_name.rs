//! Feeds arbitrary text to the PFF file-name parser.
//!
//! Beyond "never panics": a name that parses writes back to exactly the
//! text it was read from, parses again to the same value, and its start
//! time is one `StartTime::parse` accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pff::{PffName, StartTime};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = StartTime::parse(text) {
        assert_eq!(StartTime::parse(t.as_str()).as_ref(), Some(&t));
        assert!(!t.as_str().contains('_'), "{t} keeps a `_`");
    }
    let _ = pff::daq_tree::is_image_file_name(text);
    if let Ok(name) = PffName::parse(text) {
        assert_eq!(name.to_string(), text, "a parsed name does not write back");
        assert_eq!(PffName::parse(&name.to_string()).ok().as_ref(), Some(&name));
        assert_eq!(
            StartTime::parse(name.start.as_str()).as_ref(),
            Some(&name.start)
        );
        assert_eq!(name.get("dp"), Some(name.dp.name()));
        if name.seqno < u32::MAX {
            let next = name.next_seqno();
            assert_eq!(PffName::parse(&next.to_string()).ok().as_ref(), Some(&next));
        }
    }
});
