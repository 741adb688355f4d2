//! What runs on a connection before it is served: nothing (TCP, Unix), a
//! TLS handshake, or a WebSocket upgrade. Each yields a byte stream that
//! the one connection loop serves exactly as it serves a `TcpStream`; a
//! handshake that fails is counted and logged here and the connection never
//! reaches the handler.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use crate::stats::Counters;
use crate::{AddrError, Error};

/// A byte stream of any transport, boxed so the connection loop is compiled
/// once for all of them (what a vtable call per read costs is nothing next
/// to TLS's crypto or WebSocket's masking): the same type as the one a
/// custom [`Accept`](enchufe_engine::net::Accept) or
/// [`Connect`](enchufe_engine::net::Connect) yields.
pub(crate) use enchufe_engine::net::BoxIo;

/// What an accepted connection goes through before it is served.
#[derive(Debug, Clone)]
pub(crate) enum Layer {
    Plain,
    #[cfg(feature = "tls")]
    Tls(crate::tls::Acceptor),
    /// TLS for a connection whose first byte starts a TLS handshake, none
    /// for the others ([`Server::tls_or_plain`](crate::Server::tls_or_plain)).
    #[cfg(feature = "tls")]
    TlsOrPlain(crate::tls::Acceptor),
    #[cfg(feature = "ws")]
    Ws(Arc<crate::ws::Options>),
}

/// The first byte of a TLS connection: a handshake record (its ClientHello).
/// As a frame's first byte it would declare over 352 MiB, far past any
/// frame limit a server that also speaks TLS would set; no HTTP method
/// starts with it.
#[cfg(feature = "tls")]
const TLS_HANDSHAKE: u8 = 0x16;

/// A connection after its layer's handshake.
pub(crate) enum Layered<S> {
    /// No layer: the stream as accepted.
    Plain(S),
    /// Wrapped (TLS, WebSocket).
    #[cfg_attr(not(any(feature = "tls", feature = "ws")), allow(dead_code))]
    Boxed(BoxIo),
    /// The handshake failed (counted and logged), or it served what it had
    /// to serve (the WebSocket listener's page): nothing more to do.
    #[cfg_attr(not(any(feature = "tls", feature = "ws")), allow(dead_code))]
    Gone,
}

/// What the handshakes need from the server.
#[cfg_attr(not(all(feature = "tls", feature = "ws")), allow(dead_code))]
pub(crate) struct Context<'a> {
    pub(crate) counters: &'a Counters,
    pub(crate) deadline: Duration,
    pub(crate) max_frame_length: usize,
    /// [`Config::frame_timeout`](crate::Config::frame_timeout), which also
    /// bounds a WebSocket message's completion.
    pub(crate) frame_timeout: Option<Duration>,
    /// How long a connection may stay silent before it is taken for plain
    /// ([`Layer::TlsOrPlain`]): [`Config::detect_timeout`](crate::Config::detect_timeout),
    /// or the handshake deadline where that is `None`.
    pub(crate) detect: Duration,
    pub(crate) shutdown: &'a tokio_util::sync::CancellationToken,
}

impl Layer {
    /// A TCP connection on a [`Layer::TlsOrPlain`] listener: its first byte
    /// is peeked (nothing consumed), and the layer is TLS if it starts a
    /// TLS handshake, none otherwise (silence past `detect` included: a
    /// plain client waiting for a greeting). Other layers stay as they are.
    pub(crate) async fn sniff(self, stream: &tokio::net::TcpStream, detect: Duration) -> Layer {
        match self {
            #[cfg(feature = "tls")]
            Layer::TlsOrPlain(acceptor) => {
                let mut first = [0u8; 1];
                match tokio::time::timeout(detect, stream.peek(&mut first)).await {
                    Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => Layer::Tls(acceptor),
                    _ => Layer::Plain,
                }
            }
            layer => {
                let _ = (stream, detect);
                layer
            }
        }
    }

    /// Runs the handshake, within the deadline; gives up at shutdown.
    ///
    /// A plain listener has none and returns at once. Otherwise the
    /// handshake's future is boxed: it is large (a TLS acceptor's state),
    /// and inline it would widen every connection task by its size for the
    /// connection's whole life, long after the handshake is over.
    #[cfg_attr(not(any(feature = "tls", feature = "ws")), allow(unused_variables))]
    pub(crate) async fn handshake<S>(self, stream: S, cx: Context<'_>) -> Layered<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match self {
            Layer::Plain => Layered::Plain(stream),
            #[cfg(any(feature = "tls", feature = "ws"))]
            layer => Box::pin(layer.shake(stream, cx)).await,
        }
    }

    #[cfg(any(feature = "tls", feature = "ws"))]
    async fn shake<S>(self, stream: S, cx: Context<'_>) -> Layered<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shaken = async {
            match self {
                Layer::Plain => Layered::Plain(stream),
                #[cfg(feature = "tls")]
                Layer::Tls(acceptor) => tls(&acceptor, stream, &cx).await,
                // A stream that cannot be peeked (a Unix socket): its first
                // byte is read and given back in front of it.
                #[cfg(feature = "tls")]
                Layer::TlsOrPlain(acceptor) => {
                    let mut stream = stream;
                    let mut first = [0u8; 1];
                    let read = tokio::io::AsyncReadExt::read(&mut stream, &mut first);
                    let n = match tokio::time::timeout(cx.detect, read).await {
                        Ok(Ok(n)) => n,
                        Ok(Err(_)) | Err(_) => 0,
                    };
                    if n == 0 {
                        return Layered::Plain(stream);
                    }
                    if first[0] != TLS_HANDSHAKE {
                        return Layered::Boxed(Box::pin(crate::rewind::Rewind::new(
                            first.to_vec(),
                            stream,
                        )));
                    }
                    tls(
                        &acceptor,
                        crate::rewind::Rewind::new(first.to_vec(), stream),
                        &cx,
                    )
                    .await
                }
                #[cfg(feature = "ws")]
                Layer::Ws(options) => {
                    let accepted =
                        crate::ws::accept(stream, &options, cx.max_frame_length, cx.deadline).await;
                    match accepted {
                        Ok(crate::ws::Accepted::WebSocket(mut io)) => {
                            io.set_message_timeout(cx.frame_timeout);
                            Layered::Boxed(Box::into_pin(io))
                        }
                        Ok(_) => {
                            debug!("page served");
                            Layered::Gone
                        }
                        Err(e) => {
                            rare_warn(&cx.counters.ws_rejected, &e, "WebSocket upgrade refused");
                            Layered::Gone
                        }
                    }
                }
            }
        };
        tokio::select! {
            layered = shaken => layered,
            () = cx.shutdown.cancelled() => Layered::Gone,
        }
    }
}

/// A TLS handshake on `stream` within the handshake deadline; one that
/// fails is counted and logged (rarely), and the connection is gone.
#[cfg(feature = "tls")]
async fn tls<S, T>(acceptor: &crate::tls::Acceptor, stream: S, cx: &Context<'_>) -> Layered<T>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match acceptor.accept(stream, cx.deadline).await {
        Ok(tls) => Layered::Boxed(Box::pin(tls)),
        Err(e) => {
            rare_warn(&cx.counters.tls_failures, &e, "TLS handshake failed");
            Layered::Gone
        }
    }
}

/// Counts a bad handshake and logs the 1st, 2nd, 4th, 8th... of its kind
/// at `warn` (the rest at `debug`): bad input must not flood the log, and
/// the count says how many there were.
pub(crate) fn rare_warn(counter: &AtomicU64, error: &dyn std::error::Error, what: &str) {
    let (n, loud) = rarely(counter);
    if loud {
        warn!(%error, count = n, "{what}");
    } else {
        debug!(%error, count = n, "{what}");
    }
}

/// Counts one more and says whether this one is logged at its own level:
/// the 1st, 2nd, 4th, 8th... (the rest go at `debug`). Whoever can connect
/// can cause any number of these: 20,000 of them write 15 lines.
pub(crate) fn rarely(counter: &AtomicU64) -> (u64, bool) {
    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    (n, n.is_power_of_two())
}

/// How [`ServerHandle::connect`](crate::ServerHandle::connect) wraps what
/// it dials.
#[derive(Debug, Clone, Default)]
pub(crate) struct DialLayer {
    /// Opens connections in place of TCP ([`Server::connector`](crate::Server::connector)).
    pub(crate) connector: Option<Arc<dyn enchufe_engine::net::Connect>>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Connector>,
}

/// The server's name for each way a dial fails: [`Error::Connect`] with
/// the I/O error (a timeout as `TimedOut`), or [`Error::Tls`].
pub(crate) fn dial_error(addr: &str, limit: Duration, e: DialError) -> Error {
    use enchufe_engine::dial::Error as E;
    let source = match e {
        E::Resolve(source)
        | E::Refused { source, .. }
        | E::Connect { source, .. }
        | E::Via(source)
        | E::Unix { source, .. } => source,
        #[cfg(feature = "tls")]
        E::Secure(source) => {
            return Error::Tls(AddrError::new(addr, source));
        }
        #[cfg(not(feature = "tls"))]
        E::Secure(never) => match never {},
        E::Timeout => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {limit:?}"),
        ),
    };
    Error::Connect(AddrError::new(addr, source))
}

#[cfg(feature = "tls")]
type DialError = enchufe_engine::dial::Error<crate::tls::Error>;
#[cfg(not(feature = "tls"))]
type DialError = enchufe_engine::dial::Error<std::convert::Infallible>;
