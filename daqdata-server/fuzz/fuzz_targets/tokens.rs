//! Feeds arbitrary text to the server's token-file parser
//! (`[access] operator_tokens_file` / `viewer_tokens_file`: `NAME TOKEN`
//! lines, `#` comments).
//!
//! Beyond "never panics": every token parsed has a name and a secret of at
//! least 16 characters, and an error never shows a line's secret (the
//! errors are logged at start, and secrets must never reach a log).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match daqdata_server::parse_tokens(text) {
        Ok(tokens) => {
            for t in &tokens {
                assert!(!t.name.is_empty() && !t.name.contains(char::is_whitespace));
                assert!(
                    !format!("{t:?}").contains("secret: \""),
                    "Debug shows a secret"
                );
            }
        }
        Err(e) => {
            // The error names a line and its NAME; a secret may only show
            // where the same text is also some line's name.
            let lines: Vec<Vec<&str>> = text
                .lines()
                .map(|l| {
                    l.split('#')
                        .next()
                        .unwrap_or("")
                        .split_whitespace()
                        .collect()
                })
                .collect();
            let names: Vec<&str> = lines.iter().filter_map(|w| w.first().copied()).collect();
            for word in lines.iter().flat_map(|w| w.iter().skip(1)) {
                if word.len() >= 16 && !names.iter().any(|n| n.contains(word)) {
                    assert!(!e.contains(word), "the error shows a token: {e}");
                }
            }
        }
    }
});
