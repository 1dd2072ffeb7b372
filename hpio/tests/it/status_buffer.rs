//! Hashpipe's status buffer, read from real System V segments and named
//! semaphores that each test creates under its own keyfile (a temporary
//! directory), as SPEC §9's safe reader must read them.

use std::path::Path;
use std::time::{Duration, Instant};

use hpio::status::{
    check_parse, parse_cards, CardValue, ParseError, ReadError, StatusError, StatusLocation,
    StatusReader, StatusWriter, CARD_LEN, SEGMENT_LEN,
};
use proptest::prelude::*;

/// Generous: tests wait for behaviour, never measure it.
const PATIENCE: Duration = Duration::from_secs(20);

/// A keyfile of its own and the buffer Hashpipe would keep under it.
/// `ftok` keeps only 16 bits of the inode, so another process's key can
/// collide: then another directory is tried.
fn fresh_buffer() -> (tempfile::TempDir, StatusWriter) {
    for _ in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let location = StatusLocation::new(dir.path(), 0).unwrap();
        match StatusWriter::create(location) {
            Ok(writer) => return (dir, writer),
            Err(StatusError::Create { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                continue
            }
            Err(e) => panic!("cannot create a status buffer: {e}"),
        }
    }
    panic!("every key tried is taken");
}

fn write_panoseti_cards(writer: &mut StatusWriter, packets: i64, net: &str) {
    writer
        .update(|image| {
            image.put_int("INSTANCE", 0)?;
            image.put_str("NETSTAT", net)?;
            image.put_str("COMPUTESTAT", "processing")?;
            image.put_str("OUTSTAT", "waiting")?;
            image.put_int("NPACKETS", packets)?;
            image.put_int("TPKTLST", 3)?;
            image.put_float("SSINT", 0.1)
        })
        .unwrap()
        .unwrap();
}

#[test]
fn a_reader_sees_the_cards_hashpipe_writes() {
    let (_dir, mut writer) = fresh_buffer();
    write_panoseti_cards(&mut writer, 16_384, "receiving");
    let mut reader = StatusReader::new(writer.location().clone());
    let snapshot = reader.read().unwrap();
    assert_eq!(
        snapshot.cards.get("NETSTAT"),
        Some(&CardValue::Text("receiving".into()))
    );
    assert_eq!(
        snapshot.cards.get("COMPUTES"),
        Some(&CardValue::Text("processing".into()))
    );
    assert_eq!(
        snapshot.cards.get("NPACKETS"),
        Some(&CardValue::Int(16_384))
    );
    assert_eq!(snapshot.cards.get("SSINT"), Some(&CardValue::Float(0.1)));
    write_panoseti_cards(&mut writer, 32_768, "blocked");
    let snapshot = reader.read().unwrap();
    assert_eq!(
        snapshot.cards.get("NETSTAT"),
        Some(&CardValue::Text("blocked".into()))
    );
    assert_eq!(reader.stats().reads, 2);
    assert_eq!(reader.stats().attaches, 1);
}

#[test]
fn without_a_segment_the_reader_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let location = StatusLocation::new(dir.path(), 0).unwrap();
    let mut reader = StatusReader::new(location.clone());
    for _ in 0..3 {
        let error = reader.read().unwrap_err();
        if matches!(error, ReadError::Os { .. }) {
            panic!("{error}");
        }
        // Another process's segment may share the key (ftok keeps 16 bits
        // of the inode); then this check says nothing.
        if !matches!(error, ReadError::NoSegment { .. }) {
            return;
        }
    }
    // Nothing was created: a writer can still create the segment, which
    // fails when one exists.
    let writer = StatusWriter::create(location).unwrap();
    drop(writer);
}

#[test]
fn a_held_lock_skips_the_read_and_counts_it() {
    let (_dir, mut writer) = fresh_buffer();
    write_panoseti_cards(&mut writer, 1, "receiving");
    let mut reader = StatusReader::new(writer.location().clone());
    {
        let _hold = writer.hold_lock().unwrap();
        let start = Instant::now();
        let error = reader.read().unwrap_err();
        assert!(matches!(error, ReadError::LockBusy { .. }), "{error}");
        assert!(
            error.to_string().contains(&writer.location().semaphore),
            "{error}"
        );
        // The wait is bounded (100 ms); the bound here only catches a
        // reader that waits for the holder.
        assert!(start.elapsed() < PATIENCE);
        assert_eq!(reader.stats().skipped, 1);
    }
    // Released: the next read goes through.
    assert_eq!(
        reader.read().unwrap().cards.get("NPACKETS"),
        Some(&CardValue::Int(1))
    );
    assert_eq!(reader.stats().skipped, 1);
}

#[test]
fn a_removed_and_recreated_segment_is_attached_again() {
    let (dir, mut writer) = fresh_buffer();
    write_panoseti_cards(&mut writer, 5, "receiving");
    let location = writer.location().clone();
    let mut reader = StatusReader::new(location.clone());
    assert!(reader.read().is_ok());
    drop(writer);
    assert!(matches!(reader.read(), Err(ReadError::NoSegment { .. })));
    let mut writer = StatusWriter::create(location).unwrap();
    write_panoseti_cards(&mut writer, 77, "init");
    let snapshot = reader.read().unwrap();
    assert_eq!(snapshot.cards.get("NPACKETS"), Some(&CardValue::Int(77)));
    assert_eq!(reader.stats().attaches, 2);
    // Replaced while attached (removed and made again between two reads).
    drop(writer);
    let mut writer = StatusWriter::create(StatusLocation::new(dir.path(), 0).unwrap()).unwrap();
    write_panoseti_cards(&mut writer, 99, "init");
    assert_eq!(
        reader.read().unwrap().cards.get("NPACKETS"),
        Some(&CardValue::Int(99))
    );
    assert_eq!(reader.stats().attaches, 3);
}

/// 80-byte cards, then END, then NULs.
fn buffer_of(cards: &[&[u8]], end: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    for card in cards {
        let mut c = card.to_vec();
        c.resize(CARD_LEN, b' ');
        bytes.extend_from_slice(&c);
    }
    if end {
        bytes.extend_from_slice(format!("{:<80}", "END").as_bytes());
    }
    bytes.resize(SEGMENT_LEN, 0);
    bytes
}

#[test]
fn garbage_in_the_segment_is_a_counted_parse_error() {
    let (_dir, mut writer) = fresh_buffer();
    let mut reader = StatusReader::new(writer.location().clone());
    let mut junk = vec![0u8; SEGMENT_LEN];
    let mut x: u32 = 0x2545_f491;
    for b in &mut junk {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "no END",
            buffer_of(&[b"NPACKETS=                    1"], false),
        ),
        (
            "non-ASCII",
            buffer_of(&["OBS     = 'Lické'".as_bytes()], true),
        ),
        (
            "card without =",
            buffer_of(&[b"NETSTAT   'receiving'"], true),
        ),
        (
            "unterminated quote",
            buffer_of(&[b"NETSTAT = 'receiving"], true),
        ),
        ("184,320 bytes of junk", junk),
        ("184,320 bytes of x", vec![b'x'; SEGMENT_LEN]),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        writer.write_raw(bytes).unwrap();
        let error = reader.read().unwrap_err();
        let ReadError::Parse { source, .. } = &error else {
            panic!("{what}: {error}");
        };
        let expected = match *what {
            "no END" => matches!(source, ParseError::NoEnd { .. }),
            "non-ASCII" => matches!(source, ParseError::NonAscii { .. }),
            "card without =" => matches!(source, ParseError::NoEquals { .. }),
            "unterminated quote" => matches!(source, ParseError::UnterminatedQuote { .. }),
            _ => true,
        };
        assert!(expected, "{what}: {source}");
        assert_eq!(reader.stats().parse_failures, i as u64 + 1);
    }
    // And a good buffer afterwards reads again.
    writer
        .write_raw(&buffer_of(&[b"NPACKETS=                    7"], true))
        .unwrap();
    assert_eq!(
        reader.read().unwrap().cards.get("NPACKETS"),
        Some(&CardValue::Int(7))
    );
}

#[test]
fn a_missing_keyfile_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("hashpipe-keyfile");
    let error = StatusLocation::new(&missing, 0).unwrap_err();
    assert!(matches!(error, StatusError::Keyfile { .. }));
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_semaphore_name_too_long_is_an_error_naming_the_keyfile() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(200)).join("e".repeat(100));
    std::fs::create_dir_all(&deep).unwrap();
    let error = StatusLocation::new(&deep, 0).unwrap_err();
    assert!(
        matches!(error, StatusError::SemaphoreNameTooLong { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&deep.display().to_string()),
        "{error}"
    );
}

#[test]
fn the_fuzz_seeds_pass_the_fuzz_checks() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/parse_status");
    let mut n = 0;
    for entry in std::fs::read_dir(&seeds).unwrap() {
        check_parse(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 5, "{n} seeds in {}", seeds.display());
    let good = std::fs::read(seeds.join("good")).unwrap();
    assert_eq!(parse_cards(&good).unwrap().len(), 5);
}

/// A card of printable ASCII, or one of the shapes Hashpipe writes.
fn card() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(0x20u8..0x7f, CARD_LEN),
        ("[A-Z0-9]{1,8}", any::<i64>()).prop_map(|(k, v)| format!("{k:<8}= {v:>22}").into_bytes()),
        ("[A-Z0-9]{1,8}", "[ -&(-~]{0,67}")
            .prop_map(|(k, v)| format!("{k:<8}= '{v:<8}'").into_bytes()),
        ("[A-Z0-9]{1,8}", any::<f64>())
            .prop_map(|(k, v)| format!("{k:<8}= {v:e} / c").into_bytes()),
        Just(b"END".to_vec()),
    ]
    .prop_map(|mut c| {
        c.resize(CARD_LEN, b' ');
        c
    })
}

proptest! {
    #[test]
    fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_parse(&bytes);
    }

    #[test]
    fn any_cards_parse_or_fail_without_panicking(cards in proptest::collection::vec(card(), 0..40)) {
        check_parse(&cards.concat());
    }
}
