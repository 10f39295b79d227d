//! The TFTP wire format: decoding borrows the datagram, encoding writes into a caller buffer.
//!
//! | opcode | packet | layout (RFC 1350 §5, RFC 2347) |
//! |---|---|---|
//! | 1 | RRQ | `01` filename `\0` mode `\0` (name `\0` value `\0`)* |
//! | 2 | WRQ | `02` filename `\0` mode `\0` (name `\0` value `\0`)* |
//! | 3 | DATA | `03` block data |
//! | 4 | ACK | `04` block |
//! | 5 | ERROR | `05` code message `\0` |
//! | 6 | OACK | `06` (name `\0` value `\0`)* |
//!
//! [`Packet::decode`] never panics: every malformed shape is a [`DecodeError`].
//!
//! ```
//! use tftp_proto::packet::{Packet, Mode};
//!
//! let bytes = b"\x00\x01boot/pxelinux.0\x00octet\x00blksize\x001468\x00";
//! let Packet::Rrq(request) = Packet::decode(bytes)? else { unreachable!() };
//! assert_eq!(request.filename, "boot/pxelinux.0");
//! assert_eq!(request.mode, Mode::Octet);
//! assert_eq!(request.options.get("BLKSIZE"), Some("1468"));
//!
//! let mut buf = [0u8; 64];
//! let len = Packet::Rrq(request).encode(&mut buf)?;
//! assert_eq!(&buf[..len], bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::error::{DecodeError, EncodeError, Field};

/// Length of the opcode and block number that start DATA and ACK packets.
pub const HEADER_LEN: usize = 4;

/// The largest number of options a request or OACK may carry.
///
/// Real clients send at most five; the cap keeps the duplicate check cheap on hostile input.
pub const MAX_OPTIONS: usize = 32;

/// A TFTP opcode (RFC 1350 §5, RFC 2347 for OACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Opcode {
    /// Read request.
    Rrq = 1,
    /// Write request.
    Wrq = 2,
    /// A block of data.
    Data = 3,
    /// Acknowledgement of a block (or of an OACK, as block 0).
    Ack = 4,
    /// An error; ends the transfer.
    Error = 5,
    /// Option acknowledgement (RFC 2347).
    Oack = 6,
}

impl Opcode {
    /// The opcode for a wire value, if it is one of the six.
    pub fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            1 => Self::Rrq,
            2 => Self::Wrq,
            3 => Self::Data,
            4 => Self::Ack,
            5 => Self::Error,
            6 => Self::Oack,
            _ => return None,
        })
    }
}

/// Transfer mode of a request (RFC 1350 §5). Compared case-insensitively on the wire.
///
/// `mail` is obsolete (RFC 1350 says it "should not be used") and is refused by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Bytes are sent as they are.
    Octet,
    /// Text: lines end in CR LF on the wire, a bare CR is CR NUL (RFC 1350 appendix, RFC 764).
    Netascii,
}

impl Mode {
    /// The canonical, lower-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TFTP error code (RFC 1350 §5, RFC 2347 for code 8).
///
/// A newtype rather than an enum so that every wire value has exactly one representation: codes
/// outside 0–8 that a peer sends survive a decode/encode round trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// 0: not defined, see the message.
    pub const NOT_DEFINED: Self = Self(0);
    /// 1: file not found.
    pub const FILE_NOT_FOUND: Self = Self(1);
    /// 2: access violation.
    pub const ACCESS_VIOLATION: Self = Self(2);
    /// 3: disk full or allocation exceeded.
    pub const DISK_FULL: Self = Self(3);
    /// 4: illegal TFTP operation.
    pub const ILLEGAL_OPERATION: Self = Self(4);
    /// 5: unknown transfer ID.
    pub const UNKNOWN_TRANSFER_ID: Self = Self(5);
    /// 6: file already exists.
    pub const FILE_EXISTS: Self = Self(6);
    /// 7: no such user.
    pub const NO_SUCH_USER: Self = Self(7);
    /// 8: option negotiation refused (RFC 2347).
    pub const OPTION_REFUSED: Self = Self(8);

    /// The standard meaning of the code, or `None` for codes above 8.
    pub fn description(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "Not defined",
            1 => "File not found",
            2 => "Access violation",
            3 => "Disk full or allocation exceeded",
            4 => "Illegal TFTP operation",
            5 => "Unknown transfer ID",
            6 => "File already exists",
            7 => "No such user",
            8 => "Option negotiation refused",
            _ => return None,
        })
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(d) => write!(f, "ErrorCode({} {d:?})", self.0),
            None => write!(f, "ErrorCode({})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(d) => write!(f, "{} ({d})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A read or write request (RFC 1350 §5) with its options (RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The file name as the client sent it. Interpreting it (and confining it) is up to the server.
    pub filename: &'a str,
    /// Transfer mode.
    pub mode: Mode,
    /// Options, in the order the client sent them.
    pub options: Options<'a>,
}

/// A list of option name/value pairs, as in a request or an OACK (RFC 2347).
///
/// Decoding yields a view over the datagram; [`Options::from_pairs`] builds one for encoding.
/// Names compare case-insensitively in [`Options::get`]; values are text (decimal for the
/// options this crate knows).
#[derive(Clone, Copy)]
pub struct Options<'a> {
    repr: OptionsRepr<'a>,
}

#[derive(Clone, Copy)]
enum OptionsRepr<'a> {
    /// Validated wire bytes: an even number of NUL-terminated UTF-8 strings.
    Wire(&'a [u8]),
    Pairs(&'a [(&'a str, &'a str)]),
}

impl<'a> Options<'a> {
    /// No options.
    pub const EMPTY: Options<'static> = Options {
        repr: OptionsRepr::Pairs(&[]),
    };

    /// Options from name/value pairs. [`Packet::encode`] refuses empty names, NUL bytes and
    /// duplicate names (case-insensitive), so that what is encoded decodes again.
    pub const fn from_pairs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Options {
            repr: OptionsRepr::Pairs(pairs),
        }
    }

    /// The pairs in order.
    pub fn iter(&self) -> OptionsIter<'a> {
        OptionsIter { repr: self.repr }
    }

    /// The value of the option `name` (case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True if there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    fn encoded_len(&self) -> usize {
        self.iter().map(|(n, v)| n.len() + v.len() + 2).sum()
    }

    fn validate_for_encoding(&self) -> Result<(), EncodeError> {
        for (i, (name, value)) in self.iter().enumerate() {
            if i >= MAX_OPTIONS {
                return Err(EncodeError::TooManyOptions);
            }
            if name.is_empty() {
                return Err(EncodeError::EmptyOptionName);
            }
            check_text(name, Field::OptionName)?;
            check_text(value, Field::OptionValue)?;
            if self
                .iter()
                .take(i)
                .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name))
            {
                return Err(EncodeError::DuplicateOption);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Options<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Options<'_> {}

impl<'a> IntoIterator for Options<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = OptionsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the `(name, value)` pairs of [`Options`].
#[derive(Clone)]
pub struct OptionsIter<'a> {
    repr: OptionsRepr<'a>,
}

impl fmt::Debug for OptionsIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OptionsIter").finish_non_exhaustive()
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.repr {
            OptionsRepr::Pairs(pairs) => {
                let (first, rest) = pairs.split_first()?;
                *pairs = rest;
                Some(*first)
            }
            OptionsRepr::Wire(bytes) => {
                // Validated at decode time; a failure here only ends the iteration.
                let (name, rest) = split_str(bytes).ok()?;
                let (value, rest) = split_str(rest).ok()?;
                *bytes = rest;
                Some((name, value))
            }
        }
    }
}

/// A decoded or to-be-encoded TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request (opcode 1).
    Rrq(Request<'a>),
    /// Write request (opcode 2).
    Wrq(Request<'a>),
    /// Data block (opcode 3). A block shorter than the negotiated block size is the last.
    Data {
        /// Block number on the wire (wraps past 65535).
        block: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Acknowledgement (opcode 4); block 0 acknowledges an OACK or a WRQ.
    Ack {
        /// Block number being acknowledged.
        block: u16,
    },
    /// Error (opcode 5); ends the transfer and is never acknowledged.
    Error {
        /// Error code.
        code: ErrorCode,
        /// Human-readable message.
        message: &'a str,
    },
    /// Option acknowledgement (opcode 6, RFC 2347).
    Oack(Options<'a>),
}

impl<'a> Packet<'a> {
    /// Decode one datagram.
    ///
    /// Strings must be NUL-terminated UTF-8; nothing may follow the last field. Requests and
    /// OACKs may not repeat an option (case-insensitive) nor carry more than [`MAX_OPTIONS`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (opcode, body) = match bytes {
            [hi, lo, body @ ..] => (u16::from_be_bytes([*hi, *lo]), body),
            _ => return Err(DecodeError::Truncated),
        };
        let opcode = Opcode::from_u16(opcode).ok_or(DecodeError::UnknownOpcode(opcode))?;
        match opcode {
            Opcode::Rrq => decode_request(body).map(Packet::Rrq),
            Opcode::Wrq => decode_request(body).map(Packet::Wrq),
            Opcode::Data => {
                let (block, data) = split_u16(body)?;
                Ok(Packet::Data { block, data })
            }
            Opcode::Ack => {
                let (block, rest) = split_u16(body)?;
                if !rest.is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                Ok(Packet::Ack { block })
            }
            Opcode::Error => {
                let (code, rest) = split_u16(body)?;
                Ok(Packet::Error {
                    code: ErrorCode(code),
                    message: lenient_message(rest),
                })
            }
            Opcode::Oack => decode_options(body).map(Packet::Oack),
        }
    }

    /// The opcode of this packet.
    pub fn opcode(&self) -> Opcode {
        match self {
            Packet::Rrq(_) => Opcode::Rrq,
            Packet::Wrq(_) => Opcode::Wrq,
            Packet::Data { .. } => Opcode::Data,
            Packet::Ack { .. } => Opcode::Ack,
            Packet::Error { .. } => Opcode::Error,
            Packet::Oack(_) => Opcode::Oack,
        }
    }

    /// The number of bytes [`Packet::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Packet::Rrq(r) | Packet::Wrq(r) => {
                r.filename.len() + 1 + r.mode.as_str().len() + 1 + r.options.encoded_len()
            }
            Packet::Data { data, .. } => 2 + data.len(),
            Packet::Ack { .. } => 2,
            Packet::Error { message, .. } => 2 + message.len() + 1,
            Packet::Oack(options) => options.encoded_len(),
        }
    }

    /// Encode into `buf`, returning the number of bytes written.
    ///
    /// Fails with [`EncodeError::BufferTooSmall`] (saying how much is needed) if `buf` is short,
    /// and refuses fields that would not decode again (a NUL inside a string, an empty option
    /// name, duplicate options). Never panics.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        match self {
            Packet::Rrq(r) | Packet::Wrq(r) => {
                check_text(r.filename, Field::Filename)?;
                r.options.validate_for_encoding()?;
            }
            Packet::Error { message, .. } => check_text(message, Field::ErrorMessage)?,
            Packet::Oack(options) => options.validate_for_encoding()?,
            Packet::Data { .. } | Packet::Ack { .. } => {}
        }
        let needed = self.encoded_len();
        let Some(out) = buf.get_mut(..needed) else {
            return Err(EncodeError::BufferTooSmall { needed });
        };
        if let Packet::Error { code, message } = self {
            return Ok(write_error(out, *code, message));
        }
        let mut w = Writer { buf: out, pos: 0 };
        w.put(&(self.opcode() as u16).to_be_bytes());
        match self {
            Packet::Rrq(r) | Packet::Wrq(r) => {
                w.put_str(r.filename);
                w.put_str(r.mode.as_str());
                for (name, value) in r.options.iter() {
                    w.put_str(name);
                    w.put_str(value);
                }
            }
            Packet::Data { block, data } => {
                w.put(&block.to_be_bytes());
                w.put(data);
            }
            Packet::Ack { block } => w.put(&block.to_be_bytes()),
            // Written above, by the one ERROR encoder.
            Packet::Error { .. } => {}
            Packet::Oack(options) => {
                for (name, value) in options.iter() {
                    w.put_str(name);
                    w.put_str(value);
                }
            }
        }
        Ok(w.pos)
    }
}

/// Write the 4-byte DATA header for `block` at the start of `buf` (which must hold 4 bytes).
pub(crate) fn write_data_header(buf: &mut [u8], block: u16) {
    if let Some(h) = buf.get_mut(..HEADER_LEN) {
        h[..2].copy_from_slice(&(Opcode::Data as u16).to_be_bytes());
        h[2..].copy_from_slice(&block.to_be_bytes());
    }
}

/// The 4-byte ACK packet for `block`.
pub(crate) fn ack_bytes(block: u16) -> [u8; 4] {
    let [hi, lo] = block.to_be_bytes();
    [0, Opcode::Ack as u8, hi, lo]
}

/// Write an ERROR packet — opcode 5, `code`, `message` and its terminating NUL (RFC 1350 §5) —
/// at the start of `buf`, and return its length, `5 + message.len()`.
///
/// The crate's one ERROR encoder: [`Packet::encode`] calls it (and so [`crate::ErrorReply`]),
/// sessions call it for the ERRORs they send, and being `const` it builds the prebuilt ones
/// ([`error_packet`]). It neither checks `message` for a NUL (the callers do) nor writes past
/// the end of `buf` (a short `buf` holds a cut packet; the callers size it).
pub(crate) const fn write_error(buf: &mut [u8], code: ErrorCode, message: &str) -> usize {
    let [op_hi, op_lo] = (Opcode::Error as u16).to_be_bytes();
    let [code_hi, code_lo] = code.0.to_be_bytes();
    let text = message.as_bytes();
    let len = 5 + text.len();
    let mut i = 0;
    while i < len && i < buf.len() {
        buf[i] = match i {
            0 => op_hi,
            1 => op_lo,
            2 => code_hi,
            3 => code_lo,
            _ if i - 4 < text.len() => text[i - 4],
            _ => 0,
        };
        i += 1;
    }
    len
}

/// An ERROR packet built at compile time by [`write_error`]; `N` is `5 + message.len()`.
pub(crate) const fn error_packet<const N: usize>(code: ErrorCode, message: &str) -> [u8; N] {
    let mut buf = [0u8; N];
    write_error(&mut buf, code, message);
    buf
}

struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    // `encode` sized the buffer exactly; a short buffer would only truncate, never panic.
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    fn put_str(&mut self, s: &str) {
        self.put(s.as_bytes());
        self.put(&[0]);
    }
}

fn check_text(s: &str, field: Field) -> Result<(), EncodeError> {
    if s.as_bytes().contains(&0) {
        Err(EncodeError::NulInText(field))
    } else {
        Ok(())
    }
}

fn split_u16(bytes: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    match bytes {
        [hi, lo, rest @ ..] => Ok((u16::from_be_bytes([*hi, *lo]), rest)),
        _ => Err(DecodeError::Truncated),
    }
}

/// Split off one NUL-terminated UTF-8 string; the error does not yet know the field.
fn split_str(bytes: &[u8]) -> Result<(&str, &[u8]), SplitError> {
    let nul = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(SplitError::NoNul)?;
    let (text, rest) = bytes.split_at(nul);
    let text = core::str::from_utf8(text).map_err(|_| SplitError::NotUtf8)?;
    Ok((text, &rest[1..]))
}

enum SplitError {
    NoNul,
    NotUtf8,
}

fn split_field(bytes: &[u8], field: Field) -> Result<(&str, &[u8]), DecodeError> {
    split_str(bytes).map_err(|e| match e {
        SplitError::NoNul => DecodeError::MissingNul(field),
        SplitError::NotUtf8 => DecodeError::NotUtf8(field),
    })
}

/// An ERROR's message, read liberally: an ERROR ends the transfer whatever its text, so a
/// message cut short by a small receive buffer (no NUL), bytes after the NUL, or text that is
/// not UTF-8 (servers that send Latin-1) must not turn the peer's ERROR into garbage. The
/// message is the valid UTF-8 prefix of the bytes before the first NUL.
fn lenient_message(bytes: &[u8]) -> &str {
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    match core::str::from_utf8(text) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&text[..e.valid_up_to()]).unwrap_or_default(),
    }
}

fn decode_request(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    let (filename, rest) = split_field(body, Field::Filename)?;
    let (mode, rest) = split_field(rest, Field::Mode)?;
    let mode = if mode.eq_ignore_ascii_case("octet") {
        Mode::Octet
    } else if mode.eq_ignore_ascii_case("netascii") {
        Mode::Netascii
    } else if mode.eq_ignore_ascii_case("mail") {
        return Err(DecodeError::MailMode);
    } else {
        return Err(DecodeError::UnknownMode);
    };
    let options = decode_options(rest)?;
    Ok(Request {
        filename,
        mode,
        options,
    })
}

fn decode_options(bytes: &[u8]) -> Result<Options<'_>, DecodeError> {
    let mut rest = bytes;
    let mut count = 0;
    while !rest.is_empty() {
        let (name, after_name) = split_field(rest, Field::OptionName)?;
        if name.is_empty() {
            return Err(DecodeError::EmptyOptionName);
        }
        let (_value, after_value) = split_field(after_name, Field::OptionValue)?;
        count += 1;
        if count > MAX_OPTIONS {
            return Err(DecodeError::TooManyOptions);
        }
        // Quadratic, but bounded by MAX_OPTIONS pairs.
        let earlier = Options {
            repr: OptionsRepr::Wire(&bytes[..bytes.len() - rest.len()]),
        };
        if earlier.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(DecodeError::DuplicateOption);
        }
        rest = after_value;
    }
    Ok(Options {
        repr: OptionsRepr::Wire(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(p: Packet<'_>) {
        let mut buf = vec![0u8; p.encoded_len()];
        let n = p.encode(&mut buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(Packet::decode(&buf).unwrap(), p);
        if n > 0 {
            assert_eq!(
                p.encode(&mut buf[..n - 1]),
                Err(EncodeError::BufferTooSmall { needed: n })
            );
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let opts = [("blksize", "1468"), ("tsize", "0")];
        roundtrip(Packet::Rrq(Request {
            filename: "a/b",
            mode: Mode::Octet,
            options: Options::from_pairs(&opts),
        }));
        roundtrip(Packet::Wrq(Request {
            filename: "x",
            mode: Mode::Netascii,
            options: Options::EMPTY,
        }));
        roundtrip(Packet::Data {
            block: 65535,
            data: b"hello",
        });
        roundtrip(Packet::Data {
            block: 0,
            data: b"",
        });
        roundtrip(Packet::Ack { block: 7 });
        roundtrip(Packet::Error {
            code: ErrorCode::OPTION_REFUSED,
            message: "no",
        });
        roundtrip(Packet::Error {
            code: ErrorCode(999),
            message: "",
        });
        roundtrip(Packet::Oack(Options::from_pairs(&opts)));
        roundtrip(Packet::Oack(Options::EMPTY));
    }

    #[test]
    fn mode_and_option_names_are_case_insensitive() {
        let Packet::Rrq(r) = Packet::decode(b"\0\x01f\0NetASCII\0BlkSize\x00512\0").unwrap() else {
            panic!()
        };
        assert_eq!(r.mode, Mode::Netascii);
        assert_eq!(r.options.get("blksize"), Some("512"));
    }

    #[test]
    fn malformed_shapes_are_typed_errors() {
        use DecodeError::*;
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", Truncated),
            (b"\0", Truncated),
            (b"\0\x07", UnknownOpcode(7)),
            (b"\0\0", UnknownOpcode(0)),
            (b"\0\x01file", MissingNul(Field::Filename)),
            (b"\0\x01file\0octet", MissingNul(Field::Mode)),
            (b"\0\x01\xff\0octet\0", NotUtf8(Field::Filename)),
            (b"\0\x01f\0mail\0", MailMode),
            (b"\0\x01f\0binary\0", UnknownMode),
            (b"\0\x01f\0octet\0blksize\0", MissingNul(Field::OptionValue)),
            (b"\0\x01f\0octet\0blksize", MissingNul(Field::OptionName)),
            (b"\0\x01f\0octet\0\0", EmptyOptionName),
            (
                b"\0\x01f\0octet\0blksize\x008\0BLKSIZE\x009\0",
                DuplicateOption,
            ),
            (b"\0\x03\0", Truncated),
            (b"\0\x04\0", Truncated),
            (b"\0\x04\0\x01\0", TrailingBytes),
            (b"\0\x05\0", Truncated),
            (b"\0\x06tsize\x00\xff\0", NotUtf8(Field::OptionValue)),
        ];
        for (bytes, want) in cases {
            assert_eq!(Packet::decode(bytes), Err(want.clone()), "{bytes:?}");
        }
    }

    #[test]
    fn an_error_is_read_liberally() {
        // An ERROR ends the transfer whatever its text: one cut short by a small receive
        // buffer, padded after its NUL, or in Latin-1 is still the peer's ERROR.
        let cases: &[(&[u8], &str)] = &[
            (b"\0\x05\0\x01oops", "oops"),
            (b"\0\x05\0\x01oops\0x", "oops"),
            (b"\0\x05\0\x01no\xe9\0", "no"),
            (b"\0\x05\0\x01\xc3", ""),
            (b"\0\x05\0\x01", ""),
        ];
        for (bytes, message) in cases {
            assert_eq!(
                Packet::decode(bytes),
                Ok(Packet::Error {
                    code: ErrorCode(1),
                    message
                }),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn too_many_options_is_an_error() {
        let mut bytes = b"\0\x06".to_vec();
        for i in 0..=MAX_OPTIONS {
            bytes.extend_from_slice(format!("o{i}\0v\0").as_bytes());
        }
        assert_eq!(Packet::decode(&bytes), Err(DecodeError::TooManyOptions));
    }

    #[test]
    fn encode_refuses_what_would_not_decode() {
        let mut buf = [0u8; 64];
        let dup = [("a", "1"), ("A", "2")];
        assert_eq!(
            Packet::Oack(Options::from_pairs(&dup)).encode(&mut buf),
            Err(EncodeError::DuplicateOption)
        );
        assert_eq!(
            Packet::Error {
                code: ErrorCode(0),
                message: "a\0b"
            }
            .encode(&mut buf),
            Err(EncodeError::NulInText(Field::ErrorMessage))
        );
        let empty = [("", "1")];
        assert_eq!(
            Packet::Oack(Options::from_pairs(&empty)).encode(&mut buf),
            Err(EncodeError::EmptyOptionName)
        );
    }

    #[test]
    fn helpers_match_the_codec() {
        let mut buf = [0u8; 4];
        write_data_header(&mut buf, 0x1234);
        assert_eq!(
            Packet::decode(&buf).unwrap(),
            Packet::Data {
                block: 0x1234,
                data: b""
            }
        );
        assert_eq!(
            Packet::decode(&ack_bytes(9)).unwrap(),
            Packet::Ack { block: 9 }
        );
    }

    #[test]
    fn the_error_layout_is_rfc_1350s_and_never_overruns() {
        let code = ErrorCode(0x0102);
        let mut buf = [0xffu8; 16];
        let n = write_error(&mut buf, code, "oops");
        assert_eq!(&buf[..n], b"\x00\x05\x01\x02oops\x00");
        assert_eq!(buf[n], 0xff, "nothing past the packet");
        let mut short = [0u8; 6];
        assert_eq!(write_error(&mut short, code, "oops"), 9);
        assert_eq!(&short, b"\x00\x05\x01\x02oo");
        assert_eq!(write_error(&mut [], code, "oops"), 9);
        const BUILT: [u8; 9] = error_packet(ErrorCode(0x0102), "oops");
        assert_eq!(&BUILT, b"\x00\x05\x01\x02oops\x00");
    }
}
