//! How a WebSocket listener answers HTTP.

use std::time::Duration;

use bytes::Bytes;

/// How a WebSocket listener answers HTTP. Every field has a default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// An HTML page answered to a plain `GET /` (without an upgrade), so a
    /// browser can load the page that opens the WebSocket from the same
    /// port. Default `None`: `GET /` is answered `404`.
    pub page: Option<Bytes>,
    /// The longest request head accepted, in bytes (default 8 KiB: a
    /// browser's upgrade request is under 1 KiB, cookies included in most
    /// cases; a longer head is answered `431` without reading more).
    pub max_request_bytes: usize,
    /// The `Origin`s whose pages may open a WebSocket here (`http://host:port`,
    /// as browsers send it), or `None` (the default) for any. A browser lets
    /// any page it shows open a WebSocket to any server, with the user's
    /// cookies; a server that trusts who connects should list its own pages'
    /// origins. Upgrades without an `Origin` header (not from a browser) are
    /// let in either way.
    pub allowed_origins: Option<Vec<String>>,
    /// Once the first frame of a message has arrived, the whole message
    /// must arrive within this, or the connection is closed with code 1008
    /// ([`Error::MessageTimeout`](super::error::Error::MessageTimeout)): a client that starts a message and
    /// trickles it, or never sends its last fragment, holds its buffer
    /// this long at most. Default 30 s, the server's frame-completion
    /// deadline; `Server::ws` uses the server's `Config::frame_timeout`
    /// in its place, so one setting covers frames and messages. `None`:
    /// no deadline.
    pub message_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            page: None,
            max_request_bytes: 8 * 1024,
            allowed_origins: None,
            message_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl Options {
    /// Sets [`Options::page`].
    #[must_use]
    pub fn page(mut self, html: impl Into<Bytes>) -> Self {
        self.page = Some(html.into());
        self
    }

    /// Sets [`Options::allowed_origins`].
    #[must_use]
    pub fn allowed_origins<S: Into<String>>(
        mut self,
        origins: impl IntoIterator<Item = S>,
    ) -> Self {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`Options::message_timeout`].
    #[must_use]
    pub fn message_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.message_timeout = timeout;
        self
    }

    /// Sets [`Options::max_request_bytes`].
    #[must_use]
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }
}
