//! File and stream transfer over enchufe.
//!
//! Send a file, or any `AsyncRead` of a known size, from a [`Client`] to a
//! server whose handler is a [`Receiver`] (or calls one). The body travels
//! as chunks (1 MiB by default), so files over 4 GiB work and memory stays
//! bounded by the window of chunks in flight; an XXH3-128 hash checks it end
//! to end against corruption (TLS is what guards against tampering); both ends report progress; either end can cancel; a transfer cut
//! halfway resumes from what the receiver already holds.
//!
//! ```text
//!  Upload::send(&client)                        Receiver (a Handler)
//!   offer {id, name, size} ──────────────────>  limits, name check,
//!                          <── accept {offset,   DIR/.enchufe-<id>.part
//!                                 prefix hash}
//!   chunk (id, offset, bytes) ×window ──────>   queue -> writer task:
//!                          <── ack ×window       reorder, hash, write
//!   finish {XXH3-128} ──────────────────────>  all bytes? hash equal?
//!                          <── done              fsync, rename to DIR/name
//! ```
//!
//! Every message is an ordinary enchufe request and reply (see
//! [`protocol`](crate::Frame) for the bytes), so a transfer works on both
//! profiles, and on the multiplexed one it shares the connection with other
//! requests: they go out between chunks instead of after the file.
//!
//! [`course`] speaks the course's improved file protocol instead (a 4-byte
//! size, the raw body, `Gracias.`), with bounded memory: a
//! [`course::Receiver`] serving senders at once, each within a deadline,
//! and [`course::send_file`].
//!
//! # Examples
//!
//! A server that accepts transfers beside its own requests:
//!
//! ```
//! use std::convert::Infallible;
//! use enchufe::client::Client;
//! use enchufe::server::{Connection, Handler, Server};
//! use enchufe::transfer::{Receiver, Routed, Upload};
//!
//! struct App { files: Receiver }
//!
//! impl Handler for App {
//!     type Request = Routed<String>;
//!     type Response = Routed<String>;
//!     type Error = Infallible;
//!
//!     async fn handle(&self, req: Routed<String>, conn: &Connection) -> Result<Option<Routed<String>>, Infallible> {
//!         Ok(Some(match req {
//!             Routed::Transfer(frame) => Routed::Transfer(self.files.handle(frame, conn).await),
//!             Routed::App(text) => Routed::App(format!("eco: {text}")),
//!         }))
//!     }
//!
//!     async fn on_disconnect(&self, conn: &Connection, _: &enchufe::server::Disconnect) {
//!         self.files.disconnected(conn.id());
//!     }
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let files = Receiver::new(dir.path(), Default::default());
//! let server = Server::bind("127.0.0.1:0").await?.serve(App { files: files.clone() });
//! let client = Client::connect(server.local_addr()).await?;
//!
//! let receipt = Upload::reader(&b"datos"[..], "datos.bin", 5).send(&client).await?;
//! let reply: String = client.request("hola").await?;
//! assert_eq!((receipt.size, reply.as_str()), (5, "eco: hola"));
//! # server.shutdown().await;
//! # files.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! [`Client`]: enchufe_client::Client

pub mod course;
mod digest;
mod error;
mod protocol;
pub mod receiver;
pub mod sender;
#[cfg(target_os = "linux")]
mod zero_copy;

pub use enchufe_framing::AddrError;
pub use error::{Error, Reason, Result, Violation};
pub use protocol::{BadTransferId, Frame, Routed, TransferId, MAGIC};
pub use receiver::{Event, Receiver};
pub use sender::{Canceller, Receipt, Upload};

/// How far a transfer is: bytes done of the total. The sender counts bytes
/// the receiver acknowledged, the receiver bytes written to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes done.
    pub done: u64,
    /// The declared size.
    pub total: u64,
}
