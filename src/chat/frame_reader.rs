//! Reads a client's WebSocket frames (RFC 6455 section 5) holding no buffer
//! while the socket is idle: fastwebsockets' reader kept 8 KiB per socket for
//! its whole life (docs/benchmark-attempts.md). fastwebsockets still writes.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use fastwebsockets::{CloseCode, OpCode};
use tokio::io::{AsyncRead, ReadBuf};

/// What one read asks the kernel for at most, unless a frame needs more.
const READ_CHUNK: usize = 4096;

/// A buffer left holding only a partial header keeps at most this much
/// while the socket waits: a big frame's allocation is not kept for a few bytes.
const KEPT_WHILE_WAITING: usize = READ_CHUNK;

/// The longest header: 2 bytes, an 8-byte length, a 4-byte key.
const MAX_HEADER_LEN: usize = 14;

/// One frame as the client sent it, unmasked.
pub struct ClientFrame {
    /// The last frame of its message.
    pub fin: bool,
    /// What it is: text, a continuation, a control frame.
    pub opcode: OpCode,
    /// Unmasked.
    pub payload: Bytes,
}

/// Why no frame came.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection without a close frame (`None`), or it failed.
    #[error("the connection ended")]
    Gone(Option<io::Error>),
    /// The frame breaks a rule of section 5: close with 1002 and this reason.
    #[error("{0}")]
    Protocol(&'static str),
    /// The payload is longer than the reader takes: close with 1009.
    #[error("frame over the size limit")]
    TooLarge,
}

/// Reads frames from `io`, refusing payloads over `max_payload` bytes before reading them.
pub struct FrameReader<R> {
    io: R,
    /// Bytes read and not yet parsed; unallocated while there are none.
    buffer: BytesMut,
    max_payload: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader holding nothing until bytes arrive.
    pub fn new(io: R, max_payload: usize) -> Self {
        FrameReader { io, buffer: BytesMut::new(), max_payload }
    }

    /// The next frame, once all of it has arrived.
    pub async fn next_frame(&mut self) -> Result<ClientFrame, ReadError> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// Takes one whole frame off the front of the buffer, if it holds one.
    fn parse(&mut self) -> Result<Option<ClientFrame>, ReadError> {
        let Some(head) = parse_head(&self.buffer, self.max_payload)? else { return Ok(None) };
        let whole = head.header_len + head.payload_len;
        if self.buffer.len() < whole {
            // Room for the rest of this frame, so it takes one allocation.
            self.buffer.reserve(whole - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(head.header_len);
        let mut payload = self.buffer.split_to(head.payload_len);
        unmask(&mut payload, head.mask);
        Ok(Some(ClientFrame { fin: head.fin, opcode: head.opcode, payload: payload.freeze() }))
    }

    /// Reads what the socket has. While nothing is there, the buffer is
    /// given back if it holds no partial frame.
    async fn fill(&mut self) -> Result<(), ReadError> {
        poll_fn(|cx| {
            if self.buffer.capacity() == self.buffer.len() {
                self.buffer.reserve(READ_CHUNK);
            }
            let spare = self.buffer.spare_capacity_mut();
            let mut read = ReadBuf::uninit(spare);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => {
                    if self.buffer.is_empty() {
                        self.buffer = BytesMut::new();
                    } else if self.buffer.len() < MAX_HEADER_LEN && self.buffer.capacity() > KEPT_WHILE_WAITING {
                        // Only a header's first bytes: copied out of the big
                        // allocation. A frame under way keeps the room it
                        // reserved, or a trickled frame would be copied on every wait.
                        self.buffer = BytesMut::from(&self.buffer[..]);
                    }
                    Poll::Pending
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(ReadError::Gone(Some(error)))),
                Poll::Ready(Ok(())) => {
                    let filled = read.filled().len();
                    if filled == 0 {
                        return Poll::Ready(Err(ReadError::Gone(None)));
                    }
                    // SAFETY: `poll_read` initialised the first `filled`
                    // bytes of the spare capacity it was handed.
                    unsafe { self.buffer.set_len(self.buffer.len() + filled) };
                    Poll::Ready(Ok(()))
                }
            }
        })
        .await
    }
}

/// A frame's header, read from the front of `bytes`.
struct Head {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

/// The header at the front of `bytes`: `None` until all of it has arrived,
/// an error as soon as what has arrived breaks a rule.
fn parse_head(bytes: &[u8], max_payload: usize) -> Result<Option<Head>, ReadError> {
    let [first, second, ..] = *bytes else { return Ok(None) };
    if first & 0b0111_0000 != 0 {
        return Err(ReadError::Protocol("reserved bits set: no extension was agreed"));
    }
    let opcode = OpCode::try_from(first & 0x0F).map_err(|_| ReadError::Protocol("unknown opcode"))?;
    let fin = first & 0x80 != 0;
    // Section 5.1: a server must close on a frame its client did not mask.
    if second & 0x80 == 0 {
        return Err(ReadError::Protocol("client frames must be masked"));
    }
    let (length_len, short_length) = match second & 0x7F {
        126 => (2, None),
        127 => (8, None),
        length => (0, Some(length as u64)),
    };
    if bytes.len() < 2 + length_len {
        return Ok(None);
    }
    let payload_len = match short_length {
        Some(length) => length,
        None if length_len == 2 => u16::from_be_bytes([bytes[2], bytes[3]]) as u64,
        None => u64::from_be_bytes(bytes[2..10].try_into().expect("eight bytes")),
    };
    if is_control(opcode) {
        if !fin {
            return Err(ReadError::Protocol("control frames must not be fragmented"));
        }
        if payload_len > 125 {
            return Err(ReadError::Protocol("control frame payload over 125 bytes"));
        }
    }
    if payload_len > max_payload as u64 {
        return Err(ReadError::TooLarge);
    }
    // Checked before the mask has arrived: a refused length is refused at once.
    let header_len = 2 + length_len + 4;
    if bytes.len() < header_len {
        return Ok(None);
    }
    let mask = bytes[header_len - 4..header_len].try_into().expect("four bytes");
    Ok(Some(Head { fin, opcode, mask, header_len, payload_len: payload_len as usize }))
}

/// Close, ping and pong: section 5.5 limits them to 125 bytes and one frame.
fn is_control(opcode: OpCode) -> bool {
    matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong)
}

/// Undoes the client's masking (section 5.3): each byte XORed with the key, in turn.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// What a client's close frame asks of us (section 5.5.1): the payload to
/// echo, or the close to send instead when the frame itself is wrong.
pub fn close_answer(payload: &[u8]) -> Result<Bytes, (u16, &'static str)> {
    match payload {
        [] => Ok(Bytes::new()),
        [_] => Err((1002, "a close payload needs a two-byte code")),
        [high, low, reason @ ..] => {
            if !CloseCode::from(u16::from_be_bytes([*high, *low])).is_allowed() {
                return Err((1002, "close code not allowed on the wire"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err((1007, "close reason is not UTF-8"));
            }
            Ok(Bytes::copy_from_slice(payload))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut frame = vec![first];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        frame
    }

    async fn frames_of(bytes: Vec<u8>, max: usize) -> Vec<Result<(bool, OpCode, Vec<u8>), String>> {
        // One byte per read: every header and payload arrives in pieces.
        let io = tokio_test_io(bytes);
        let mut reader = FrameReader::new(io, max);
        let mut out = Vec::new();
        loop {
            match reader.next_frame().await {
                Ok(f) => out.push(Ok((f.fin, f.opcode, f.payload.to_vec()))),
                Err(ReadError::Gone(_)) => return out,
                Err(e) => {
                    out.push(Err(format!("{e:?}")));
                    return out;
                }
            }
        }
    }

    /// A reader that hands out one byte per read.
    fn tokio_test_io(bytes: Vec<u8>) -> impl AsyncRead + Unpin {
        struct Trickle(std::collections::VecDeque<u8>);
        impl AsyncRead for Trickle {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                if let Some(byte) = self.0.pop_front() {
                    buf.put_slice(&[byte]);
                }
                Poll::Ready(Ok(()))
            }
        }
        Trickle(bytes.into())
    }

    #[tokio::test]
    async fn frames_of_every_length_form_arrive_whole_and_unmasked() {
        let long = vec![b'x'; 70_000];
        let mut wire = masked_frame(0x81, b"hello");
        wire.extend(masked_frame(0x01, &vec![b'y'; 300]));
        wire.extend(masked_frame(0x80, &long));
        wire.extend(masked_frame(0x89, b"ping"));
        let frames = frames_of(wire, 100_000).await;
        let got: Vec<_> = frames.into_iter().map(|f| f.unwrap()).collect();
        assert_eq!(got[0], (true, OpCode::Text, b"hello".to_vec()));
        assert_eq!(got[1], (false, OpCode::Text, vec![b'y'; 300]));
        assert_eq!(got[2], (true, OpCode::Continuation, long));
        assert_eq!(got[3], (true, OpCode::Ping, b"ping".to_vec()));
        assert_eq!(got.len(), 4);
    }

    #[tokio::test]
    async fn rule_breaking_headers_are_refused_before_their_payload() {
        let cases: [(Vec<u8>, &str); 6] = [
            (vec![0x81, 0x02, b'h', b'i'], "Protocol(\"client frames must be masked\")"),
            (masked_frame(0xC1, b"x"), "Protocol(\"reserved bits set: no extension was agreed\")"),
            (masked_frame(0x83, b"x"), "Protocol(\"unknown opcode\")"),
            (masked_frame(0x09, b"x"), "Protocol(\"control frames must not be fragmented\")"),
            (masked_frame(0x89, &[0; 126]), "Protocol(\"control frame payload over 125 bytes\")"),
            // Only the header: the 2 GiB payload is never waited for.
            (vec![0x81, 0xFF, 0, 0, 0, 0, 0x80, 0, 0, 0], "TooLarge"),
        ];
        for (wire, expected) in cases {
            assert_eq!(frames_of(wire, 65_536).await, vec![Err(expected.to_owned())]);
        }
    }

    #[tokio::test]
    async fn a_frame_at_the_limit_is_taken_and_one_byte_over_is_not() {
        assert!(frames_of(masked_frame(0x81, &[b'a'; 1000]), 1000).await[0].is_ok());
        assert_eq!(frames_of(masked_frame(0x81, &[b'a'; 1001]), 1000).await, vec![Err("TooLarge".to_owned())]);
    }

    #[tokio::test]
    async fn arbitrary_bytes_end_in_frames_or_an_error_never_a_panic() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let len = (next() % 200) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 2 && next() % 2 == 0 {
                // Often a plausible start: FIN, a known opcode, the mask bit.
                bytes[0] = 0x80 | [0, 1, 8, 9, 10][(next() % 5) as usize];
                bytes[1] |= 0x80;
            }
            let _ = frames_of(bytes, 100).await;
        }
    }

    #[test]
    fn close_frames_are_echoed_or_answered_by_the_rule_they_break() {
        assert_eq!(close_answer(b"").unwrap(), Bytes::new());
        assert_eq!(close_answer(&[0x03, 0xE8, b'o', b'k']).unwrap(), Bytes::from_static(&[0x03, 0xE8, b'o', b'k']));
        assert_eq!(close_answer(&[0x03]), Err((1002, "a close payload needs a two-byte code")));
        assert_eq!(close_answer(&1005u16.to_be_bytes()), Err((1002, "close code not allowed on the wire")));
        assert_eq!(close_answer(&[0x03, 0xE8, 0xFF]), Err((1007, "close reason is not UTF-8")));
    }

    #[tokio::test]
    async fn a_waiting_partial_header_keeps_a_small_buffer_not_a_big_frames() {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let mut reader = FrameReader::new(server, 100_000);
        let mut wire = masked_frame(0x81, &[b'z'; 60_000]);
        wire.push(0x81);
        tokio::io::AsyncWriteExt::write_all(&mut client, &wire).await.unwrap();
        assert_eq!(reader.next_frame().await.unwrap().payload.len(), 60_000);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reader.next_frame()).await;
        assert!(waiting.is_err());
        assert_eq!(reader.buffer.len(), 1, "the next frame's first byte is kept");
        assert!(reader.buffer.capacity() <= KEPT_WHILE_WAITING, "{} bytes kept", reader.buffer.capacity());
    }

    #[tokio::test]
    async fn a_frame_arriving_slowly_keeps_the_room_it_reserved() {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let mut reader = FrameReader::new(server, 100_000);
        let wire = masked_frame(0x81, &[b'z'; 60_000]);
        tokio::io::AsyncWriteExt::write_all(&mut client, &wire[..30_000]).await.unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reader.next_frame()).await;
        assert!(waiting.is_err());
        assert!(reader.buffer.capacity() >= wire.len(), "{} bytes kept", reader.buffer.capacity());
        tokio::io::AsyncWriteExt::write_all(&mut client, &wire[30_000..]).await.unwrap();
        assert_eq!(reader.next_frame().await.unwrap().payload.len(), 60_000);
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer() {
        let (client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(server, 1000);
        let mut client = client;
        tokio::io::AsyncWriteExt::write_all(&mut client, &masked_frame(0x81, b"one")).await.unwrap();
        assert_eq!(&reader.next_frame().await.unwrap().payload[..], b"one");
        // Waiting for the next frame: nothing buffered, nothing held.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reader.next_frame()).await;
        assert!(waiting.is_err());
        assert_eq!(reader.buffer.capacity(), 0);
    }
}
