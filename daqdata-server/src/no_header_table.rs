//! Asks every client not to use HPACK's dynamic table for what it sends.
//!
//! h2 decodes header strings without copying them: a field the client
//! adds to the connection's HPACK table stays a slice of the 8 KiB read
//! buffer it arrived in, and keeps that whole buffer alive for as long as
//! the entry lives, which on a viewer's connection is months. Once the
//! connection has read a buffer's worth, h2 takes a new one and the old
//! one stays: the soak saw every long-lived connection grow by 8 KiB at
//! about minute 13, and a client whose headers change on each call (a
//! `grpc-timeout`) pins a buffer with each new entry, up to the table's
//! 4 KiB of entries, that is up to some 80 buffers per connection.
//!
//! The server connection preface (RFC 9113 §3.4) is a SETTINGS frame; this
//! wrapper appends SETTINGS_HEADER_TABLE_SIZE = 0 to it (the last value of
//! a setting is the one that counts). A client then empties the table with
//! a size update at the start of its next header block and adds nothing
//! more (RFC 7541 §4.2, §6.3), so no field outlives its request. Requests
//! are rare (one per stream), so sending their headers as literals costs
//! nothing that matters. tonic does not expose hyper's `header_table_size`,
//! which would say the same; delete this module when it does.
//!
//! Only the server's first frame is looked at; everything after it, and
//! everything read, passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const FRAME_HEADER_LEN: usize = 9;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
/// SETTINGS_HEADER_TABLE_SIZE = 0.
const NO_HEADER_TABLE: [u8; 6] = [0x00, 0x01, 0, 0, 0, 0];
/// A first frame larger than this is not a server preface: passed on.
const MAX_PREFACE: usize = 1024;

/// A server connection whose first SETTINGS frame also says
/// SETTINGS_HEADER_TABLE_SIZE = 0.
pub(crate) struct NoHeaderTable<S> {
    inner: S,
    state: State,
}

enum State {
    /// The server's bytes so far, until its first frame is whole.
    First(Vec<u8>),
    /// The (amended) first bytes, partly written.
    Sending(Vec<u8>, usize),
    /// Everything passes through.
    Through,
}

impl<S> NoHeaderTable<S> {
    pub(crate) fn new(inner: S) -> Self {
        NoHeaderTable {
            inner,
            state: State::First(Vec::new()),
        }
    }
}

/// The first frame amended, when `first` holds all of it; None while more
/// is needed. A first frame that is no server SETTINGS comes back as is.
fn amend(first: &[u8]) -> Option<Vec<u8>> {
    if first.len() < FRAME_HEADER_LEN {
        return None;
    }
    let len = u32::from_be_bytes([0, first[0], first[1], first[2]]) as usize;
    let (kind, flags) = (first[3], first[4]);
    let stream = u32::from_be_bytes([first[5], first[6], first[7], first[8]]) & 0x7fff_ffff;
    if kind != SETTINGS || flags & ACK != 0 || stream != 0 || len % 6 != 0 || len > MAX_PREFACE {
        return Some(first.to_vec());
    }
    let end = FRAME_HEADER_LEN + len;
    if first.len() < end {
        return None;
    }
    let new_len = (len + NO_HEADER_TABLE.len()) as u32;
    let mut out = Vec::with_capacity(first.len() + NO_HEADER_TABLE.len());
    out.extend_from_slice(&new_len.to_be_bytes()[1..]);
    out.extend_from_slice(&first[3..end]);
    out.extend_from_slice(&NO_HEADER_TABLE);
    out.extend_from_slice(&first[end..]);
    Some(out)
}

impl<S: AsyncWrite + Unpin> NoHeaderTable<S> {
    /// Writes what `Sending` holds; Ready(Ok) once it is all out.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let State::Sending(out, sent) = &mut self.state {
            if *sent == out.len() {
                self.state = State::Through;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &out[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends whatever the first frame holds so far as it is: flushing or
    /// closing before the first frame is whole means it is no preface.
    fn give_up_amending(&mut self) {
        if let State::First(first) = &mut self.state {
            self.state = State::Sending(std::mem::take(first), 0);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoHeaderTable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let State::First(first) = &mut this.state {
            first.extend_from_slice(buf);
            if let Some(out) = amend(first) {
                this.state = State::Sending(out, 0);
                // Written as far as the socket takes now; the rest goes
                // before any later byte.
                if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            return Poll::Ready(Ok(buf.len()));
        }
        match this.poll_send(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.state, State::Through) {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        let buf = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.give_up_amending();
        match self.poll_send(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.give_up_amending();
        match self.poll_send(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NoHeaderTable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

crate::io_wrap::pass_connect_info_through!(NoHeaderTable);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    /// h2's server preface: MAX_CONCURRENT_STREAMS and INITIAL_WINDOW_SIZE,
    /// then a WINDOW_UPDATE and a PING.
    fn server_start() -> (Vec<u8>, Vec<u8>) {
        let settings = [0, 3, 0, 0, 0, 200, 0, 4, 0, 0x10, 0, 0];
        let rest = [frame(8, 0, 0, &[0, 0x0f, 0, 1]), frame(6, 0, 0, &[7; 8])].concat();
        let sent = [frame(SETTINGS, 0, 0, &settings), rest.clone()].concat();
        let mut amended = settings.to_vec();
        amended.extend(NO_HEADER_TABLE);
        let expected = [frame(SETTINGS, 0, 0, &amended), rest].concat();
        (sent, expected)
    }

    /// Writes `chunks` through the wrapper into a pipe that takes at most
    /// `take` bytes a time, flushing after each; returns what came out.
    async fn through(chunks: Vec<Vec<u8>>, take: usize) -> Vec<u8> {
        let (a, mut b) = tokio::io::duplex(take);
        let writer = tokio::spawn(async move {
            let mut w = NoHeaderTable::new(a);
            for c in chunks {
                w.write_all(&c).await.unwrap();
            }
            w.flush().await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut out)
            .await
            .unwrap();
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_first_settings_frame_also_says_header_table_size_zero() {
        let (sent, expected) = server_start();
        assert_eq!(through(vec![sent], 1 << 16).await, expected);
    }

    #[tokio::test]
    async fn a_first_frame_that_is_no_server_settings_passes_unchanged() {
        for first in [
            frame(SETTINGS, ACK, 0, &[]),
            frame(SETTINGS, 0, 1, &[0; 6]),
            frame(SETTINGS, 0, 0, &[0; 5]),
            frame(0, 0, 1, b"data"),
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
        ] {
            let sent = [first, frame(6, 0, 0, &[1; 8])].concat();
            assert_eq!(through(vec![sent.clone()], 64).await, sent);
        }
    }

    #[tokio::test]
    async fn fewer_bytes_than_a_frame_header_then_a_flush_pass_unchanged() {
        assert_eq!(through(vec![vec![0, 0, 6, 4]], 64).await, [0, 0, 6, 4]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn amended_alike_however_the_writes_are_split(
            cuts in proptest::collection::vec(0usize..40, 0..6),
            take in 1usize..40,
        ) {
            let (sent, expected) = server_start();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(sent.len())).collect();
            cuts.push(0);
            cuts.push(sent.len());
            cuts.sort_unstable();
            let chunks: Vec<Vec<u8>> =
                cuts.windows(2).map(|w| sent[w[0]..w[1]].to_vec()).collect();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            prop_assert_eq!(rt.block_on(through(chunks, take)), expected);
        }
    }
}
