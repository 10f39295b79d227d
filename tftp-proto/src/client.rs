//! The client side: a session that sends a request and then reads (get) or writes (put).

use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::config::Config;
use crate::error::{EncodeError, UsageError};
use crate::options::OptionValues;
use crate::packet::{Mode, Packet, Request};
use crate::server::RequestKind;
use crate::session::{Ctrl, Session};
use crate::storage::{self, Storage};
use crate::time::Instant;

/// Marker for the client role of a [`Session`].
#[derive(Debug)]
pub enum Client {}

/// A session that fetches (get) or sends (put) one file. `I` is the caller's [`Instant`] type,
/// `B` where the window lives ([`crate::storage`]); the defaults are [`std::time::Instant`]
/// (with `std`) and the heap.
pub type ClientSession<
    #[cfg(feature = "std")] I = std::time::Instant,
    #[cfg(not(feature = "std"))] I,
    B = Vec<u8>,
> = Session<Client, I, B>;

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
        Self::start(
            server,
            filename,
            mode,
            options,
            config,
            now,
            RequestKind::Read,
            Vec::new(),
        )
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
        Self::start(
            server,
            filename,
            mode,
            options,
            config,
            now,
            RequestKind::Write,
            Vec::new(),
        )
    }
}

impl<I: Instant, B: Storage> Session<Client, I, B> {
    /// [`Session::get`] with the window in `storage` the caller owns (a `&mut [u8]`): the
    /// session allocates nothing (see [`crate::storage`]).
    ///
    /// `storage` must hold the window for what is asked, since the server may answer with up
    /// to that (RFC 2348, RFC 7440) or ignore the options (512-byte blocks, window 1):
    /// `windowsize × (4 + max(blksize, 512))` bytes, [`UsageError::StorageTooSmall`] if not.
    #[allow(clippy::too_many_arguments)]
    pub fn get_with_storage(
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        config: &Config,
        now: I,
        storage: B,
    ) -> Result<Self, UsageError> {
        Self::check_storage(&options, &storage, false)?;
        Ok(Self::start(
            server,
            filename,
            mode,
            options,
            config,
            now,
            RequestKind::Read,
            storage,
        )?)
    }

    /// [`Session::put`] with the window in `storage` the caller owns. It must hold
    /// `windowsize × (4 + max(blksize, 512))` bytes for what is asked, and in netascii mode
    /// another `max(blksize, 512)` to stage the text.
    #[allow(clippy::too_many_arguments)]
    pub fn put_with_storage(
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        config: &Config,
        now: I,
        storage: B,
    ) -> Result<Self, UsageError> {
        Self::check_storage(&options, &storage, mode == Mode::Netascii)?;
        Ok(Self::start(
            server,
            filename,
            mode,
            options,
            config,
            now,
            RequestKind::Write,
            storage,
        )?)
    }

    fn check_storage(
        options: &OptionValues,
        storage: &B,
        netascii_sender: bool,
    ) -> Result<(), UsageError> {
        // Without an OACK the transfer runs at 512 bytes, whatever was asked.
        let blksize = options.blksize.unwrap_or(512).max(512);
        let needed = storage::needed(blksize, options.windowsize.unwrap_or(1), netascii_sender);
        let available = storage.capacity();
        if available < needed {
            return Err(UsageError::StorageTooSmall { needed, available });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        config: &Config,
        now: I,
        kind: RequestKind,
        storage: B,
    ) -> Result<Self, EncodeError> {
        let packet = options.with_options(|opts| {
            let request = Request {
                filename,
                mode,
                options: opts,
            };
            let packet = match kind {
                RequestKind::Read => Packet::Rrq(request),
                RequestKind::Write => Packet::Wrq(request),
            };
            Ctrl::encode(&packet)
        })?;
        let mut s = Session::new_raw(config, server, false, mode, options, now, storage);
        s.start_requesting(packet, kind);
        Ok(s)
    }
}
