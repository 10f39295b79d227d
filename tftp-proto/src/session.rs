//! The poll-style session shared by [`crate::ServerSession`] and [`crate::ClientSession`].
//!
//! Four kinds of method, as in quinn-proto:
//! - getters ([`Session::peer`], [`Session::stats`], [`Session::poll_timeout`], ...);
//! - input: [`Session::handle_datagram`] and [`Session::handle_timeout`];
//! - mutators: [`Session::abort`];
//! - output: [`Session::poll_output`], which must be drained after every input and mutator,
//!   until it returns [`Output::Wait`] or [`Output::Closed`].

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::net::SocketAddr;

use crate::config::{Config, Tuning};
use crate::error::{EncodeError, ProtocolError, TransferError, UsageError};
use crate::options::{OptionValues, TransferOptions};
use crate::packet::{ErrorCode, HEADER_LEN, Mode, Packet, ack_bytes, error_packet, write_error};
use crate::receiver::{DataResult, Receiver};
use crate::sender::{AckResult, Sender, blocks_per_batch};
use crate::server::RequestKind;
use crate::stats::{Outcome, SessionStats};
use crate::storage::{self, Storage};
use crate::time::Instant;
use crate::timer::Rto;

/// The most bytes in one batched transmit: what one UDP GSO send can carry.
const MAX_BATCH_BYTES: usize = 65_000;

/// The message of [`UNKNOWN_TID`].
const UNKNOWN_TID_MESSAGE: &str = "Unknown transfer ID";
/// The ERROR 5 answer to a datagram from a stranger (RFC 1350 §4), prebuilt.
static UNKNOWN_TID: [u8; 5 + UNKNOWN_TID_MESSAGE.len()] =
    error_packet(ErrorCode::UNKNOWN_TRANSFER_ID, UNKNOWN_TID_MESSAGE);

/// At most this many strangers are answered with ERROR 5 in a session's life, and at most one
/// per [`STRAY_REPLY_INTERVAL`]: RFC 1350 §4 asks for the answer, but unbounded answers let one
/// spoofed datagram make two transfers answer each other forever (CVE-2024-2169, the TFTP
/// "Loop DoS") and make every session a reflector.
const MAX_STRAY_REPLIES: u32 = 3;
/// See [`MAX_STRAY_REPLIES`].
const STRAY_REPLY_INTERVAL: core::time::Duration = core::time::Duration::from_secs(1);

/// A control packet (ACK, OACK, ERROR) from a peer fits in this many bytes: 4 header bytes and
/// a 512-byte message or option list (RFC 1350 §5, RFC 2347).
const MAX_CONTROL_LEN: usize = 516;

/// The control packet a session keeps for retransmission ([`Ctrl`]) is inline up to this many
/// bytes. Every ACK (4) and OACK this crate sends fits: its four options at their longest,
/// `blksize` 65464, `timeout` 255, a 20-digit `tsize` and `windowsize` 65535, are 72 bytes
/// with the opcode. So do ERRORs with messages up to 81 bytes (this crate's own are shorter)
/// and most requests up to 86 bytes (a PXE ROM's or a firmware's: a file name and three
/// options, 40 to 80; a longer one costs its client session one allocation). Inline up to
/// 516, every session carried 430 bytes more that only a long request or a long message
/// uses: 1,000 sessions, 430 KB; 86 makes a [`Ctrl`] 88 bytes, at 128 it was 136.
const INLINE_CONTROL_LEN: usize = 86;

/// One datagram, or a batch of datagrams, for the caller to send.
#[must_use = "a Transmit must be sent (or deliberately dropped, which the peer sees as loss)"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram, or with [`Transmit::segment_size`] several back to back.
    pub contents: &'a [u8],
    /// `Some(n)`: `contents` holds several datagrams of `n` bytes each, the last possibly
    /// shorter — the layout UDP GSO sends with one system call. Only when
    /// [`Config::max_batch`] is above 1.
    pub segment_size: Option<usize>,
}

impl<'a> Transmit<'a> {
    /// The datagrams, one by one (for sockets without GSO).
    pub fn datagrams(&self) -> core::slice::Chunks<'a, u8> {
        self.contents
            .chunks(self.segment_size.unwrap_or(self.contents.len()).max(1))
    }
}

/// Something the caller should know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<#[cfg(feature = "std")] I = std::time::Instant, #[cfg(not(feature = "std"))] I> {
    /// The transfer parameters are settled (after the OACK exchange, or the first answer
    /// without one). Emitted once, before any data moves.
    Negotiated(TransferOptions),
    /// The outcome is known. Emitted once. The session may still have work to do (sending a
    /// final ERROR, or dallying to re-acknowledge a repeated last block): keep driving it until
    /// [`Output::Closed`].
    Finished(SessionStats<I>),
}

/// The next thing the caller must do, from [`Session::poll_output`].
#[derive(Debug)]
#[must_use]
pub enum Output<'a, #[cfg(feature = "std")] I = std::time::Instant, #[cfg(not(feature = "std"))] I>
{
    /// Send this datagram, then poll again.
    Transmit(Transmit<'a>),
    /// Note this event, then poll again.
    Event(Event<I>),
    /// Supply source bytes for the next DATA block (sending side), then poll again.
    Fill(Fill<'a>),
    /// Store this received block (receiving side), then confirm, then poll again.
    Store(Store<'a>),
    /// Nothing to do until a datagram arrives or the deadline passes (then call
    /// [`Session::handle_timeout`]). `None`: no deadline.
    Wait(Option<I>),
    /// The session is over; drop it. Its outcome was reported by [`Event::Finished`].
    Closed,
}

/// A lent buffer for the next block's source bytes (sending side).
///
/// Write into [`Fill::buf`] and call [`Fill::advance`], or copy with [`Fill::write`]; call
/// [`Fill::finish`] when the source has no more bytes. Short writes are fine: the block is
/// sent once it is full or the source has ended. Dropping the handle without a call changes
/// nothing; the next poll asks again.
#[derive(Debug)]
pub struct Fill<'a> {
    sender: &'a mut dyn FillTarget,
}

/// What a [`Fill`] lends: the sender, whatever its instant and storage types.
trait FillTarget: fmt::Debug + Send + Sync {
    fn fill_block(&self) -> u64;
    fn fill_offset(&self) -> u64;
    fn fill_buf(&mut self) -> &mut [u8];
    fn advance(&mut self, n: usize) -> Result<(), UsageError>;
    fn finish(&mut self);
}

impl<I: Instant, B: Storage> FillTarget for Sender<I, B> {
    fn fill_block(&self) -> u64 {
        Sender::fill_block(self)
    }
    fn fill_offset(&self) -> u64 {
        Sender::fill_offset(self)
    }
    fn fill_buf(&mut self) -> &mut [u8] {
        Sender::fill_buf(self)
    }
    fn advance(&mut self, n: usize) -> Result<(), UsageError> {
        Sender::advance(self, n)
    }
    fn finish(&mut self) {
        Sender::finish(self)
    }
}

impl Fill<'_> {
    /// Index of the block being filled (1 is the first; not wrapped to 16 bits).
    pub fn block(&self) -> u64 {
        self.sender.fill_block()
    }

    /// Where in the source the bytes of [`Fill::buf`] start. Always the bytes taken so far
    /// (each fill continues where the last one ended), except in a session whose source was
    /// declared seekable ([`Session::set_source_seekable`]): there it goes back when a block
    /// must be resent, and the caller must read from this offset.
    pub fn offset(&self) -> u64 {
        self.sender.fill_offset()
    }

    /// The free space to write source bytes into (never empty).
    pub fn buf(&mut self) -> &mut [u8] {
        self.sender.fill_buf()
    }

    /// `n` bytes were written at the start of [`Fill::buf`].
    pub fn advance(self, n: usize) -> Result<(), UsageError> {
        self.sender.advance(n)
    }

    /// Copy as much of `data` as fits; returns how much was taken.
    pub fn write(mut self, data: &[u8]) -> usize {
        let buf = self.buf();
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        // Cannot overfill: n <= buf.len().
        let _ = self.sender.advance(n);
        n
    }

    /// The source has ended: the current block, however short (even empty), is the last.
    pub fn finish(self) {
        self.sender.finish();
    }
}

/// A received block for the caller to store (receiving side).
///
/// Call [`Store::stored`] once the bytes are safely stored; only then is the block
/// acknowledged. For the last block ([`Store::is_last`]) finish the whole upload first (flush,
/// rename into place): the final ACK tells the peer the transfer succeeded. Dropping the handle
/// without the call changes nothing; the next poll offers the same block again.
#[derive(Debug)]
pub struct Store<'a> {
    receiver: &'a mut dyn StoreTarget,
    /// `SessionStats::blocks` and `SessionStats::bytes`, updated once stored.
    blocks: &'a mut u64,
    bytes: &'a mut u64,
    block: u64,
    last: bool,
}

impl Store<'_> {
    /// Index of the block (1 is the first; not wrapped to 16 bits).
    pub fn block(&self) -> u64 {
        self.block
    }

    /// The block's bytes (in netascii mode, translated back to local text).
    pub fn data(&mut self) -> &[u8] {
        self.receiver
            .pending_block()
            .map(|(_, data, _)| data)
            .unwrap_or(&[])
    }

    /// This is the last block of the transfer.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// The block is stored: it may be acknowledged.
    pub fn stored(self) {
        self.receiver.confirm_stored();
        *self.blocks = self.receiver.blocks_stored();
        *self.bytes = self.receiver.bytes_stored();
    }
}

/// What a [`Store`] lends: the receiver, whatever its storage.
trait StoreTarget: fmt::Debug + Send + Sync {
    fn pending_block(&mut self) -> Option<(u64, &[u8], bool)>;
    fn confirm_stored(&mut self);
    fn blocks_stored(&self) -> u64;
    fn bytes_stored(&self) -> u64;
}

impl<B: Storage> StoreTarget for Receiver<B> {
    fn pending_block(&mut self) -> Option<(u64, &[u8], bool)> {
        Receiver::pending_block(self)
    }
    fn confirm_stored(&mut self) {
        Receiver::confirm_stored(self)
    }
    fn blocks_stored(&self) -> u64 {
        Receiver::blocks_stored(self)
    }
    fn bytes_stored(&self) -> u64 {
        self.bytes_stored
    }
}

/// The last control packet (request, OACK, ACK or ERROR), kept for retransmission: inline up
/// to [`INLINE_CONTROL_LEN`] bytes, which holds every ACK and OACK, an ERROR whose message is
/// at most 81 bytes and a request of at most 86; anything longer goes on the heap (once a
/// session: a control packet is set when the session starts and when it ends).
// Inline on purpose: the control packets every session sends must not cost an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Ctrl {
    Inline {
        buf: [u8; INLINE_CONTROL_LEN],
        len: u8,
    },
    Long(Vec<u8>),
}

impl Ctrl {
    pub(crate) const EMPTY: Ctrl = Ctrl::Inline {
        buf: [0; INLINE_CONTROL_LEN],
        len: 0,
    };

    pub(crate) fn encode(packet: &Packet<'_>) -> Result<Ctrl, EncodeError> {
        let mut buf = [0u8; INLINE_CONTROL_LEN];
        match packet.encode(&mut buf) {
            // `len` fits: at most INLINE_CONTROL_LEN.
            Ok(len) => Ok(Ctrl::Inline {
                buf,
                len: len as u8,
            }),
            Err(EncodeError::BufferTooSmall { needed }) => {
                let mut long = vec![0u8; needed];
                let len = packet.encode(&mut long)?;
                long.truncate(len);
                Ok(Ctrl::Long(long))
            }
            Err(e) => Err(e),
        }
    }

    /// ERROR `code` with `message`, which must hold no NUL (the caller drops such a message).
    fn error(code: ErrorCode, message: &str) -> Ctrl {
        let len = 5 + message.len();
        if len <= INLINE_CONTROL_LEN {
            let mut buf = [0u8; INLINE_CONTROL_LEN];
            write_error(&mut buf, code, message);
            // `len` fits: at most INLINE_CONTROL_LEN.
            Ctrl::Inline {
                buf,
                len: len as u8,
            }
        } else {
            let mut long = vec![0u8; len];
            write_error(&mut long, code, message);
            Ctrl::Long(long)
        }
    }

    /// An ACK (the only caller): 4 bytes.
    fn from_slice(bytes: &[u8]) -> Ctrl {
        let mut buf = [0u8; INLINE_CONTROL_LEN];
        let len = bytes.len().min(INLINE_CONTROL_LEN);
        buf[..len].copy_from_slice(&bytes[..len]);
        Ctrl::Inline {
            buf,
            len: len as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Ctrl::Inline { buf, len } => &buf[..usize::from(*len)],
            Ctrl::Long(bytes) => bytes,
        }
    }
}

impl fmt::Debug for Ctrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ctrl").field(&self.as_bytes()).finish()
    }
}

/// Whether the control packet is due to go out, and whether that sending is its first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CtrlSend {
    /// Not due: it went out already, or there is none, or it was dropped unsent because the
    /// session ended without a word to the peer (after the peer's ERROR, or
    /// [`Session::abandon`]).
    Idle,
    /// Due for its first sending, which starts a round-trip probe.
    First,
    /// Due again: a retransmission, counted as one and never sampled (Karn's rule, RFC 1123
    /// §4.2.3.2).
    Again,
}

impl CtrlSend {
    /// Send the control packet again; if its first sending is still due, that is all it takes.
    fn resend(&mut self) {
        if *self != CtrlSend::First {
            *self = CtrlSend::Again;
        }
    }
}

/// An event decided but not yet returned by [`Session::poll_output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingEvent {
    /// [`Event::Negotiated`].
    Negotiated,
    /// [`Event::Finished`].
    Finished,
}

/// The events not yet returned by [`Session::poll_output`], in the order it returns them.
/// Each comes at most once, and [`Event::Negotiated`] before [`Event::Finished`]: the options
/// are settled before the outcome is decided (a session that fails while starting reports
/// both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingEvents {
    Empty,
    Negotiated,
    Finished,
    NegotiatedThenFinished,
}

impl PendingEvents {
    /// The options are settled. (They never are after the outcome is decided; were they, the
    /// news would still come first.)
    fn negotiated(self) -> Self {
        match self {
            PendingEvents::Empty | PendingEvents::Negotiated => PendingEvents::Negotiated,
            PendingEvents::Finished | PendingEvents::NegotiatedThenFinished => {
                PendingEvents::NegotiatedThenFinished
            }
        }
    }

    /// The outcome is decided.
    fn finished(self) -> Self {
        match self {
            PendingEvents::Empty | PendingEvents::Finished => PendingEvents::Finished,
            PendingEvents::Negotiated | PendingEvents::NegotiatedThenFinished => {
                PendingEvents::NegotiatedThenFinished
            }
        }
    }

    /// The next event to return, taken from the queue.
    fn pop(&mut self) -> Option<PendingEvent> {
        let (next, rest) = match *self {
            PendingEvents::Empty => (None, PendingEvents::Empty),
            PendingEvents::Negotiated => (Some(PendingEvent::Negotiated), PendingEvents::Empty),
            PendingEvents::Finished => (Some(PendingEvent::Finished), PendingEvents::Empty),
            PendingEvents::NegotiatedThenFinished => {
                (Some(PendingEvent::Negotiated), PendingEvents::Finished)
            }
        };
        *self = rest;
        next
    }
}

#[derive(Debug)]
enum State<I, B> {
    /// Client: the request (RRQ for [`RequestKind::Read`], WRQ for [`RequestKind::Write`]) is
    /// out, no answer yet.
    Requesting { kind: RequestKind },
    /// Server, read request: the OACK is out, ACK 0 has not come (RFC 2347). Nothing of the
    /// window exists yet, so a spoofed request pins no more than the session itself.
    Offered,
    /// Sending DATA.
    Sending(Sender<I, B>),
    /// Receiving DATA.
    Receiving(Receiver<B>),
    /// The last DATA is acknowledged; re-acknowledge repeats until the deadline.
    Dallying(Receiver<B>),
    /// Over (a final ERROR may still be pending).
    Closed,
}

impl<I, B> State<I, B> {
    /// The state after the last block is stored and its ACK queued: a receiver dallies; any
    /// other state stays as it is.
    fn into_dallying(self) -> Self {
        match self {
            State::Receiving(r) => State::Dallying(r),
            other => other,
        }
    }
}

/// One transfer, server or client side. See the [crate docs](crate) for a run loop.
///
/// `R` is [`crate::server::Server`] or [`crate::client::Client`]; the constructors live in
/// those modules.
///
/// `I` is the [`Instant`] type the caller's clock gives (with `std`, by default
/// [`std::time::Instant`]; see [`crate::time`]). `B` is where the window ring lives: by default
/// on the heap, allocated when data starts to flow; `&mut [u8]` for a buffer the caller owns
/// (see [`crate::storage`]).
#[derive(Debug)]
#[repr(C)] // Fields in this order: the ones every datagram and transmit read come first.
pub struct Session<
    R,
    #[cfg(feature = "std")] I = std::time::Instant,
    #[cfg(not(feature = "std"))] I,
    B = Vec<u8>,
> {
    // Hot: what handling an ACK and sending the next DATA read and write, together in as few
    // cache lines as they fit (at a thousand sessions and more, a session's state leaves the
    // CPU's caches between its packets, and each line it is spread over is a miss a packet).
    state: State<I, B>,
    peer: SocketAddr,
    deadline: Option<I>,
    /// When the peer last made the transfer progress (for [`Config::give_up_after`]).
    last_progress: I,
    rto: Rto,
    /// Highest DATA index sent so far (anything at or below it is a retransmission).
    highest_sent: u64,
    retries: u32,
    /// Strangers answered so far, and when the last was (see [`MAX_STRAY_REPLIES`]). Cold, but
    /// here it fills what would be padding.
    stray_replies: u32,
    /// False for a client until the server's first answer fixes its transfer ID (port).
    peer_locked: bool,
    mode: Mode,
    /// The source can be read again from any offset (see [`Session::set_source_seekable`]).
    source_seekable: bool,
    /// Events for [`Session::poll_output`] to return.
    events: PendingEvents,
    /// Whether the control packet (`ctrl`) is due: read for every output.
    ctrl_send: CtrlSend,
    /// Its hot fields first (`repr(C)`), then the start and end times.
    stats: SessionStats<I>,
    /// What it keeps of its [`Config`] (64 bytes, not 128).
    config: Tuning,
    /// A stranger to answer with ERROR 5 (at the border: only its tag is read for every
    /// output).
    stray: Option<SocketAddr>,
    /// The last control packet (request, OACK, ACK or ERROR), kept for retransmission.
    ctrl: Ctrl,
    // Cold: read when the session starts, ends, or meets a stranger.
    /// What the client asked for (server: from the request; client: what it sent).
    pub(crate) asked: OptionValues,
    /// The window's storage until data flows (then the sender or receiver holds it).
    storage: Option<B>,
    /// Server, read request: the size the source will yield, as the application said (and
    /// announced as `tsize`); checked against what the source really yields.
    pub(crate) source_size: Option<u64>,
    /// When the last stranger was answered.
    last_stray_reply: Option<I>,
    /// When the packet whose answer gives an RTT sample left (control packets, ACKs).
    ctrl_probe: Option<I>,
    /// Payload bytes accepted so far (for the size limit).
    received_bytes: u64,
    role: PhantomData<R>,
}

impl<R, I: Instant, B: Storage> Session<R, I, B> {
    pub(crate) fn new_raw(
        config: &Config,
        peer: SocketAddr,
        peer_locked: bool,
        mode: Mode,
        asked: OptionValues,
        now: I,
        storage: B,
    ) -> Self {
        let config = Tuning::from(config);
        Session {
            role: PhantomData,
            config,
            peer,
            peer_locked,
            mode,
            asked,
            state: State::Closed,
            storage: Some(storage),
            ctrl: Ctrl::EMPTY,
            ctrl_send: CtrlSend::Idle,
            stray: None,
            stray_replies: 0,
            last_stray_reply: None,
            source_size: None,
            source_seekable: false,
            rto: Rto::new(&config),
            deadline: None,
            retries: 0,
            ctrl_probe: None,
            highest_sent: 0,
            stats: SessionStats::new(now),
            events: PendingEvents::Empty,
            received_bytes: 0,
            last_progress: now,
        }
    }

    // ---- construction helpers used by the server and client modules ----

    pub(crate) fn set_options(&mut self, options: TransferOptions) {
        self.stats.options = options;
        if let Some(t) = options.timeout {
            self.rto.set_fixed(t, &self.config);
        }
        self.events = self.events.negotiated();
    }

    pub(crate) fn start_requesting(&mut self, request: Ctrl, kind: RequestKind) {
        self.state = State::Requesting { kind };
        self.queue_ctrl(request);
    }

    /// The storage for the window, if it holds what the negotiated options need; otherwise
    /// the transfer fails (the constructors that take caller storage size the options to it,
    /// so this is a safeguard, not a path).
    fn take_storage(&mut self, now: I, slots: u16, netascii_sender: bool) -> Option<B> {
        let o = self.stats.options;
        let needed = storage::needed(o.blksize, slots, netascii_sender);
        match self.storage.take() {
            Some(storage) if storage.capacity() >= needed => Some(storage),
            _ => {
                let error = TransferError::Local {
                    code: ErrorCode::DISK_FULL,
                    message: String::from("window storage too small"),
                };
                self.finish(
                    now,
                    Outcome::Failed(error),
                    Some((ErrorCode::DISK_FULL, "Out of window memory")),
                );
                None
            }
        }
    }

    /// Start sending DATA: the window ring comes into use. False if the session failed
    /// instead.
    pub(crate) fn start_sending(&mut self, now: I) -> bool {
        let o = self.stats.options;
        let netascii = self.mode == Mode::Netascii;
        // A seekable source: a ring of one batch (what one transmit sends), not the window.
        let reread = (self.source_seekable && !netascii).then(|| {
            let batch = blocks_per_batch(
                usize::from(o.blksize),
                self.config.max_batch,
                MAX_BATCH_BYTES,
            );
            u16::try_from(batch).unwrap_or(u16::MAX)
        });
        let slots = Sender::<I, B>::ring_slots(o.windowsize, reread);
        let Some(storage) = self.take_storage(now, slots, netascii) else {
            return false;
        };
        // In netascii the wire size differs from the source's (RFC 1350 appendix): no check.
        let expected = self.source_size.filter(|_| !netascii);
        let sender = Sender::new(
            storage,
            o.blksize,
            o.windowsize,
            self.config.rollover,
            netascii,
            reread,
        )
        .expecting(expected);
        self.state = State::Sending(sender);
        true
    }

    /// Server, read request with an OACK: wait for ACK 0 before anything else.
    pub(crate) fn start_offering(&mut self) {
        self.state = State::Offered;
    }

    /// Start receiving DATA (the ring comes into use with the first block). False if the
    /// session failed instead.
    pub(crate) fn start_receiving(&mut self, now: I) -> bool {
        let o = self.stats.options;
        let Some(storage) = self.take_storage(now, o.windowsize, false) else {
            return false;
        };
        self.state = State::Receiving(Receiver::new(
            storage,
            o.blksize,
            o.windowsize,
            self.config.rollover,
            self.mode == Mode::Netascii,
        ));
        true
    }

    /// Queue `packet` as the control packet (sent once, kept for retransmission).
    pub(crate) fn queue_ctrl(&mut self, packet: Ctrl) {
        self.ctrl = packet;
        self.ctrl_send = CtrlSend::First;
    }

    pub(crate) fn queue_ack(&mut self, block: u16) {
        self.queue_ctrl(Ctrl::from_slice(&ack_bytes(block)));
    }

    /// Queue ACK `block` again, as a retransmission: the peer repeated DATA, or went silent,
    /// after it was acknowledged.
    fn queue_ack_again(&mut self, block: u16) {
        self.ctrl = Ctrl::from_slice(&ack_bytes(block));
        self.ctrl_send = CtrlSend::Again;
    }

    /// Decide the outcome, sending `error` to the peer if given. The first decision wins.
    pub(crate) fn finish(&mut self, now: I, outcome: Outcome, error: Option<(ErrorCode, &str)>) {
        if self.done() {
            return;
        }
        if let Some((code, message)) = error {
            // A message with a NUL inside cannot go on the wire (RFC 1350 §5): send the code
            // alone.
            let message = if message.contains('\0') { "" } else { message };
            self.queue_ctrl(Ctrl::error(code, message));
        } else {
            self.ctrl_send = CtrlSend::Idle;
        }
        self.state = State::Closed;
        self.deadline = None;
        self.stats.finished = now;
        self.stats.outcome = Some(outcome);
        self.events = self.events.finished();
    }

    fn fail(&mut self, now: I, error: TransferError) {
        let reply = match &error {
            TransferError::Protocol(e) => Some(protocol_reply(e)),
            TransferError::TooLarge { .. } => {
                Some((ErrorCode::DISK_FULL, "Transfer exceeds the size limit"))
            }
            TransferError::SourceChanged { .. } => {
                Some((ErrorCode::NOT_DEFINED, "File changed while being sent"))
            }
            TransferError::SizeMismatch { .. } => match self.state {
                State::Sending(_) => {
                    Some((ErrorCode::NOT_DEFINED, "File changed while being sent"))
                }
                _ => Some((ErrorCode::NOT_DEFINED, "Transfer size differs from tsize")),
            },
            _ => None,
        };
        self.finish(now, Outcome::Failed(error), reply);
    }

    fn succeed(&mut self, now: I) {
        if self.done() {
            return;
        }
        self.stats.finished = now;
        self.stats.outcome = Some(Outcome::Completed);
        self.events = self.events.finished();
    }

    // ---- getters ----

    /// The peer's address and port (its transfer ID). For a client, the server's address until
    /// the first answer arrives from the server's transfer port.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The transfer mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The options the client asked for.
    pub fn requested_options(&self) -> OptionValues {
        self.asked
    }

    /// The transfer parameters (defaults until negotiated).
    pub fn options(&self) -> TransferOptions {
        self.stats.options
    }

    /// Live statistics; final once [`Event::Finished`] has been emitted.
    pub fn stats(&self) -> &SessionStats<I> {
        &self.stats
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.stats.outcome.as_ref()
    }

    /// The outcome is decided (`stats.outcome` is `Some`, and final).
    fn done(&self) -> bool {
        self.stats.outcome.is_some()
    }

    /// True once the session has nothing left to do.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
            && self.ctrl_send == CtrlSend::Idle
            && self.stray.is_none()
            && self.events == PendingEvents::Empty
    }

    /// Say whether the source of the DATA this session sends can be read again from any
    /// offset (a local file, bytes in memory), before data starts to flow (later calls change
    /// nothing; ignored in netascii mode, whose translation reads the source once).
    ///
    /// A seekable source needs no copy of the window: the session keeps only the blocks one
    /// transmit sends (`min(windowsize, max_batch)` slots of `4 + blksize` bytes, and fewer
    /// for large blocks: one of 65,468), and to resend an older block (RFC 7440 §4: go back
    /// to the block after the last acknowledged one) asks for its bytes again, with an
    /// [`Output::Fill`] whose [`Fill::offset`] goes back. Such a session must be filled from
    /// `offset` every time. A resent block whose length differs from its first reading ends
    /// the transfer ([`TransferError::SourceChanged`]).
    ///
    /// What it saves: at windowsize 64 and blksize 65464, a 4 MiB ring (more than a core's
    /// cache, so every block is written to, and sent from, memory) becomes one 64 KiB slot.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::time::Instant;
    /// use tftp_proto::{Config, IncomingRequest, Output, ServerSession};
    ///
    /// // Read where the session asks: after a loss, it goes back.
    /// fn drain(session: &mut ServerSession, file: &[u8], now: Instant, offsets: &mut Vec<u64>) {
    ///     loop {
    ///         match session.poll_output(now) {
    ///             Output::Fill(fill) => {
    ///                 offsets.push(fill.offset());
    ///                 match file.get(fill.offset() as usize..) {
    ///                     Some(rest) if !rest.is_empty() => drop(fill.write(rest)),
    ///                     _ => fill.finish(),
    ///                 }
    ///             }
    ///             Output::Transmit(t) => { /* send t.contents to t.destination */ }
    ///             _ => return,
    ///         }
    ///     }
    /// }
    ///
    /// let file: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    /// let peer: SocketAddr = "192.0.2.7:1069".parse()?;
    /// let rrq = b"\x00\x01boot.img\x00octet\x00windowsize\x0016\x00";
    /// let request = IncomingRequest::parse(peer, rrq)?;
    /// let now = Instant::now();
    /// let size = Some(file.len() as u64);
    /// let mut session = ServerSession::new(&request, &Config::default(), size, now);
    /// session.set_source_seekable(true);
    /// let mut offsets = Vec::new();
    /// drain(&mut session, &file, now, &mut offsets); // the OACK
    /// session.handle_datagram(now, peer, &[0, 4, 0, 0]); // ACK 0
    /// drain(&mut session, &file, now, &mut offsets); // 16 blocks, through one slot
    /// assert_eq!(offsets.len(), 16);
    /// assert_eq!(session.window_memory(), 516);
    /// // No ACK came: on the timeout, block 1 is read again.
    /// let later = session.poll_timeout().ok_or("a timer")?;
    /// session.handle_timeout(later);
    /// offsets.clear();
    /// drain(&mut session, &file, later, &mut offsets);
    /// assert_eq!(offsets[0], 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_source_seekable(&mut self, seekable: bool) {
        if self.storage.is_some() {
            self.source_seekable = seekable;
        }
    }

    /// When [`Session::handle_timeout`] should next be called, if at all.
    pub fn poll_timeout(&self) -> Option<I> {
        self.deadline
    }

    /// Read the state that handling this session's next datagram reads first (its peer,
    /// window, retransmission timer and counters), changing nothing. For a caller about to
    /// handle a batch of datagrams of many sessions (a single-port server's `recvmmsg`, or
    /// an `epoll_wait` that returns many ready transfer sockets): calling this for each of
    /// them first lets their cache misses overlap instead of coming one after the other. At
    /// a thousand transfers at once a session's state has left the CPU's caches by the time
    /// its next ACK comes (tftp-blocking's event loop: ×0.80–0.88 of its user-mode CPU).
    pub fn prefetch(&self) {
        // A field of every cache line the hot fields span (see the struct's layout).
        let window = match &self.state {
            State::Sending(s) => Some(s.hot()),
            _ => None,
        };
        core::hint::black_box((
            window,
            self.window_memory(),
            (self.peer, self.deadline, self.last_progress, self.retries),
            (
                self.rto.current(),
                self.config.min_timeout,
                self.config.give_up_after,
                self.config.max_batch,
            ),
            (
                self.stats.packets_received,
                self.stats.packets_sent,
                self.stats.options.blksize,
                self.highest_sent,
            ),
            (self.ctrl_send, self.stray.is_some()),
        ));
    }

    /// Bytes of window ring this session holds now: none until data flows (ACK 0 of a read's
    /// OACK, or at once without one; the first DATA of a write), then
    /// `windowsize × (4 + blksize)`. For a server's memory budget.
    pub fn window_memory(&self) -> usize {
        match &self.state {
            State::Sending(s) => s.ring_len(),
            State::Receiving(r) | State::Dallying(r) => r.ring_len(),
            _ => 0,
        }
    }

    /// How large the caller's receive buffer must be for this session's next datagram: every
    /// datagram the session can accept now fits, with one byte to spare so that an oversized
    /// DATA is seen as such rather than silently cut to a full block (which would corrupt the
    /// file). Ask again after each input: it grows when DATA starts to flow (`4 + blksize + 1`)
    /// and is 517 bytes while only ACKs, OACKs and ERRORs can arrive.
    ///
    /// A datagram longer than the buffer is truncated by the socket; an ERROR cut short is
    /// still read as the peer's ERROR (its message shortened).
    pub fn max_datagram_len(&self) -> usize {
        let data = match &self.state {
            State::Receiving(r) | State::Dallying(r) => HEADER_LEN + r.blksize,
            // The first DATA carries at most what was asked (RFC 2348), 512 without options.
            State::Requesting {
                kind: RequestKind::Read,
            } => HEADER_LEN + usize::from(self.asked.blksize.map_or(512, |b| b.max(512))),
            _ => 0,
        };
        data.max(MAX_CONTROL_LEN) + 1
    }

    // ---- input ----

    /// Feed a datagram received from `from` on this session's socket at `now`.
    ///
    /// A datagram from anyone but the transfer peer is ignored and counted in
    /// [`SessionStats::stray_packets`]; RFC 1350 §4's ERROR 5 answer goes out only for a stray
    /// DATA, ACK or OACK, never for an ERROR (answering ERRORs is how one spoofed datagram makes
    /// two transfers loop forever, CVE-2024-2169), and at most a few times per session, at most
    /// once a second. Then drain [`Session::poll_output`].
    pub fn handle_datagram(&mut self, now: I, from: SocketAddr, datagram: &[u8]) {
        if self.done() && !matches!(self.state, State::Dallying(_)) {
            return;
        }
        if !self.accept_source(from, datagram) {
            self.stats.stray_packets += 1;
            self.maybe_answer_stray(now, from, datagram);
            return;
        }
        self.stats.packets_received += 1;
        let packet = match Packet::decode(datagram) {
            Ok(p) => p,
            Err(e) => {
                if !self.done() {
                    self.fail(now, ProtocolError::Malformed(e).into());
                }
                return;
            }
        };
        if let Packet::Error { code, message } = packet {
            self.on_peer_error(now, code, message);
            return;
        }
        // The common case, an ACK while sending, is handled in place: the state is not moved
        // out and back (two copies of it a packet).
        if matches!(self.state, State::Sending(_)) {
            self.on_sending(now, packet);
            return;
        }
        let state = core::mem::replace(&mut self.state, State::Closed);
        self.state = match state {
            State::Requesting { kind } => self.on_first_answer(now, kind, packet),
            State::Offered => self.on_offered(now, packet),
            // Handled above.
            State::Sending(sender) => State::Sending(sender),
            State::Receiving(receiver) => self.on_receiving(now, receiver, packet),
            State::Dallying(mut receiver) => {
                if let Packet::Data { block, data } = packet {
                    if receiver.on_data(block, data) == DataResult::Reack {
                        self.stats.duplicates += 1;
                        self.queue_ack(block);
                    }
                }
                State::Dallying(receiver)
            }
            State::Closed => State::Closed,
        };
        if self.done() && !matches!(self.state, State::Dallying(_)) {
            self.state = State::Closed;
        }
    }

    /// Feed the passing of time. Does nothing before the deadline from
    /// [`Session::poll_timeout`], so a spurious wake-up is harmless. Then drain
    /// [`Session::poll_output`].
    pub fn handle_timeout(&mut self, now: I) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        self.deadline = None;
        if matches!(self.state, State::Dallying(_)) {
            self.state = State::Closed;
            return;
        }
        let waiting_for_peer = match &self.state {
            State::Offered => true,
            State::Sending(sender) => sender.outstanding(),
            State::Receiving(r) => r.waiting_for_peer(),
            State::Requesting { .. } => true,
            State::Dallying(_) | State::Closed => false,
        };
        if !waiting_for_peer {
            return;
        }
        let patient =
            now.saturating_duration_since(self.last_progress) < self.config.give_up_after();
        if self.retries >= self.config.retries && !patient {
            let retries = self.retries;
            self.fail(now, TransferError::TimedOut { retries });
            return;
        }
        self.retries += 1;
        self.rto.back_off(&self.config);
        self.ctrl_probe = None;
        match &mut self.state {
            State::Sending(sender) => sender.on_timeout(),
            State::Receiving(r) if r.blocks_stored() > 0 => {
                let block = r.on_timeout();
                self.queue_ack_again(block);
            }
            // The request, the OACK, or the first ACK: send it again.
            _ => self.ctrl_send.resend(),
        }
    }

    // ---- mutators ----

    /// End the transfer from the caller's side (an I/O error, shutdown, a policy decision),
    /// sending ERROR `code` with `message` to the peer. The outcome is
    /// [`TransferError::Local`]. If the outcome is already decided (for example the session is
    /// dallying after success), this only closes the session. Then drain
    /// [`Session::poll_output`].
    pub fn abort(&mut self, now: I, code: ErrorCode, message: &str) {
        if self.done() {
            if matches!(self.state, State::Dallying(_)) {
                self.state = State::Closed;
                self.deadline = None;
            }
            return;
        }
        let error = TransferError::Local {
            code,
            message: message.to_string(),
        };
        self.finish(now, Outcome::Failed(error), Some((code, message)));
    }

    /// Drop the transfer without telling the peer (it was replaced by a new request from the
    /// same client port, or the process is going away). The outcome is
    /// [`TransferError::Local`] with code 0 and message "abandoned"; nothing is sent. Then
    /// drain [`Session::poll_output`].
    pub fn abandon(&mut self, now: I) {
        if self.done() {
            self.state = State::Closed;
            self.deadline = None;
            return;
        }
        let error = TransferError::Local {
            code: ErrorCode::NOT_DEFINED,
            message: "abandoned".to_string(),
        };
        self.finish(now, Outcome::Failed(error), None);
    }

    // ---- output ----

    /// The next thing to do. Drain after every input until [`Output::Wait`] or
    /// [`Output::Closed`]. `now` timestamps what is sent (for the retransmission timer).
    pub fn poll_output(&mut self, now: I) -> Output<'_, I> {
        if let Some(destination) = self.stray.take() {
            return Output::Transmit(Transmit {
                destination,
                contents: &UNKNOWN_TID,
                segment_size: None,
            });
        }
        // A source that ended short of its announced size, or ran past it, must not reach the
        // peer as a complete file.
        if let State::Sending(sender) = &self.state {
            if let Some((expected, actual)) = sender.size_mismatch() {
                let error = TransferError::SizeMismatch { expected, actual };
                self.fail(now, error);
            } else if let Some(offset) = sender.source_changed() {
                self.fail(now, TransferError::SourceChanged { offset });
            }
        }
        // A due ACK becomes the control packet.
        if let State::Receiving(r) = &mut self.state {
            if let Some(block) = r.take_ack() {
                let complete = r.is_complete();
                self.queue_ack(block);
                if complete {
                    self.state = core::mem::replace(&mut self.state, State::Closed).into_dallying();
                    self.succeed(now);
                }
            }
        }
        match core::mem::replace(&mut self.ctrl_send, CtrlSend::Idle) {
            CtrlSend::Idle => {}
            due => {
                self.stats.packets_sent += 1;
                if due == CtrlSend::First {
                    self.ctrl_probe = Some(now);
                } else {
                    self.stats.retransmissions += 1;
                }
                self.arm_after_ctrl(now);
                return Output::Transmit(Transmit {
                    destination: self.peer,
                    contents: self.ctrl.as_bytes(),
                    segment_size: None,
                });
            }
        }
        // With batching, fill a batch before sending it, so that it goes out in one transmit
        // rather than block by block as each is filled; but no more than a batch, so that the
        // bytes just read are sent while still in cache (a big window is filled and sent a
        // batch at a time).
        let max_batch = self.config.max_batch.max(1);
        let fill_first = max_batch > 1
            && matches!(&self.state, State::Sending(sender)
                if sender.wants_fill() && !sender.batch_filled(max_batch, MAX_BATCH_BYTES));
        let data_ready =
            !fill_first && matches!(&self.state, State::Sending(sender) if sender.can_transmit());
        if data_ready {
            let rto = self.rto.current();
            let State::Sending(sender) = &mut self.state else {
                return Output::Wait(self.deadline);
            };
            // All paths return here, so the borrow of `sender` may be handed out.
            return match sender.next_transmit(now, max_batch, MAX_BATCH_BYTES) {
                Some((packets, first, count)) => {
                    let last = first + count as u64 - 1;
                    self.stats.packets_sent += count as u64;
                    self.stats.retransmissions += self
                        .highest_sent
                        .saturating_sub(first - 1)
                        .min(count as u64);
                    self.highest_sent = self.highest_sent.max(last);
                    self.deadline = now.checked_add(rto);
                    let slot = usize::from(self.stats.options.blksize) + crate::packet::HEADER_LEN;
                    Output::Transmit(Transmit {
                        destination: self.peer,
                        contents: packets,
                        segment_size: (count > 1).then_some(slot),
                    })
                }
                None => Output::Wait(self.deadline),
            };
        }
        match self.events.pop() {
            Some(PendingEvent::Negotiated) => {
                return Output::Event(Event::Negotiated(self.stats.options));
            }
            Some(PendingEvent::Finished) => {
                return Output::Event(Event::Finished(self.stats.clone()));
            }
            None => {}
        }
        match &mut self.state {
            State::Receiving(r) => {
                if let Some((block, _, last)) = r.pending_block() {
                    return Output::Store(Store {
                        receiver: r,
                        blocks: &mut self.stats.blocks,
                        bytes: &mut self.stats.bytes,
                        block,
                        last,
                    });
                }
            }
            State::Sending(sender) => {
                if sender.wants_fill() {
                    return Output::Fill(Fill { sender });
                }
                // Nothing to fill or send: a seekable source's ring may go back to a shared
                // storage.
                sender.release_ring();
            }
            State::Closed => return Output::Closed,
            _ => {}
        }
        Output::Wait(self.deadline)
    }

    // ---- internals ----

    /// RFC 1350 §4 answers a stranger with ERROR 5; see [`MAX_STRAY_REPLIES`] for the bounds.
    fn maybe_answer_stray(&mut self, now: I, from: SocketAddr, datagram: &[u8]) {
        // Only what the lost peer of an old transfer would send: never an ERROR (that is the
        // loop), never a request, never garbage.
        let answerable = matches!(datagram, [0, 3 | 4 | 6, ..]);
        let due = self
            .last_stray_reply
            .is_none_or(|t| now.saturating_duration_since(t) >= STRAY_REPLY_INTERVAL);
        if answerable
            && due
            && self.stray.is_none()
            && self.stray_replies < MAX_STRAY_REPLIES
            && crate::server::acceptable_source(from)
        {
            self.stray = Some(from);
            self.stray_replies += 1;
            self.last_stray_reply = Some(now);
        }
    }

    fn accept_source(&mut self, from: SocketAddr, datagram: &[u8]) -> bool {
        if self.peer_locked {
            return from == self.peer
                || (from.port() == self.peer.port()
                    && from.ip().to_canonical() == self.peer.ip().to_canonical());
        }
        // A client's first answer comes from the server's new transfer port (RFC 1350 §4).
        // Lock onto that port only for a datagram that can answer this request, so that a
        // stray (a late packet to a reused port) cannot capture the transfer.
        // Judged by opcode and block number alone: a malformed OACK from the server is the
        // server's answer too, and fails the transfer with a clear error (not a timeout).
        let reading = matches!(
            self.state,
            State::Requesting {
                kind: RequestKind::Read
            }
        );
        let answers = match datagram {
            [0, 5 | 6, ..] => true,
            [0, 3, 0, 1, ..] => reading,
            [0, 4, 0, 0] => !reading,
            _ => false,
        };
        if answers && from.ip().to_canonical() == self.peer.ip().to_canonical() && from.port() != 0
        {
            self.peer = from;
            self.peer_locked = true;
            return true;
        }
        false
    }

    /// Arm the retransmission timer after sending the control packet, if it expects an answer.
    fn arm_after_ctrl(&mut self, now: I) {
        self.deadline = match &self.state {
            State::Requesting { .. } | State::Offered => now.checked_add(self.rto.current()),
            State::Receiving(r) if r.waiting_for_peer() => now.checked_add(self.rto.current()),
            State::Receiving(_) => None,
            State::Dallying(_) => {
                let fixed = self
                    .stats
                    .options
                    .timeout
                    .map(|t| core::time::Duration::from_secs(u64::from(t)))
                    .unwrap_or_default();
                // Long enough for the sender to time out and resend the last block a few times
                // (its timer is about ours): a lost final ACK must not fail the transfer.
                now.checked_add(self.config.dally().max(fixed).max(self.rto.current() * 4))
            }
            // Sending arms on DATA; Closed: a final ERROR expects nothing.
            State::Sending(_) | State::Closed => self.deadline,
        };
    }

    fn sample_ctrl_rtt(&mut self, now: I) {
        if let Some(sent) = self.ctrl_probe.take() {
            self.rto
                .sample(now.saturating_duration_since(sent), &self.config);
        }
    }

    fn progress(&mut self, now: I) {
        self.retries = 0;
        self.last_progress = now;
        self.rto.progress(&self.config);
    }

    fn on_peer_error(&mut self, now: I, code: ErrorCode, message: &str) {
        if self.done() {
            return;
        }
        // The PXE/UEFI size check: tsize asked, OACK sent, ERROR instead of ACK 0.
        let probe = matches!(self.state, State::Offered) && self.asked.tsize.is_some();
        let outcome = if probe {
            Outcome::SizeProbe
        } else {
            Outcome::Failed(TransferError::Peer {
                code,
                message: String::from(message),
            })
        };
        self.finish(now, outcome, None);
    }

    fn on_first_answer(&mut self, now: I, kind: RequestKind, packet: Packet<'_>) -> State<I, B> {
        // No round-trip sample from the request: its answer may be the server's retransmitted
        // OACK (Karn's rule cannot tell), and it includes the server's work on the request
        // (opening a file, asking an origin), so it would inflate the timeout.
        self.ctrl_probe = None;
        self.progress(now);
        match (kind, packet) {
            (_, Packet::Oack(options)) => match self.asked.check_oack(&options) {
                Ok(transfer) => {
                    if let (RequestKind::Read, Some(limit), Some(size)) =
                        (kind, self.config.max_transfer_size(), transfer.tsize)
                    {
                        if size > limit {
                            self.fail(now, TransferError::TooLarge { limit });
                            return State::Closed;
                        }
                    }
                    self.set_options(transfer);
                    match kind {
                        RequestKind::Read => {
                            if self.start_receiving(now) {
                                self.queue_ack(0);
                            }
                        }
                        RequestKind::Write => {
                            self.start_sending(now);
                        }
                    }
                    core::mem::replace(&mut self.state, State::Closed)
                }
                Err(e) => {
                    self.fail(now, e.into());
                    State::Closed
                }
            },
            (RequestKind::Read, Packet::Data { .. }) => {
                // No OACK: the server ignored every option (RFC 2347), plain RFC 1350.
                self.set_options(TransferOptions::default());
                self.start_receiving(now);
                let State::Receiving(r) = core::mem::replace(&mut self.state, State::Closed) else {
                    return State::Closed;
                };
                self.on_receiving(now, r, packet)
            }
            (RequestKind::Write, Packet::Ack { block: 0 }) => {
                self.set_options(TransferOptions::default());
                self.start_sending(now);
                core::mem::replace(&mut self.state, State::Closed)
            }
            (_, other) => {
                self.fail(now, ProtocolError::Unexpected(kind_name(&other)).into());
                State::Closed
            }
        }
    }

    fn on_offered(&mut self, now: I, packet: Packet<'_>) -> State<I, B> {
        match packet {
            Packet::Ack { block: 0 } => {
                self.sample_ctrl_rtt(now);
                self.progress(now);
                self.deadline = None;
                // Only now does the window ring exist: the peer has shown it receives at the
                // address the request came from.
                self.start_sending(now);
                core::mem::replace(&mut self.state, State::Closed)
            }
            Packet::Ack { block } => {
                self.fail(now, ProtocolError::AckOutOfWindow(block).into());
                State::Closed
            }
            // A repeated request (single-port mode): the retransmission timer deals with it.
            Packet::Rrq(_) | Packet::Wrq(_) | Packet::Oack(_) => {
                self.stats.duplicates += 1;
                State::Offered
            }
            other => {
                self.fail(now, ProtocolError::Unexpected(kind_name(&other)).into());
                State::Closed
            }
        }
    }

    /// A datagram from the peer while sending (the state is [`State::Sending`]).
    fn on_sending(&mut self, now: I, packet: Packet<'_>) {
        let State::Sending(sender) = &mut self.state else {
            return;
        };
        match packet {
            Packet::Ack { block } => {
                let result = sender.on_ack(block, now);
                self.stats.blocks = sender.blocks_acked();
                self.stats.bytes = sender.bytes_acked;
                let outstanding = sender.outstanding();
                match result {
                    AckResult::Progress(sample) | AckResult::Done(sample) => {
                        if let Some(rtt) = sample {
                            self.rto.sample(rtt, &self.config);
                        }
                        self.progress(now);
                        if !outstanding {
                            self.deadline = None;
                        }
                        if matches!(result, AckResult::Done(_)) {
                            self.succeed(now);
                            self.state = State::Closed;
                        }
                    }
                    // Never resend on a duplicate (Sorcerer's Apprentice); an ACK for a block
                    // outside the window is a late duplicate from before a go-back.
                    AckResult::Duplicate | AckResult::Invalid => self.stats.duplicates += 1,
                }
            }
            // A repeated request (single-port mode), or a repeated OACK (client side, our
            // DATA 1 was lost): the retransmission timer deals with it.
            Packet::Rrq(_) | Packet::Wrq(_) | Packet::Oack(_) => self.stats.duplicates += 1,
            other => self.fail(now, ProtocolError::Unexpected(kind_name(&other)).into()),
        }
    }

    fn on_receiving(&mut self, now: I, mut r: Receiver<B>, packet: Packet<'_>) -> State<I, B> {
        match packet {
            Packet::Data { block, data } => match r.on_data(block, data) {
                DataResult::Accepted => {
                    self.sample_ctrl_rtt(now);
                    self.progress(now);
                    self.deadline = now.checked_add(self.rto.current());
                    self.received_bytes += data.len() as u64;
                    if let Some(limit) = self.config.max_transfer_size() {
                        if self.received_bytes > limit {
                            self.fail(now, TransferError::TooLarge { limit });
                            return State::Closed;
                        }
                    }
                    // An announced size (RFC 2349) is a promise: a transfer that ends short of
                    // it (say, blocks cut by a receive buffer smaller than blksize) or runs past
                    // it is not the announced file. Netascii sizes are estimates, and a write
                    // announcing 0 is read as "size unknown" (clients send it so).
                    if let (Some(expected @ 1..), false) =
                        (self.stats.options.tsize, self.mode == Mode::Netascii)
                    {
                        let actual = self.received_bytes;
                        let last = data.len() < r.blksize;
                        if actual > expected || (last && actual != expected) {
                            self.fail(now, TransferError::SizeMismatch { expected, actual });
                            return State::Closed;
                        }
                    }
                }
                DataResult::Reack => {
                    self.stats.duplicates += 1;
                    self.queue_ack_again(block);
                }
                DataResult::Gap | DataResult::Duplicate => self.stats.duplicates += 1,
                DataResult::TooLarge => {
                    let blksize = r.blksize as u16;
                    self.fail(
                        now,
                        ProtocolError::BlockTooLarge {
                            len: data.len(),
                            blksize,
                        }
                        .into(),
                    );
                    return State::Closed;
                }
            },
            // The server repeated its OACK: our ACK 0 was lost (client side).
            Packet::Oack(_) if r.blocks_stored() == 0 && self.ctrl.as_bytes() == ack_bytes(0) => {
                self.stats.duplicates += 1;
                self.ctrl_send.resend();
            }
            Packet::Rrq(_) | Packet::Wrq(_) | Packet::Oack(_) => self.stats.duplicates += 1,
            other => {
                self.fail(now, ProtocolError::Unexpected(kind_name(&other)).into());
                return State::Closed;
            }
        }
        State::Receiving(r)
    }
}

fn kind_name(packet: &Packet<'_>) -> &'static str {
    match packet {
        Packet::Rrq(_) => "RRQ",
        Packet::Wrq(_) => "WRQ",
        Packet::Data { .. } => "DATA",
        Packet::Ack { .. } => "ACK",
        Packet::Error { .. } => "ERROR",
        Packet::Oack(_) => "OACK",
    }
}

fn protocol_reply(e: &ProtocolError) -> (ErrorCode, &'static str) {
    match e {
        ProtocolError::BadOack(reason) => (ErrorCode::OPTION_REFUSED, reason),
        ProtocolError::Malformed(_) => (ErrorCode::ILLEGAL_OPERATION, "Malformed packet"),
        ProtocolError::Unexpected(_) => (ErrorCode::ILLEGAL_OPERATION, "Unexpected packet"),
        ProtocolError::BlockTooLarge { .. } => {
            (ErrorCode::ILLEGAL_OPERATION, "Block larger than blksize")
        }
        ProtocolError::AckOutOfWindow(_) => (ErrorCode::ILLEGAL_OPERATION, "ACK for unsent block"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Options, Request};

    fn encoded(packet: &Packet<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; packet.encoded_len()];
        let n = packet.encode(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn the_prebuilt_unknown_tid_is_the_codecs_error_5() {
        assert_eq!(&UNKNOWN_TID[..], b"\x00\x05\x00\x05Unknown transfer ID\x00");
        let packet = Packet::Error {
            code: ErrorCode::UNKNOWN_TRANSFER_ID,
            message: UNKNOWN_TID_MESSAGE,
        };
        assert_eq!(UNKNOWN_TID[..], encoded(&packet));
    }

    #[test]
    fn a_sessions_error_is_the_codecs_inline_or_on_the_heap() {
        let code = ErrorCode(0x0102);
        for len in [0, 1, 80, 81, 82, 123, 512, 2000] {
            let message = "m".repeat(len);
            let ctrl = Ctrl::error(code, &message);
            assert_eq!(
                ctrl.as_bytes(),
                encoded(&Packet::Error {
                    code,
                    message: &message
                })
            );
            assert_eq!(matches!(ctrl, Ctrl::Inline { .. }), len <= 81, "{len}");
        }
        // The code alone, for a message with a NUL inside.
        assert_eq!(Ctrl::error(code, "").as_bytes(), [0, 5, 1, 2, 0]);
    }

    /// What every session carries besides its window: the control packet kept inline (86
    /// bytes and its length), the timer, and the `Config` it keeps (durations as nanoseconds).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_sessions_parts_are_small() {
        use core::mem::size_of;
        assert_eq!(size_of::<Ctrl>(), 88);
        assert_eq!(size_of::<Rto>(), 40);
        assert_eq!(size_of::<Tuning>(), 64);
    }

    #[test]
    fn every_oack_and_a_pxe_request_are_inline() {
        // The longest OACK a server sends: every option, each at its longest.
        let longest = OptionValues {
            blksize: Some(65464),
            timeout: Some(255),
            tsize: Some(u64::MAX),
            windowsize: Some(65535),
        };
        let ctrl = longest
            .with_options(|options| Ctrl::encode(&Packet::Oack(options)))
            .unwrap();
        assert_eq!(ctrl.as_bytes().len(), 72);
        assert!(matches!(ctrl, Ctrl::Inline { .. }));
        // What a PXE client asks for: its configuration by MAC address, with options.
        let asked = OptionValues {
            blksize: Some(1468),
            tsize: Some(0),
            windowsize: Some(4),
            ..Default::default()
        };
        let rrq = asked
            .with_options(|options| {
                Ctrl::encode(&Packet::Rrq(Request {
                    filename: "pxelinux.cfg/01-52-54-00-12-34-56",
                    mode: Mode::Octet,
                    options,
                }))
            })
            .unwrap();
        assert!(
            matches!(rrq, Ctrl::Inline { .. }),
            "{}",
            rrq.as_bytes().len()
        );
        // A request beyond the inline bytes is kept whole, on the heap.
        let long = "f".repeat(200);
        let rrq = Ctrl::encode(&Packet::Rrq(Request {
            filename: &long,
            mode: Mode::Octet,
            options: Options::EMPTY,
        }))
        .unwrap();
        assert!(matches!(rrq, Ctrl::Long(_)));
        assert_eq!(rrq.as_bytes().len(), 2 + 200 + 1 + 6);
    }

    #[test]
    fn events_come_once_and_negotiated_first() {
        let mut events = PendingEvents::Empty;
        assert_eq!(events.pop(), None);
        events = events.negotiated().negotiated().finished().finished();
        assert_eq!(events.pop(), Some(PendingEvent::Negotiated));
        assert_eq!(events.pop(), Some(PendingEvent::Finished));
        assert_eq!(events.pop(), None);
        events = events.finished().negotiated();
        assert_eq!(events.pop(), Some(PendingEvent::Negotiated));
        assert_eq!(events.pop(), Some(PendingEvent::Finished));
        assert_eq!(events, PendingEvents::Empty);
    }

    #[test]
    fn a_control_packet_is_sent_first_then_again() {
        let mut send = CtrlSend::First;
        // Asked again before its first sending: still the first.
        send.resend();
        assert_eq!(send, CtrlSend::First);
        send = CtrlSend::Idle; // sent
        send.resend();
        assert_eq!(send, CtrlSend::Again);
        send.resend();
        assert_eq!(send, CtrlSend::Again);
    }
}
