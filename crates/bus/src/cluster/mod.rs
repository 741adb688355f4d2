//! Broadcasts and rooms across every server attached to one bus.
//!
//! | file | what |
//! |---|---|
//! | `handle.rs` | the [`Cluster`] handle: attach, sends, rooms, members, detach |
//! | `config.rs` | its [`Config`] |
//! | `node.rs` | who is who: [`NodeId`], [`MemberId`] |
//! | `stats.rs` | what it counted ([`Stats`]) and what a confirmed send did ([`Sent`]) |
//! | `shared.rs` | the state the handle, its tasks and recovery share; delivering and receiving |
//! | `positions.rs` | where each room stands: this server's numbering, the last heard from each |
//! | `recovery.rs` | a member's recovery and a server's catch-up from the histories |
//! | `pending.rs` | live messages to a member around its recovery: held, then skipped if it has them |
//! | `tasks.rs` | the publisher, the receiver and the heartbeat |

mod config;
mod handle;
mod node;
mod pending;
mod positions;
mod recovery;
mod shared;
mod stats;
mod tasks;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use handle::Cluster;
pub use node::{MemberId, NodeId};
pub use stats::{Sent, Stats};
