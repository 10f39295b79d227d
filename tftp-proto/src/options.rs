//! Option negotiation: RFC 2347 (OACK), 2348 (blksize), 2349 (timeout, tsize), 7440 (windowsize).
//!
//! The server side is a pure function, [`negotiate`], from what the client asked for
//! ([`OptionValues::from_request`]) and the server's [`OptionLimits`] to what the OACK says and
//! what the transfer runs with ([`Negotiated`]). A server can apply its own per-request policy
//! simply by passing different limits (for example a smaller `max_blksize` for one subnet, or
//! `tsize: false` for generated files).
//!
//! The client side, [`OptionValues::check_oack`], refuses an OACK that acknowledges an option
//! the client did not ask for, or a larger block or window than asked (RFC 2347, 2348, 7440);
//! the client session then sends ERROR 8.
//!
//! ```
//! use tftp_proto::options::{negotiate, Direction, OptionLimits, OptionValues};
//! use tftp_proto::packet::Options;
//!
//! let pairs = [("blksize", "1468"), ("tsize", "0"), ("windowsize", "64"), ("foo", "bar")];
//! let asked = OptionValues::from_request(&Options::from_pairs(&pairs));
//! let limits = OptionLimits { max_windowsize: 16, ..OptionLimits::default() };
//! let n = negotiate(&asked, &limits, Direction::Read { size: Some(1 << 20) });
//! assert_eq!(n.oack.blksize, Some(1468));
//! assert_eq!(n.oack.windowsize, Some(16)); // clamped
//! assert_eq!(n.oack.tsize, Some(1 << 20)); // the file size
//! assert_eq!(n.transfer.blksize, 1468);
//! ```

use crate::error::ProtocolError;
use crate::packet::Options;

/// RFC 1350 block size, used when `blksize` is not negotiated.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// Smallest `blksize` (RFC 2348).
pub const MIN_BLKSIZE: u16 = 8;
/// Largest `blksize` (RFC 2348): 65535 − 20 (IP) − 8 (UDP) − 4 (TFTP) − 39.
pub const MAX_BLKSIZE: u16 = 65464;
/// Smallest `timeout`, in seconds (RFC 2349).
pub const MIN_TIMEOUT: u8 = 1;
/// Largest `windowsize` (RFC 7440).
pub const MAX_WINDOWSIZE: u16 = 65535;

/// Values of the four options this crate knows.
///
/// Used both for what a client asks for and for what an OACK acknowledges. `None` means the
/// option is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct OptionValues {
    /// `blksize` (RFC 2348), 8..=65464.
    pub blksize: Option<u16>,
    /// `timeout` in seconds (RFC 2349), 1..=255.
    pub timeout: Option<u8>,
    /// `tsize` in bytes (RFC 2349). A client reading sends 0 to ask for the size.
    pub tsize: Option<u64>,
    /// `windowsize` in blocks (RFC 7440), 1..=65535.
    pub windowsize: Option<u16>,
}

/// Whether a request reads from the server (RRQ) or writes to it (WRQ), with what the server
/// knows about the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A read request; `size` is the size of the file being served, if known.
    Read {
        /// Bytes the server will send, reported as `tsize` when the client asks for it.
        size: Option<u64>,
    },
    /// A write request; the client announces the size with `tsize`.
    Write,
}

impl OptionValues {
    /// Parse the options of a request. Unknown options and malformed or out-of-range values are
    /// dropped, never an error (RFC 2347: the server simply does not acknowledge them).
    ///
    /// A `blksize` above 65464 is taken as 65464 (the client asked for "as large as possible",
    /// as tftp-hpa treats it); below 8 it is dropped.
    pub fn from_request(options: &Options<'_>) -> Self {
        let mut out = OptionValues::default();
        for (name, value) in options.iter() {
            let Some(value) = parse_decimal(value) else {
                continue;
            };
            if name.eq_ignore_ascii_case("blksize") {
                if value >= u64::from(MIN_BLKSIZE) {
                    out.blksize = Some(value.min(u64::from(MAX_BLKSIZE)) as u16);
                }
            } else if name.eq_ignore_ascii_case("timeout") {
                if let Ok(t) = u8::try_from(value) {
                    if t >= MIN_TIMEOUT {
                        out.timeout = Some(t);
                    }
                }
            } else if name.eq_ignore_ascii_case("tsize") {
                out.tsize = Some(value);
            } else if name.eq_ignore_ascii_case("windowsize") {
                if let Ok(w) = u16::try_from(value) {
                    if w >= 1 {
                        out.windowsize = Some(w);
                    }
                }
            }
        }
        out
    }

    /// True if no option is present (a server answering such a request sends no OACK).
    pub fn is_empty(&self) -> bool {
        *self == OptionValues::default()
    }

    /// Call `f` with these values as wire [`Options`] (in the order blksize, timeout, tsize,
    /// windowsize), without allocating.
    pub fn with_options<R>(&self, f: impl FnOnce(Options<'_>) -> R) -> R {
        let mut bufs = [[0u8; 20]; 4];
        let [b0, b1, b2, b3] = &mut bufs;
        let mut pairs: [(&str, &str); 4] = [("", ""); 4];
        let mut n = 0;
        let fields = [
            ("blksize", self.blksize.map(u64::from), b0),
            ("timeout", self.timeout.map(u64::from), b1),
            ("tsize", self.tsize, b2),
            ("windowsize", self.windowsize.map(u64::from), b3),
        ];
        for (name, value, buf) in fields {
            if let Some(v) = value {
                pairs[n] = (name, format_decimal(v, buf));
                n += 1;
            }
        }
        f(Options::from_pairs(&pairs[..n]))
    }

    /// Check a server's OACK against what this client asked for (`self`), and return the
    /// parameters the transfer runs with.
    ///
    /// Refused (the client must answer ERROR 8, RFC 2347): an option that was not asked for or
    /// is unknown, a malformed value, a `blksize` or `windowsize` larger than asked (RFC 2348,
    /// RFC 7440), a `timeout` different from the one asked (RFC 2349).
    pub fn check_oack(&self, oack: &Options<'_>) -> Result<TransferOptions, ProtocolError> {
        let mut t = TransferOptions::default();
        for (name, value) in oack.iter() {
            let value = parse_decimal(value).ok_or(ProtocolError::BadOack("malformed value"))?;
            if name.eq_ignore_ascii_case("blksize") {
                let asked = self
                    .blksize
                    .ok_or(ProtocolError::BadOack("blksize not requested"))?;
                if value < u64::from(MIN_BLKSIZE) || value > u64::from(asked) {
                    return Err(ProtocolError::BadOack("blksize out of range"));
                }
                t.blksize = value as u16;
            } else if name.eq_ignore_ascii_case("windowsize") {
                let asked = self
                    .windowsize
                    .ok_or(ProtocolError::BadOack("windowsize not requested"))?;
                if value < 1 || value > u64::from(asked) {
                    return Err(ProtocolError::BadOack("windowsize out of range"));
                }
                t.windowsize = value as u16;
            } else if name.eq_ignore_ascii_case("timeout") {
                let asked = self
                    .timeout
                    .ok_or(ProtocolError::BadOack("timeout not requested"))?;
                if value != u64::from(asked) {
                    return Err(ProtocolError::BadOack("timeout differs from request"));
                }
                t.timeout = Some(asked);
            } else if name.eq_ignore_ascii_case("tsize") {
                if self.tsize.is_none() {
                    return Err(ProtocolError::BadOack("tsize not requested"));
                }
                t.tsize = Some(value);
            } else {
                return Err(ProtocolError::BadOack("unknown option"));
            }
        }
        Ok(t)
    }
}

/// How a server treats a client's `timeout` option (RFC 2349).
///
/// RFC 2349 makes `timeout` non-negotiable: the server either echoes the exact value and
/// retransmits at that interval, or leaves it out of the OACK (RFC 2347 lets a server omit any
/// option). Clients ask for long timeouts (curl always sends `timeout 6`), and a fixed 6-second
/// retransmission turns each lost packet into a 6-second stall. The default therefore keeps the
/// adaptive timer (RFC 1123 §4.2.3.2) and does not acknowledge the option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum TimeoutPolicy {
    /// Leave `timeout` out of the OACK; retransmit on the adaptive timer.
    #[default]
    Adaptive,
    /// Echo `timeout` and retransmit at exactly that interval, as tftp-hpa does.
    Honour,
}

/// The server's limits for option negotiation. Pass different limits per request to apply a
/// per-client or per-file policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OptionLimits {
    /// Largest block size granted (clamped to 8..=65464). Default 65464, as tftp-hpa.
    pub max_blksize: u16,
    /// Largest window granted, in blocks. Default 64.
    pub max_windowsize: u16,
    /// Largest window in bytes (`windowsize × blksize`). The sender keeps a whole window for
    /// retransmission, so this bounds the memory of one session. Default 256 KiB.
    pub max_window_bytes: usize,
    /// Acknowledge `blksize` at all. Default true.
    pub blksize: bool,
    /// Acknowledge `windowsize` at all. Default true.
    pub windowsize: bool,
    /// Acknowledge `tsize` at all. Default true.
    pub tsize: bool,
    /// What to do with `timeout`.
    pub timeout: TimeoutPolicy,
}

impl Default for OptionLimits {
    fn default() -> Self {
        OptionLimits {
            max_blksize: MAX_BLKSIZE,
            max_windowsize: 64,
            max_window_bytes: 256 * 1024,
            blksize: true,
            windowsize: true,
            tsize: true,
            timeout: TimeoutPolicy::Adaptive,
        }
    }
}

/// The parameters a transfer runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransferOptions {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// Blocks per window (1 is RFC 1350 lock-step).
    pub windowsize: u16,
    /// A fixed retransmission timeout in seconds, if `timeout` was acknowledged; otherwise the
    /// timer is adaptive.
    pub timeout: Option<u8>,
    /// The transfer size that was announced, if any.
    pub tsize: Option<u64>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            timeout: None,
            tsize: None,
        }
    }
}

/// The result of server-side negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// What the OACK carries; empty means no OACK (plain RFC 1350 start).
    pub oack: OptionValues,
    /// What the transfer runs with.
    pub transfer: TransferOptions,
}

/// Server-side negotiation (RFC 2347 §"Negotiation Protocol").
///
/// The OACK carries only options the client asked for, each within its RFC range and never
/// above the request:
/// - `blksize`: `min(asked, max_blksize)` (RFC 2348 lets the server answer smaller).
/// - `windowsize`: `min(asked, max_windowsize, max_window_bytes / blksize)`, at least 1.
/// - `timeout`: echoed exactly under [`TimeoutPolicy::Honour`], else left out.
/// - `tsize`: on a read, the file size when known **and non-zero** (curl 7.88 rejects an OACK
///   saying `tsize 0`, and RFC 2347 lets the server leave it out); on a write, the client's
///   value echoed (RFC 2349).
pub fn negotiate(asked: &OptionValues, limits: &OptionLimits, direction: Direction) -> Negotiated {
    let mut oack = OptionValues::default();
    let mut transfer = TransferOptions::default();

    if let (Some(b), true) = (asked.blksize, limits.blksize) {
        let max = limits.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
        let b = b.clamp(MIN_BLKSIZE, MAX_BLKSIZE).min(max);
        oack.blksize = Some(b);
        transfer.blksize = b;
    }
    if let (Some(w), true) = (asked.windowsize, limits.windowsize) {
        let by_bytes = limits.max_window_bytes / usize::from(transfer.blksize);
        let by_bytes = u16::try_from(by_bytes).unwrap_or(u16::MAX);
        let w = w.min(limits.max_windowsize).min(by_bytes).max(1);
        oack.windowsize = Some(w);
        transfer.windowsize = w;
    }
    if let (Some(t), TimeoutPolicy::Honour) = (asked.timeout, limits.timeout) {
        if t >= MIN_TIMEOUT {
            oack.timeout = Some(t);
            transfer.timeout = Some(t);
        }
    }
    if let (Some(asked_size), true) = (asked.tsize, limits.tsize) {
        let size = match direction {
            Direction::Read { size } => size.filter(|&s| s > 0),
            Direction::Write => Some(asked_size),
        };
        oack.tsize = size;
        transfer.tsize = size;
    }
    Negotiated { oack, transfer }
}

/// Parse ASCII decimal digits (no sign, no spaces); `None` on anything else or overflow.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn format_decimal(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    core::str::from_utf8(&buf[i..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(pairs: &[(&str, &str)]) -> OptionValues {
        OptionValues::from_request(&Options::from_pairs(pairs))
    }

    #[test]
    fn unknown_and_malformed_options_are_ignored() {
        let a = asked(&[
            ("blksize", "abc"),
            ("timeout", "0"),
            ("windowsize", "70000"),
            ("tsize", "-1"),
            ("multicast", ""),
        ]);
        assert!(a.is_empty());
    }

    #[test]
    fn oversized_blksize_is_clamped_and_tiny_dropped() {
        assert_eq!(asked(&[("blksize", "70000")]).blksize, Some(MAX_BLKSIZE));
        assert_eq!(asked(&[("blksize", "7")]).blksize, None);
        assert_eq!(asked(&[("blksize", "0")]).blksize, None);
    }

    #[test]
    fn tsize_zero_is_left_out_of_a_read_oack() {
        let a = asked(&[("tsize", "0")]);
        let n = negotiate(
            &a,
            &OptionLimits::default(),
            Direction::Read { size: Some(0) },
        );
        assert!(n.oack.is_empty());
        let n = negotiate(&a, &OptionLimits::default(), Direction::Read { size: None });
        assert!(n.oack.is_empty());
    }

    #[test]
    fn write_tsize_is_echoed() {
        let a = asked(&[("tsize", "1234")]);
        let n = negotiate(&a, &OptionLimits::default(), Direction::Write);
        assert_eq!(n.oack.tsize, Some(1234));
    }

    #[test]
    fn timeout_policy() {
        let a = asked(&[("timeout", "6")]);
        let n = negotiate(&a, &OptionLimits::default(), Direction::Write);
        assert_eq!(n.oack.timeout, None);
        assert_eq!(n.transfer.timeout, None);
        let honour = OptionLimits {
            timeout: TimeoutPolicy::Honour,
            ..OptionLimits::default()
        };
        let n = negotiate(&a, &honour, Direction::Write);
        assert_eq!(n.oack.timeout, Some(6));
        assert_eq!(n.transfer.timeout, Some(6));
    }

    #[test]
    fn window_bytes_limit_caps_windowsize() {
        let a = asked(&[("blksize", "65464"), ("windowsize", "64")]);
        let limits = OptionLimits {
            max_window_bytes: 200_000,
            ..OptionLimits::default()
        };
        let n = negotiate(&a, &limits, Direction::Read { size: None });
        assert_eq!(n.transfer.windowsize, 3);
        let tiny = OptionLimits {
            max_window_bytes: 1,
            ..OptionLimits::default()
        };
        assert_eq!(
            negotiate(&a, &tiny, Direction::Read { size: None })
                .transfer
                .windowsize,
            1
        );
    }

    #[test]
    fn disabled_options_are_not_acknowledged() {
        let a = asked(&[("blksize", "1468"), ("windowsize", "4"), ("tsize", "0")]);
        let limits = OptionLimits {
            blksize: false,
            windowsize: false,
            tsize: false,
            ..OptionLimits::default()
        };
        let n = negotiate(&a, &limits, Direction::Read { size: Some(9) });
        assert!(n.oack.is_empty());
        assert_eq!(n.transfer, TransferOptions::default());
    }

    #[test]
    fn with_options_round_trips() {
        let v = OptionValues {
            blksize: Some(1468),
            timeout: Some(3),
            tsize: Some(u64::MAX),
            windowsize: Some(1),
        };
        let back = v.with_options(|o| OptionValues::from_request(&o));
        assert_eq!(back, v);
        OptionValues::default().with_options(|o| assert!(o.is_empty()));
    }

    #[test]
    fn client_refuses_bad_oacks() {
        let a = OptionValues {
            blksize: Some(1024),
            timeout: Some(5),
            tsize: None,
            windowsize: Some(4),
        };
        let check = |pairs: &[(&str, &str)]| a.check_oack(&Options::from_pairs(pairs));
        assert!(check(&[("blksize", "2048")]).is_err());
        assert!(check(&[("blksize", "7")]).is_err());
        assert!(check(&[("windowsize", "5")]).is_err());
        assert!(check(&[("windowsize", "0")]).is_err());
        assert!(check(&[("timeout", "4")]).is_err());
        assert!(check(&[("tsize", "4")]).is_err());
        assert!(check(&[("foo", "4")]).is_err());
        assert!(check(&[("blksize", "x")]).is_err());
        let t = check(&[("BLKSIZE", "512"), ("windowsize", "2"), ("timeout", "5")]).unwrap();
        assert_eq!(
            t,
            TransferOptions {
                blksize: 512,
                windowsize: 2,
                timeout: Some(5),
                tsize: None
            }
        );
    }
}
