//! What the client libraries share: errors, helpers, and the async adapters' client.

use std::io;
#[cfg(feature = "async")]
use std::net::SocketAddr;
use std::sync::Arc;

#[cfg(feature = "async")]
use tftp_proto::{ClientSession, Event, Mode, OptionValues, SessionStats};
use tftp_proto::{Config, TransferError, TransferOptions};

#[cfg(feature = "async")]
use crate::drive::{Drive, drive};
#[cfg(feature = "async")]
use crate::handler::{IntoReader, IntoWriter};
#[cfg(feature = "async")]
use crate::runtime::{AsyncUdp, Data, Io, NoData, Runtime, Transport};

/// Why a client transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The transfer failed: the server's ERROR, a timeout, a protocol violation.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// A local I/O error: the socket, or the reader/writer the caller passed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The request could not be encoded (a NUL byte in the file name).
    #[error("invalid request: {0}")]
    Request(#[from] tftp_proto::EncodeError),
}

/// The local address a client binds to reach `server`: the unspecified address of its family,
/// any port.
pub fn local_addr(server: std::net::SocketAddr) -> std::net::SocketAddr {
    match server {
        std::net::SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A finished client transfer as a `Result`.
///
/// Statistics without an outcome (the session stopped before deciding one, which a
/// [`ClientSession`] driven to its end never does) are an error: [`TransferError::Local`] with
/// code 0 and the message [`NO_OUTCOME`], as for a transfer ended on this side.
pub fn into_result(
    stats: tftp_proto::SessionStats,
) -> Result<tftp_proto::SessionStats, ClientError> {
    match stats.outcome {
        Some(tftp_proto::Outcome::Failed(e)) => Err(e.into()),
        Some(tftp_proto::Outcome::Completed | tftp_proto::Outcome::SizeProbe) => Ok(stats),
        None => Err(TransferError::Local {
            code: tftp_proto::ErrorCode::NOT_DEFINED,
            message: NO_OUTCOME.into(),
        }
        .into()),
    }
}

/// The message of the error [`into_result`] makes of statistics without an outcome.
pub const NO_OUTCOME: &str = "transfer ended without an outcome";

/// Called once the transfer parameters are known.
pub type NegotiatedCallback = Arc<dyn Fn(&TransferOptions) + Send + Sync>;

/// A client's configuration and negotiation callback, shared by every adapter's client (the
/// async adapters' [`Client`] drives its transfers with them).
#[derive(Clone, Default)]
pub struct ClientCore {
    /// Timeouts, retries, rollover, size limit.
    pub config: Config,
    /// See [`ClientCore::on_negotiated`].
    pub on_negotiated: Option<NegotiatedCallback>,
}

impl std::fmt::Debug for ClientCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Client");
        d.field("config", &self.config).finish_non_exhaustive()
    }
}

impl ClientCore {
    /// A client with `config`.
    pub fn new(config: Config) -> Self {
        let on_negotiated = None;
        ClientCore {
            config,
            on_negotiated,
        }
    }

    /// Call `f` once the transfer parameters are known (e.g. `tsize`, for a progress bar).
    pub fn on_negotiated(mut self, f: impl Fn(&TransferOptions) + Send + Sync + 'static) -> Self {
        self.on_negotiated = Some(Arc::new(f));
        self
    }
}

#[cfg(feature = "async")]
impl ClientCore {
    /// Drive `session` on a socket of its own until its outcome is known; then let it dally
    /// in the background (re-acknowledge a repeated last block, RFC 1350 §6) if `rt` can
    /// spawn.
    async fn run<R: Runtime>(
        &self,
        rt: &R,
        mut session: ClientSession,
        data: impl Data,
    ) -> Result<SessionStats, ClientError> {
        let socket = std::net::UdpSocket::bind(local_addr(session.peer()))?;
        socket.set_nonblocking(true)?;
        let transport = Transport::Socket(R::Socket::from_std(socket)?);
        let (rt, data, complete, kill) = (rt.clone(), Some(data), None, None);
        let mut io = Io {
            rt,
            transport,
            data,
            complete,
            kill,
            kill_listener: None,
            gone: None,
            gone_listener: None,
            timer: None,
        };
        let how = Drive {
            until_finished: true,
            full_buffer: true,
            ..Drive::default()
        };
        let stats = drive(&mut session, &mut io, how, |event| {
            if let (Event::Negotiated(o), Some(f)) = (event, &self.on_negotiated) {
                f(o);
            }
        })
        .await
        .unwrap_or_else(|| session.stats().clone());
        if !session.is_closed() {
            let (rt, transport) = (io.rt, io.transport);
            let mut io = Io::<R, NoData> {
                rt: rt.clone(),
                transport,
                data: None,
                complete: None,
                kill: None,
                kill_listener: None,
                gone: None,
                gone_listener: None,
                timer: None,
            };
            let how = Drive {
                full_buffer: true,
                ..Drive::default()
            };
            rt.spawn(async move {
                drive(&mut session, &mut io, how, |_| {}).await;
            });
        }
        into_result(stats)
    }
}

#[cfg(feature = "async")]
pub use facade::Client;

#[cfg(feature = "async")]
mod facade {
    use super::*;

    /// A TFTP client on runtime `R`: the async adapters name it `Client` with their runtime
    /// filled in.
    ///
    /// A transfer returns as soon as its outcome is known. After the last ACK of a download it
    /// keeps answering a repeated last block for a while (dallying, RFC 1350 §6) in a background
    /// task of its own ([`Runtime::client`]).
    pub struct Client<R> {
        core: ClientCore,
        runtime: std::marker::PhantomData<fn() -> R>,
    }

    impl<R> Clone for Client<R> {
        fn clone(&self) -> Self {
            Client {
                core: self.core.clone(),
                runtime: std::marker::PhantomData,
            }
        }
    }

    impl<R> Default for Client<R> {
        fn default() -> Self {
            Client::with_config(Config::default())
        }
    }

    impl<R> std::fmt::Debug for Client<R> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.core.fmt(f)
        }
    }

    impl<R> Client<R> {
        /// A client with the default configuration.
        pub fn new() -> Self {
            Self::default()
        }

        /// A client with `config` (timeouts, retries, rollover, size limit).
        pub fn with_config(config: Config) -> Self {
            Client {
                core: ClientCore::new(config),
                runtime: std::marker::PhantomData,
            }
        }

        /// Call `f` once the transfer parameters are known (e.g. `tsize`, for a progress bar).
        pub fn on_negotiated(self, f: impl Fn(&TransferOptions) + Send + Sync + 'static) -> Self {
            Client {
                core: self.core.on_negotiated(f),
                runtime: std::marker::PhantomData,
            }
        }
    }

    impl<R: Runtime> Client<R> {
        /// Read `filename` from `server` into `dest` (an `AsyncWrite` of the runtime's I/O
        /// traits, [`Runtime::IoTraits`]; flushed, not closed). Ask for `tsize: Some(0)` to learn the size.
        pub async fn get<'a>(
            &self,
            server: SocketAddr,
            filename: &str,
            mode: Mode,
            options: OptionValues,
            dest: impl IntoWriter<'a, R::IoTraits>,
        ) -> Result<SessionStats, ClientError> {
            let (rt, config) = (R::client(), &self.core.config);
            let session = ClientSession::get(server, filename, mode, options, config, rt.now())?;
            let dest = crate::handler::Data::Sink(dest.into_writer(), false);
            self.core.run(&rt, session, dest).await
        }

        /// Write `source` to `server` as `filename` (an `AsyncRead` of the runtime's I/O traits,
        /// [`Runtime::IoTraits`]). Set `tsize` to the size if known.
        pub async fn put<'a>(
            &self,
            server: SocketAddr,
            filename: &str,
            mode: Mode,
            options: OptionValues,
            source: impl IntoReader<'a, R::IoTraits>,
        ) -> Result<SessionStats, ClientError> {
            let (rt, config) = (R::client(), &self.core.config);
            let session = ClientSession::put(server, filename, mode, options, config, rt.now())?;
            let source = crate::handler::Data::Source(source.into_reader());
            self.core.run(&rt, session, source).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tftp_proto::{Outcome, SessionStats};

    #[test]
    fn into_result_needs_a_successful_outcome() {
        let now = std::time::Instant::now();
        let mut stats = SessionStats::new(now);
        match into_result(stats.clone()) {
            Err(ClientError::Transfer(TransferError::Local { code, message })) => {
                assert_eq!(code, tftp_proto::ErrorCode::NOT_DEFINED);
                assert_eq!(message, NO_OUTCOME);
            }
            other => panic!("undecided: {other:?}"),
        }
        stats.outcome = Some(Outcome::Failed(TransferError::TimedOut { retries: 5 }));
        assert!(matches!(
            into_result(stats.clone()),
            Err(ClientError::Transfer(TransferError::TimedOut {
                retries: 5
            }))
        ));
        for outcome in [Outcome::Completed, Outcome::SizeProbe] {
            stats.outcome = Some(outcome.clone());
            assert_eq!(
                into_result(stats.clone()).ok().and_then(|s| s.outcome),
                Some(outcome)
            );
        }
    }
}
