//! [`Server`]: a listener of its own with HTTP as its only door.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, ToSocketAddrs};

use super::config::Config;
use super::door::Door;
use crate::Handler;

/// An HTTP/1.1 server: keep-alive, pipelining, request bodies (streamed,
/// [`Body`](crate::Body)), limits on heads and bodies and deadlines, on enchufe's
/// connection driver. What it refuses is the rules table on
/// [`Refusal`](crate::Refusal).
///
/// ```no_run
/// use enchufe::http::{handler_fn, Request, Response, Server};
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let server = Server::bind("127.0.0.1:8080").await?;
/// let hello = handler_fn(|req: Request| async move {
///     Response::text(200, format!("hola, {}\n", req.path()))
/// });
/// server.run(hello, std::future::pending()).await; // or a Ctrl-C future
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    config: Config,
    /// TLS on every connection accepted (`Server::tls`).
    #[cfg(feature = "tls")]
    tls: Option<enchufe_server::tls::Acceptor>,
}

impl Server {
    /// Binds a listener with the default [`Config`].
    ///
    /// # Errors
    /// The bind's.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr).await?,
            config: Config::default(),
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Serves HTTPS: every connection accepted runs the server's side of a
    /// TLS handshake first (within [`Config::head_timeout`], as a head), with the same
    /// acceptor (certificate options and loader) as the frame server's
    /// `Server::tls` (feature `tls`). A failed handshake is logged and
    /// closed; the handler never sees it.
    ///
    /// ```no_run
    /// # async fn f(cert: &str, key: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// use enchufe::http::Server;
    /// let acceptor = enchufe::server::tls::Acceptor::from_pem_files(cert, key)?;
    /// let server = Server::bind("127.0.0.1:8443").await?.tls(acceptor);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, acceptor: enchufe_server::tls::Acceptor) -> Server {
        self.tls = Some(acceptor);
        self
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: Config) -> Server {
        self.config = config;
        self
    }

    /// The address it listens on (the port chosen, after binding port 0).
    ///
    /// # Errors
    /// The socket's.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each
    /// connection finish the request in hand (a running handler, its reply)
    /// within [`Config::shutdown_grace`], drops those still open after it,
    /// and returns once every connection's task has ended.
    ///
    /// The listener is the frame server's (`enchufe::Server` with this
    /// handler as its only door): one accept loop with its permit before
    /// `accept`, back-off, connection caps and shutdown for every protocol.
    pub async fn run<H: Handler>(self, handler: H, shutdown: impl Future<Output = ()>) {
        let listen = enchufe_server::Config::default()
            .max_connections(self.config.max_connections)
            .shutdown_grace(self.config.shutdown_grace)
            .handshake_timeout(self.config.head_timeout);
        let door = Door::new(handler).with_config(self.config);
        let server = enchufe_server::Server::from_listener(self.listener);
        #[cfg(feature = "tls")]
        let server = match self.tls {
            Some(acceptor) => server.tls(acceptor),
            None => server,
        };
        server
            .with_config(listen)
            .http_only(door)
            .run(no_frames(), shutdown)
            .await;
    }
}

/// The frame handler of an HTTP-only server: never called, since every
/// connection goes to the HTTP door.
fn no_frames() -> impl enchufe_server::Handler {
    enchufe_server::handler_fn(|_: bytes::Bytes, _conn| async {
        Ok::<Option<bytes::Bytes>, std::convert::Infallible>(None)
    })
}
