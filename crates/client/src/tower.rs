//! The tower bridge (feature `tower`): a [`Client`] or a [`MultiClient`] as
//! a [`tower::Service`], so tower's middleware (timeouts, retries,
//! concurrency and rate limits, load shedding) wraps the requests it sends.
//!
//! [`Client::service`] gives a [`RequestService`]: calling it with a message
//! sends it as [`Client::request`] does and resolves to the decoded reply.
//! [`MultiClient::service`] gives an [`AnyService`], which sends each
//! request as [`MultiClient::request_any`] does. Both are cheap clones of
//! the handle, always ready while the client can send, and take any number
//! of calls at once (the multiplexed profile runs them concurrently; the
//! plain one, in order).
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use enchufe::client::Client;
//! use enchufe::server::{handler_fn, Server};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let server = Server::bind("127.0.0.1:0").await?.serve(handler_fn(
//!     |req: String, _conn| async move { Ok::<_, Infallible>(Some(req.to_uppercase())) },
//! ));
//! let client = Client::connect(server.local_addr()).await?;
//! let service = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(5))
//!     .service(client.service::<String, String>());
//! let reply = service.oneshot("hola".to_string()).await?;
//! assert_eq!(reply, "HOLA");
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use enchufe_framing::{Decode, Encode};
use tower::Service;

use crate::{Client, Error, MultiClient, Result};

/// A boxed, `Send` future of a reply, what the services here return.
pub type ReplyFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

impl Client {
    /// This client as a [`tower::Service`] that sends messages of type `M`
    /// as requests and decodes their replies as `R` (feature `tower`).
    pub fn service<M, R>(&self) -> RequestService<M, R> {
        RequestService {
            client: self.clone(),
            _types: PhantomData,
        }
    }
}

/// A [`Client`] as a [`tower::Service`]; see [`Client::service`].
pub struct RequestService<M, R> {
    client: Client,
    _types: PhantomData<fn(M) -> R>,
}

impl<M, R> RequestService<M, R> {
    /// The client behind it.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl<M, R> Clone for RequestService<M, R> {
    fn clone(&self) -> Self {
        self.client.service()
    }
}

impl<M, R> fmt::Debug for RequestService<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestService")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<M, R> Service<M> for RequestService<M, R>
where
    M: Encode + Send + 'static,
    R: Decode + Send + 'static,
{
    type Response = R;
    type Error = Error;
    type Future = ReplyFuture<R>;

    /// Ready while the client can send; [`Error::Closed`] once it cannot
    /// (closed, or its connection ended for good), so that tower's
    /// balancers and retries learn it before they call.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.client.is_closed() {
            Poll::Ready(Err(Error::Closed))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, msg: M) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move { client.request(msg).await })
    }
}

impl<K> MultiClient<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// These servers as a [`tower::Service`] that sends each message of
    /// type `M` to one connected server picked by the [`Routing`](crate::Routing)
    /// policy, and answers which server replied and its reply (feature
    /// `tower`).
    pub fn service<M, R>(&self) -> AnyService<K, M, R> {
        AnyService {
            multi: self.clone(),
            _types: PhantomData,
        }
    }
}

/// A [`MultiClient`] as a [`tower::Service`]; see [`MultiClient::service`].
pub struct AnyService<K, M, R> {
    multi: MultiClient<K>,
    _types: PhantomData<fn(M) -> R>,
}

impl<K, M, R> Clone for AnyService<K, M, R> {
    fn clone(&self) -> Self {
        AnyService {
            multi: self.multi.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, M, R> fmt::Debug for AnyService<K, M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyService").finish_non_exhaustive()
    }
}

impl<K, M, R> Service<M> for AnyService<K, M, R>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    M: Encode + Send + 'static,
    R: Decode + Send + 'static,
{
    type Response = (K, R);
    type Error = Error;
    type Future = ReplyFuture<(K, R)>;

    /// Always ready: with no server connected, the call fails with
    /// [`Error::NoServer`].
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, msg: M) -> Self::Future {
        let multi = self.multi.clone();
        Box::pin(async move { multi.request_any(msg).await })
    }
}
