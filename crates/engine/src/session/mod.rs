//! The multiplexed profile's rules with no socket, no task and no clock in
//! them (the idea of quinn-proto): what an inbound frame means for a given
//! role, and whether a request may run now. Server, client and peer drivers
//! all decide through this module, so a rule is written (and tested on
//! bytes) once.
//!
//! ```text
//!   frame --classify(role)--> Inbound::{Request, Notify, Cancel, Reply, Push, Ping}
//!   Request/Notify --Flow::admit--> Run | Park | Busy | ShuttingDown | Duplicate
//! ```

mod classify;
mod flow;
mod in_flight;
#[cfg(test)]
mod tests;

pub use classify::{classify, Inbound, Role};
pub use enchufe_framing::mux::Violation;
pub use flow::{Admit, Busy, Flow};
pub use in_flight::{Abandon, InFlight, Registrar};
