use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;

use enchufe_framing::{Decode, Encode};

/// The user's side of a [`UdpServer`](crate::UdpServer): business logic,
/// apart from the sockets.
///
/// The same idea as the TCP server's `Handler`, over datagrams: each
/// datagram is decoded as [`Handler::Request`] and handed to
/// [`Handler::handle`] with its [`Context`] (who sent it); a `Some` reply is
/// encoded and sent back to the sender's address as one datagram. `Ok(None)`
/// sends nothing. `Err` is logged and counted, and nothing is sent (there is
/// no connection to close, and plain UDP has no way to carry an error: for
/// errors the client should read, return them as a normal reply). A panic is
/// caught and counted; it costs that datagram only.
///
/// Handlers run concurrently, up to
/// [`server::Config::max_in_flight`](crate::server::Config::max_in_flight)
/// at once, so two datagrams from the same sender can be handled (and
/// answered) in either order.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use enchufe::udp::{Context, Handler};
///
/// struct Upper;
///
/// impl Handler for Upper {
///     type Request = String;
///     type Response = String;
///     type Error = Infallible;
///
///     async fn handle(&self, req: String, ctx: &Context) -> Result<Option<String>, Infallible> {
///         Ok(Some(format!("{} from {}", req.to_uppercase(), ctx.peer_addr())))
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// What a datagram holds: `String` (text), `Bytes` (raw), `Json<T>`, or
    /// your own [`Decode`] type. A datagram that does not decode is dropped
    /// and counted.
    type Request: Decode + Send + 'static;
    /// What the server sends back.
    type Response: Encode + Send + 'static;
    /// The handler's error, logged when it happens.
    type Error: Display + Send + 'static;

    /// Handles one datagram. Returns the reply, if any.
    fn handle(
        &self,
        request: Self::Request,
        ctx: &Context,
    ) -> impl Future<Output = Result<Option<Self::Response>, Self::Error>> + Send;
}

/// Where a datagram came from: what a UDP handler knows about its sender.
///
/// There is no connection: the sender's address is all there is, and a reply
/// goes back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub(crate) peer_addr: SocketAddr,
    pub(crate) local_addr: SocketAddr,
    pub(crate) len: usize,
}

impl Context {
    /// The sender's address, where the reply goes.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The server's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The datagram's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the datagram was empty (UDP allows it).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
pub struct HandlerFn<F, Req, Resp, E> {
    f: F,
    _types: PhantomData<fn(Req) -> (Resp, E)>,
}

impl<F, Req, Resp, E> std::fmt::Debug for HandlerFn<F, Req, Resp, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerFn").finish_non_exhaustive()
    }
}

/// Makes a [`Handler`] from an async closure taking the request and its
/// [`Context`], for small servers.
///
/// ```
/// use std::convert::Infallible;
/// use enchufe::udp::handler_fn;
///
/// let echo = handler_fn(|req: String, _ctx| async move {
///     Ok::<_, Infallible>(Some(req))
/// });
/// # let _ = echo;
/// ```
pub fn handler_fn<F, Fut, Req, Resp, E>(f: F) -> HandlerFn<F, Req, Resp, E>
where
    F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Resp>, E>> + Send,
{
    HandlerFn {
        f,
        _types: PhantomData,
    }
}

impl<F, Fut, Req, Resp, E> Handler for HandlerFn<F, Req, Resp, E>
where
    F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Resp>, E>> + Send,
    Req: Decode + Send + 'static,
    Resp: Encode + Send + 'static,
    E: Display + Send + 'static,
{
    type Request = Req;
    type Response = Resp;
    type Error = E;

    fn handle(
        &self,
        request: Req,
        ctx: &Context,
    ) -> impl Future<Output = Result<Option<Resp>, E>> + Send {
        (self.f)(request, *ctx)
    }
}
