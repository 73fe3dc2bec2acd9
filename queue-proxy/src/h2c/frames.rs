//! The HTTP/2 wire pieces the upgrade synthesizes or inspects (RFC 7540 §4, §6;
//! RFC 7541): frame headers, the request's header list, its HPACK literal
//! encoding, and the frames that replay the upgrading request as stream 1.

use http::header::{self, HeaderMap, HeaderName};

/// The client connection preface (RFC 7540 §3.5).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Every frame starts with a 9-octet header (RFC 7540 §4.1).
pub(super) const FRAME_HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value: the largest payload the server takes
/// before the client has acknowledged any larger setting of it.
pub(super) const MAX_FRAME_PAYLOAD: usize = 16_384;

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

/// END_STREAM on DATA and HEADERS; ACK on SETTINGS.
pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;

/// The stream the upgrading request becomes (RFC 7540 §3.2).
pub(super) const UPGRADE_STREAM: u32 = 1;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameHead {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHead {
    pub(super) fn parse(b: &[u8; FRAME_HEADER_LEN]) -> FrameHead {
        FrameHead {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The high bit is reserved and ignored on receipt.
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// Appends a frame header; `len` is at most [`MAX_FRAME_PAYLOAD`] here.
fn push_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len <= MAX_FRAME_PAYLOAD);
    let len = u32::try_from(len).expect("frame payloads are capped at 16 KiB");
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// One header field of a block: lowercase name, value.
pub(super) type Field<'a> = (&'a [u8], &'a [u8]);

/// Whether a field must not appear in HTTP/2 (RFC 7540 §8.1.2.2) or belongs to the
/// upgrade hop itself. `Host` is left out too: it becomes `:authority`.
fn is_connection_specific(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::UPGRADE
        || *name == header::TRANSFER_ENCODING
        || *name == header::HOST
        || name.as_str() == "http2-settings"
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// `headers` as HTTP/2 fields: connection-specific ones left out, and `TE` kept
/// only as `trailers`, the one value HTTP/2 allows.
pub(super) fn regular_fields(headers: &HeaderMap) -> impl Iterator<Item = Field<'_>> {
    headers.iter().filter_map(|(name, value)| {
        if *name == header::TE {
            let trailers = value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"trailers");
            return trailers.then_some((name.as_str().as_bytes(), &b"trailers"[..]));
        }
        (!is_connection_specific(name)).then_some((name.as_str().as_bytes(), value.as_bytes()))
    })
}

/// The header list size RFC 7540 §6.5.2 defines (and h2 enforces): each field's
/// name and value lengths plus 32.
pub(super) fn header_list_size(fields: &[Field<'_>]) -> usize {
    fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum()
}

/// Appends `value` as an HPACK integer with an `n`-bit prefix whose high bits are
/// `high` (RFC 7541 §5.1).
fn push_hpack_int(out: &mut Vec<u8>, n: u32, high: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a "literal header field without indexing — new name" representation
/// (RFC 7541 §6.2.2) with raw (non-Huffman) strings. Nothing enters the dynamic
/// table, so the server's decoder stays in step with the client's encoder, which
/// never saw these fields.
pub(super) fn push_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    push_hpack_int(out, 7, 0x00, name.len());
    out.extend_from_slice(name);
    push_hpack_int(out, 7, 0x00, value.len());
    out.extend_from_slice(value);
}

/// The HPACK block of `fields`.
pub(super) fn encode_block(fields: &[Field<'_>]) -> Vec<u8> {
    let mut block = Vec::with_capacity(fields.iter().map(|(n, v)| n.len() + v.len() + 7).sum());
    for (name, value) in fields {
        push_literal(&mut block, name, value);
    }
    block
}

/// Appends `block` as a HEADERS frame and as many CONTINUATION frames as the frame
/// size limit needs (RFC 7540 §6.10); END_STREAM can only go on the HEADERS frame.
pub(super) fn push_header_block(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool) {
    let mut chunks = block.chunks(MAX_FRAME_PAYLOAD).peekable();
    let first = chunks.next().unwrap_or_default();
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= END_HEADERS;
    }
    push_frame_header(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        push_frame_header(out, chunk.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

/// Appends non-empty `data` as DATA frames of at most [`MAX_FRAME_PAYLOAD`]
/// octets, the last one carrying END_STREAM if `end_stream`.
pub(super) fn push_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let mut chunks = data.chunks(MAX_FRAME_PAYLOAD).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let flags = if last && end_stream { END_STREAM } else { 0 };
        push_frame_header(out, chunk.len(), DATA, flags, stream);
        out.extend_from_slice(chunk);
    }
}

/// The frames that replay the upgrading request as stream 1: its header block,
/// its body, then its trailers' block if it had any.
pub(super) fn upgrade_stream_frames(block: &[u8], body: &[u8], trailers: Option<&[u8]>) -> Vec<u8> {
    let frames =
        block.len().div_ceil(MAX_FRAME_PAYLOAD) + body.len().div_ceil(MAX_FRAME_PAYLOAD) + 2;
    let mut out = Vec::with_capacity(
        block.len() + body.len() + trailers.map_or(0, <[u8]>::len) + frames * FRAME_HEADER_LEN,
    );
    let stream = UPGRADE_STREAM;
    push_header_block(
        &mut out,
        stream,
        block,
        body.is_empty() && trailers.is_none(),
    );
    if !body.is_empty() {
        push_data(&mut out, stream, body, trailers.is_none());
    }
    if let Some(trailers) = trailers {
        push_header_block(&mut out, stream, trailers, true);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Splits `bytes` into (header, payload) frames, checking lengths add up.
    fn split_frames(mut bytes: &[u8]) -> Vec<(FrameHead, &[u8])> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let head = FrameHead::parse(bytes[..FRAME_HEADER_LEN].try_into().unwrap());
            let end = FRAME_HEADER_LEN + head.len;
            frames.push((head, &bytes[FRAME_HEADER_LEN..end]));
            bytes = &bytes[end..];
        }
        frames
    }

    /// Decodes an HPACK integer with an `n`-bit prefix, returning it and the rest.
    fn read_int(bytes: &[u8], n: u32) -> (usize, &[u8]) {
        let max = (1usize << n) - 1;
        let mut value = usize::from(bytes[0]) & max;
        if value < max {
            return (value, &bytes[1..]);
        }
        let mut shift = 0;
        for (i, b) in bytes[1..].iter().enumerate() {
            value += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return (value, &bytes[i + 2..]);
            }
        }
        panic!("truncated integer");
    }

    /// Decodes a block of literal-without-indexing, new-name, raw-string fields.
    fn decode_literals(mut block: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        while !block.is_empty() {
            assert_eq!(block[0], 0x00, "representation byte");
            block = &block[1..];
            let mut strings = Vec::new();
            for _ in 0..2 {
                assert_eq!(block[0] & 0x80, 0, "no Huffman");
                let (len, rest) = read_int(block, 7);
                strings.push(String::from_utf8(rest[..len].to_vec()).unwrap());
                block = &rest[len..];
            }
            let value = strings.pop().unwrap();
            fields.push((strings.pop().unwrap(), value));
        }
        fields
    }

    #[test]
    fn literal_encoding_bytes() {
        let mut out = Vec::new();
        push_literal(&mut out, b":path", b"/x?y=1");
        assert_eq!(out, b"\x00\x05:path\x06/x?y=1");
    }

    #[test]
    fn hpack_integers_use_continuation_bytes_past_the_prefix() {
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        push_hpack_int(&mut out, 5, 0, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        // 126 fits a 7-bit prefix; 127 needs a zero continuation byte.
        out.clear();
        push_hpack_int(&mut out, 7, 0, 126);
        assert_eq!(out, [0x7e]);
        out.clear();
        push_hpack_int(&mut out, 7, 0, 127);
        assert_eq!(out, [0x7f, 0x00]);
        // A 300-octet value: 0x7f, then 300 - 127 = 173 in 7-bit groups, low
        // group first: 0x80 | 45, then 1.
        out.clear();
        push_literal(&mut out, b"x", &[b'v'; 300]);
        assert_eq!(&out[..3], [0x00, 0x01, b'x']);
        assert_eq!(&out[3..6], [0x7f, 0x80 | 45, 0x01]);
        assert_eq!(out.len(), 6 + 300);
        assert_eq!(read_int(&out[3..], 7).0, 300);
    }

    #[test]
    fn block_round_trips_through_a_literal_decoder() {
        let long = "a".repeat(200);
        let fields: Vec<Field<'_>> = vec![
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b"x-long", long.as_bytes()),
        ];
        let decoded = decode_literals(&encode_block(&fields));
        assert_eq!(
            decoded,
            [
                (":method".to_owned(), "GET".to_owned()),
                (":scheme".to_owned(), "http".to_owned()),
                ("x-long".to_owned(), long),
            ]
        );
    }

    #[test]
    fn connection_specific_fields_are_left_out() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "example.com"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("accept", "*/*"),
            ("x-multi", "1"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        headers.append("x-multi", HeaderValue::from_static("2"));
        let fields: Vec<_> = regular_fields(&headers).collect();
        assert_eq!(
            fields,
            [
                (&b"accept"[..], &b"*/*"[..]),
                (b"x-multi", b"1"),
                (b"x-multi", b"2")
            ]
        );

        let mut te = HeaderMap::new();
        te.insert("te", HeaderValue::from_static(" Trailers "));
        assert_eq!(
            regular_fields(&te).collect::<Vec<_>>(),
            [(&b"te"[..], &b"trailers"[..])]
        );
        te.insert("te", HeaderValue::from_static("gzip"));
        assert_eq!(regular_fields(&te).count(), 0);
    }

    #[test]
    fn header_list_size_counts_32_per_field() {
        assert_eq!(
            header_list_size(&[(b":path", b"/"), (b"a", b"bc")]),
            6 + 32 + 3 + 32
        );
    }

    #[test]
    fn small_request_is_one_headers_frame_then_data() {
        let frames = upgrade_stream_frames(b"\x00\x01a\x01b", b"hello", None);
        let frames = split_frames(&frames);
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[0].0,
            FrameHead {
                len: 5,
                kind: HEADERS,
                flags: END_HEADERS,
                stream: 1
            }
        );
        assert_eq!(frames[0].1, b"\x00\x01a\x01b");
        assert_eq!(
            frames[1].0,
            FrameHead {
                len: 5,
                kind: DATA,
                flags: END_STREAM,
                stream: 1
            }
        );
        assert_eq!(frames[1].1, b"hello");
    }

    #[test]
    fn bodiless_request_ends_the_stream_on_headers() {
        let frames = upgrade_stream_frames(b"\x00\x01a\x01b", b"", None);
        let frames = split_frames(&frames);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0.flags, END_HEADERS | END_STREAM);
        // The exact bytes: length 5, type 1, flags 5, stream 1.
        let raw = upgrade_stream_frames(b"\x00\x01a\x01b", b"", None);
        assert_eq!(&raw[..9], [0, 0, 5, 1, 5, 0, 0, 0, 1]);
    }

    #[test]
    fn large_block_and_body_are_split_at_16_kib() {
        let block: Vec<u8> = (0..MAX_FRAME_PAYLOAD * 2 + 10).map(|i| i as u8).collect();
        let body: Vec<u8> = (0..MAX_FRAME_PAYLOAD * 3 + 1)
            .map(|i| (i * 7) as u8)
            .collect();
        let raw = upgrade_stream_frames(&block, &body, None);
        let frames = split_frames(&raw);
        let kinds: Vec<_> = frames
            .iter()
            .map(|(h, p)| (h.kind, h.flags, p.len()))
            .collect();
        assert_eq!(
            kinds,
            [
                (HEADERS, 0, MAX_FRAME_PAYLOAD),
                (CONTINUATION, 0, MAX_FRAME_PAYLOAD),
                (CONTINUATION, END_HEADERS, 10),
                (DATA, 0, MAX_FRAME_PAYLOAD),
                (DATA, 0, MAX_FRAME_PAYLOAD),
                (DATA, 0, MAX_FRAME_PAYLOAD),
                (DATA, END_STREAM, 1),
            ]
        );
        assert!(frames.iter().all(|(h, _)| h.stream == 1));
        let block_again: Vec<u8> = frames[..3].iter().flat_map(|(_, p)| p.to_vec()).collect();
        let body_again: Vec<u8> = frames[3..].iter().flat_map(|(_, p)| p.to_vec()).collect();
        assert_eq!(block_again, block);
        assert_eq!(body_again, body);
    }

    #[test]
    fn block_of_exactly_one_frame_needs_no_continuation() {
        let block = vec![0; MAX_FRAME_PAYLOAD];
        let raw = upgrade_stream_frames(&block, b"", None);
        let frames = split_frames(&raw);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0.flags, END_HEADERS | END_STREAM);
    }

    #[test]
    fn trailers_end_the_stream_instead_of_the_last_data_frame() {
        let raw = upgrade_stream_frames(b"\x00\x01a\x01b", b"xy", Some(b"\x00\x01t\x01v"));
        let frames = split_frames(&raw);
        let kinds: Vec<_> = frames.iter().map(|(h, _)| (h.kind, h.flags)).collect();
        assert_eq!(
            kinds,
            [
                (HEADERS, END_HEADERS),
                (DATA, 0),
                (HEADERS, END_HEADERS | END_STREAM)
            ]
        );

        // No body: headers, then trailers straight away.
        let raw = upgrade_stream_frames(b"\x00\x01a\x01b", b"", Some(b"\x00\x01t\x01v"));
        let kinds: Vec<_> = split_frames(&raw)
            .iter()
            .map(|(h, _)| (h.kind, h.flags))
            .collect();
        assert_eq!(
            kinds,
            [(HEADERS, END_HEADERS), (HEADERS, END_HEADERS | END_STREAM)]
        );
    }

    #[test]
    fn frame_header_parse_ignores_the_reserved_bit() {
        let head = FrameHead::parse(&[0x01, 0x02, 0x03, 8, 0, 0x80, 0, 0, 3]);
        assert_eq!(
            head,
            FrameHead {
                len: 0x010203,
                kind: WINDOW_UPDATE,
                flags: 0,
                stream: 3
            }
        );
    }
}
