//! Allowing and denying clients by network (`tftpd --allow CIDR --deny CIDR`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tftp_server::request::Printable;
use tftp_server::{HandlerError, Request};
use tftp_tokio::{Handler, ReadResponse, WriteResponse};
use tftpd_cli::canonical;
pub use tftpd_cli::parse_net;

use crate::log_limit::LogLimit;

/// Which client addresses may use the server: none of `deny`, and one of `allow` if any is
/// given. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, as a dual-stack listener sees IPv4
/// clients) are matched as the IPv4 address, against IPv4 networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

/// Why a client was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// It is in this `--deny` network.
    Denied(IpNet),
    /// `--allow` networks are given and it is in none of them.
    NotAllowed,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::Denied(net) => write!(f, "in denied network {net}"),
            Denial::NotAllowed => f.write_str("not in any allowed network"),
        }
    }
}

impl ClientFilter {
    /// Clients in one of `allow` (all, if it is empty) and in none of `deny`.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        ClientFilter {
            allow: allow.into_iter().map(canonical).collect(),
            deny: deny.into_iter().map(canonical).collect(),
        }
    }

    /// Whether the filter lets every client through.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `ip` may use the server. Deny wins over allow.
    pub fn check(&self, ip: IpAddr) -> Result<(), Denial> {
        let ip = ip.to_canonical();
        if let Some(net) = self.deny.iter().find(|n| n.contains(&ip)) {
            return Err(Denial::Denied(*net));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return Err(Denial::NotAllowed);
        }
        Ok(())
    }
}

/// A handler that refuses the requests of clients a [`ClientFilter`] turns away, with ERROR 2
/// "Access violation", before `inner` sees them. (A handler cannot leave a request
/// unanswered: the answer is an ERROR and the request counts as refused in the statistics and
/// the session log.) Each refusal is logged at info level with its reason, at most 20 lines a
/// second.
#[derive(Debug, Clone)]
pub struct Access<H> {
    filter: Arc<ClientFilter>,
    inner: H,
    log: Arc<LogLimit>,
}

impl<H> Access<H> {
    /// `inner` behind `filter`.
    pub fn new(filter: ClientFilter, inner: H) -> Self {
        Access {
            filter: Arc::new(filter),
            inner,
            log: Arc::new(LogLimit::new(20)),
        }
    }

    fn check(&self, request: &Request) -> Result<(), HandlerError> {
        self.filter.check(request.peer.ip()).map_err(|denial| {
            if let Some(suppressed) = self.log.allow() {
                tracing::info!(
                    peer = %request.peer,
                    file = %Printable(&request.filename),
                    reason = %denial,
                    suppressed,
                    "client refused"
                );
            }
            HandlerError::access_violation()
        })
    }
}

impl<H: Handler> Handler for Access<H> {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        self.check(request)?;
        self.inner.read(request).await
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        self.check(request)?;
        self.inner.write(request).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| parse_net(s).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_wins_and_allow_closes_the_rest() {
        let f = ClientFilter::new(
            nets(&["10.0.0.0/8", "2001:db8::/32"]),
            nets(&["10.9.0.0/16"]),
        );
        assert_eq!(f.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(f.check(ip("::ffff:10.1.2.3")), Ok(()));
        assert_eq!(f.check(ip("2001:db8::7")), Ok(()));
        assert_eq!(
            f.check(ip("10.9.1.1")),
            Err(Denial::Denied(parse_net("10.9.0.0/16").unwrap()))
        );
        assert_eq!(
            f.check(ip("::ffff:10.9.1.1")),
            Err(Denial::Denied(parse_net("10.9.0.0/16").unwrap()))
        );
        assert_eq!(f.check(ip("192.0.2.1")), Err(Denial::NotAllowed));
        assert_eq!(f.check(ip("2001:db9::1")), Err(Denial::NotAllowed));
        let deny_only = ClientFilter::new(vec![], nets(&["192.0.2.7", "::ffff:198.51.100.0/120"]));
        assert!(deny_only.check(ip("192.0.2.7")).is_err());
        assert!(deny_only.check(ip("198.51.100.9")).is_err());
        assert_eq!(deny_only.check(ip("192.0.2.8")), Ok(()));
        assert!(ClientFilter::default().is_open());
    }

    #[test]
    fn networks_parse() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_net("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("nonsense").is_err());
    }
}
