//! The upgraded connection as hyper's HTTP/2 server sees it: reads start with the
//! client's preface and SETTINGS followed by the synthesized stream-1 frames, then
//! pass through; writes pass through once the connection-window debt the
//! synthesized body created is paid.
//!
//! The debt: the server counts stream 1's DATA against its connection receive
//! window, but the client sent that body over HTTP/1.1 and never counted it, so
//! the client believes it may send that many octets more than the server allows
//! and a full window would end in FLOW_CONTROL_ERROR. Withholding the same amount
//! from the server's connection-level WINDOW_UPDATE increments makes both sides
//! agree again.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::prefixed::Prefixed;

use super::frames::{FRAME_HEADER_LEN, FrameHead, WINDOW_UPDATE};

/// The server's frame stream, parsed just enough to rewrite connection-level
/// WINDOW_UPDATE increments until `debt` octets have been withheld.
#[derive(Debug)]
pub(super) struct WindowDebt {
    debt: u32,
    state: Parse,
}

#[derive(Debug)]
enum Parse {
    /// Collecting a frame header.
    Head {
        buf: [u8; FRAME_HEADER_LEN],
        len: usize,
    },
    /// Passing this many more payload octets through untouched.
    Payload(usize),
    /// Collecting the 4-octet increment of a connection-level WINDOW_UPDATE.
    Increment { buf: [u8; 4], len: usize },
}

impl WindowDebt {
    pub(super) fn new(debt: u32) -> Self {
        WindowDebt {
            debt,
            state: Parse::Head {
                buf: [0; FRAME_HEADER_LEN],
                len: 0,
            },
        }
    }

    /// Nothing left to withhold. The debt only reaches zero right after an
    /// increment was rewritten, so no octet is held back then either.
    pub(super) fn is_paid(&self) -> bool {
        self.debt == 0
    }

    /// Appends `input` to `out`, rewriting increments. The up to 3 octets of an
    /// increment that has not fully arrived are held back until it has.
    pub(super) fn process(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                Parse::Head { buf, len } => {
                    let n = (FRAME_HEADER_LEN - *len).min(input.len());
                    buf[*len..*len + n].copy_from_slice(&input[..n]);
                    out.extend_from_slice(&input[..n]);
                    *len += n;
                    input = &input[n..];
                    if *len == FRAME_HEADER_LEN {
                        let head = FrameHead::parse(buf);
                        self.state = if head.kind == WINDOW_UPDATE
                            && head.stream == 0
                            && head.len == 4
                            && self.debt > 0
                        {
                            Parse::Increment {
                                buf: [0; 4],
                                len: 0,
                            }
                        } else {
                            Parse::Payload(head.len)
                        };
                        self.end_frame_if_empty();
                    }
                }
                Parse::Payload(left) => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    *left -= n;
                    input = &input[n..];
                    self.end_frame_if_empty();
                }
                Parse::Increment { buf, len } => {
                    let n = (4 - *len).min(input.len());
                    buf[*len..*len + n].copy_from_slice(&input[..n]);
                    *len += n;
                    input = &input[n..];
                    if *len == 4 {
                        let raw = u32::from_be_bytes(*buf);
                        let rewritten = self.withhold(raw);
                        out.extend_from_slice(&rewritten.to_be_bytes());
                        self.state = Parse::Head {
                            buf: [0; FRAME_HEADER_LEN],
                            len: 0,
                        };
                    }
                }
            }
        }
    }

    fn end_frame_if_empty(&mut self) {
        if let Parse::Payload(0) = self.state {
            self.state = Parse::Head {
                buf: [0; FRAME_HEADER_LEN],
                len: 0,
            };
        }
    }

    /// The increment to send instead of `raw`'s, keeping it at least 1: a zero
    /// increment is a PROTOCOL_ERROR (RFC 7540 §6.9).
    fn withhold(&mut self, raw: u32) -> u32 {
        let reserved = raw & 0x8000_0000;
        let increment = raw & 0x7fff_ffff;
        let taken = self.debt.min(increment.saturating_sub(1));
        self.debt -= taken;
        reserved | (increment - taken)
    }
}

/// The upgraded connection with `prefix` to read first and the server's writes
/// run through a [`WindowDebt`].
pub(super) struct UpgradedIo<T> {
    io: Prefixed<T>,
    debt: WindowDebt,
    /// Rewritten octets accepted from the server, not yet written to `io`.
    out: Vec<u8>,
    written: usize,
}

impl<T: AsyncWrite + Unpin> UpgradedIo<T> {
    pub(super) fn new(io: T, prefix: Bytes, debt: u32) -> Self {
        UpgradedIo {
            io: Prefixed::new(prefix, io),
            debt: WindowDebt::new(debt),
            out: Vec::new(),
            written: 0,
        }
    }

    /// Writes out what earlier writes left in `out`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for UpgradedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for UpgradedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.debt.is_paid() {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        }
        this.debt.process(buf, &mut this.out);
        // Start on it now; whatever the socket doesn't take yet goes out on the
        // next write or flush.
        if let Poll::Ready(Err(err)) = this.poll_drain(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.debt.is_paid() && this.out.is_empty() {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        Pin::new(this).poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2c::frames::{DATA, HEADERS};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(0);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn window_update(stream: u32, increment: u32) -> Vec<u8> {
        frame(WINDOW_UPDATE, stream, &increment.to_be_bytes())
    }

    /// Runs `input` through a fresh debt, `chunk` octets at a time.
    fn rewrite(debt: u32, input: &[u8], chunk: usize) -> (Vec<u8>, WindowDebt) {
        let mut debt = WindowDebt::new(debt);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            debt.process(piece, &mut out);
        }
        (out, debt)
    }

    #[test]
    fn first_connection_window_update_pays_the_debt() {
        let mut input = frame(HEADERS, 1, b"\x88");
        // A stream-level update and a DATA frame whose payload looks like a
        // WINDOW_UPDATE header are left alone.
        input.extend(window_update(1, 500));
        input.extend(frame(DATA, 1, &window_update(0, 7)));
        input.extend(window_update(0, 983_041));
        input.extend(window_update(0, 10));

        let mut expected = frame(HEADERS, 1, b"\x88");
        expected.extend(window_update(1, 500));
        expected.extend(frame(DATA, 1, &window_update(0, 7)));
        expected.extend(window_update(0, 983_041 - 5));
        expected.extend(window_update(0, 10));

        for chunk in [1, 2, 3, 5, 9, 13, input.len()] {
            let (out, debt) = rewrite(5, &input, chunk);
            assert_eq!(out, expected, "chunk size {chunk}");
            assert!(debt.is_paid());
        }
    }

    #[test]
    fn small_increments_shrink_to_one_until_the_debt_is_paid() {
        let mut input = window_update(0, 4);
        input.extend(window_update(0, 1));
        input.extend(window_update(0, 100));
        input.extend(window_update(0, 100));
        let mut expected = window_update(0, 1);
        expected.extend(window_update(0, 1));
        expected.extend(window_update(0, 100 - 7));
        expected.extend(window_update(0, 100));
        let (out, debt) = rewrite(10, &input, 4);
        assert_eq!(out, expected);
        assert!(debt.is_paid());
    }

    #[test]
    fn reserved_bit_is_kept() {
        let (out, _) = rewrite(3, &window_update(0, 0x8000_0010), 100);
        assert_eq!(out, window_update(0, 0x8000_000d));
    }

    #[test]
    fn incomplete_increment_is_held_back() {
        let input = window_update(0, 50);
        let (out, debt) = rewrite(5, &input[..11], 100);
        assert_eq!(out, &input[..9], "header passes, partial increment waits");
        assert!(!debt.is_paid());
    }

    #[tokio::test]
    async fn reads_prefix_then_socket_and_rewrites_writes() {
        let (ours, mut peer) = tokio::io::duplex(64);
        let mut io = UpgradedIo::new(ours, Bytes::from_static(b"prefix-"), 3);
        peer.write_all(b"socket").await.unwrap();
        let mut got = [0u8; 13];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"prefix-socket");

        let mut writes = window_update(0, 10);
        writes.extend(window_update(0, 10));
        // Write in odd pieces; the second update passes through untouched.
        for piece in writes.chunks(5) {
            io.write_all(piece).await.unwrap();
        }
        io.flush().await.unwrap();
        let mut seen = vec![0u8; writes.len()];
        peer.read_exact(&mut seen).await.unwrap();
        let mut expected = window_update(0, 7);
        expected.extend(window_update(0, 10));
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn small_reads_take_the_prefix_piecewise() {
        let (ours, _peer) = tokio::io::duplex(64);
        let mut io = UpgradedIo::new(ours, Bytes::from_static(b"abc"), 0);
        let mut one = [0u8; 2];
        io.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"ab");
        let mut rest = [0u8; 1];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"c");
    }
}
