//! [`Door`]: HTTP on an enchufe server's listener, beside frames and
//! WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::conn::serve;
use crate::Handler;

/// HTTP/1.1 as a door of an enchufe server: the same port serves frames
/// and HTTP (and WebSocket, with `Server::web`), each connection told apart
/// by its first byte, all under the listener's limits.
///
/// ```
/// use enchufe::http::{door, handler_fn, Request, Response};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let web = door(handler_fn(|req: Request| async move {
///     Response::text(200, format!("hola, {}\n", req.path()))
/// }));
/// let server = enchufe::Server::bind("127.0.0.1:0").await?.http(web);
/// let handle = server.serve(enchufe::handler_fn(|cmd: String, _conn| async move {
///     Ok::<_, std::convert::Infallible>(Some(cmd))
/// }));
/// // frames and HTTP at handle.local_addr()
/// # handle.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub fn door<H: Handler>(handler: H) -> Door<H> {
    Door::new(handler)
}

/// An HTTP handler with its [`Config`], served on an enchufe server's
/// listener ([`door`]; `Server::http`). Of the config, the listener's own
/// limits (`max_connections`, `shutdown_grace`) are the server's; the rest
/// (heads, deadlines, bodies, replies) apply per connection.
pub struct Door<H> {
    handler: Arc<H>,
    config: Arc<Config>,
}

impl<H> std::fmt::Debug for Door<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Door")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Door<H> {
    /// A door with the default [`Config`].
    pub fn new(handler: H) -> Door<H> {
        Door {
            handler: Arc::new(handler),
            config: Arc::new(Config::default()),
        }
    }

    /// Replaces the configuration.
    #[must_use]
    pub fn with_config(mut self, config: Config) -> Door<H> {
        self.config = Arc::new(config);
        self
    }
}

impl<H: Handler> enchufe_server::Door for Door<H> {
    fn serve(
        &self,
        io: enchufe_engine::net::BoxIo,
        _peer: SocketAddr,
        stop: CancellationToken,
    ) -> enchufe_engine::net::BoxFuture<'static, ()> {
        let (handler, config) = (self.handler.clone(), self.config.clone());
        Box::pin(async move { serve(io, &*handler, &config, &stop).await })
    }
}
