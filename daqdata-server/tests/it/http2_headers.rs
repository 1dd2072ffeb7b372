//! What a connection's HPACK state holds on the server: a viewer's
//! connection lives for months, and every re-opened stream must not leave
//! one more header-table entry behind, neither for what the server sends
//! (no `Date`) nor for what the client sends (the server announces a
//! header table of size 0, and refuses a client that grows it back).

use crate::common;

use std::time::Duration;

use common::*;
use httlib_hpack::{Decoder, Encoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// A Ping call on `stream`: its HEADERS (encoded by `encoder`, after
/// `first`, with incremental indexing when `index`) and an empty message
/// in a DATA frame that ends the stream.
fn ping(encoder: &mut Encoder, stream: u32, first: &[u8], index: bool) -> Vec<u8> {
    let mut block = first.to_vec();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/daqdata.DaqData/Ping"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        let flags = if index { Encoder::WITH_INDEXING } else { 0 };
        let field = (name.as_bytes().to_vec(), value.as_bytes().to_vec(), flags);
        encoder.encode(field, &mut block).unwrap();
    }
    let mut out = frame(HEADERS, END_HEADERS, stream, &block);
    out.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 0]));
    out
}

/// A connection to the test server that has sent the client preface and
/// its (empty) SETTINGS.
async fn connect(ts: &TestServer) -> UnixStream {
    let mut conn = UnixStream::connect(&ts.sock).await.unwrap();
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    conn
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The server's next frame, within 10 s.
async fn read_frame(conn: &mut UnixStream) -> Frame {
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut head))
        .await
        .expect("no frame from the server within 10 s")
        .unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload).await.unwrap();
    Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    }
}

/// Reads frames until the HEADERS blocks of `stream` hold `grpc-status`
/// (the trailers); returns every header field of those blocks with its
/// HPACK flags, decoded by `decoder`, which keeps the connection's table.
async fn response_fields(
    conn: &mut UnixStream,
    decoder: &mut Decoder<'_>,
    stream: u32,
) -> Vec<(String, String, u8)> {
    let mut fields = Vec::new();
    loop {
        let Frame {
            kind,
            flags,
            stream: id,
            mut payload,
        } = read_frame(conn).await;
        if kind == SETTINGS && flags & ACK == 0 {
            conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        }
        if kind != HEADERS || id != stream {
            continue;
        }
        assert!(
            flags & END_HEADERS != 0,
            "a response's headers in one frame"
        );
        let mut decoded = Vec::new();
        decoder.decode(&mut payload, &mut decoded).unwrap();
        let trailers = decoded.iter().any(|(n, _, _)| n == b"grpc-status");
        fields.extend(decoded.into_iter().map(|(n, v, f)| {
            (
                String::from_utf8_lossy(&n).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
                f,
            )
        }));
        if trailers {
            return fields;
        }
    }
}

#[tokio::test]
async fn calls_on_a_long_lived_connection_add_nothing_new_to_its_header_table() {
    let mut ts = TestServer::start(None, |_| {}).await;
    let mut conn = connect(&ts).await;
    let mut encoder = Encoder::default();
    let mut decoder = Decoder::default();

    // Three calls on one connection, as a viewer re-opens its stream
    // after each forced InitHpIo: what the server indexes, it indexes on
    // the first; later calls add no entry (no `Date` of the current
    // second, nothing else that changes).
    for stream in [1u32, 3, 5] {
        conn.write_all(&ping(&mut encoder, stream, &[], true))
            .await
            .unwrap();
        let fields = response_fields(&mut conn, &mut decoder, stream).await;
        let status = fields.iter().find(|(n, _, _)| n == "grpc-status");
        assert_eq!(status.map(|(_, v, _)| v.as_str()), Some("0"), "{fields:?}");
        assert!(
            !fields.iter().any(|(n, _, _)| n == "date"),
            "a date header in {fields:?}"
        );
        if stream > 1 {
            let indexed: Vec<_> = fields
                .iter()
                .filter(|(_, _, f)| f & Decoder::WITH_INDEXING != 0)
                .collect();
            assert!(
                indexed.is_empty(),
                "stream {stream} added {indexed:?} to the header table"
            );
        }
    }
    ts.shutdown().await;
}

#[tokio::test]
async fn the_server_preface_asks_clients_not_to_index_what_they_send() {
    let mut ts = TestServer::start(None, |_| {}).await;
    let mut conn = connect(&ts).await;
    let first = read_frame(&mut conn).await;
    assert_eq!(
        (first.kind, first.flags & ACK),
        (SETTINGS, 0),
        "the first frame is the server's SETTINGS"
    );
    let settings: Vec<(u16, u32)> = first
        .payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    let table_size = settings
        .iter()
        .rev()
        .find(|(id, _)| *id == 0x1)
        .map(|(_, v)| *v);
    assert_eq!(
        table_size,
        Some(0),
        "SETTINGS_HEADER_TABLE_SIZE in {settings:?}"
    );

    // A client that follows it (an empty table from its first header
    // block on) is served.
    conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    let mut encoder = Encoder::with_dynamic_size(0);
    let mut decoder = Decoder::default();
    const TABLE_SIZE_ZERO: u8 = 0x20; // a dynamic table size update to 0
    let call = ping(&mut encoder, 1, &[TABLE_SIZE_ZERO], false);
    conn.write_all(&call).await.unwrap();
    let fields = response_fields(&mut conn, &mut decoder, 1).await;
    let status = fields.iter().find(|(n, _, _)| n == "grpc-status");
    assert_eq!(status.map(|(_, v, _)| v.as_str()), Some("0"), "{fields:?}");
    ts.shutdown().await;
}

#[tokio::test]
async fn a_client_that_grows_the_header_table_back_is_refused() {
    const GOAWAY: u8 = 7;
    const NO_ERROR: u32 = 0;
    let mut ts = TestServer::start(None, |_| {}).await;
    let mut conn = connect(&ts).await;
    let first = read_frame(&mut conn).await;
    assert_eq!(first.kind, SETTINGS);
    conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    // A dynamic table size update to 4096, above the 0 the server set.
    const TABLE_SIZE_4096: [u8; 3] = [0x3f, 0xe1, 0x1f];
    let mut encoder = Encoder::default();
    let call = ping(&mut encoder, 1, &TABLE_SIZE_4096, true);
    conn.write_all(&call).await.unwrap();
    let goaway = loop {
        let f = read_frame(&mut conn).await;
        assert!(
            !(f.kind == HEADERS && f.stream == 1),
            "the call was answered"
        );
        if f.kind == GOAWAY {
            break f;
        }
    };
    let code = u32::from_be_bytes([
        goaway.payload[4],
        goaway.payload[5],
        goaway.payload[6],
        goaway.payload[7],
    ]);
    // h2 says PROTOCOL_ERROR for any HPACK decoding error.
    assert_ne!(code, NO_ERROR, "GOAWAY error code");
    ts.shutdown().await;
}
