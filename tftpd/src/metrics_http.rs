//! The `tftpd --metrics` endpoint: a deliberately small HTTP/1.x responder for Prometheus
//! scrapes, bounded against hostile clients.
//!
//! The exporter's own listener had no connection cap and no header deadline: 20,000 idle
//! connections took every descriptor (TFTP clients then got "Server busy"), and its accept loop
//! spun on `EMFILE`, logging millions of warnings. This one:
//!
//! - holds at most [`Limits::max_connections`] connections; one more is accepted and closed at
//!   once (after a best-effort `503`), so a flood costs no descriptors beyond the cap;
//! - gives a client [`Limits::header_timeout`] to send its whole request head, of at most
//!   [`Limits::max_header_bytes`] (`431` beyond), and [`Limits::write_timeout`] to take the
//!   answer;
//! - answers `GET` and `HEAD` of `/metrics` only (`404` for other paths, `405` for other
//!   methods), one request per connection (`Connection: close`, RFC 9112 §9.6);
//! - when `accept` fails (`EMFILE`, `ENFILE`, `ENOBUFS`: the pending connection stays queued,
//!   so retrying at once fails again at once) pauses 100 ms, doubling up to 1 s, and logs at
//!   most one warning per 10 s, with the number of failures it did not log.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Bounds of the metrics endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time a client gets from connecting to the end of its request head.
    pub header_timeout: Duration,
    /// Largest request head (request line and header fields).
    pub max_header_bytes: usize,
    /// Time a client gets to take the whole answer.
    pub write_timeout: Duration,
}

impl Default for Limits {
    /// 32 connections, 5 s for the request head, 8 KiB of it, 10 s for the answer: a
    /// Prometheus scrape needs one connection and a few hundred bytes of request.
    fn default() -> Self {
        Limits {
            max_connections: 32,
            header_timeout: Duration::from_secs(5),
            max_header_bytes: 8 * 1024,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// The Prometheus text format's media type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answer to a connection over the cap (written only if the socket takes it at once).
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Serve `render()` (the Prometheus text, e.g. `PrometheusHandle::render`) at `/metrics` on
/// `listener`, within `limits`, until the future is dropped.
///
/// Each connection runs on its own task; `render` is called once per `GET` or `HEAD` of
/// `/metrics`. Errors never end the loop: a failing `accept` is retried with backoff (see the
/// module documentation), a misbehaving client only loses its own connection.
pub async fn serve<F>(listener: TcpListener, limits: Limits, render: F)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    let mut accept_warning = Throttle::new(Duration::from_secs(10));
    let mut busy_warning = Throttle::new(Duration::from_secs(10));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff.reset();
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(permit) => {
                        let render = Arc::clone(&render);
                        tokio::spawn(async move {
                            connection(stream, limits, &*render).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        // Never wait on this socket: answer if it takes the bytes now, close.
                        let _ = stream.try_write(BUSY);
                        if let Some(suppressed) = busy_warning.allow(Instant::now()) {
                            tracing::warn!(
                                %peer,
                                max = limits.max_connections,
                                suppressed,
                                "metrics endpoint at its connection cap; closing new connections"
                            );
                        }
                    }
                }
            }
            Err(error) => {
                let pause = backoff.next_pause();
                if let Some(suppressed) = accept_warning.allow(Instant::now()) {
                    tracing::warn!(
                        %error,
                        suppressed,
                        retry_in = ?pause,
                        "metrics endpoint cannot accept connections"
                    );
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// One connection: read the head within the deadline, answer, close.
async fn connection(mut stream: TcpStream, limits: Limits, render: &(dyn Fn() -> String + Sync)) {
    let head = tokio::time::timeout(
        limits.header_timeout,
        read_head(&mut stream, limits.max_header_bytes),
    )
    .await;
    let response = match head {
        // The deadline passed or the client went away: nothing to answer.
        Err(_) | Ok(Err(_)) | Ok(Ok(Head::Closed)) => return,
        Ok(Ok(Head::TooLarge)) => response(431, "Request Header Fields Too Large", &[], "", false),
        Ok(Ok(Head::Complete(head))) => answer(&head, render),
    };
    let _ = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&response).await?;
        stream.shutdown().await?;
        // Take what the client still sends (a request body) for a moment, so that closing
        // with unread data does not reset the connection before it reads the answer.
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

/// What a client sent before its request head ended.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The request line and header fields, up to the blank line.
    Complete(Vec<u8>),
    /// Longer than allowed without ending.
    TooLarge,
    /// The connection ended first.
    Closed,
}

/// Read until the blank line that ends a request head (RFC 9112 §2.1; a bare LF is accepted as
/// a line terminator, §2.2), reading at most `max` bytes.
async fn read_head(stream: &mut TcpStream, max: usize) -> io::Result<Head> {
    let mut buf = vec![0u8; max];
    let mut len = 0;
    loop {
        if len == max {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        let from = len.saturating_sub(3);
        len += n;
        if let Some(end) = head_end(&buf[from..len]) {
            buf.truncate(from + end);
            return Ok(Head::Complete(buf));
        }
    }
}

/// Where the head in `bytes` ends (after its blank line), if it does.
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        let rest = &bytes[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// The answer to a complete request head.
fn answer(head: &[u8], render: &(dyn Fn() -> String + Sync)) -> Vec<u8> {
    let Some(line) = head
        .split(|&b| b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
    else {
        return response(400, "Bad Request", &[], "", false);
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response(400, "Bad Request", &[], "", false);
    };
    if !version.starts_with("HTTP/") || method.is_empty() || target.is_empty() {
        return response(400, "Bad Request", &[], "", false);
    }
    if !version.starts_with("HTTP/1.") {
        return response(505, "HTTP Version Not Supported", &[], "", false);
    }
    // Origin form (`/metrics?x`) or absolute form (`http://host/metrics`, RFC 9112 §3.2.2).
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    if path != "/metrics" {
        return response(404, "Not Found", &[], "", false);
    }
    match method {
        "GET" => response(
            200,
            "OK",
            &[("Content-Type", CONTENT_TYPE)],
            &render(),
            false,
        ),
        "HEAD" => response(
            200,
            "OK",
            &[("Content-Type", CONTENT_TYPE)],
            &render(),
            true,
        ),
        _ => response(
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            "",
            false,
        ),
    }
}

/// An HTTP/1.1 response that closes the connection; `head_only` leaves the body out but keeps
/// its length (RFC 9110 §9.3.2).
fn response(
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &str,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

/// Exponential backoff between failed `accept`s.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The pause before the next try; doubles each time, up to the maximum.
    fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(self.max);
        pause
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// At most one event let through per period.
#[derive(Debug)]
struct Throttle {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn new(period: Duration) -> Self {
        Throttle {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log at `now`: `Some(events held back since the last one logged)`, or `None`
    /// (counted).
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn requests_are_routed() {
        let render = || "tftp_x 1\n".to_string();
        let ok = text(answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &render));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 9\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\ntftp_x 1\n"), "{ok}");
        let head = text(answer(b"HEAD /metrics?a=b HTTP/1.0\r\n\r\n", &render));
        assert!(head.contains("Content-Length: 9\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let absolute = text(answer(b"GET http://h:1/metrics HTTP/1.1\r\n\r\n", &render));
        assert!(absolute.starts_with("HTTP/1.1 200"), "{absolute}");
        for (request, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
            (b"GET /metrics/x HTTP/1.1\r\n\r\n", "404"),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "405"),
            (b"DELETE /other HTTP/1.1\r\n\r\n", "404"),
            (b"GET /metrics HTTP/2.0\r\n\r\n", "505"),
            (b"GET /metrics\r\n\r\n", "400"),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", "400"),
            (b"\xff\xfe\r\n\r\n", "400"),
            (b"\r\n\r\n", "400"),
        ] {
            let out = text(answer(request, &render));
            assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
            assert!(out.contains("Connection: close\r\n"), "{out}");
        }
    }

    #[test]
    fn the_head_ends_at_a_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let pauses: Vec<u64> = (0..6).map(|_| b.next_pause().as_millis() as u64).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_millis(100));
    }

    #[test]
    fn warnings_are_throttled_with_a_count() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.allow(t0), Some(0));
        for i in 1..1000 {
            assert_eq!(t.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(999));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
    }
}
