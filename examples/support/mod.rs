//! What the examples share and do not teach: logging, stopping on a signal,
//! stdin, flags, progress bars. Each example declares `mod support;` and
//! calls what it needs, as `support::stop::signal()`, so the reader sees
//! where a helper comes from.
// Each example uses some of these, so the rest is dead code in it.
#![allow(dead_code)]

pub(crate) mod args;
pub(crate) mod bus;
pub(crate) mod log;
pub(crate) mod nofile;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod room;
pub(crate) mod stdin;
pub(crate) mod stop;
pub(crate) mod tls;
pub(crate) mod web;
