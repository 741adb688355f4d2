//! The tower bridge (feature `tower`): a [`Handler`] made from a
//! [`tower::Service`], so tower's middleware (timeouts, concurrency and rate
//! limits, load shedding, retries, your own layers) wraps enchufe's
//! handlers.
//!
//! ```text
//!  frame -> decode T -> Request { message: T, conn } -> poll_ready -> call
//!                                                           |          |
//!         error reply (multiplexed) / close (plain) <-- Err |          v
//!                                       reply <----------- Ok(Some(R))
//! ```
//!
//! The service is cloned for each request, and its `poll_ready` is awaited
//! on the clone before `call` (tower's rule), so middleware that keeps its
//! state behind an `Arc` (`ConcurrencyLimit`'s semaphore, `LoadShed`) sees
//! every request of every connection. Middleware that keeps its state in
//! one instance and is not `Clone` (`RateLimit`) goes below a `Buffer`:
//! the buffer's clones all feed that one instance.
//!
//! A service's error ends up as the handler's error: in the multiplexed
//! profile an error reply to that request, with a code the client can match
//! on (see [`ServiceError::code`]): a tower `Elapsed` (the `timeout` layer)
//! is [`ErrorCode::Timeout`], a tower `Overloaded` (the `load_shed` layer
//! refusing a request while the service is not ready) is [`ErrorCode::Busy`],
//! anything else [`ErrorCode::Handler`]. In the plain profile, which has no
//! way to carry an error, it is logged and closes the connection, as a
//! [`Handler`]'s error does.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use enchufe::server::tower::{Request, ServiceHandler};
//! use enchufe::server::{BoxError, Config, Profile, Server};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .load_shed()
//!     .concurrency_limit(64)
//!     .timeout(Duration::from_secs(5))
//!     .service_fn(|req: Request<String>| async move {
//!         Ok::<_, BoxError>(Some(req.message.to_uppercase()))
//!     });
//! let config = Config::default().profile(Profile::Multiplexed);
//! let handle = Server::bind("127.0.0.1:0")
//!     .await?
//!     .with_config(config)
//!     .serve(ServiceHandler::new(service));
//! # handle.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use enchufe_framing::{BoxError, Decode, Encode};
use tower::Service;

use crate::{Connection, ErrorCode, Handler};

/// What a service behind [`ServiceHandler`] is called with: one decoded
/// message and the connection it came from (to push to it, read its
/// address or its state).
///
/// Middleware that only needs the message can take it off with
/// `ServiceBuilder::map_request(|req: Request<T>| req.message)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Request<T> {
    /// The decoded message.
    pub message: T,
    /// The connection it arrived on (a cheap clone).
    pub conn: Connection,
}

/// A [`Handler`] that calls a [`tower::Service`] for each message; see the
/// [module docs](self).
///
/// The service answers `Some(reply)`, or `None` for nothing (a one-way
/// message), as [`Handler::handle`] does; its error is any error tower
/// middleware returns (`Into<BoxError>`).
pub struct ServiceHandler<S, T, R> {
    service: S,
    _types: PhantomData<fn(T) -> R>,
}

impl<S, T, R> ServiceHandler<S, T, R> {
    /// Serves each message with a clone of `service`.
    pub fn new(service: S) -> Self {
        ServiceHandler {
            service,
            _types: PhantomData,
        }
    }

    /// The service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }
}

impl<S: Clone, T, R> Clone for ServiceHandler<S, T, R> {
    fn clone(&self) -> Self {
        ServiceHandler::new(self.service.clone())
    }
}

impl<S, T, R> fmt::Debug for ServiceHandler<S, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandler").finish_non_exhaustive()
    }
}

impl<S, T, R> Handler for ServiceHandler<S, T, R>
where
    S: Service<Request<T>, Response = Option<R>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    T: Decode + Send + 'static,
    R: Encode + Send + 'static,
{
    type Request = T;
    type Response = R;
    type Error = ServiceError;

    fn handle(
        &self,
        message: T,
        conn: &Connection,
    ) -> impl Future<Output = Result<Option<R>, ServiceError>> + Send {
        let mut service = self.service.clone();
        let request = Request {
            message,
            conn: conn.clone(),
        };
        async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(ServiceError::new)?;
            service.call(request).await.map_err(ServiceError::new)
        }
    }

    fn error_code(error: &ServiceError) -> ErrorCode {
        error.code()
    }
}

/// A service's error, as [`ServiceHandler`] reports it: the message is the
/// service's, and [`ServiceError::code`] tells the error reply's code.
#[derive(Debug)]
pub struct ServiceError(BoxError);

impl ServiceError {
    fn new(error: impl Into<BoxError>) -> Self {
        ServiceError(error.into())
    }

    /// Whether a tower `timeout` layer gave up on the request (tower's
    /// `Elapsed`, here or as the source of a wrapping error).
    pub fn is_timeout(&self) -> bool {
        self.find::<tower::timeout::error::Elapsed>()
    }

    /// Whether a tower `load_shed` layer refused the request because the
    /// service was not ready (tower's `Overloaded`).
    pub fn is_overloaded(&self) -> bool {
        self.find::<tower::load_shed::error::Overloaded>()
    }

    /// The error reply's code: [`ErrorCode::Timeout`] for a timeout,
    /// [`ErrorCode::Busy`] for a shed request (worth a retry later),
    /// [`ErrorCode::Handler`] for anything else.
    pub fn code(&self) -> ErrorCode {
        if self.is_timeout() {
            ErrorCode::Timeout
        } else if self.is_overloaded() {
            ErrorCode::Busy
        } else {
            ErrorCode::Handler
        }
    }

    /// The service's error.
    pub fn into_inner(self) -> BoxError {
        self.0
    }

    fn find<E: std::error::Error + 'static>(&self) -> bool {
        let mut error: Option<&(dyn std::error::Error + 'static)> = Some(&*self.0);
        while let Some(e) = error {
            if e.is::<E>() {
                return true;
            }
            error = e.source();
        }
        false
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
