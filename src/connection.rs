//! A client's TCP connection as the WebSocket layer reads it: through a
//! small fixed buffer, one WebSocket frame at a time.
//!
//! tungstenite grows its read buffer to the largest frame it has seen and
//! never shrinks it, so one 256 KiB frame would cost an idle session 256 KiB
//! for the rest of its life. [`Connection`] never hands tungstenite bytes
//! past the end of the frame it is reading. After tungstenite returns a
//! whole message its buffer is therefore empty, and the session can swap it
//! for a fresh, small one (`Session::shrink_buffers`) without losing a
//! byte: whatever the client sent next waits here, in a buffer of
//! [`BUFFER_BYTES`] that never grows.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_rustls::TlsStream;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;

/// A TCP byte stream, plain or with TLS over it: a client's connection
/// (TLS when the listener has `server.tls_cert`), or one the daemon makes
/// (`upstream`, TLS for `wss://` and `https://`).
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_close(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Bytes read from the socket at a time. Interview events are small; an
/// audio append of 40 ms (about 2.6 KiB of base64) fits whole.
pub const BUFFER_BYTES: usize = 4 * 1024;

pub struct Connection {
    stream: Transport,
    buf: Box<[u8; BUFFER_BYTES]>,
    /// `buf[start..end]` has been read from the socket, not yet handed on.
    start: usize,
    end: usize,
    framing: Framing,
}

impl Connection {
    /// `pending` holds bytes the client sent after its HTTP request (a
    /// pipelined first frame); they are handed on first.
    pub fn new(stream: Transport, pending: &[u8]) -> io::Result<Connection> {
        if pending.len() > BUFFER_BYTES {
            // The handshake reads at most one request head's worth; a client
            // that pipelines more than this before its upgrade is answered
            // is not one we need to serve.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many bytes sent before the upgrade",
            ));
        }
        let mut buf = Box::new([0u8; BUFFER_BYTES]);
        buf[..pending.len()].copy_from_slice(pending);
        Ok(Connection {
            stream,
            buf,
            start: 0,
            end: pending.len(),
            framing: Framing::default(),
        })
    }

    /// True between frames: everything handed on so far was whole frames.
    pub fn at_frame_boundary(&self) -> bool {
        self.framing.at_boundary()
    }
}

/// Where the byte stream stands in WebSocket framing (RFC 6455 5.2).
#[derive(Debug, Default, Clone)]
pub struct Framing {
    /// Header bytes of the current frame seen so far (at most 14).
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame not yet handed on; meaningful once
    /// the header is complete.
    payload_left: u64,
    in_payload: bool,
}

impl Framing {
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && !self.in_payload
    }

    /// The header's length, once enough of it is known to tell.
    fn header_needed(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let masked = self.header[1] & 0x80 != 0;
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if masked { 4 } else { 0 }
    }

    fn payload_len(&self) -> u64 {
        match self.header[1] & 0x7f {
            126 => u16::from_be_bytes([self.header[2], self.header[3]]) as u64,
            127 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
            n => n as u64,
        }
    }

    /// How many of `available` bytes may be handed on in one read without
    /// crossing the end of the current frame (at least one when any are
    /// available). Advances the state past them.
    pub fn take(&mut self, available: &[u8], room: usize) -> usize {
        let limit = available.len().min(room);
        let mut n = 0;
        while n < limit && !self.in_payload {
            self.header[self.header_len] = available[n];
            self.header_len += 1;
            n += 1;
            if self.header_len == self.header_needed() {
                self.payload_left = self.payload_len();
                self.header_len = 0;
                self.in_payload = true;
            }
        }
        if self.in_payload {
            let more = ((limit - n) as u64).min(self.payload_left) as usize;
            n += more;
            self.payload_left -= more as u64;
            if self.payload_left == 0 {
                self.in_payload = false;
            }
        }
        n
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        if this.start == this.end {
            let n = ready!(Pin::new(&mut this.stream).poll_read(cx, &mut this.buf[..]))?;
            this.start = 0;
            this.end = n;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
        }
        let available = &this.buf[this.start..this.end];
        let n = this.framing.take(available, out.len());
        out[..n].copy_from_slice(&available[..n]);
        this.start += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame with this payload length.
    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0x81];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    #[test]
    fn reads_stop_at_every_frame_end_whatever_the_chunking() {
        let sizes = [0, 5, 125, 126, 300, 65535, 65536, 70000];
        let stream: Vec<u8> = sizes.iter().flat_map(|&n| frame(n)).collect();
        let ends: Vec<usize> = sizes
            .iter()
            .scan(0, |at, &n| {
                *at += frame(n).len();
                Some(*at)
            })
            .collect();
        for chunk in [1, 3, 7, 4096] {
            for room in [1, 2, 13, 4096, 1 << 20] {
                let mut framing = Framing::default();
                let mut at = 0;
                let mut boundaries = Vec::new();
                while at < stream.len() {
                    let available = &stream[at..(at + chunk).min(stream.len())];
                    let n = framing.take(available, room);
                    assert!(n > 0);
                    at += n;
                    // A read never crosses a frame end.
                    let next_end = ends.iter().find(|&&e| e > at - n).unwrap();
                    assert!(at <= *next_end, "read crossed a frame end");
                    if framing.at_boundary() {
                        boundaries.push(at);
                    }
                }
                assert_eq!(boundaries, ends, "chunk {chunk}, room {room}");
            }
        }
    }
}
