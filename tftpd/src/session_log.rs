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

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tftp_proto::{Outcome, RequestKind, TransferError};

use tftp_server::SessionReport;

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

    /// Append the line for `report`. Write errors are logged and otherwise ignored: the log
    /// must never stop the server.
    pub fn record(&self, report: &SessionReport) {
        let mut line = line(report, SystemTime::now());
        line.remapped = self
            .remaps
            .as_ref()
            .and_then(|notes| notes.take(report.peer, &report.filename));
        let Ok(mut json) = serde_json::to_vec(&line) else {
            return;
        };
        json.push(b'\n');
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
    use std::time::Instant;
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

    #[test]
    fn one_json_object_per_line() {
        let request = Request::new(
            IncomingRequest {
                peer: "10.0.0.7:2000".parse().unwrap(),
                kind: RequestKind::Read,
                filename: "pxelinux.0".into(),
                mode: Mode::Octet,
                options: OptionValues {
                    tsize: Some(0),
                    ..OptionValues::default()
                },
            },
            "10.0.0.1:69".parse().unwrap(),
            OptionLimits::default(),
        );
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
