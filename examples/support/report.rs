//! How the examples end on an error: with its message (`Display`), which
//! says what failed and what to do, where `main` returning a plain error
//! would print its `Debug` dump (`Framing(NotFrames { looks_like: Tls, ...`).

use std::fmt;

/// An error `main` returns, printed as `Error: <its message>`. Anything `?`
/// accepts as a `Box<dyn Error>` converts into it.
pub(crate) struct Report(Box<dyn std::error::Error>);

impl Report {
    /// `error`, after what was being done (`cannot open FILE: <error>`).
    pub(crate) fn context(doing: impl fmt::Display, error: impl fmt::Display) -> Report {
        Report(format!("{doing}: {error}").into())
    }
}

impl<E: Into<Box<dyn std::error::Error>>> From<E> for Report {
    fn from(error: E) -> Report {
        Report(error.into())
    }
}

// `main` prints what it returns with `Debug`: give it the message.
impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
