//! Lets gRPC C-core clients (Python's `grpcio` among them) talk over the
//! unix socket.
//!
//! Since grpc 1.57, C-core sends a unix-socket path as the HTTP/2
//! `:authority`, %-encoded (`tmp%2Fdaq_data.sock`). The HTTP/2 layer under
//! tonic (h2) only accepts an RFC 3986 authority, in which `%` may not
//! stand in a host name, and resets every such request with PROTOCOL_ERROR.
//! The Python clients of panoseti-grpc connect to `unix:///tmp/daq_data.sock`
//! by default, so they could not use the socket at all.
//!
//! This wrapper reads what the client sends, finds `:authority` fields in
//! HEADERS frames and replaces each `%` of their value with `_`. The value
//! keeps its length, so HPACK's dynamic table (whose entry sizes count the
//! value length) stays the same on both sides and nothing else changes.
//! The authority is not used by this server. Only values sent as plain
//! (not Huffman-coded) strings are touched; C-core sends them plain.
//!
//! Upstream: grpc/grpc#38142 (C-core's %-encoded unix `:authority`, since
//! grpc/grpc#33571), tonic#243 (hyperium/tonic, now grpc/grpc-rust) and
//! the open h2 pull request hyperium/h2#487 ("Do not require authority
//! for UNIX domain sockets").
//! hyper's HTTP/2 builder has no setting for this (h2 checks the
//! authority while decoding headers), so this is the one byte-level shim
//! the server keeps while hyperium/h2#487 is open.
//! Delete this module once the h2 that tonic uses accepts such an authority,
//! or once the grpcio that panoseti-grpc pins sends `localhost` instead;
//! the interop tests over the unix socket say whether it is still needed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// A HEADERS frame larger than this is passed on unread (h2 would refuse
/// it anyway: the default maximum frame size is 16 KiB).
const MAX_HEADERS_FRAME: usize = 1 << 20;

/// What a unix-socket client sends, with its `:authority` values made
/// acceptable (the accept loop in `transport` puts it on the read half).
pub(crate) struct AuthorityFix<S> {
    inner: S,
    /// Read from the client, not yet looked at.
    raw: BytesMut,
    /// Looked at, ready for the server.
    ready: BytesMut,
    preface_left: usize,
    /// Bytes of a frame other than HEADERS still to pass on untouched.
    pass_left: usize,
}

impl<S> AuthorityFix<S> {
    pub(crate) fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            raw: BytesMut::new(),
            ready: BytesMut::new(),
            preface_left: PREFACE_LEN,
            pass_left: 0,
        }
    }

    /// Moves every whole unit (preface, frame header, pass-through bytes,
    /// whole HEADERS frame) from `raw` to `ready`.
    fn process(&mut self) {
        loop {
            if self.preface_left > 0 || self.pass_left > 0 {
                let left = if self.preface_left > 0 {
                    &mut self.preface_left
                } else {
                    &mut self.pass_left
                };
                let n = (*left).min(self.raw.len());
                if n == 0 {
                    return;
                }
                *left -= n;
                let part = self.raw.split_to(n);
                self.ready.extend_from_slice(&part);
                continue;
            }
            if self.raw.len() < FRAME_HEADER_LEN {
                return;
            }
            let len = usize::from(self.raw[0]) << 16
                | usize::from(self.raw[1]) << 8
                | usize::from(self.raw[2]);
            if self.raw[3] == HEADERS && len <= MAX_HEADERS_FRAME {
                if self.raw.len() < FRAME_HEADER_LEN + len {
                    return;
                }
                let mut frame = self.raw.split_to(FRAME_HEADER_LEN + len);
                fix_headers_frame(&mut frame);
                self.ready.extend_from_slice(&frame);
            } else {
                let header = self.raw.split_to(FRAME_HEADER_LEN);
                self.ready.extend_from_slice(&header);
                self.pass_left = len;
            }
        }
    }
}

/// Replaces `%` by `_` in plain `:authority` values of one HEADERS frame.
fn fix_headers_frame(frame: &mut [u8]) {
    let flags = frame[4];
    let payload = &mut frame[FRAME_HEADER_LEN..];
    let mut start = 0;
    let mut end = payload.len();
    if flags & FLAG_PADDED != 0 {
        let Some(&pad) = payload.first() else { return };
        start = 1;
        end = end.saturating_sub(usize::from(pad));
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    if start < end {
        fix_block(&mut payload[start..end]);
    }
}

/// Walks the HPACK representations of a header block (RFC 7541 §6); stops
/// quietly at anything it cannot follow, leaving the rest as it is.
fn fix_block(block: &mut [u8]) -> Option<()> {
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        let name_index = if b & 0x80 != 0 {
            integer(block, &mut i, 7)?;
            continue;
        } else if b & 0xc0 == 0x40 {
            integer(block, &mut i, 6)?
        } else if b & 0xe0 == 0x20 {
            integer(block, &mut i, 5)?;
            continue;
        } else {
            integer(block, &mut i, 4)?
        };
        let is_authority = if name_index == 0 {
            let (huffman, name) = string(block, &mut i)?;
            !huffman && &block[name] == b":authority"
        } else {
            // Index 1 of HPACK's static table is `:authority`.
            name_index == 1
        };
        let (huffman, value) = string(block, &mut i)?;
        if is_authority && !huffman {
            for c in &mut block[value] {
                if *c == b'%' {
                    *c = b'_';
                }
            }
        }
    }
    Some(())
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn integer(block: &[u8], i: &mut usize, n: u32) -> Option<usize> {
    let mask = (1u8 << n) - 1;
    let mut value = usize::from(*block.get(*i)? & mask);
    *i += 1;
    if value < usize::from(mask) {
        return Some(value);
    }
    let mut shift = 0;
    loop {
        let b = *block.get(*i)?;
        *i += 1;
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Some(value);
        }
        if shift > 28 {
            return None;
        }
    }
}

/// An HPACK string: whether it is Huffman-coded, and where its bytes are.
fn string(block: &[u8], i: &mut usize) -> Option<(bool, std::ops::Range<usize>)> {
    let huffman = block.get(*i)? & 0x80 != 0;
    let len = integer(block, i, 7)?;
    let range = *i..i.checked_add(len)?;
    if range.end > block.len() {
        return None;
    }
    *i = range.end;
    Some((huffman, range))
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // End of stream: whatever is held back goes as it is.
                    let rest = this.raw.split();
                    this.ready.extend_from_slice(&rest);
                    if this.ready.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Ok(())) => {
                    this.raw.extend_from_slice(read.filled());
                    this.process();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The start of what grpcio 1.70 sends for a Ping over
    /// `unix:///tmp/cap.sock` (captured), then a DATA frame holding `%`.
    fn grpcio_ping() -> Vec<u8> {
        let block: &[u8] =
            b"@\x05:path\x15/daqdata.DaqData/Ping@\n:authority\x0etmp%2Fcap.sock\x83\x86@\x02te\x08trailers";
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 0, block.len() as u8, HEADERS, 4, 0, 0, 0, 1]);
        bytes.extend_from_slice(block);
        bytes.extend_from_slice(&[0, 0, 3, 0, 1, 0, 0, 0, 1, b'%', b'%', b'%']);
        bytes
    }

    async fn through_fix(input: Vec<u8>, chunk: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in input.chunks(chunk) {
                client.write_all(part).await.unwrap();
            }
        });
        let mut out = Vec::new();
        AuthorityFix::new(server)
            .read_to_end(&mut out)
            .await
            .unwrap();
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn only_the_authority_value_changes_however_the_bytes_arrive() {
        let input = grpcio_ping();
        let mut want = input.clone();
        let at = want
            .windows(14)
            .position(|w| w == b"tmp%2Fcap.sock")
            .unwrap();
        want[at..at + 14].copy_from_slice(b"tmp_2Fcap.sock");
        for chunk in [1, 5, 9, 64, 4096] {
            assert_eq!(
                through_fix(input.clone(), chunk).await,
                want,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn indexed_authority_names_and_huffman_values_are_recognised_or_left_alone() {
        // Literal without indexing, name index 1 (:authority), plain value.
        let mut block = b"\x01\x05a%b%c".to_vec();
        fix_block(&mut block).unwrap();
        assert_eq!(&block, b"\x01\x05a_b_c");
        // The same value marked Huffman-coded is not touched.
        let mut block = b"\x01\x85a%b%c".to_vec();
        fix_block(&mut block).unwrap();
        assert_eq!(&block, b"\x01\x85a%b%c");
        // Another header keeps its %.
        let mut block = b"\x04\x03a%b".to_vec();
        fix_block(&mut block).unwrap();
        assert_eq!(&block, b"\x04\x03a%b");
        // A truncated block is left as it is, without a panic.
        let mut block = b"\x40\x0a:autho".to_vec();
        assert!(fix_block(&mut block).is_none());
    }
}

#[cfg(test)]
mod props;
