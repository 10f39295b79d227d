//! The client side: a session that sends a request and then reads (get) or writes (put).

use alloc::vec;
use core::net::SocketAddr;

use crate::config::Config;
use crate::error::EncodeError;
use crate::options::OptionValues;
use crate::packet::{Mode, Packet, Request};
use crate::session::Session;
use crate::time::Instant;

/// Marker for the client role of a [`Session`].
#[derive(Debug)]
pub enum Client {}

/// A session that fetches (get) or sends (put) one file.
pub type ClientSession<
    #[cfg(feature = "std")] I = std::time::Instant,
    #[cfg(not(feature = "std"))] I,
> = Session<Client, I>;

impl<I: Instant> Session<Client, I> {
    /// Read `filename` from the server at `server` (its listening address, usually port 69),
    /// asking for `options` (send `tsize: Some(0)` to learn the size).
    ///
    /// The first output is the RRQ. The server's first answer fixes its transfer ID (RFC 1350
    /// §4); an OACK is checked with [`OptionValues::check_oack`] and refused with ERROR 8 if it
    /// is not acceptable. An announced `tsize` above [`Config::max_transfer_size`] is refused
    /// with ERROR 3 (RFC 2349).
    pub fn get(
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        config: &Config,
        now: I,
    ) -> Result<Self, EncodeError> {
        Self::start(server, filename, mode, options, config, now, true)
    }

    /// Write `filename` to the server at `server`, asking for `options` (set `tsize` to the
    /// upload size when it is known, so the server can refuse an upload that will not fit).
    pub fn put(
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        config: &Config,
        now: I,
    ) -> Result<Self, EncodeError> {
        Self::start(server, filename, mode, options, config, now, false)
    }

    fn start(
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        config: &Config,
        now: I,
        get: bool,
    ) -> Result<Self, EncodeError> {
        let packet = options.with_options(|opts| {
            let request = Request {
                filename,
                mode,
                options: opts,
            };
            let packet = if get {
                Packet::Rrq(request)
            } else {
                Packet::Wrq(request)
            };
            let mut buf = vec![0u8; packet.encoded_len()];
            packet.encode(&mut buf).map(|n| {
                buf.truncate(n);
                buf
            })
        })?;
        let mut s = Session::new_raw(config, server, false, mode, options, now);
        s.start_requesting(packet, get);
        Ok(s)
    }
}
