//! Per-session statistics: what fbtftp hands to its session-stats callback, typed.

use core::time::Duration;

use crate::error::TransferError;
use crate::options::TransferOptions;
use crate::time::Instant;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte was transferred and acknowledged.
    Completed,
    /// The client asked for `tsize`, received the OACK and ended the transfer with an ERROR
    /// before taking any data: the size check that PXE and UEFI firmware make before the real
    /// download (RFC 2349 allows it). Not a failure.
    SizeProbe,
    /// The transfer failed.
    Failed(TransferError),
}

impl Outcome {
    /// True for [`Outcome::Completed`] and [`Outcome::SizeProbe`].
    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }

    /// The failure, if any.
    pub fn error(&self) -> Option<&TransferError> {
        match self {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// Counters and timings of one session, reported with [`crate::Event::Finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// In this order (`repr(C)`): the fields a session updates for every packet first, its start and
// end times last.
#[repr(C)]
pub struct SessionStats<
    #[cfg(feature = "std")] I = std::time::Instant,
    #[cfg(not(feature = "std"))] I,
> {
    /// How it ended: `None` while the transfer is under way, `Some` from the moment the
    /// outcome is decided (when the session emits [`crate::Event::Finished`], whose statistics
    /// always carry `Some`). Never changes once `Some`.
    pub outcome: Option<Outcome>,
    /// Datagrams handed out for sending, retransmissions included.
    pub packets_sent: u64,
    /// Datagrams received from the transfer peer.
    pub packets_received: u64,
    /// Datagrams sent again because a timeout fired.
    pub retransmissions: u64,
    /// Payload bytes acknowledged by the peer (sending) or stored by the caller (receiving), as
    /// carried on the wire (in netascii mode, after translation).
    pub bytes: u64,
    /// DATA blocks acknowledged (sending) or stored (receiving).
    pub blocks: u64,
    /// Duplicate DATA or ACK packets received (ignored, or answered with the last ACK).
    pub duplicates: u64,
    /// Datagrams from other addresses or ports (all counted, none processed). RFC 1350 §4 asks
    /// for an ERROR 5 answer to each; a session answers at most 3 in its life, at most one a
    /// second, and only strays that a lost peer could have sent (DATA, ACK, OACK), so that a
    /// spoofed datagram cannot start a packet loop between two transfers (CVE-2024-2169).
    pub stray_packets: u64,
    /// The negotiated transfer parameters.
    pub options: TransferOptions,
    /// When the session was created.
    pub started: I,
    /// When the outcome became known; equal to `started` while the transfer is under way.
    pub finished: I,
}

impl<I: Instant> SessionStats<I> {
    /// Zeroed statistics of a session started at `now`, no outcome yet (`outcome` is `None`).
    /// Adapters also use it to report a request refused before any session existed, and then
    /// set `outcome` to `Some(Outcome::Failed(..))`.
    pub fn new(now: I) -> Self {
        SessionStats {
            started: now,
            finished: now,
            options: TransferOptions::default(),
            bytes: 0,
            blocks: 0,
            packets_sent: 0,
            packets_received: 0,
            retransmissions: 0,
            duplicates: 0,
            stray_packets: 0,
            outcome: None,
        }
    }

    /// True once the outcome is decided (successful or not).
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// True if the outcome is decided and is a success ([`Outcome::Completed`] or
    /// [`Outcome::SizeProbe`]). False while the transfer is under way.
    pub fn is_success(&self) -> bool {
        self.outcome.as_ref().is_some_and(Outcome::is_success)
    }

    /// The failure, if the outcome is decided and is [`Outcome::Failed`]. `None` while the
    /// transfer is under way.
    pub fn error(&self) -> Option<&TransferError> {
        self.outcome.as_ref().and_then(Outcome::error)
    }

    /// Time from start to outcome.
    pub fn duration(&self) -> Duration {
        self.finished.saturating_duration_since(self.started)
    }
}
