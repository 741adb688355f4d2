//! [`Handler`]: what answers HTTP requests, asynchronously, and
//! [`handler_fn`] to make one from a closure.

use std::future::Future;

use crate::{Request, Response};

/// What answers requests: the course's `handle_command`, for HTTP, in the
/// shape of the frame server's `enchufe::Handler` (an `async fn` in a
/// trait whose future is `Send`).
///
/// The server calls it on the connection's task, one request at a time per
/// connection (so pipelined requests are answered in order), and keeps the
/// connection going meanwhile: earlier replies are flushed and the write
/// deadline kept, while no further input is read (the request-head codec's
/// buffer bound holds). It may await whatever it needs (a file, a
/// database, another service) without holding a runtime worker.
///
/// - A panic answers `500` and closes that connection only.
/// - Past [`Config::handler_timeout`](crate::Config::handler_timeout) the
///   future is dropped and the client gets `503`.
/// - At shutdown it may finish within
///   [`Config::shutdown_grace`](crate::Config::shutdown_grace); then it is
///   dropped with its connection.
///
/// Any of these ends drops the future at an `.await`: write it so that being
/// cancelled there is safe, as for any Tokio future. As the connection is
/// not read while it runs, a client that hangs up meanwhile is noticed when
/// the reply is written, not before (bound the wait with the timeout).
///
/// # Why the request is taken by value
///
/// The future may then own the [`Request`] and hold it across `.await`
/// points without borrowing from the server, which is what lets a closure
/// be a handler ([`handler_fn`]): `Fn(&Request) -> Fut` cannot say that
/// `Fut` borrows the argument, so a closure's future could not look at the
/// request after its first `.await`. The future still borrows `&self`
/// (it need not be `'static`: it runs on the connection's task, it is never
/// spawned), and must be `Send`, as that task may move between workers.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use enchufe::http::{Handler, Request, Response};
///
/// /// Answers after a pause, as if it asked a database.
/// struct Slow {
///     delay: Duration,
/// }
///
/// impl Handler for Slow {
///     async fn handle(&self, request: Request) -> Response {
///         tokio::time::sleep(self.delay).await;
///         Response::text(200, format!("{} took a while\n", request.path()))
///     }
/// }
/// # let _ = Slow { delay: Duration::ZERO };
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The reply to `request`.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
pub struct HandlerFn<F> {
    f: F,
}

impl<F> std::fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerFn").finish_non_exhaustive()
    }
}

/// Makes a [`Handler`] from a closure that takes the [`Request`] and
/// returns a future of the [`Response`], for small servers (as
/// `enchufe::handler_fn` does for frames).
///
/// ```
/// use enchufe::http::{handler_fn, Request, Response};
///
/// let hello = handler_fn(|request: Request| async move {
///     tokio::task::yield_now().await; // a real one would await I/O here
///     Response::text(200, format!("hola, {}\n", request.path()))
/// });
/// # let _ = hello;
/// ```
///
/// A synchronous answer needs no `async` block:
/// `handler_fn(|_| std::future::ready(Response::text(200, "hola\n")))`.
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    HandlerFn { f }
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send {
        (self.f)(request)
    }
}
