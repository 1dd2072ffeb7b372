//! A fast reader for the headers Hashpipe writes, with serde as the judge.
//!
//! Hashpipe headers are one JSON object of integers, or of objects of
//! integers, with plain keys. Reading exactly that by hand takes a fifth of
//! the time `serde_json` takes, and headers are most of a frame's parse
//! time. Anything else (escapes, strings, floats, nulls, duplicate keys,
//! numbers out of range, malformed JSON) returns `None`, and the caller
//! asks `serde_json`, which then decides and words the error. So this only
//! ever answers where serde would answer the same; a property test checks it.

use crate::frame::HeaderFields;
use crate::Quabo;

/// The typed fields of `text`, or `None` to defer to `serde_json`.
pub(crate) fn fields(text: &str) -> Option<HeaderFields> {
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    let mut f = HeaderFields::default();
    s.object(|s, key| {
        match key {
            b"quabo_0" => once(&mut f.quabo_0, s.quabo()?),
            b"quabo_1" => once(&mut f.quabo_1, s.quabo()?),
            b"quabo_2" => once(&mut f.quabo_2, s.quabo()?),
            b"quabo_3" => once(&mut f.quabo_3, s.quabo()?),
            b"quabo_num" => once(&mut f.quabo_num, s.int()?),
            b"pkt_num" => once(&mut f.pkt_num, s.int()?),
            b"pkt_tai" => once(&mut f.pkt_tai, s.int()?),
            b"pkt_nsec" => once(&mut f.pkt_nsec, s.int()?),
            b"tv_sec" => once(&mut f.tv_sec, s.int()?),
            b"tv_usec" => once(&mut f.tv_usec, s.int()?),
            // serde ignores unknown fields, whatever they hold; here only
            // integers are understood.
            _ => s.int::<i64>().map(drop),
        }
    })?;
    s.ws();
    (s.i == s.b.len()).then_some(f)
}

/// Sets a field the first time; a second time is serde's "duplicate field".
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    /// Skips JSON whitespace (exactly these four bytes).
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// `{ "key": value, ... }`, calling `value` after each key's colon.
    fn object(&mut self, mut value: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            value(self, key)?;
            self.ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A key without escapes or control characters.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let key = &self.b[start..self.i];
        self.i += 1;
        Some(key)
    }

    /// A JSON integer that fits `T`: `-?(0|[1-9][0-9]*)`, not followed by a
    /// fraction or exponent.
    fn int<T: TryFrom<i128>>(&mut self) -> Option<T> {
        self.ws();
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let start = self.i;
        let mut magnitude: i128 = 0;
        while let Some(&d @ b'0'..=b'9') = self.b.get(self.i) {
            // 20 digits hold any i64 or u64; more is out of range anyway.
            if self.i - start >= 20 {
                return None;
            }
            magnitude = magnitude * 10 + i128::from(d - b'0');
            self.i += 1;
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && self.b[start] == b'0';
        if digits == 0 || leading_zero || negative && magnitude == 0 {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        T::try_from(if negative { -magnitude } else { magnitude }).ok()
    }

    /// `{ "pkt_num": .., "pkt_tai": .., "pkt_nsec": .., "tv_sec": .., "tv_usec": .. }`.
    fn quabo(&mut self) -> Option<Quabo> {
        let (mut pkt_num, mut pkt_tai, mut pkt_nsec, mut tv_sec, mut tv_usec) =
            (None, None, None, None, None);
        self.object(|s, key| match key {
            b"pkt_num" => once(&mut pkt_num, s.int()?),
            b"pkt_tai" => once(&mut pkt_tai, s.int()?),
            b"pkt_nsec" => once(&mut pkt_nsec, s.int()?),
            b"tv_sec" => once(&mut tv_sec, s.int()?),
            b"tv_usec" => once(&mut tv_usec, s.int()?),
            _ => s.int::<i64>().map(drop),
        })?;
        Some(Quabo {
            pkt_num: pkt_num?,
            pkt_tai: pkt_tai?,
            pkt_nsec: pkt_nsec?,
            tv_sec: tv_sec?,
            tv_usec: tv_usec?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG16: &str = "{\n   \"quabo_0\": { \"pkt_num\":      37905, \"pkt_tai\":  529, \"pkt_nsec\": 691007488, \"tv_sec\": 1721882092, \"tv_usec\": 691344}, \n   \"quabo_1\": { \"pkt_num\":      36353, \"pkt_tai\":  529, \"pkt_nsec\": 691007484, \"tv_sec\": 1721882092, \"tv_usec\": 691380}, \n   \"quabo_2\": { \"pkt_num\":      34970, \"pkt_tai\":  529, \"pkt_nsec\": 691007492, \"tv_sec\": 1721882092, \"tv_usec\": 691372}, \n   \"quabo_3\": { \"pkt_num\":      33604, \"pkt_tai\":  529, \"pkt_nsec\": 691007484, \"tv_sec\": 1721882092, \"tv_usec\": 691370}\n}";
    const PH256: &str = r#"{ "quabo_num": 3, "pkt_num":       5124, "pkt_tai":  229, "pkt_nsec": 999999999, "tv_sec": 1754112728, "tv_usec": 985339}"#;

    fn serde(text: &str) -> Option<HeaderFields> {
        serde_json::from_str(text).ok()
    }

    /// A real header with a few bytes replaced, inserted or removed, from
    /// an alphabet that makes JSON mean something else.
    fn mutated() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let alphabet = b"{}[]\":,-+.eE0123456789 \n\tqx_\\n".to_vec();
        let edit = (
            any::<prop::sample::Index>(),
            0u8..3,
            prop::sample::select(alphabet),
        );
        (
            prop::sample::select(vec![IMG16, PH256]),
            prop::collection::vec(edit, 1..4),
        )
            .prop_map(|(text, edits)| {
                let mut b = text.as_bytes().to_vec();
                for (at, op, c) in edits {
                    let i = at.index(b.len());
                    match op {
                        0 => b[i] = c,
                        1 => b.insert(i, c),
                        _ => drop(b.remove(i)),
                    }
                }
                String::from_utf8_lossy(&b).into_owned()
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        #[test]
        fn the_fast_path_never_disagrees_with_serde(text in mutated()) {
            if let Some(fast) = fields(&text) {
                proptest::prop_assert_eq!(Some(fast), serde(&text), "{}", text);
            }
        }
    }

    #[test]
    fn hashpipe_headers_take_the_fast_path_and_agree_with_serde() {
        for text in [IMG16, PH256] {
            let fast = fields(text);
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, serde(text));
        }
    }

    #[test]
    fn what_the_fast_path_does_not_know_goes_to_serde() {
        for text in [
            r#"{"pkt_num": 1, "pkt_num": 2}"#,
            r#"{"pkt_num": 1.0}"#,
            r#"{"pkt_num": 1e3}"#,
            r#"{"pkt_num": -1}"#,
            r#"{"pkt_num": -0}"#,
            r#"{"pkt_num": 01}"#,
            r#"{"pkt_num": 4294967296}"#,
            r#"{"quabo_num": 256}"#,
            r#"{"pkt_\u006eum": 1}"#,
            r#"{"note": "x"}"#,
            r#"{"quabo_0": null}"#,
            r#"{"quabo_0": {"pkt_num": 1}}"#,
            r#"{"pkt_num": 1,}"#,
            r#"{"pkt_num": 1} x"#,
            r#"{"tv_sec": 99999999999999999999999}"#,
            "{\"a\u{1}\": 1}",
            "",
            "{",
        ] {
            assert_eq!(fields(text), None, "{text}");
        }
        assert_eq!(fields(" {} "), serde(" {} "));
        assert_eq!(
            fields(r#"{"tv_sec": -9223372036854775808, "extra": 7}"#),
            serde(r#"{"tv_sec": -9223372036854775808, "extra": 7}"#)
        );
    }
}
