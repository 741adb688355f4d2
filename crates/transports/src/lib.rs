//! Byte streams beyond TCP and Unix sockets for enchufe, each behind a
//! cargo feature: `tls` (rustls) and `ws` (WebSocket, for browsers).
//!
//! Each turns a connected socket into an `AsyncRead + AsyncWrite` that the
//! one connection driver (`enchufe_engine::driver`) serves exactly as it
//! serves a `TcpStream`: a transport is a listener or connector yielding
//! such a stream, never another copy of the connection loop. The server's
//! accept loop and the client's dial use them; most programs reach them
//! through `Server::tls`, `Server::ws` and `client::Config::tls` rather than
//! directly.
//!
//! ```text
//!  TcpStream --tls::Acceptor::accept-----> TLS stream --+
//!  TcpStream --tls::Connector::connect---> TLS stream --+--> framing::driver
//!  TcpStream --ws::accept (HTTP upgrade)--> WsIo -------+    [len u32 BE][payload]
//! ```

#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "ws")]
pub mod ws;
