//! A JSON-lines session log: one line per finished session, for log shippers.
//!
//! ```
//! use tftpd::session_log::SessionLog;
//!
//! let log = SessionLog::new(Vec::new());
//! // options.on_session(move |report| log.record(report))
//! # let _ = log;
//! ```
//!
//! Each line is an object with `time` (RFC 3339, UTC, when the session ended), `peer`, `local`,
//! `kind` (`read`/`write`), `file`, `mode`, `outcome` (`completed`, `size_probe`,
//! `aborted_by_client`, `timed_out`, `refused`, `failed`), `error` (code and message, if any),
//! `bytes`, `blocks`, `duration_ms`, `packets_sent`, `packets_received`, `retransmissions`,
//! `duplicates`, `blksize`, `windowsize`, `tsize`, and `requested` (the options asked for).
//! `file` is the name the client sent; with [`SessionLog::with_remaps`], a request whose name
//! the remap rules (`--map-file`) changed also has `remapped`: the name that was served.
//!
//! Session callbacks run where the session ran: on an event loop's thread, which serves every
//! other transfer too. [`SessionLog::record`] writes there, fine for a `Vec` or a test; a
//! server gives its log to a thread of its own with [`SessionLog::in_background`], so that a
//! log that stops taking lines (a full pipe whose reader stalled, a hung network file system)
//! costs lines, counted and reported, and never a transfer.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tftp_proto::{Outcome, RequestKind, TransferError};

use tftp_server::SessionReport;

use crate::line_queue::{Dropped, LineQueue};
use crate::remap::RemapNotes;

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    peer: String,
    local: String,
    kind: &'static str,
    file: &'a str,
    mode: &'static str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorField>,
    bytes: u64,
    blocks: u64,
    duration_ms: f64,
    packets_sent: u64,
    packets_received: u64,
    retransmissions: u64,
    duplicates: u64,
    blksize: u16,
    windowsize: u16,
    tsize: Option<u64>,
    requested: Requested,
    #[serde(skip_serializing_if = "Option::is_none")]
    remapped: Option<String>,
}

#[derive(Serialize)]
struct ErrorField {
    code: Option<u16>,
    message: String,
}

#[derive(Serialize)]
struct Requested {
    blksize: Option<u16>,
    windowsize: Option<u16>,
    timeout: Option<u8>,
    tsize: Option<u64>,
}

/// Writes one JSON line per session to a writer (a file, stdout).
#[derive(Debug)]
pub struct SessionLog<W> {
    out: Mutex<W>,
    remaps: Option<RemapNotes>,
}

impl<W: Write> SessionLog<W> {
    /// A log writing to `out` (flushed after every line).
    pub fn new(out: W) -> Self {
        SessionLog {
            out: Mutex::new(out),
            remaps: None,
        }
    }

    /// Add `remapped` to the lines of requests whose name [`Remap`](crate::Remap) changed
    /// (give it the same `notes`).
    pub fn with_remaps(mut self, notes: RemapNotes) -> Self {
        self.remaps = Some(notes);
        self
    }

    /// Append the line for `report`, on the calling thread (see [`SessionLog::in_background`]).
    /// Write errors are logged and otherwise ignored: the log must never stop the server.
    pub fn record(&self, report: &SessionReport) {
        let Some(json) = encode(self.remaps.as_ref(), report) else {
            return;
        };
        let mut out = match self.out.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Err(e) = out.write_all(&json).and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "cannot write the session log");
        }
    }

    /// The writer back (tests).
    pub fn into_inner(self) -> W {
        match self.out.into_inner() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        }
    }
}

impl<W: Write + Send + 'static> SessionLog<W> {
    /// This log, written on a thread of its own ("tftp-session-log"): [`BackgroundLog::record`]
    /// formats the line and queues it, at most [`BackgroundLog::QUEUE`] lines, and never
    /// waits; a line that finds the queue full is dropped and counted (a warning says how many,
    /// at most every 10 s). The thread writes what is queued and flushes when the queue is
    /// empty. Dropping the [`BackgroundLog`] lets the thread write what is queued, and waits
    /// for it up to [`BackgroundLog::FINISH`].
    ///
    /// ```
    /// use tftpd::session_log::SessionLog;
    ///
    /// let log = SessionLog::new(std::io::stdout()).in_background()?;
    /// // options.on_session(move |report| log.record(report))
    /// # drop(log);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn in_background(self) -> std::io::Result<BackgroundLog> {
        let SessionLog { out, remaps } = self;
        let out = match out.into_inner() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        let limit = tftp_server::log_limit::LogLimit::default();
        let failed = move |e: std::io::Error| {
            limit.note(Instant::now(), "write", |suppressed| {
                tracing::warn!(error = %e, suppressed, "cannot write the session log");
            });
        };
        Ok(BackgroundLog {
            lines: LineQueue::spawn("tftp-session-log", out, BackgroundLog::QUEUE, failed)?,
            remaps,
            limit: tftp_server::log_limit::LogLimit::default(),
        })
    }
}

/// A [`SessionLog`] written on a thread of its own: see [`SessionLog::in_background`].
#[derive(Debug)]
pub struct BackgroundLog {
    lines: LineQueue,
    remaps: Option<RemapNotes>,
    limit: tftp_server::log_limit::LogLimit,
}

impl BackgroundLog {
    /// The most lines queued for the writer thread (about 2 MiB of lines at most; memory is
    /// taken only for the lines queued: see [`crate::line_queue`]).
    pub const QUEUE: usize = 4096;
    /// How long dropping the log waits for the writer thread to write what is queued.
    pub const FINISH: Duration = Duration::from_secs(2);

    /// Queue the line for `report`, or drop it (counted) if the queue is full.
    pub fn record(&self, report: &SessionReport) {
        let Some(json) = encode(self.remaps.as_ref(), report) else {
            return;
        };
        // Closed: the writer thread is gone (it panicked): nothing writes the log any more.
        if let Err(Dropped::Full) = self.lines.push(json) {
            let total = self.lines.dropped();
            self.limit.note(Instant::now(), "full", |_| {
                tracing::warn!(
                    dropped = total,
                    queued = Self::QUEUE,
                    "the session log is not taking lines: lines dropped"
                );
            });
        }
    }

    /// Lines dropped so far because the writer thread did not keep up.
    pub fn dropped(&self) -> u64 {
        self.lines.dropped()
    }
}

impl Drop for BackgroundLog {
    fn drop(&mut self) {
        if !self.lines.finish(Self::FINISH) {
            tracing::warn!("the session log did not finish writing its queued lines");
        }
        let dropped = self.dropped();
        if dropped > 0 {
            tracing::warn!(dropped, "session log lines dropped in all");
        }
    }
}

/// The JSON line (with its newline) for `report`.
fn encode(remaps: Option<&RemapNotes>, report: &SessionReport) -> Option<Vec<u8>> {
    let mut line = line(report, SystemTime::now());
    line.remapped = remaps.and_then(|notes| notes.take(report.peer, &report.filename));
    let mut json = serde_json::to_vec(&line).ok()?;
    json.push(b'\n');
    Some(json)
}

fn line(report: &SessionReport, now: SystemTime) -> Line<'_> {
    let s = &report.stats;
    let error = match &s.outcome {
        Some(Outcome::Failed(e)) => Some(ErrorField {
            code: e.code().map(|c| c.0),
            message: match e {
                TransferError::Peer { message, .. } | TransferError::Local { message, .. } => {
                    message.clone()
                }
                other => other.to_string(),
            },
        }),
        Some(Outcome::Completed | Outcome::SizeProbe) => None,
        // A report without an outcome (never made by tftp-server's sessions) is logged as
        // `failed` (see `outcome_label`), with this explanation.
        None => Some(ErrorField {
            code: None,
            message: "ended without an outcome".into(),
        }),
    };
    Line {
        time: rfc3339(now),
        peer: report.peer.to_string(),
        local: report.local.to_string(),
        kind: match report.kind {
            RequestKind::Read => "read",
            RequestKind::Write => "write",
        },
        file: &report.filename,
        mode: report.mode.as_str(),
        outcome: tftp_server::stats::outcome_label(report),
        error,
        bytes: s.bytes,
        blocks: s.blocks,
        duration_ms: s.duration().as_secs_f64() * 1000.0,
        packets_sent: s.packets_sent,
        packets_received: s.packets_received,
        retransmissions: s.retransmissions,
        duplicates: s.duplicates,
        blksize: s.options.blksize,
        windowsize: s.options.windowsize,
        tsize: s.options.tsize,
        requested: Requested {
            blksize: report.requested.blksize,
            windowsize: report.requested.windowsize,
            timeout: report.requested.timeout,
            tsize: report.requested.tsize,
        },
        remapped: None,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from the Unix clock (days to civil date: Howard Hinnant's
/// algorithm), so that no date crate is needed.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, mpsc};
    use std::thread;
    use tftp_proto::{IncomingRequest, Mode, OptionLimits, OptionValues};
    use tftp_server::{HandlerError, Request};

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    /// A writer that blocks every write until `open` is set (a pipe whose reader stalled),
    /// then appends to `into`.
    struct Stalled {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        into: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, changed) = &*self.open;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
            self.into.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_log_costs_lines_never_the_caller() {
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let into = Arc::new(Mutex::new(Vec::new()));
        let log = SessionLog::new(Stalled {
            open: Arc::clone(&open),
            into: Arc::clone(&into),
        })
        .in_background()
        .unwrap();
        let request = request("pxelinux.0");
        let extra = 100;
        let total = BackgroundLog::QUEUE + extra;
        // Every record returns at once though nothing is written: the callback runs on an
        // event loop, which must go on serving.
        let (sent, recorded) = mpsc::channel();
        thread::spawn(move || {
            let t0 = Instant::now();
            for i in 0..total {
                let mut stats = tftp_proto::SessionStats::new(Instant::now());
                stats.outcome = Some(tftp_proto::Outcome::Completed);
                stats.bytes = i as u64;
                log.record(&SessionReport::new(&request, stats));
            }
            let _ = sent.send((log, t0.elapsed()));
        });
        let (log, took) = recorded
            .recv_timeout(Duration::from_secs(10))
            .expect("record blocked on a log that takes no lines");
        assert!(took < Duration::from_secs(5), "record waited: {took:?}");
        // The queue holds QUEUE lines, the writer one more (blocked in its write).
        let dropped = log.dropped();
        assert!(
            (extra as u64 - 1..=extra as u64).contains(&dropped),
            "{dropped} dropped"
        );
        assert!(into.lock().unwrap().is_empty());
        // The reader comes back: what was queued is written, in order, before the drop ends.
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        drop(log);
        let text = String::from_utf8(into.lock().unwrap().clone()).unwrap();
        let bytes: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["bytes"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(bytes.len() as u64, total as u64 - dropped);
        assert!(bytes.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(bytes[0], 0);
    }

    #[test]
    fn a_background_log_writes_every_line_it_took() {
        let into = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new((Mutex::new(true), std::sync::Condvar::new()));
        let log = SessionLog::new(Stalled {
            open,
            into: Arc::clone(&into),
        })
        .in_background()
        .unwrap();
        let request = request("boot.ipxe");
        for _ in 0..10 {
            log.record(&SessionReport::refused(
                &request,
                &HandlerError::not_found(),
                Instant::now(),
            ));
        }
        assert_eq!(log.dropped(), 0);
        drop(log);
        let text = String::from_utf8(into.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 10);
        assert!(text.lines().all(|l| l.contains("\"boot.ipxe\"")));
    }

    fn request(file: &str) -> Request {
        Request::new(
            IncomingRequest {
                peer: "10.0.0.7:2000".parse().unwrap(),
                kind: RequestKind::Read,
                filename: file.into(),
                mode: Mode::Octet,
                options: OptionValues {
                    tsize: Some(0),
                    ..OptionValues::default()
                },
            },
            "10.0.0.1:69".parse().unwrap(),
            OptionLimits::default(),
        )
    }

    #[test]
    fn one_json_object_per_line() {
        let request = request("pxelinux.0");
        let log = SessionLog::new(Vec::new());
        log.record(&SessionReport::refused(
            &request,
            &HandlerError::not_found(),
            Instant::now(),
        ));
        let mut ok = tftp_proto::SessionStats::new(Instant::now());
        ok.outcome = Some(tftp_proto::Outcome::Completed);
        ok.bytes = 42;
        log.record(&SessionReport::new(&request, ok.clone()));
        ok.outcome = None;
        log.record(&SessionReport::new(&request, ok));
        let text = String::from_utf8(log.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["outcome"], "refused");
        assert_eq!(lines[0]["error"]["code"], 1);
        assert_eq!(lines[0]["error"]["message"], "File not found");
        assert_eq!(lines[1]["outcome"], "completed");
        assert_eq!(lines[1]["bytes"], 42);
        assert_eq!(lines[1]["peer"], "10.0.0.7:2000");
        assert_eq!(lines[1]["requested"]["tsize"], 0);
        assert!(lines[1].get("error").is_none());
        assert_eq!(lines[2]["outcome"], "failed", "undecided is not a success");
        assert_eq!(lines[2]["error"]["message"], "ended without an outcome");
        assert!(lines[2]["error"]["code"].is_null());
    }
}
