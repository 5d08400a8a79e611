//! Follows the framing of the requests on one connection, byte for byte as actix-http reads them,
//! to tell when a chunked body is malformed (actix-http takes that for a broken connection and
//! drops it without an answer; the caller answers 400 instead).
//!
//! The rules are actix-http's own (`h1/decoder.rs`, `h1/chunked.rs`): a head ends where httparse
//! says; its body is chunked (HTTP/1.1, one `Transfer-Encoding: chunked`, no `Content-Length`) or
//! `Content-Length` bytes or nothing; chunk sizes are hex, then optional spaces or tabs, an
//! extension without control characters, CR LF; trailers end at an empty line. Whenever a request
//! is anything else (a head actix refuses, an upgrade, two framings), the tracker stops following
//! the connection and never reports anything again: it may miss a malformed body, never invent one.
//!
//! Only the bodies of PUT and PATCH requests are reported: their handlers read the whole body
//! before anything else happens, so a refusal is true to the OSB promise that a 4xx changed
//! nothing. A handler that does not read its body (a DELETE, a GET) may already be at work
//! upstream; its connection is left to actix.

/// Most bytes a request head may have (actix-http's buffer).
const MAX_HEAD: usize = 128 * 1024;
/// Most headers actix-http parses.
const MAX_HEADERS: usize = 96;

/// What the bytes fed were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fed {
    /// Request heads completed among them: new requests began (their answers are owed).
    pub new_requests: usize,
    /// A chunked body is malformed at byte `at` of the bytes fed (`reason` says how); nothing
    /// after it was followed.
    pub malformed: Option<(usize, &'static str)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    SizeFirst,
    SizeRest,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a head; the bytes so far (empty while a head starts exactly at a read).
    Head(Vec<u8>),
    /// `n` body bytes to go.
    Length(u64),
    /// Inside a chunked body: where, the current chunk's size (or bytes left of it), and whether
    /// a fault is reported (PUT, PATCH).
    Chunked(Chunk, u64, bool),
    /// Not followed any more.
    Off,
}

/// See the module docs.
#[derive(Debug)]
pub struct RequestFraming {
    state: State,
}

impl Default for RequestFraming {
    fn default() -> Self {
        RequestFraming {
            state: State::Head(Vec::new()),
        }
    }
}

impl RequestFraming {
    /// Follows `bytes`, the next bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut fed = Fed::default();
        let mut at = 0;
        while at < bytes.len() {
            let rest = bytes.get(at..).unwrap_or_default();
            match &mut self.state {
                State::Off => return fed,
                State::Head(buffered) => {
                    let (used, framing) = if buffered.is_empty() {
                        match head(rest) {
                            HeadEnd::Complete(length, framing) => (length, framing),
                            HeadEnd::Partial => {
                                buffered.extend_from_slice(rest);
                                return fed;
                            }
                            HeadEnd::Refused => {
                                self.state = State::Off;
                                return fed;
                            }
                        }
                    } else {
                        let before = buffered.len();
                        buffered.extend_from_slice(rest);
                        match head(buffered) {
                            HeadEnd::Complete(length, framing) => (length.saturating_sub(before), framing),
                            HeadEnd::Partial if buffered.len() < MAX_HEAD => return fed,
                            HeadEnd::Partial | HeadEnd::Refused => {
                                self.state = State::Off;
                                return fed;
                            }
                        }
                    };
                    fed.new_requests += 1;
                    at += used;
                    self.state = framing;
                }
                State::Length(left) => {
                    let take = (rest.len() as u64).min(*left);
                    *left -= take;
                    at += usize::try_from(take).unwrap_or(rest.len());
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::Chunked(Chunk::Body, left, reported) => {
                    let take = (rest.len() as u64).min(*left);
                    *left -= take;
                    at += usize::try_from(take).unwrap_or(rest.len());
                    if *left == 0 {
                        self.state = State::Chunked(Chunk::BodyCr, 0, *reported);
                    }
                }
                State::Chunked(chunk, size, reported) => {
                    let Some(&byte) = rest.first() else {
                        return fed;
                    };
                    match step(chunk, size, byte) {
                        Ok(Some(next)) => *chunk = next,
                        Ok(None) => self.state = State::Head(Vec::new()),
                        Err(reason) => {
                            if *reported {
                                fed.malformed = Some((at, reason));
                            }
                            self.state = State::Off;
                            return fed;
                        }
                    }
                    at += 1;
                }
            }
        }
        fed
    }
}

/// One byte of a chunked body (not inside a chunk's data): the next state, `None` at the end.
fn step(chunk: &Chunk, size: &mut u64, byte: u8) -> Result<Option<Chunk>, &'static str> {
    let hex = |b: u8| char::from(b).to_digit(16).map(u64::from);
    Ok(Some(match chunk {
        Chunk::SizeFirst => {
            *size = hex(byte).ok_or("invalid chunk size")?;
            Chunk::SizeRest
        }
        Chunk::SizeRest => match byte {
            b'\t' | b' ' => Chunk::SizeLws,
            b';' => Chunk::Extension,
            b'\r' => Chunk::SizeLf,
            _ => {
                let digit = hex(byte).ok_or("invalid chunk size")?;
                *size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or("chunk size too large")?;
                Chunk::SizeRest
            }
        },
        Chunk::SizeLws => match byte {
            b'\t' | b' ' => Chunk::SizeLws,
            b';' => Chunk::Extension,
            b'\r' => Chunk::SizeLf,
            _ => return Err("invalid white space after a chunk size"),
        },
        Chunk::Extension => match byte {
            b'\r' => Chunk::SizeLf,
            0x00..=0x08 | 0x0a..=0x1f | 0x7f => return Err("invalid character in a chunk extension"),
            _ => Chunk::Extension,
        },
        Chunk::SizeLf => match byte {
            b'\n' if *size > 0 => Chunk::Body,
            b'\n' => Chunk::EndCr,
            _ => return Err("chunk size line not ended by CR LF"),
        },
        Chunk::BodyCr if byte == b'\r' => Chunk::BodyLf,
        Chunk::BodyCr => return Err("chunk data longer than its size"),
        Chunk::BodyLf if byte == b'\n' => Chunk::SizeFirst,
        Chunk::BodyLf => return Err("chunk data not ended by CR LF"),
        Chunk::Trailer if byte == b'\r' => Chunk::TrailerLf,
        Chunk::Trailer => Chunk::Trailer,
        Chunk::TrailerLf if byte == b'\n' => Chunk::EndCr,
        Chunk::TrailerLf => return Err("trailer not ended by CR LF"),
        Chunk::EndCr if byte == b'\r' => Chunk::EndLf,
        Chunk::EndCr => Chunk::Trailer,
        Chunk::EndLf if byte == b'\n' => return Ok(None),
        Chunk::EndLf => return Err("chunked body not ended by CR LF"),
        Chunk::Body => Chunk::Body,
    }))
}

enum HeadEnd {
    /// The head's length and what follows it.
    Complete(usize, State),
    Partial,
    /// A head actix refuses (it answers that itself), or one not worth following.
    Refused,
}

/// Where the head at the start of `bytes` ends and how its body is framed.
fn head(bytes: &[u8]) -> HeadEnd {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD => return HeadEnd::Partial,
        _ => return HeadEnd::Refused,
    };
    if request.method == Some("CONNECT") {
        return HeadEnd::Refused;
    }
    let http11 = request.version == Some(1);
    let (mut transfer_encodings, mut chunked, mut lengths, mut length_value) = (0, false, 0, None);
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).map(str::trim);
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encodings += 1;
            chunked = value.is_ok_and(|v| v.eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length_value = value
                .ok()
                .filter(|v| !v.starts_with('+'))
                .and_then(|v| v.parse::<u64>().ok());
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            return HeadEnd::Refused;
        }
    }
    let state = match (transfer_encodings, lengths, length_value) {
        (0, 0, _) => State::Head(Vec::new()),
        (0, 1, Some(0)) => State::Head(Vec::new()),
        (0, 1, Some(n)) => State::Length(n),
        (1, 0, _) if http11 && chunked => State::Chunked(
            Chunk::SizeFirst,
            0,
            matches!(request.method, Some("PUT" | "PATCH")),
        ),
        _ => return HeadEnd::Refused,
    };
    HeadEnd::Complete(length, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "PUT /v2/service_instances/i HTTP/1.1\r\nHost: g\r\n";

    fn feed_all(bytes: &[u8], piece: usize) -> Vec<Fed> {
        let mut framing = RequestFraming::default();
        bytes.chunks(piece.max(1)).map(|p| framing.feed(p)).collect()
    }

    fn malformed(fed: &[Fed]) -> Option<&'static str> {
        fed.iter().find_map(|f| f.malformed.map(|(_, reason)| reason))
    }

    #[test]
    fn well_framed_requests_in_any_pieces_are_fine() {
        let stream = format!(
            "{HEAD}Transfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{{}}\r\n10 \r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n\
             {HEAD}Content-Length: 5\r\n\r\nhello\
             GET /v2/catalog HTTP/1.1\r\nHost: g\r\n\r\n\
             {HEAD}transfer-encoding: Chunked\r\n\r\n0\r\n\r\n"
        );
        for piece in [1, 2, 3, 7, 64, 4096] {
            let fed = feed_all(stream.as_bytes(), piece);
            assert_eq!(malformed(&fed), None, "pieces of {piece}");
            assert_eq!(
                fed.iter().map(|f| f.new_requests).sum::<usize>(),
                4,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn malformed_chunks_are_found_where_they_are() {
        for (body, reason, offset) in [
            ("zz\r\n{}\r\n0\r\n\r\n", "invalid chunk size", 0),
            ("2\r\n{}\r\nzz\r\n", "invalid chunk size", 7),
            ("2\r\n{}}\r\n0\r\n\r\n", "chunk data longer than its size", 5),
            ("2 x\r\n{}\r\n", "invalid white space after a chunk size", 2),
            ("2;a\u{1}\r\n{}\r\n", "invalid character in a chunk extension", 3),
            ("2\r\r{}", "chunk size line not ended by CR LF", 2),
            ("ffffffffffffffffff\r\n", "chunk size too large", 16),
        ] {
            let head = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n");
            let stream = format!("{head}{body}");
            let mut framing = RequestFraming::default();
            assert_eq!(
                framing.feed(stream.as_bytes()),
                Fed {
                    new_requests: 1,
                    malformed: Some((head.len() + offset, reason))
                },
                "{body:?}"
            );
            assert_eq!(
                malformed(&feed_all(stream.as_bytes(), 1)),
                Some(reason),
                "{body:?}"
            );
        }
    }

    /// One well-framed request: a body by length or in chunks (with extensions and trailers), or
    /// none.
    fn request() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let chunks = prop::collection::vec((1usize..40, any::<bool>()), 0..5);
        (0u8..3, chunks, any::<bool>()).prop_map(|(kind, chunks, trailer)| {
            let mut out = Vec::new();
            match kind {
                0 => out.extend_from_slice(b"GET /v2/catalog HTTP/1.1\r\nHost: g\r\n\r\n"),
                1 => {
                    let body = "x".repeat(chunks.len() * 7);
                    out.extend_from_slice(
                        format!("{HEAD}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
                    );
                }
                _ => {
                    out.extend_from_slice(format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n").as_bytes());
                    for (size, extension) in chunks {
                        let ext = if extension { ";name=\"v\"" } else { "" };
                        out.extend_from_slice(
                            format!("{size:x}{ext}\r\n{}\r\n", "c".repeat(size)).as_bytes(),
                        );
                    }
                    out.extend_from_slice(if trailer {
                        b"0\r\nX-T: 1\r\n\r\n"
                    } else {
                        b"0\r\n\r\n"
                    });
                }
            }
            out
        })
    }

    proptest::proptest! {
        /// Well-framed requests back to back, read in any pieces: every head is found, nothing is
        /// ever reported malformed.
        #[test]
        fn well_framed_streams_are_never_refused(
            requests in proptest::collection::vec(request(), 1..6),
            pieces in proptest::collection::vec(1usize..50, 1..20),
        ) {
            let stream: Vec<u8> = requests.concat();
            let mut framing = RequestFraming::default();
            let (mut at, mut heads, mut i) = (0, 0, 0);
            while at < stream.len() {
                let size = pieces.get(i % pieces.len()).copied().unwrap_or(1);
                let end = (at + size).min(stream.len());
                let fed = framing.feed(&stream[at..end]);
                proptest::prop_assert_eq!(fed.malformed, None);
                heads += fed.new_requests;
                at = end;
                i += 1;
            }
            proptest::prop_assert_eq!(heads, requests.len());
        }
    }

    #[test]
    fn what_actix_refuses_itself_is_not_followed() {
        for stream in [
            format!("{HEAD}Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nzz\r\n"),
            format!("{HEAD}Transfer-Encoding: gzip\r\n\r\nzz\r\n"),
            format!("{HEAD}Content-Length: +2\r\n\r\nzz\r\n"),
            "PUT /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_owned(),
            format!("{HEAD}Upgrade: websocket\r\n\r\nzz\r\n"),
            "BAD\u{1} REQUEST\r\n\r\nzz\r\n".to_owned(),
            "DELETE /v2/service_instances/i HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
                .to_owned(),
        ] {
            for piece in [1, 4096] {
                assert_eq!(malformed(&feed_all(stream.as_bytes(), piece)), None, "{stream:?}");
            }
        }
    }
}
