//! The course's improved file protocol, byte for byte, with bounded memory.
//!
//! ```text
//!  sender -> receiver:  size (u32 BE) | body (exactly `size` bytes)
//!  receiver -> sender:  "Gracias."     (8 raw UTF-8 bytes, no length prefix)
//! ```
//!
//! The course's scripts hold the whole file in memory; these helpers
//! stream it in chunks of [`BUFFER`] bytes. Over TCP on Linux the body
//! does not pass through the process at all: [`send_file`] hands the file
//! to the socket with `sendfile`, and [`Receiver`] moves it from the
//! socket into the file with `splice` (through a pipe); other streams and
//! systems read and write it in buffers. The receiver writes to a
//! temporary name and renames only once every declared byte arrived, so a
//! cut body never leaves a file under its final name. The protocol has no
//! hash (TCP's checksum is all the integrity it gets) and no way to say
//! why a file was refused: a receiver that cannot take it closes without
//! `Gracias.`, which the sender reports as [`Error::NotConfirmed`](crate::Error::NotConfirmed).
//!
//! - [`Receiver`]: a server for the protocol, one task per sender, with a
//!   connection cap, an overall deadline per sender and events.
//! - [`send_file`]: opens a file, connects and sends it.
//! - [`receive`](fn@receive) and [`send`](fn@send): one transfer over any stream.
//!
//! ```
//! use enchufe::transfer::course;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), enchufe::transfer::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let (mut a, mut b) = tokio::io::duplex(64 << 10);
//! let config = course::Config::default();
//! let recv = course::receive(&mut b, dir.path(), "recibido.bin", &config, None);
//! let send = course::send(&mut a, &b"hola"[..], 4, &config, None);
//! let (path, reply) = tokio::try_join!(recv, send)?;
//! assert_eq!(reply, course::THANKS);
//! assert_eq!(std::fs::read(path.0).unwrap(), b"hola");
//! # Ok(()) }
//! ```

mod config;
mod receive;
mod send;
mod server;

pub use config::{Config, BUFFER, THANKS};
pub use receive::receive;
pub use send::{send, send_file};
pub use server::Receiver;
