//! Flag parsers the examples share (clap's `value_parser = ...`).

use std::time::Duration;

/// A `--...-ms` flag: whole milliseconds.
pub(crate) fn millis(value: &str) -> Result<Duration, std::num::ParseIntError> {
    value.parse().map(Duration::from_millis)
}
