//! Hashpipe's status cards: the 80-byte FITS-style records of the status
//! buffer, read (safe code, outside the lock) and written the way
//! Hashpipe's `hput*` functions write them (for simulators and tests).

use std::collections::HashMap;
use std::fmt;

/// One card: 80 bytes, no newline.
pub const CARD_LEN: usize = 80;
/// The whole segment Hashpipe creates: 2880 × 64 bytes.
pub const SEGMENT_LEN: usize = 2880 * 64;
/// Bytes 0-7 hold the key; longer keys are cut (`COMPUTESTAT` is stored
/// as `COMPUTES`).
const KEY_LEN: usize = 8;
/// `hputs` keeps at most 67 characters of a string.
const MAX_STRING: usize = 67;
/// The key that ends the cards; NULs follow it.
const END: &str = "END";

/// A card's value: numbers as numbers, strings as strings.
#[derive(Debug, Clone, PartialEq)]
pub enum CardValue {
    /// `%d` / `%lld`.
    Int(i64),
    /// `%.17g` (or any other float that Rust reads).
    Float(f64),
    /// A quoted string, trailing blanks removed (`hputs` pads to 8), or a
    /// bare word such as a FITS logical `T`.
    Text(String),
}

impl CardValue {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            CardValue::Int(i) => Some(i as f64),
            CardValue::Float(f) => Some(f),
            CardValue::Text(_) => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            CardValue::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            CardValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for CardValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardValue::Int(i) => write!(f, "{i}"),
            CardValue::Float(x) => write!(f, "{x}"),
            CardValue::Text(s) => f.write_str(s),
        }
    }
}

/// The cards of one read, in buffer order (at most one per key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cards(Vec<(String, CardValue)>);

impl Cards {
    /// The value of `key` (as stored: at most 8 characters).
    pub fn get(&self, key: &str) -> Option<&CardValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every (key, value), in buffer order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &CardValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many cards there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (a buffer with only `END`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why the bytes of a status buffer are not cards. Offsets are bytes from
/// the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No card with the key `END` before the bytes ran out.
    #[error("no END card in the first {len} bytes")]
    NoEnd {
        /// Where the cards stop (NULs or the end of the bytes).
        len: usize,
    },
    /// A byte that is not printable ASCII (NULs included) before `END`.
    #[error("card at byte {offset}: byte {byte:#04x} is not printable ASCII")]
    NonAscii {
        /// Where the card starts.
        offset: usize,
        /// The first such byte.
        byte: u8,
    },
    /// Byte 8 of a card is not `=`.
    #[error("card at byte {offset} ({key:?}) has no '=' at byte 8")]
    NoEquals {
        /// Where the card starts.
        offset: usize,
        /// Its key, trimmed.
        key: String,
    },
    /// A card with an empty key.
    #[error("card at byte {offset} has an empty key")]
    EmptyKey {
        /// Where the card starts.
        offset: usize,
    },
    /// A string value whose closing quote is missing.
    #[error("card at byte {offset} ({key}): unterminated quote")]
    UnterminatedQuote {
        /// Where the card starts.
        offset: usize,
        /// Its key.
        key: String,
    },
    /// A value that is neither a quoted string, a number nor one word, or
    /// text after a value that is not a ` / comment`.
    #[error("card at byte {offset} ({key}): cannot read value {value:?}")]
    Junk {
        /// Where the card starts.
        offset: usize,
        /// Its key.
        key: String,
        /// The value's text.
        value: String,
    },
}

/// Reads the cards of a status buffer (or of its copy up to `END`).
///
/// Stops at the first card whose key is `END`; what follows (NULs in a
/// live buffer) is not looked at.
pub fn parse_cards(bytes: &[u8]) -> Result<Cards, ParseError> {
    let mut cards: Vec<(String, CardValue)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, card) in bytes.chunks_exact(CARD_LEN).enumerate() {
        let offset = index * CARD_LEN;
        if card[0] == 0 {
            // Cards then NULs: the buffer ended without END.
            return Err(ParseError::NoEnd { len: offset });
        }
        if let Some(&byte) = card.iter().find(|b| !(b' '..=b'~').contains(*b)) {
            // Only the END card may be followed by anything; a NUL inside
            // it (hashpipe_status_clear writes "END" then spaces) is not
            // expected either, so bytes are checked before the key.
            return Err(ParseError::NonAscii { offset, byte });
        }
        // Checked above: every byte is ASCII.
        let text =
            std::str::from_utf8(card).map_err(|_| ParseError::NonAscii { offset, byte: 0 })?;
        let key = text[..KEY_LEN].trim_end();
        if key == END {
            return Ok(Cards(cards));
        }
        let (key, value) = parse_card(offset, text)?;
        // hput* never writes a key twice; a buffer that has one keeps the
        // last value, in the first one's place.
        match seen.get(&key) {
            Some(&i) => cards[i].1 = value,
            None => {
                seen.insert(key.clone(), cards.len());
                cards.push((key, value));
            }
        }
    }
    Err(ParseError::NoEnd { len: bytes.len() })
}

/// One card that is not `END`: 80 printable ASCII characters.
fn parse_card(offset: usize, text: &str) -> Result<(String, CardValue), ParseError> {
    let key = text[..KEY_LEN].trim();
    if key.is_empty() {
        return Err(ParseError::EmptyKey { offset });
    }
    let key = key.to_string();
    if &text[KEY_LEN..KEY_LEN + 1] != "=" {
        return Err(ParseError::NoEquals { offset, key });
    }
    // hputc right-justifies numbers to end at byte 32, so a 24-character
    // `%.17g` starts at byte 9; strings start at byte 10.
    let rest = text[KEY_LEN + 1..].trim_start();
    let junk = |value: &str| ParseError::Junk {
        offset,
        key: key.clone(),
        value: value.trim().to_string(),
    };
    if let Some(quoted) = rest.strip_prefix('\'') {
        let Some(close) = quoted.find('\'') else {
            return Err(ParseError::UnterminatedQuote { offset, key });
        };
        let after = quoted[close + 1..].trim_start();
        if !(after.is_empty() || after.starts_with('/')) {
            return Err(junk(rest));
        }
        let value = CardValue::Text(quoted[..close].trim_end().to_string());
        return Ok((key, value));
    }
    let value = rest.split_once('/').map_or(rest, |(v, _)| v).trim();
    if value.is_empty() || value.contains(' ') {
        return Err(junk(rest));
    }
    let value = if let Ok(i) = value.parse::<i64>() {
        CardValue::Int(i)
    } else if let Ok(x) = value.parse::<f64>() {
        CardValue::Float(x)
    } else if value.starts_with(|c: char| c.is_ascii_alphabetic()) {
        CardValue::Text(value.to_string())
    } else {
        return Err(junk(value));
    };
    Ok((key, value))
}

/// What [`StatusImage::put_str`] keeps of a text: printable ASCII but `'`
/// (which would end the quoted value), at most `MAX_STRING` characters.
fn storable(value: &str) -> String {
    value
        .chars()
        .filter(|c| (' '..='~').contains(c) && *c != '\'')
        .take(MAX_STRING)
        .collect()
}

/// The fuzz target's checks (shared with the tests that run the seeds on
/// stable): parsing any bytes never panics, and cards that parse, written
/// again as Hashpipe writes them, read back to the same keys and values.
#[doc(hidden)]
pub fn check_parse(data: &[u8]) {
    let Ok(cards) = parse_cards(data) else {
        return;
    };
    let mut image = StatusImage::new();
    for (key, value) in cards.iter() {
        assert!(!key.is_empty() && key.len() <= KEY_LEN, "key {key:?}");
        let put = match value {
            CardValue::Int(i) => image.put_int(key, *i),
            CardValue::Float(x) => image.put_float(key, *x),
            CardValue::Text(s) => image.put_str(key, s),
        };
        if put.is_err() {
            return;
        }
    }
    let again = parse_cards(image.bytes()).expect("written cards parse");
    assert_eq!(again.len(), cards.len());
    for ((key, value), (key2, value2)) in cards.iter().zip(again.iter()) {
        assert_eq!(key, key2);
        match (value, value2) {
            // An unquoted text may hold a `'`, which put_str leaves out.
            (CardValue::Text(a), CardValue::Text(b)) => assert_eq!(storable(a).trim_end(), b),
            (a, b) => {
                let (a, b) = (a.as_f64().expect("a number"), b.as_f64().expect("a number"));
                assert!(
                    a == b || (a.is_nan() && b.is_nan()),
                    "{key}: {a} became {b}"
                );
            }
        }
    }
}

/// A status buffer's bytes, changed the way Hashpipe's `hputi4`,
/// `hputi8`, `hputr8` and `hputs` change them: a key already present is
/// rewritten in its card, a new one takes the card of `END`, which moves
/// down one card. Starts as `hashpipe_status_clear` leaves a buffer (an
/// `END` card, then NULs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusImage {
    bytes: Vec<u8>,
}

impl Default for StatusImage {
    fn default() -> Self {
        StatusImage::new()
    }
}

impl StatusImage {
    /// A cleared buffer of [`SEGMENT_LEN`] bytes.
    pub fn new() -> Self {
        let mut bytes = vec![0u8; SEGMENT_LEN];
        bytes[..CARD_LEN].fill(b' ');
        bytes[..END.len()].copy_from_slice(END.as_bytes());
        StatusImage { bytes }
    }

    /// The whole buffer.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes through the `END` card: what a writer copies in.
    pub fn through_end(&self) -> &[u8] {
        &self.bytes[..self.end_card() + CARD_LEN]
    }

    /// `hputi4` / `hputi8`: `%d`, right-justified.
    pub fn put_int(&mut self, key: &str, value: i64) -> Result<(), ImageFull> {
        self.put_raw(key, &value.to_string(), false)
    }

    /// `hputr8`: `%.17g`, right-justified.
    pub fn put_float(&mut self, key: &str, value: f64) -> Result<(), ImageFull> {
        self.put_raw(key, &format_g17(value), false)
    }

    /// `hputs`: quoted, padded to 8 characters, cut to 67.
    pub fn put_str(&mut self, key: &str, value: &str) -> Result<(), ImageFull> {
        let value = storable(value);
        self.put_raw(key, &format!("'{value:<8}'"), true)
    }

    /// Where the END card starts (the image always has one).
    fn end_card(&self) -> usize {
        self.card_of(END).unwrap_or(0)
    }

    fn card_of(&self, key: &str) -> Option<usize> {
        self.bytes
            .chunks_exact(CARD_LEN)
            .position(|card| {
                let k = &card[..KEY_LEN];
                let len = k
                    .iter()
                    .rposition(|&b| b != b' ' && b != 0)
                    .map_or(0, |p| p + 1);
                &k[..len] == key.as_bytes()
            })
            .map(|i| i * CARD_LEN)
    }

    fn put_raw(&mut self, key: &str, value: &str, quoted: bool) -> Result<(), ImageFull> {
        let key = &key[..key.len().min(KEY_LEN)];
        let at = match self.card_of(key) {
            Some(at) => at,
            None => {
                let end = self.end_card();
                if end + 2 * CARD_LEN > self.bytes.len() {
                    return Err(ImageFull);
                }
                self.bytes.copy_within(end..end + CARD_LEN, end + CARD_LEN);
                end
            }
        };
        let card = &mut self.bytes[at..at + CARD_LEN];
        card.fill(b' ');
        card[..key.len()].copy_from_slice(key.as_bytes());
        card[KEY_LEN] = b'=';
        let value = value.as_bytes();
        // hputc: strings from byte 10, numbers right-justified to byte 32.
        let start = if quoted {
            10
        } else {
            33usize.saturating_sub(value.len()).max(9)
        };
        let len = value.len().min(CARD_LEN - start);
        card[start..start + len].copy_from_slice(&value[..len]);
        Ok(())
    }
}

/// The buffer has no card left for a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the status buffer has no room for another card")]
pub struct ImageFull;

/// C's `%.17g`: 17 significant digits, exponent form when the exponent is
/// below -4 or at least 17, trailing zeros removed.
pub(crate) fn format_g17(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = (16 - exp).max(0) as usize;
        trim(&format!("{x:.decimals$}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_written_as_hput_writes_them_read_back() {
        let mut image = StatusImage::new();
        image.put_int("INSTANCE", 0).unwrap();
        image.put_str("NETSTAT", "receiving").unwrap();
        image.put_str("OUTSTAT", "init").unwrap();
        image.put_int("NPACKETS", 123_456_789_012).unwrap();
        image.put_float("SSINT", -1.2345678901234567e-300).unwrap();
        image.put_str("COMPUTESTAT", "waiting").unwrap();
        image.put_int("NPACKETS", 7).unwrap();
        let cards = parse_cards(image.bytes()).unwrap();
        assert_eq!(cards.len(), 6);
        assert_eq!(cards.get("NPACKETS"), Some(&CardValue::Int(7)));
        assert_eq!(cards.get("OUTSTAT"), Some(&CardValue::Text("init".into())));
        assert_eq!(
            cards.get("COMPUTES"),
            Some(&CardValue::Text("waiting".into()))
        );
        assert_eq!(
            cards.get("SSINT"),
            Some(&CardValue::Float(-1.2345678901234567e-300))
        );
        // A string card: key, "= ", the quoted value padded to 8.
        let card = &image.bytes()[160..240];
        assert_eq!(&card[..20], b"OUTSTAT = 'init    '");
        // A number card: right-justified to byte 32.
        let card = &image.bytes()[0..80];
        assert_eq!(&card[..33], b"INSTANCE=                       0");
        assert_eq!(image.through_end().len(), 7 * CARD_LEN);
    }

    #[test]
    fn comments_after_values_are_ignored() {
        let mut buf = format!(
            "{:<80}{:<80}{:<80}",
            "NPACKETS=                   42 / packets", "OBS     = 'LICK / ok' / site", "END"
        );
        buf.push_str(&"\0".repeat(80));
        let cards = parse_cards(buf.as_bytes()).unwrap();
        assert_eq!(cards.get("NPACKETS"), Some(&CardValue::Int(42)));
        assert_eq!(cards.get("OBS"), Some(&CardValue::Text("LICK / ok".into())));
    }

    #[test]
    fn g17_is_what_c_prints() {
        assert_eq!(format_g17(0.1), "0.10000000000000001");
        assert_eq!(format_g17(1.0), "1");
        assert_eq!(format_g17(1e17), "1e+17");
        assert_eq!(format_g17(123.5), "123.5");
        assert_eq!(format_g17(1e-5), "1.0000000000000001e-05");
        for x in [0.1, 1.0, 1e17, 123.5, 1e-5, -2.5e300, 5e-324] {
            assert_eq!(format_g17(x).parse::<f64>().unwrap(), x);
        }
    }

    #[test]
    fn each_kind_of_garbage_is_its_own_error() {
        let card = |s: &str| format!("{s:<80}");
        let with_end = |s: &str| format!("{}{}", card(s), card("END")).into_bytes();
        assert!(matches!(
            parse_cards(card("A       = 1").as_bytes()),
            Err(ParseError::NoEnd { len: 80 })
        ));
        let mut bad = with_end("A       = 1");
        bad[20] = 0xC3;
        assert!(matches!(
            parse_cards(&bad),
            Err(ParseError::NonAscii {
                offset: 0,
                byte: 0xC3
            })
        ));
        assert!(matches!(
            parse_cards(&with_end("NETSTAT  'x'")),
            Err(ParseError::NoEquals { .. })
        ));
        assert!(matches!(
            parse_cards(&with_end("NETSTAT = 'recei")),
            Err(ParseError::UnterminatedQuote { .. })
        ));
        assert!(matches!(
            parse_cards(&with_end("NPACKETS=  12 34")),
            Err(ParseError::Junk { .. })
        ));
        assert!(matches!(
            parse_cards(&with_end("NPACKETS= 'a' b")),
            Err(ParseError::Junk { .. })
        ));
        assert!(matches!(
            parse_cards(&with_end("        = 1")),
            Err(ParseError::EmptyKey { .. })
        ));
        assert!(matches!(
            parse_cards(&with_end("NPACKETS=")),
            Err(ParseError::Junk { .. })
        ));
        assert!(matches!(
            parse_cards(&[0u8; SEGMENT_LEN]),
            Err(ParseError::NoEnd { len: 0 })
        ));
        assert!(matches!(
            parse_cards(&[b'x'; SEGMENT_LEN]),
            Err(ParseError::NoEquals { .. })
        ));
    }
}
