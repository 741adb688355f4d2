//! The connection engine of enchufe: **internal, not covered by semver.**
//!
//! Use the `enchufe` crate. This crate holds the machinery that every role
//! (a server's connection, a client's link, a peer link, an HTTP
//! connection) runs on, and it changes whenever the roles need it to. It is
//! a crate of its own only because the role crates (server, client, http)
//! cannot depend on each other; its documentation is hidden and nothing in
//! it may be relied on, except the few names the `enchufe` facade
//! re-exports on purpose ([`Ended`], [`net`]'s `Accept`, `Connect`,
//! `Connected`, `BoxIo`, and [`retry`]'s `Backoff` and `WhileDown`), which are covered through the facade.
//!
//! ```text
//!  roles (server, client, http)
//!    |  each implements role::Role (hooks the driver calls), and runs a
//!    |  small loop on the driver's one Event
//!    v
//!  driver::Driver<Io, S, C, R>  the Wire (bytes, from enchufe-framing),
//!    |                        the Signal other tasks raise, one timer for
//!    |                        every deadline, the output's byte budget,
//!    |                        the Role R
//!  session                    the multiplexed rules: no socket, no clock
//!  signal::Signal, Ended      how other tasks reach a driver; why it ended
//!  net                        Accept / Connect: transports beyond TCP/Unix
//!  dial, retry                the one dial and the one retry loop (with
//!                             `Backoff`) of client links and peer links
//!  grace                      the end of a graceful shutdown: a grace
//!                             period, then stop what still runs
//!  meter                      traffic counters (feature `metrics`)
//! ```
//!
//! Like hyper's private `proto` module and quinn's `quinn-proto`, the engine
//! is kept apart from the bytes (`enchufe-framing`: frames, codecs, message
//! formats, the `Wire`) and from the roles' public types.

#![doc(html_no_source)]

mod counted;
#[doc(hidden)]
pub mod dial;
#[doc(hidden)]
pub mod driver;
mod ended;
#[doc(hidden)]
pub mod grace;
#[cfg(feature = "metrics")]
#[doc(hidden)]
pub mod meter;
pub mod net;
#[doc(hidden)]
pub mod notify;
pub mod retry;
#[doc(hidden)]
pub mod role;
#[doc(hidden)]
pub mod session;
mod signal;

#[doc(hidden)]
pub use counted::Counted;
pub use ended::Ended;
#[doc(hidden)]
pub use signal::Signal;
