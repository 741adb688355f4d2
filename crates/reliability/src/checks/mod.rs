//! The checks: each attacks a real server over loopback and returns its
//! figures, each beside its bound.

pub(crate) mod attack;
pub(crate) mod crash;
pub(crate) mod doors;
pub(crate) mod input;
pub(crate) mod memory;
pub(crate) mod readers;
