use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;

use enchufe_framing::mux::ErrorCode;
use enchufe_framing::{Body, BoxError, Decode, Encode};

use crate::{Connection, Disconnect};

/// The user's side of a server: business logic, apart from networking.
///
/// enchufe reads each request frame, decodes it as [`Handler::Request`] and
/// calls [`Handler::handle`]; a `Some` response is encoded and sent back. This
/// is the course's `handle_command` split: the framework does the sockets, the
/// handler only sees messages.
///
/// In the plain profile a connection's requests are handled one after
/// another, so replies leave in request order. `Ok(None)` sends nothing
/// (a one-way message). `Err` is logged and ends that connection with a TCP
/// reset, because the plain wire has no way to carry an error: the client
/// sees "connection reset", not a goodbye (an enchufe client:
/// `Error::ResetByPeer`). For errors the client should read, return them as
/// a normal response. A panic ends that connection the same way, and never
/// the server. While a handler runs the connection is watched: a client
/// that resets drops the handler's future at once; one that half-closes
/// still gets its answers.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use enchufe::server::{Connection, Handler};
///
/// struct Upper;
///
/// impl Handler for Upper {
///     type Request = String;
///     type Response = String;
///     type Error = Infallible;
///
///     async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
///         Ok(Some(req.to_uppercase()))
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// What a client sends: `String` (text), `Bytes` (raw), `Json<T>`, or your
    /// own [`Decode`] type. A frame that does not decode closes the connection.
    type Request: Decode + Send + 'static;
    /// What the server sends back and pushes.
    type Response: Encode + Send + 'static;
    /// The handler's error, logged when it happens.
    type Error: Display + Send + 'static;

    /// Handles one request from `conn`. Returns the reply, if any.
    fn handle(
        &self,
        request: Self::Request,
        conn: &Connection,
    ) -> impl Future<Output = Result<Option<Self::Response>, Self::Error>> + Send;

    /// Multiplexed profile: handles a one-way message (the client's
    /// `send`/`notify`, a peer's push), where nothing goes back. The default
    /// calls [`Handler::handle`] and drops its reply; override it to tell
    /// requests from one-way messages. (The plain wire has no such
    /// distinction: every message goes to `handle`, and its reply, if any,
    /// is sent.)
    fn handle_notify(
        &self,
        request: Self::Request,
        conn: &Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async move { self.handle(request, conn).await.map(drop) }
    }

    /// Plain profile, with [`Config::max_stream_length`](crate::Config::max_stream_length)
    /// set: handles one frame too long for `max_frame_length`, whose body
    /// arrives as a [`Body`] in chunks (read it with [`Body::chunk`],
    /// [`Body::copy_to`] or as an `AsyncRead`). Memory stays bounded by a few
    /// chunks whatever the frame's length. The connection reads nothing
    /// else until the body is taken (what the handler leaves unread is
    /// skipped before its reply is sent). `Err` closes the connection, as
    /// from [`Handler::handle`].
    ///
    /// The default refuses: the connection ends with this as its reason.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use enchufe::server::{Body, BoxError, Connection, Handler};
    ///
    /// /// Counts the bytes of every large message.
    /// struct Sizes;
    ///
    /// impl Handler for Sizes {
    ///     type Request = String;
    ///     type Response = String;
    ///     type Error = Infallible;
    ///
    ///     async fn handle(&self, req: String, _: &Connection) -> Result<Option<String>, Infallible> {
    ///         Ok(Some(req.len().to_string()))
    ///     }
    ///
    ///     async fn handle_stream(&self, mut body: Body, _: &Connection) -> Result<Option<String>, BoxError> {
    ///         let mut n = 0;
    ///         while let Some(chunk) = body.chunk().await? {
    ///             n += chunk.len();
    ///         }
    ///         Ok(Some(n.to_string()))
    ///     }
    /// }
    /// ```
    fn handle_stream(
        &self,
        body: Body,
        conn: &Connection,
    ) -> impl Future<Output = Result<Option<Self::Response>, BoxError>> + Send {
        let _ = conn;
        let len = body.len();
        async move {
            Err(format!(
                "a streamed message of {len} bytes arrived but this handler does not take \
                 streams (implement Handler::handle_stream)"
            )
            .into())
        }
    }

    /// Called once when a connection is accepted, before its first request is
    /// read: the place to greet the client with [`Connection::push`].
    fn on_connect(&self, conn: &Connection) -> impl Future<Output = ()> + Send {
        let _ = conn;
        async {}
    }

    /// Called when the client has finished sending (it shut down its
    /// writing side, the course's "send everything, then wait for the
    /// answer"), while this side can still write: the place to answer the
    /// whole of what it sent. A returned message is sent before the
    /// connection's goodbye, after every earlier reply; pushes from here
    /// still go out too. Not called when the connection ends any other way
    /// (then only [`Handler::on_disconnect`], when nothing can be sent).
    /// Default: nothing.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use enchufe::server::{Connection, Handler};
    ///
    /// /// Counts the lines a client sends; answers once it is done.
    /// struct Count;
    ///
    /// impl Handler for Count {
    ///     type Request = String;
    ///     type Response = String;
    ///     type Error = Infallible;
    ///
    ///     async fn handle(&self, _line: String, conn: &Connection) -> Result<Option<String>, Infallible> {
    ///         conn.with_state(|n: &mut usize| *n += 1);
    ///         Ok(None)
    ///     }
    ///
    ///     async fn on_eof(&self, conn: &Connection) -> Option<String> {
    ///         Some(format!("{} lines", conn.with_state(|n: &mut usize| *n)))
    ///     }
    /// }
    /// ```
    fn on_eof(&self, conn: &Connection) -> impl Future<Output = Option<Self::Response>> + Send {
        let _ = conn;
        async { None }
    }

    /// Multiplexed profile: the code sent with the error reply for
    /// `error` (the message is its `Display`), so that a client can tell
    /// errors apart without reading their text. Default:
    /// [`ErrorCode::Handler`]. The tower bridge (`tower::ServiceHandler`,
    /// feature `tower`) answers a tower timeout with [`ErrorCode::Timeout`] and a shed
    /// request with [`ErrorCode::Busy`] through this.
    fn error_code(error: &Self::Error) -> ErrorCode {
        let _ = error;
        ErrorCode::Handler
    }

    /// Called once when a connection ends, with the reason.
    fn on_disconnect(
        &self,
        conn: &Connection,
        reason: &Disconnect,
    ) -> impl Future<Output = ()> + Send {
        let _ = (conn, reason);
        async {}
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

/// Makes a [`Handler`] from an async closure taking the request and the
/// [`Connection`] (a cheap clone), for small servers.
///
/// ```
/// use std::convert::Infallible;
/// use enchufe::server::handler_fn;
///
/// let echo = handler_fn(|req: String, _conn| async move {
///     Ok::<_, Infallible>(Some(req))
/// });
/// # let _ = echo;
/// ```
pub fn handler_fn<F, Fut, Req, Resp, E>(f: F) -> HandlerFn<F, Req, Resp, E>
where
    F: Fn(Req, Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Resp>, E>> + Send,
{
    HandlerFn {
        f,
        _types: PhantomData,
    }
}

impl<F, Fut, Req, Resp, E> Handler for HandlerFn<F, Req, Resp, E>
where
    F: Fn(Req, Connection) -> Fut + Send + Sync + 'static,
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
        conn: &Connection,
    ) -> impl Future<Output = Result<Option<Resp>, E>> + Send {
        (self.f)(request, conn.clone())
    }
}
