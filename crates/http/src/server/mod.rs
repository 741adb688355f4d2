//! [`Server`]: HTTP/1.1 over the same connection driver as every enchufe
//! role, with [`RequestHead`](crate::RequestHead) as the wire's codec
//! instead of the length prefix, and HTTP's role (`role.rs`): the driver's
//! failures come out as one `Cut`, which the connection's loop
//! (`conn.rs`), a request body's pump (`pump.rs`) and a reply's stream
//! (`stream.rs`) each read in their own way (`408`, a refusal's status, a
//! body that stopped arriving, a reply cut short).
//!
//! ```text
//!   listen.rs  Server: bind, TLS, run = the frame server's listener with one door
//!   door.rs    Door: HTTP as a door of any enchufe server; one task per connection
//!   conn.rs    serve: heads in, answer each (one at a time), drain, refuse, linger
//!   call.rs    run_handler: the handler polled on the connection's task, its deadline
//!   pump.rs    Pump: request body bytes from the wire to the handler's Body
//!   stream.rs  send_stream: a streamed reply within the output budget
//!   role.rs    HttpRole, Cut: the driver's failures in HTTP's words
//!   config.rs  Config
//! ```

mod call;
mod config;
mod conn;
mod door;
mod listen;
mod pump;
mod role;
mod stream;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use door::{door, Door};
pub use listen::Server;
