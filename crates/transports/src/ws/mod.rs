//! WebSocket, so that a browser can join an enchufe server: the upgrade
//! ([`accept`]) and [`WsIo`], which turns a WebSocket into the byte stream
//! of length-prefixed frames that the connection driver reads.
//!
//! One WebSocket binary message is exactly one frame's **payload**, without
//! the 4-byte length (a WebSocket message has its own length). [`WsIo`] adds
//! the prefix to each message it reads and takes it off each frame it
//! writes, so everything above it (profiles, hello, handlers, limits) is the
//! same as over TCP. In JavaScript:
//!
//! ```text
//!  const ws = new WebSocket("ws://host:port/"); ws.binaryType = "arraybuffer";
//!  ws.send(new TextEncoder().encode("hola"));     // one frame: "hola"
//!  ws.onmessage = (e) => new Uint8Array(e.data);  // one frame's payload
//!
//!  WebSocket:  [binary message: 68 6f 6c 61]
//!  driver:     [00 00 00 04][68 6f 6c 61]          (WsIo adds/removes the length)
//! ```
//!
//! A text message is taken as its UTF-8 bytes, like a binary one (after
//! checking they are UTF-8). A fragmented message is handed up whole, as
//! one frame; pings are answered; the peer's close frame is the end of the
//! stream and is echoed at shutdown.
//!
//! [`WsIo`] speaks RFC 6455 itself, as a server (tungstenite parses the
//! frame headers), so that it behaves on the wire as the driver does over
//! TCP:
//!
//! - **Batches.** One read hands up every whole message already read, so
//!   the driver answers a batch and flushes once; writes are encoded into
//!   an output that leaves at `poll_flush` (a socket write only when it
//!   holds 64 KiB, or for a body of 16 KiB or more, which is written from
//!   the caller's buffer behind it without a copy).
//! - **Limits.** A message over the limit (fragments added up) is refused
//!   on its header: it reads as a frame header declaring its size, so the
//!   framing layer rejects it as it rejects an oversize TCP frame. A
//!   message whose first frame arrived must be whole within
//!   [`Options::message_timeout`]. At most one pong is owed, and no frame is
//!   decoded while it has no room in the output: a peer that pings and
//!   never reads holds 64 KiB and one pong, and its writes stall.
//! - **Memory.** A large binary message in one frame (16 KiB or more) is
//!   handed out as it arrives, unmasked on its way through a read buffer of
//!   at most 64 KiB, so the driver's buffer (under its byte budget) is the
//!   only one that holds it whole. Any other frame is gathered here first,
//!   the read buffer growing with the bytes that arrived to exactly that
//!   frame (text must be checked as UTF-8, fragments joined). The buffers
//!   are freed while the connection is quiet. An idle connection holds the struct (a few hundred bytes) and
//!   its socket: about 4 KiB a connection in a server, as over TCP.
//! - **Close codes.** Every refusal sends a close frame with its code
//!   before the connection ends (with the next flush, which the driver
//!   does before dropping a failed connection): 1002 protocol error, 1007
//!   text that is not UTF-8, 1008 a message not completed in time, 1009 a
//!   message over the limit. Shutting down sends 1001 (going away), or
//!   echoes the peer's close.
//!
//! ```text
//!  socket --> rbuf --decode: unmask, check, join fragments--> [len][payload]... --> driver
//!  socket <-- out <--encode: [0x82][len][payload] per frame-- [len][payload]... <-- driver
//!                 (+ one owed pong, + the close frame)
//! ```

mod error;
mod frame;
mod handshake;
mod options;
mod poll;
mod stream;
#[cfg(test)]
mod tests;

pub use error::{Error, Result, Violation};
pub use handshake::{accept, Accepted};
pub use options::Options;
pub use stream::WsIo;
