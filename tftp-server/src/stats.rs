//! Server-wide statistics: fbtftp's server stats callback, typed.
//!
//! Every adapter feeds one [`StatsCollector`]: a session started, a session ended (with its
//! [`SessionReport`]), a request refused. The collector keeps running totals (for metrics
//! endpoints) and the counters of the current interval, which [`StatsCollector::take_interval`]
//! reads and resets (for the periodic callback).
//!
//! It also reports every event to the [`metrics`] facade, so a program that installs a
//! recorder (e.g. `metrics-exporter-prometheus`, as `tftpd --metrics` does) exports the same
//! counters, whatever the adapter. Without a recorder this costs nothing.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `tftp_sessions_started_total` | counter | |
//! | `tftp_sessions_total` | counter | `outcome`: completed, size_probe, aborted_by_client, timed_out, refused, failed |
//! | `tftp_active_sessions` | gauge | |
//! | `tftp_bytes_sent_total`, `tftp_bytes_received_total` | counter | |
//! | `tftp_packets_sent_total`, `tftp_packets_received_total`, `tftp_retransmissions_total` | counter | |
//! | `tftp_errors_sent_total` | counter | `code` |
//! | `tftp_negotiated_blksize_total` | counter | `blksize`: bucketed, see below |
//! | `tftp_negotiated_windowsize_total` | counter | `windowsize`: bucketed, see below |
//! | `tftp_session_duration_seconds` | histogram | `outcome` |
//! | `tftp_stray_packets_total` | counter | |
//! | `tftp_requests_dropped_total` | counter | `reason`: rate_limited, duplicate, not_a_request, bad_source, shutting_down, reply_rate_limited |
//! | `tftp_requests_refused_total` | counter | `reason`: server_busy, client_busy, malformed, no_transfer_socket |
//!
//! Clients choose `blksize` (8..=65464, RFC 2348) and `windowsize` (1..=65535, RFC 7440):
//! labelled with the raw value, 6,000 requests made 6,000 Prometheus series. Both are bucketed
//! into a fixed set of at most 21 label values each ([`blksize_bucket`],
//! [`windowsize_bucket`]), and [`ServerStats::blksize`] and [`ServerStats::windowsize`] are
//! keyed the same way:
//!
//! | option | counted exactly | other values | label | key |
//! |---|---|---|---|---|
//! | `blksize` | 512, 1024, 1408, 1428, 1432, 1456, 1468, 2048, 4096, 8192, 16384, 32768, 65464 | below 512 | `lt_512` | 511 |
//! | | | above 512, up to the next power of two 2^k (1024 ..= 65536) | `le_2^k` (`le_1024`, ..., `le_65536`) | 2^k − 1 |
//! | `windowsize` | 1 ..= 16 | 17 ..= 64 | `17-64` | 64 |
//! | | | 65 ..= 256 | `65-256` | 256 |
//! | | | 257 and above | `more` | 65535 |

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tftp_proto::{ErrorCode, Outcome, RequestKind, TransferError};

use crate::request::SessionReport;

/// Counters over a period (an interval, or since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// The period these counters cover.
    pub period: Duration,
    /// Requests accepted or refused (every request that got an answer).
    pub sessions_started: u64,
    /// Sessions that transferred everything.
    pub sessions_completed: u64,
    /// Sessions that failed on the server's side or the network's: timed out, protocol
    /// violations, errors of the data source, and refused requests.
    pub sessions_failed: u64,
    /// Sessions the client ended with an ERROR (other than size probes).
    pub sessions_aborted_by_client: u64,
    /// PXE/UEFI size probes: tsize asked, OACK received, then an ERROR. Not failures.
    pub size_probes: u64,
    /// Of the failed sessions, those whose peer stopped answering.
    pub sessions_timed_out: u64,
    /// Of the failed sessions, requests refused before a transfer started (file not found,
    /// access violation, limits).
    pub requests_refused: u64,
    /// Payload bytes sent (reads) and acknowledged.
    pub bytes_sent: u64,
    /// Payload bytes received (writes) and stored.
    pub bytes_received: u64,
    /// Datagrams sent, retransmissions included.
    pub packets_sent: u64,
    /// Datagrams received from transfer peers.
    pub packets_received: u64,
    /// Datagrams sent again after a timeout.
    pub retransmissions: u64,
    /// ERROR packets sent, by code.
    pub errors_sent: BTreeMap<u16, u64>,
    /// Sessions running when the counters were read.
    pub active_sessions: u64,
    /// Negotiated block sizes of finished transfers (size → sessions), bucketed by
    /// [`blksize_bucket`] so that clients cannot grow it: common sizes are exact keys, other
    /// sizes count under their bucket's key (at most 21 keys).
    pub blksize: BTreeMap<u16, u64>,
    /// Negotiated window sizes of finished transfers (size → sessions), bucketed by
    /// [`windowsize_bucket`]: 1..=16 exact, then 64, 256 and 65535 for wider ranges (at most
    /// 20 keys).
    pub windowsize: BTreeMap<u16, u64>,
    /// Datagrams from strangers at transfer ports (ignored; a few answered with ERROR 5).
    pub stray_packets: u64,
    /// Datagrams at a listening port dropped without an answer, by reason (see the metrics
    /// table).
    pub requests_dropped: BTreeMap<&'static str, u64>,
    /// Requests refused at a listening port with an ERROR before any handler saw them, by
    /// reason.
    pub requests_rejected: BTreeMap<&'static str, u64>,
}

/// How often a running transfer's bytes are counted at most
/// ([`StatsCollector::transfer_progress`]), by every server of the framework.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// When a running transfer's bytes were last counted, and how many: each server's session
/// loop asks [`Progress::due`] after every wake-up, counts what it returns
/// ([`StatsCollector::transfer_progress`]), and reports the transfer's end with
/// [`Progress::counted`] ([`StatsCollector::session_finished_after`] counts the rest).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// When the next count may be due ([`PROGRESS_EVERY`] after the last): a comparison per
    /// packet, not a subtraction. `None` only past the end of the clock's range.
    next: Option<Instant>,
    counted: u64,
}

impl Progress {
    /// Nothing counted yet, as of `now` (the transfer's start).
    pub fn new(now: Instant) -> Self {
        Progress {
            next: now.checked_add(PROGRESS_EVERY),
            counted: 0,
        }
    }

    /// The transfer has moved `bytes` in all by `now`: the bytes to count now, if a count is
    /// due — at most every [`PROGRESS_EVERY`], only when some moved, and only while it
    /// `runs` (once its outcome is known its final report counts the rest, and a dallying
    /// session must not be counted again).
    pub fn due(&mut self, now: Instant, bytes: u64, runs: bool) -> Option<u64> {
        let due = runs && bytes != self.counted && self.next.is_some_and(|next| now >= next);
        if !due {
            return None;
        }
        let new = bytes.saturating_sub(self.counted);
        (self.next, self.counted) = (now.checked_add(PROGRESS_EVERY), bytes);
        Some(new)
    }

    /// The bytes counted so far.
    pub fn counted(&self) -> u64 {
        self.counted
    }
}

/// Block sizes counted exactly: 512 (RFC 1350's), 1024, those that fill an Ethernet frame
/// (1468 = 1500 − 20 IPv4 − 8 UDP − 4 TFTP) or one with a tunnel's or IPv6's overhead (1408,
/// 1428, 1432, 1456), powers of two, and 65464 (RFC 2348's largest).
const COMMON_BLKSIZES: [u16; 13] = [
    512, 1024, 1408, 1428, 1432, 1456, 1468, 2048, 4096, 8192, 16384, 32768, 65464,
];

/// The key a negotiated `blksize` is counted under in [`ServerStats::blksize`]: itself when it
/// is a common size, else its bucket's key (see the module documentation): 511 for any size
/// below 512, `2^k − 1` for a size between `2^(k−1)` and `2^k`. Never more than 21 keys.
pub fn blksize_bucket(blksize: u16) -> u16 {
    if COMMON_BLKSIZES.contains(&blksize) {
        blksize
    } else if blksize < 512 {
        511
    } else {
        // The next power of two above, minus one: 513..=1023 → 1023, 32769.. → 65535.
        u16::MAX >> blksize.leading_zeros()
    }
}

/// The `blksize` label for a [`blksize_bucket`] key.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn blksize_label(blksize: u16) -> std::borrow::Cow<'static, str> {
    match blksize_bucket(blksize) {
        511 => "lt_512".into(),
        key if COMMON_BLKSIZES.contains(&key) => key.to_string().into(),
        key => format!("le_{}", u32::from(key) + 1).into(),
    }
}

/// The key a negotiated `windowsize` is counted under in [`ServerStats::windowsize`]: itself up
/// to 16, else 64 (17..=64), 256 (65..=256) or 65535 (more). Never more than 20 keys.
pub fn windowsize_bucket(windowsize: u16) -> u16 {
    match windowsize {
        0..=16 => windowsize,
        17..=64 => 64,
        65..=256 => 256,
        _ => u16::MAX,
    }
}

/// The `windowsize` label for a [`windowsize_bucket`] key.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn windowsize_label(windowsize: u16) -> std::borrow::Cow<'static, str> {
    match windowsize_bucket(windowsize) {
        64 => "17-64".into(),
        256 => "65-256".into(),
        u16::MAX => "more".into(),
        exact => exact.to_string().into(),
    }
}

/// Give every metric of the table above its HELP text and unit (call once, after installing
/// a recorder: a Prometheus scrape then says what each series means).
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tftp_sessions_started_total",
        "Requests answered: sessions started and requests refused by a handler"
    );
    describe_counter!("tftp_sessions_total", "Sessions ended, by outcome");
    describe_gauge!(
        "tftp_active_sessions",
        "Sessions running now (replaced ones until they end)"
    );
    describe_counter!(
        "tftp_bytes_sent_total",
        Unit::Bytes,
        "Payload bytes of reads, acknowledged by clients"
    );
    describe_counter!(
        "tftp_bytes_received_total",
        Unit::Bytes,
        "Payload bytes of uploads, stored"
    );
    describe_counter!(
        "tftp_packets_sent_total",
        "Datagrams sent by sessions, retransmissions included"
    );
    describe_counter!(
        "tftp_packets_received_total",
        "Datagrams received from transfer peers"
    );
    describe_counter!(
        "tftp_retransmissions_total",
        "Datagrams sent again after a timeout"
    );
    describe_counter!(
        "tftp_errors_sent_total",
        "ERROR packets sent, by TFTP error code"
    );
    describe_counter!(
        "tftp_negotiated_blksize_total",
        "Transfers by negotiated block size (bucketed)"
    );
    describe_counter!(
        "tftp_negotiated_windowsize_total",
        "Transfers by negotiated window size (bucketed)"
    );
    describe_histogram!(
        "tftp_session_duration_seconds",
        Unit::Seconds,
        "Session durations, by outcome"
    );
    describe_counter!(
        "tftp_stray_packets_total",
        "Datagrams from strangers at transfer ports (ignored; a few answered with ERROR 5)"
    );
    describe_counter!(
        "tftp_requests_dropped_total",
        "Datagrams at listening ports dropped without an answer, by reason"
    );
    describe_counter!(
        "tftp_requests_refused_total",
        "Requests refused at listening ports with an ERROR, by reason"
    );
}

/// The `outcome` label of a session.
pub fn outcome_label(report: &SessionReport) -> &'static str {
    let s = &report.stats;
    match &s.outcome {
        Some(Outcome::Completed) => "completed",
        Some(Outcome::SizeProbe) => "size_probe",
        Some(Outcome::Failed(TransferError::Peer { .. })) => "aborted_by_client",
        Some(Outcome::Failed(TransferError::TimedOut { .. })) => "timed_out",
        Some(Outcome::Failed(_)) if report.refused => "refused",
        // A report without an outcome (a session that ended undecided, which the sessions of
        // tftp-proto never do) did not succeed: counted as failed.
        Some(Outcome::Failed(_)) | None => "failed",
    }
}

/// Report a finished session to the `metrics` facade (feature `metrics`).
#[cfg(not(feature = "metrics"))]
fn emit(_: &SessionReport, _: u64) {}

/// Report a finished session to the `metrics` facade (feature `metrics`).
#[cfg(feature = "metrics")]
fn emit(report: &SessionReport, counted: u64) {
    let s = &report.stats;
    let outcome = outcome_label(report);
    metrics::counter!("tftp_sessions_total", "outcome" => outcome).increment(1);
    metrics::histogram!("tftp_session_duration_seconds", "outcome" => outcome)
        .record(s.duration().as_secs_f64());
    match report.kind {
        RequestKind::Read => {
            metrics::counter!("tftp_bytes_sent_total").increment(s.bytes.saturating_sub(counted));
        }
        RequestKind::Write => {
            metrics::counter!("tftp_bytes_received_total")
                .increment(s.bytes.saturating_sub(counted));
        }
    }
    metrics::counter!("tftp_packets_sent_total").increment(s.packets_sent);
    metrics::counter!("tftp_packets_received_total").increment(s.packets_received);
    metrics::counter!("tftp_retransmissions_total").increment(s.retransmissions);
    metrics::counter!("tftp_stray_packets_total").increment(s.stray_packets);
    if let Some(e) = s.error() {
        if let (Some(code), false) = (e.code(), matches!(e, TransferError::Peer { .. })) {
            #[cfg(feature = "metrics")]
            metrics::counter!("tftp_errors_sent_total", "code" => code.0.to_string()).increment(1);
        }
    }
    if s.blocks > 0 {
        metrics::counter!("tftp_negotiated_blksize_total", "blksize" => blksize_label(s.options.blksize))
            .increment(1);
        metrics::counter!("tftp_negotiated_windowsize_total", "windowsize" => windowsize_label(s.options.windowsize))
            .increment(1);
    }
}

impl ServerStats {
    /// Count a finished session, `counted` of its bytes counted already while it ran.
    fn record(&mut self, report: &SessionReport, counted: u64) {
        let s = &report.stats;
        let bytes = s.bytes.saturating_sub(counted);
        match report.kind {
            RequestKind::Read => self.bytes_sent += bytes,
            RequestKind::Write => self.bytes_received += bytes,
        }
        self.packets_sent += s.packets_sent;
        self.packets_received += s.packets_received;
        self.retransmissions += s.retransmissions;
        self.stray_packets += s.stray_packets;
        let mut sent_error = None;
        match &s.outcome {
            Some(Outcome::Completed) => self.sessions_completed += 1,
            Some(Outcome::SizeProbe) => self.size_probes += 1,
            Some(Outcome::Failed(TransferError::Peer { .. })) => {
                self.sessions_aborted_by_client += 1
            }
            // Undecided (see `outcome_label`): failed, no ERROR known to have been sent.
            None => self.sessions_failed += 1,
            Some(Outcome::Failed(e)) => {
                self.sessions_failed += 1;
                if matches!(e, TransferError::TimedOut { .. }) {
                    self.sessions_timed_out += 1;
                }
                if report.refused {
                    self.requests_refused += 1;
                }
                sent_error = e.code();
            }
        }
        if let Some(code) = sent_error {
            *self.errors_sent.entry(code.0).or_default() += 1;
        }
        if s.blocks > 0 {
            *self
                .blksize
                .entry(blksize_bucket(s.options.blksize))
                .or_default() += 1;
            *self
                .windowsize
                .entry(windowsize_bucket(s.options.windowsize))
                .or_default() += 1;
        }
    }
}

#[derive(Debug)]
struct Counters {
    total: ServerStats,
    interval: ServerStats,
    interval_start: Instant,
}

/// Collects session events from an adapter; shared by all its tasks or threads.
#[derive(Debug)]
pub struct StatsCollector {
    started: Instant,
    active: AtomicU64,
    counters: Mutex<Counters>,
}

impl Default for StatsCollector {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl StatsCollector {
    /// A collector whose periods start at `now`.
    pub fn new(now: Instant) -> Self {
        StatsCollector {
            started: now,
            active: AtomicU64::new(0),
            counters: Mutex::new(Counters {
                total: ServerStats::default(),
                interval: ServerStats::default(),
                interval_start: now,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        // A panic while holding the lock cannot leave the counters inconsistent in a way that
        // matters; keep counting.
        let mut guard = match self.counters.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// A request was answered: a session (or a refusal) begins.
    pub fn session_started(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tftp_sessions_started_total").increment(1);
        #[cfg(feature = "metrics")]
        metrics::gauge!("tftp_active_sessions").increment(1.0);
        self.with(|c| {
            c.total.sessions_started += 1;
            c.interval.sessions_started += 1;
        });
    }

    /// A session is no longer active (its admission permit was dropped).
    pub(crate) fn session_ended(&self) {
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        #[cfg(feature = "metrics")]
        metrics::gauge!("tftp_active_sessions").decrement(1.0);
    }

    /// A session (or a refusal) ended with `report`.
    pub fn session_finished(&self, report: &SessionReport) {
        self.session_finished_after(report, 0);
    }

    /// Bytes of a running transfer, counted as they move, so that a long transfer shows in the
    /// byte counters and the interval's statistics before it ends. Its final report then
    /// counts only the rest ([`StatsCollector::session_finished_after`]).
    pub fn transfer_progress(&self, kind: RequestKind, bytes: u64) {
        #[cfg(feature = "metrics")]
        match kind {
            RequestKind::Read => metrics::counter!("tftp_bytes_sent_total").increment(bytes),
            RequestKind::Write => metrics::counter!("tftp_bytes_received_total").increment(bytes),
        }
        self.with(|c| {
            for s in [&mut c.total, &mut c.interval] {
                match kind {
                    RequestKind::Read => s.bytes_sent += bytes,
                    RequestKind::Write => s.bytes_received += bytes,
                }
            }
        });
    }

    /// A session ended with `report`, `counted` of its bytes already reported through
    /// [`StatsCollector::transfer_progress`].
    pub fn session_finished_after(&self, report: &SessionReport, counted: u64) {
        emit(report, counted);
        self.with(|c| {
            c.total.record(report, counted);
            c.interval.record(report, counted);
        });
    }

    /// A datagram at a listening port was dropped without an answer, for `reason`.
    pub fn request_dropped(&self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!("tftp_requests_dropped_total", "reason" => reason).increment(1);
        self.with(|c| {
            *c.total.requests_dropped.entry(reason).or_default() += 1;
            *c.interval.requests_dropped.entry(reason).or_default() += 1;
        });
    }

    /// A request was refused at a listening port with an ERROR, for `reason`.
    pub fn request_rejected(&self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!("tftp_requests_refused_total", "reason" => reason).increment(1);
        self.with(|c| {
            *c.total.requests_rejected.entry(reason).or_default() += 1;
            *c.interval.requests_rejected.entry(reason).or_default() += 1;
        });
    }

    /// An ERROR was sent without a session (server busy, malformed request).
    pub fn error_sent(&self, code: ErrorCode) {
        #[cfg(feature = "metrics")]
        metrics::counter!("tftp_errors_sent_total", "code" => code.0.to_string()).increment(1);
        self.with(|c| {
            *c.total.errors_sent.entry(code.0).or_default() += 1;
            *c.interval.errors_sent.entry(code.0).or_default() += 1;
        });
    }

    /// Sessions running now.
    pub fn active_sessions(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Totals since the collector was created.
    pub fn totals(&self, now: Instant) -> ServerStats {
        let mut t = self.with(|c| c.total.clone());
        t.period = now.saturating_duration_since(self.started);
        t.active_sessions = self.active_sessions();
        t
    }

    /// The counters since the last call (or since creation), reset for the next interval.
    pub fn take_interval(&self, now: Instant) -> ServerStats {
        let mut s = self.with(|c| {
            let s = std::mem::take(&mut c.interval);
            let start = std::mem::replace(&mut c.interval_start, now);
            ServerStats {
                period: now.saturating_duration_since(start),
                ..s
            }
        });
        s.active_sessions = self.active_sessions();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{HandlerError, Request};
    use tftp_proto::{IncomingRequest, Mode, OptionLimits, OptionValues, SessionStats};

    fn request(kind: RequestKind) -> Request {
        let peer = "127.0.0.1:4000".parse().unwrap();
        Request::new(
            IncomingRequest {
                peer,
                kind,
                filename: "f".into(),
                mode: Mode::Octet,
                options: OptionValues::default(),
            },
            "127.0.0.1:69".parse().unwrap(),
            OptionLimits::default(),
        )
    }

    #[test]
    fn outcomes_are_classified_and_intervals_reset() {
        let now = Instant::now();
        let c = StatsCollector::new(now);
        let outcomes = [
            Outcome::Completed,
            Outcome::SizeProbe,
            Outcome::Failed(TransferError::Peer {
                code: ErrorCode::OPTION_REFUSED,
                message: String::new(),
            }),
            Outcome::Failed(TransferError::TimedOut { retries: 6 }),
        ];
        for outcome in outcomes {
            c.session_started();
            let mut stats = SessionStats::new(now);
            stats.outcome = Some(outcome);
            stats.bytes = 100;
            stats.blocks = 1;
            c.session_finished(&SessionReport::new(&request(RequestKind::Read), stats));
            c.session_ended();
        }
        c.session_started();
        let req = request(RequestKind::Read);
        let refused = SessionReport::refused(&req, &HandlerError::not_found(), now);
        assert!(matches!(
            refused.stats.outcome,
            Some(Outcome::Failed(TransferError::Local { .. }))
        ));
        assert_eq!(outcome_label(&refused), "refused");
        let undecided = SessionReport::new(&req, SessionStats::new(now));
        assert_eq!(
            outcome_label(&undecided),
            "failed",
            "undecided is not a success"
        );
        c.session_finished(&refused);
        c.session_ended();
        let s = c.take_interval(now + Duration::from_secs(60));
        assert_eq!(s.period, Duration::from_secs(60));
        assert_eq!(s.sessions_started, 5);
        assert_eq!(s.sessions_completed, 1);
        assert_eq!(s.size_probes, 1);
        assert_eq!(s.sessions_aborted_by_client, 1);
        assert_eq!(s.sessions_failed, 2);
        assert_eq!(s.sessions_timed_out, 1);
        assert_eq!(s.requests_refused, 1);
        assert_eq!(s.errors_sent.get(&1), Some(&1));
        assert_eq!(s.bytes_sent, 400);
        assert_eq!(s.blksize.get(&512), Some(&4));
        assert_eq!(s.active_sessions, 0);
        let next = c.take_interval(now + Duration::from_secs(61));
        assert_eq!(next.sessions_started, 0);
        assert_eq!(c.totals(now).sessions_started, 5);
    }

    /// A counter's name and its labels (key, value).
    #[cfg(feature = "metrics")]
    type Registered = (String, Vec<(String, String)>);

    /// The label sets of every counter registered, by metric name.
    #[cfg(feature = "metrics")]
    #[derive(Default)]
    struct Labels(Mutex<Vec<Registered>>);

    #[cfg(feature = "metrics")]
    impl Labels {
        fn values(&self, metric: &str, label: &str) -> std::collections::BTreeSet<String> {
            let seen = self.0.lock().unwrap();
            seen.iter()
                .filter(|(name, _)| name == metric)
                .flat_map(|(_, labels)| labels.iter().filter(|(k, _)| k == label))
                .map(|(_, v)| v.clone())
                .collect()
        }
    }

    #[cfg(feature = "metrics")]
    impl metrics::Recorder for Labels {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            let labels = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            self.0
                .lock()
                .unwrap()
                .push((key.name().to_string(), labels));
            metrics::Counter::noop()
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            _: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn sizes_are_bucketed_as_documented() {
        for (size, key, label) in [
            (8, 511, "lt_512"),
            (511, 511, "lt_512"),
            (512, 512, "512"),
            (513, 1023, "le_1024"),
            (1024, 1024, "1024"),
            (1025, 2047, "le_2048"),
            (1468, 1468, "1468"),
            (1469, 2047, "le_2048"),
            (2048, 2048, "2048"),
            (9000, 16383, "le_16384"),
            (32768, 32768, "32768"),
            (32769, 65535, "le_65536"),
            (65464, 65464, "65464"),
            (65535, 65535, "le_65536"),
        ] {
            assert_eq!(blksize_bucket(size), key, "{size}");
            assert_eq!(blksize_label(size), label, "{size}");
        }
        for (size, key, label) in [
            (1, 1, "1"),
            (16, 16, "16"),
            (17, 64, "17-64"),
            (64, 64, "17-64"),
            (65, 256, "65-256"),
            (256, 256, "65-256"),
            (257, 65535, "more"),
            (65535, 65535, "more"),
        ] {
            assert_eq!(windowsize_bucket(size), key, "{size}");
            assert_eq!(windowsize_label(size), label, "{size}");
        }
        let all_blksizes: std::collections::BTreeSet<_> =
            (0..=u16::MAX).map(blksize_label).collect();
        assert_eq!(all_blksizes.len(), 21);
        let all_windows: std::collections::BTreeSet<_> =
            (1..=u16::MAX).map(windowsize_label).collect();
        assert_eq!(all_windows.len(), 19);
    }

    #[test]
    fn bytes_counted_while_a_transfer_runs_are_not_counted_again_at_its_end() {
        let now = Instant::now();
        let c = StatsCollector::new(now);
        c.session_started();
        c.transfer_progress(RequestKind::Read, 40_000);
        let first = c.take_interval(now + Duration::from_secs(60));
        assert_eq!(
            first.bytes_sent, 40_000,
            "a long transfer shows before it ends"
        );
        c.transfer_progress(RequestKind::Read, 30_000);
        let mut stats = SessionStats::new(now);
        stats.outcome = Some(Outcome::Completed);
        stats.bytes = 100_000;
        stats.blocks = 196;
        c.session_finished_after(
            &SessionReport::new(&request(RequestKind::Read), stats),
            70_000,
        );
        let second = c.take_interval(now + Duration::from_secs(120));
        assert_eq!(second.bytes_sent, 60_000);
        assert_eq!(c.totals(now).bytes_sent, 100_000);
    }

    /// A client chooses `blksize` and `windowsize`: 6,000 requests with 6,000 different values
    /// must not make 6,000 label values (Prometheus series) nor 6,000 map entries.
    #[cfg(feature = "metrics")]
    #[test]
    fn attacker_chosen_sizes_make_few_labels_and_keys() {
        let now = Instant::now();
        let c = StatsCollector::new(now);
        let labels = Labels::default();
        metrics::with_local_recorder(&labels, || {
            for i in 0..6000u16 {
                let mut stats = SessionStats::new(now);
                stats.outcome = Some(Outcome::Completed);
                stats.blocks = 1;
                stats.options.blksize = 8 + i * 10;
                stats.options.windowsize = 1 + i * 10;
                c.session_finished(&SessionReport::new(&request(RequestKind::Read), stats));
            }
        });
        let blksizes = labels.values("tftp_negotiated_blksize_total", "blksize");
        let windows = labels.values("tftp_negotiated_windowsize_total", "windowsize");
        assert!(
            blksizes.len() <= 21,
            "{} blksize labels: {blksizes:?}",
            blksizes.len()
        );
        assert!(
            windows.len() <= 20,
            "{} windowsize labels: {windows:?}",
            windows.len()
        );
        let s = c.totals(now);
        assert!(s.blksize.len() <= 21, "{} blksize keys", s.blksize.len());
        assert!(
            s.windowsize.len() <= 20,
            "{} windowsize keys",
            s.windowsize.len()
        );
        assert_eq!(s.blksize.values().sum::<u64>(), 6000);
        assert_eq!(s.windowsize.values().sum::<u64>(), 6000);
    }
}
