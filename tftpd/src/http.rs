//! Files streamed from an HTTP(S) origin, fbtftp's production use: kernels and images live in
//! an HTTP repository, not in the TFTP root.

use std::sync::Arc;
use std::time::Duration;

use tftp_proto::ErrorCode;
use tftp_server::{HandlerError, Request};
use tftp_tokio::{Handler, ReadResponse};

use crate::origin_cache::{Cache, CacheOptions};

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

/// Which redirects of the origin are followed.
///
/// Following any redirect (reqwest's default: 10 hops to any host) turns an open redirect on
/// the origin into server-side request forgery: tftpd would fetch, and serve to any TFTP
/// client, whatever URL the redirect names (an internal service, a cloud metadata endpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OriginRedirects {
    /// Only to the same origin as the base URL (same scheme, host and port), at most
    /// [`MAX_REDIRECTS`] hops. The default.
    #[default]
    SameOrigin,
    /// None: a redirect is an error.
    None,
}

/// Hops followed at most with [`OriginRedirects::SameOrigin`].
pub const MAX_REDIRECTS: usize = 5;

/// The error a refused redirect fails with (shown in logs; the client gets "Origin redirect
/// refused").
#[derive(Debug)]
struct RedirectRefused(String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// Same scheme, host and port (RFC 6454 §4), default ports made explicit.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn redirect_policy(base: &reqwest::Url, redirects: OriginRedirects) -> reqwest::redirect::Policy {
    match redirects {
        OriginRedirects::None => reqwest::redirect::Policy::none(),
        OriginRedirects::SameOrigin => {
            let base = base.clone();
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    let error = RedirectRefused(format!("more than {MAX_REDIRECTS} redirects"));
                    attempt.error(error)
                } else if !same_origin(&base, attempt.url()) {
                    let error =
                        RedirectRefused(format!("redirect to another origin: {}", attempt.url()));
                    attempt.error(error)
                } else {
                    attempt.follow()
                }
            })
        }
    }
}

/// The client's error for a request that failed before a status: a refused redirect, a
/// timeout, or the origin unreachable.
pub(crate) fn request_error(e: &reqwest::Error) -> HandlerError {
    if e.is_redirect() {
        HandlerError::new(ErrorCode::NOT_DEFINED, "Origin redirect refused")
    } else if e.is_timeout() {
        HandlerError::new(ErrorCode::NOT_DEFINED, "Origin timed out")
    } else {
        HandlerError::new(ErrorCode::NOT_DEFINED, "Origin unavailable")
    }
}

/// Answers a read request for `path` by streaming `BASE/path` from an HTTP(S) origin.
///
/// - `tsize` comes from `Content-Length` when the origin sends one;
/// - one fetch serves every session reading the same file meanwhile, and with
///   [`HttpOrigin::with_cache`] a bounded local cache keeps the files (see
///   [`CacheOptions`]); memory per transfer is bounded: the body goes to a file on disk,
///   which each session reads at its own pace, one chunk at a time;
/// - one connection pool is shared by all sessions (keep-alive);
/// - 404 and 410 become "File not found", 401 and 403 "Access violation", other statuses and
///   connection failures a clear ERROR 0 ("Origin error (HTTP 500)", "Origin unavailable");
/// - a body that ends early or breaks mid-transfer aborts the TFTP transfer with an ERROR:
///   the client never gets a silently truncated file;
/// - redirects are followed only to the same origin by default (see [`OriginRedirects`]); a
///   refused one is "Origin redirect refused";
/// - file names are normalised as for a directory (`\` separates, `..` is refused) and each
///   component is percent-encoded.
///
/// Chain it after a local root with [`crate::Fallback`] (`tftpd --root DIR --http-origin URL`).
#[derive(Debug, Clone)]
pub struct HttpOrigin {
    client: reqwest::Client,
    base: String,
    cache: Arc<Cache>,
}

impl HttpOrigin {
    /// An origin at `base` (`http://` or `https://`, with or without a path prefix),
    /// following redirects to the same origin only.
    pub fn new(base: &str, timeouts: OriginTimeouts) -> Result<Self, String> {
        Self::with_redirects(base, timeouts, OriginRedirects::default())
    }

    /// An origin at `base` that follows `redirects`.
    pub fn with_redirects(
        base: &str,
        timeouts: OriginTimeouts,
        redirects: OriginRedirects,
    ) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(base).map_err(|e| format!("{base}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(format!("{base}: not an http:// or https:// URL"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .pool_max_idle_per_host(64)
            .redirect(redirect_policy(&parsed, redirects))
            .user_agent(concat!("tftpd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpOrigin {
            client,
            base: base.trim_end_matches('/').to_string(),
            cache: Cache::open(&CacheOptions::default())?,
        })
    }

    /// Keep the origin's files in a bounded local cache (see [`CacheOptions`]); without,
    /// reads of the same file in flight still share one fetch.
    pub fn with_cache(mut self, options: &CacheOptions) -> Result<Self, String> {
        self.cache = Cache::open(options)?;
        Ok(self)
    }

    fn url(&self, filename: &str) -> Result<String, HandlerError> {
        let components = tftp_server::fs::normalize(filename)?;
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
        self.cache.read(&self.client, url).await
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

    #[test]
    fn same_origin_is_scheme_host_and_port() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let base = url("http://origin.example/tftp/");
        assert!(same_origin(&base, &url("http://origin.example:80/other?x")));
        assert!(same_origin(&base, &url("HTTP://ORIGIN.example/")));
        for other in [
            "https://origin.example/tftp/",
            "http://origin.example:8080/tftp/",
            "http://other.example/tftp/",
            "http://origin.example.evil/tftp/",
            "http://127.0.0.1/tftp/",
        ] {
            assert!(!same_origin(&base, &url(other)), "{other}");
        }
    }
}
