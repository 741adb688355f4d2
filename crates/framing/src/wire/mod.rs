//! [`Wire`]: the bytes of one connection, for a driver that polls.
//!
//! [`Transport`](crate::Transport) is the convenient type (a `Stream` and a
//! `Sink` of frames). `Wire` is the one a connection driver is built on: it
//! owns the I/O object unsplit, so one task reads requests and writes their
//! replies, and it spends memory only on bytes that exist:
//!
//! - **No buffer while idle.** A read into an empty, unallocated buffer goes
//!   through a stack buffer first; a read buffer that is empty when the
//!   socket has nothing more is freed. An idle connection holds no heap
//!   buffer at all.
//! - **Reads grow with what arrived, never with what was declared.** A header
//!   declaring 8 MiB reserves nothing; the body's buffer doubles as bytes
//!   come, so a connection that trickles costs what it sent.
//! - **Large frames have their own buffer** (at or above [`LARGE_FRAME`]):
//!   the frame handed out owns it, so the read buffer is not pinned by a body
//!   waiting to be echoed, and the next frame does not need a fresh one.
//! - **Many connections share one limit** for the large frames arriving
//!   ([`MemoryBudget`], optional): past it, a frame's buffer does not grow
//!   and its connection is not read until bytes are given back.
//! - **Large bodies are never copied on the way out**: their header goes into
//!   the write buffer, the body is queued as it is, and both leave in one
//!   vectored write.
//!
//! ```text
//!   read:   socket -> [rbuf: small frames] --split--> frame (BytesMut)
//!                  \-> [own buffer: one large frame] ---> frame
//!   write:  frame -> [tail: headers + small bodies] --+--> writev -> socket
//!                    [segments: frozen tails, large bodies] --^
//! ```

mod budget;
pub(crate) mod limits;
mod read;
mod split;
mod state;
mod stream;
#[cfg(test)]
mod tests;
mod write;

pub use budget::MemoryBudget;
pub use limits::LARGE_FRAME;
pub use split::{LengthPrefix, Split};
pub use state::Wire;
pub use stream::{Next, STREAM_CHUNK};
