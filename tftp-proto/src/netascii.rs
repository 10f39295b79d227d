//! Streaming netascii translation (RFC 1350 appendix, RFC 764).
//!
//! On the wire a line ends in CR LF and a bare CR is CR NUL. This host's text uses LF line
//! ends, so sending turns LF into CR LF and CR into CR NUL; receiving turns them back. Both
//! directions keep state across calls, so a pair may straddle two DATA blocks.

/// Turns local text into netascii, a chunk at a time.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    /// Second byte of a pair whose first byte ended the previous output buffer.
    pending: Option<u8>,
}

impl Encoder {
    /// A fresh encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if a byte is waiting to be written (the output buffer filled mid-pair).
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Translate as much of `input` as fits into `output`. Returns `(consumed, written)`.
    ///
    /// Call again with the rest of the input (or an empty input, to flush a pending byte) once
    /// the output has been used.
    pub fn encode(&mut self, input: &[u8], output: &mut [u8]) -> (usize, usize) {
        let mut written = 0;
        if let Some(b) = self.pending {
            let Some(slot) = output.first_mut() else {
                return (0, 0);
            };
            *slot = b;
            written = 1;
            self.pending = None;
        }
        let mut consumed = 0;
        for &b in input {
            let pair = match b {
                b'\n' => Some(b'\n'),
                b'\r' => Some(0),
                _ => None,
            };
            let first = if pair.is_some() { b'\r' } else { b };
            let Some(slot) = output.get_mut(written) else {
                break;
            };
            *slot = first;
            written += 1;
            consumed += 1;
            if let Some(second) = pair {
                match output.get_mut(written) {
                    Some(slot) => {
                        *slot = second;
                        written += 1;
                    }
                    None => {
                        self.pending = Some(second);
                        break;
                    }
                }
            }
        }
        (consumed, written)
    }
}

/// Turns netascii back into local text, a block at a time.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    /// The previous block ended in a CR whose meaning depends on the next byte.
    pending_cr: bool,
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode `buf[from..]` in place, writing the result at `buf[from - 1..]` or later, and
    /// return the range of `buf` that holds the decoded bytes.
    ///
    /// `from` must be at least 1: a CR held back from the previous block may need one byte
    /// before the input. Writing never overtakes reading, so the translation is safe in place.
    /// With `last`, a trailing CR is emitted as itself instead of being held back.
    pub fn decode_in_place(
        &mut self,
        buf: &mut [u8],
        from: usize,
        last: bool,
    ) -> core::ops::Range<usize> {
        let start = from.saturating_sub(1);
        let mut w = start;
        let mut r = from;
        let mut cr = self.pending_cr;
        while r < buf.len() {
            let b = buf[r];
            r += 1;
            if cr {
                cr = false;
                match b {
                    b'\n' => {
                        buf[w] = b'\n';
                        w += 1;
                        continue;
                    }
                    0 => {
                        buf[w] = b'\r';
                        w += 1;
                        continue;
                    }
                    // A CR not followed by LF or NUL is not netascii; keep it as it came.
                    _ => {
                        buf[w] = b'\r';
                        w += 1;
                    }
                }
            }
            if b == b'\r' {
                cr = true;
            } else {
                buf[w] = b;
                w += 1;
            }
        }
        if cr && last {
            // Safe: w < r == buf.len() whenever cr is set and `from >= 1`.
            if let Some(slot) = buf.get_mut(w) {
                *slot = b'\r';
                w += 1;
            }
            cr = false;
        }
        self.pending_cr = cr;
        start..w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_all(input: &[u8], chunk_out: usize) -> Vec<u8> {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        let mut rest = input;
        loop {
            let mut buf = vec![0u8; chunk_out];
            let (c, w) = e.encode(rest, &mut buf);
            out.extend_from_slice(&buf[..w]);
            rest = &rest[c..];
            if rest.is_empty() && !e.has_pending() {
                return out;
            }
        }
    }

    fn decode_all(wire: &[u8], block: usize) -> Vec<u8> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = if wire.is_empty() {
            vec![&[]]
        } else {
            wire.chunks(block).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let mut buf = vec![0u8; 1 + chunk.len()];
            buf[1..].copy_from_slice(chunk);
            let r = d.decode_in_place(&mut buf, 1, i + 1 == chunks.len());
            out.extend_from_slice(&buf[r]);
        }
        out
    }

    #[test]
    fn translates_line_ends_and_bare_cr() {
        assert_eq!(encode_all(b"a\nb\rc", 64), b"a\r\nb\r\0c");
        assert_eq!(decode_all(b"a\r\nb\r\0c", 64), b"a\nb\rc");
    }

    #[test]
    fn pairs_straddle_block_boundaries() {
        let text = b"\n\n\r\r\nx\r";
        for out_chunk in 1..8 {
            let wire = encode_all(text, out_chunk);
            assert_eq!(wire, b"\r\n\r\n\r\0\r\0\r\nx\r\0");
            for block in 1..8 {
                assert_eq!(decode_all(&wire, block), text, "{out_chunk} {block}");
            }
        }
    }

    #[test]
    fn trailing_cr_is_kept_on_the_last_block() {
        assert_eq!(decode_all(b"ab\r", 2), b"ab\r");
        assert_eq!(decode_all(b"a\rb", 64), b"a\rb");
    }
}
