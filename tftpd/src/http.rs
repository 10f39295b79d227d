//! Files streamed from an HTTP(S) origin, fbtftp's production use: kernels and images live in
//! an HTTP repository, not in the TFTP root.

use std::io;
use std::time::Duration;

use futures_util::TryStreamExt;
use tftp_common::{HandlerError, Request};
use tftp_proto::ErrorCode;
use tftp_tokio::{Handler, ReadResponse};
use tokio_util::io::StreamReader;

/// Timeouts towards the origin.
#[derive(Debug, Clone, Copy)]
pub struct OriginTimeouts {
    /// To establish a connection (TCP and TLS).
    pub connect: Duration,
    /// For the response headers, and between two chunks of the body.
    pub read: Duration,
}

impl Default for OriginTimeouts {
    fn default() -> Self {
        OriginTimeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(10),
        }
    }
}

/// Answers a read request for `path` by streaming `BASE/path` from an HTTP(S) origin.
///
/// - `tsize` comes from `Content-Length` when the origin sends one;
/// - memory per transfer is bounded: the body is streamed, one chunk at a time, never
///   buffered whole;
/// - one connection pool is shared by all sessions (keep-alive);
/// - 404 and 410 become "File not found", 401 and 403 "Access violation", other statuses and
///   connection failures a clear ERROR 0 ("Origin error (HTTP 500)", "Origin unavailable");
/// - a body that ends early or breaks mid-transfer aborts the TFTP transfer with an ERROR:
///   the client never gets a silently truncated file;
/// - file names are normalised as for a directory (`\` separates, `..` is refused) and each
///   component is percent-encoded.
///
/// Chain it after a local root with [`crate::Fallback`] (`tftpd --root DIR --http-origin URL`).
#[derive(Debug, Clone)]
pub struct HttpOrigin {
    client: reqwest::Client,
    base: String,
}

impl HttpOrigin {
    /// An origin at `base` (`http://` or `https://`, with or without a path prefix).
    pub fn new(base: &str, timeouts: OriginTimeouts) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(base).map_err(|e| format!("{base}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(format!("{base}: not an http:// or https:// URL"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .pool_max_idle_per_host(64)
            .user_agent(concat!("tftpd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpOrigin {
            client,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    fn url(&self, filename: &str) -> Result<String, HandlerError> {
        let components = tftp_common::fs::normalize(filename)?;
        let mut url = self.base.clone();
        for c in components {
            url.push('/');
            url.extend(c.bytes().map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            }));
        }
        Ok(url)
    }

    /// Whether the origin has the file `request` names, asked with a `HEAD` (no body is
    /// transferred): 200 is yes, 404 and 410 are no. Anything else (another status, a
    /// connection failure, a timeout) is an ERROR 0 "Cannot check the origin": a caller that
    /// must not shadow the origin's files ([`crate::NoShadow`]) then refuses, failing closed.
    pub async fn exists(&self, request: &Request) -> Result<bool, HandlerError> {
        let url = self.url(&request.filename)?;
        let response = self.client.head(&url).send().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "origin check failed");
            HandlerError::new(ErrorCode::NOT_DEFINED, "Cannot check the origin")
        })?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 | 410 => Ok(false),
            code => {
                tracing::warn!(%url, code, "origin check failed");
                Err(HandlerError::new(
                    ErrorCode::NOT_DEFINED,
                    format!("Cannot check the origin (HTTP {code})"),
                ))
            }
        }
    }
}

impl Handler for HttpOrigin {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let url = self.url(&request.filename)?;
        let response = self.client.get(&url).send().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "origin request failed");
            if e.is_timeout() {
                HandlerError::new(ErrorCode::NOT_DEFINED, "Origin timed out")
            } else {
                HandlerError::new(ErrorCode::NOT_DEFINED, "Origin unavailable")
            }
        })?;
        let status = response.status();
        match status.as_u16() {
            200 => {}
            404 | 410 => return Err(HandlerError::not_found()),
            401 | 403 => return Err(HandlerError::access_violation()),
            code => {
                tracing::warn!(%url, code, "origin error");
                return Err(HandlerError::new(
                    ErrorCode::NOT_DEFINED,
                    format!("Origin error (HTTP {code})"),
                ));
            }
        }
        let size = response.content_length();
        let body = response.bytes_stream().map_err(|e| {
            tracing::warn!(error = %e, "origin body failed");
            io::Error::other(HandlerError::new(
                ErrorCode::NOT_DEFINED,
                "Origin transfer failed",
            ))
        });
        Ok(ReadResponse::new(StreamReader::new(body), size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_encoded() {
        let o = HttpOrigin::new("http://origin.example/tftp/", OriginTimeouts::default()).unwrap();
        assert_eq!(
            o.url("/boot\\x86 64/pxelinux.0").unwrap(),
            "http://origin.example/tftp/boot/x86%2064/pxelinux.0"
        );
        assert_eq!(
            o.url("a?b#c").unwrap(),
            "http://origin.example/tftp/a%3Fb%23c"
        );
        assert_eq!(
            o.url("../etc/passwd").unwrap_err().code,
            ErrorCode::ACCESS_VIOLATION
        );
        assert!(HttpOrigin::new("ftp://x/", OriginTimeouts::default()).is_err());
        assert!(HttpOrigin::new("not a url", OriginTimeouts::default()).is_err());
    }
}
