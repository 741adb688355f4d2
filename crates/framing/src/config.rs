/// Limits of one framed stream.
///
/// ```
/// let config = enchufe::framing::Config::default().max_frame_length(64 * 1024);
/// assert_eq!(config.max_frame_length, 64 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest payload, in bytes, accepted in either direction.
    ///
    /// Default: [`Config::DEFAULT_MAX_FRAME_LENGTH`] (8 MiB). It is checked on
    /// the 4-byte header, before any buffer grows, so a peer that announces a
    /// 4 GiB frame costs nothing but the error. A larger limit lets whole
    /// messages be larger but lets each connection hold that much memory while
    /// a frame arrives; values above `u32::MAX` are treated as `u32::MAX`, the
    /// most the header can say.
    pub max_frame_length: usize,

    /// Plain profile, opt-in: a frame declared longer than
    /// `max_frame_length` but at most this long is not refused; its body is
    /// handed out as a stream of chunks ([`Wire::take_stream`](crate::Wire::take_stream),
    /// [`Wire::poll_chunk`](crate::Wire::poll_chunk)), so memory stays
    /// bounded by one chunk whatever the frame's length (up to `u32::MAX`,
    /// the most a header can say).
    ///
    /// Default `0`: off, a frame over `max_frame_length` is an error.
    pub max_stream_length: u64,
}

impl Config {
    /// 8 MiB: large enough for the course's text and JSON messages and for
    /// JSON documents of real size, small enough that a thousand connections
    /// each mid-frame stay within a few GiB. Not large enough for the
    /// course's file sender, whose whole file is one frame (up to 4 GiB):
    /// send files with `enchufe::transfer` (chunks of 1 MiB), or speak that
    /// protocol with `transfer::course`, which streams the body to disk.
    pub const DEFAULT_MAX_FRAME_LENGTH: usize = 8 * 1024 * 1024;

    crate::setters! {
        max_frame_length: usize;
        max_stream_length: u64;
    }

    /// The limit as the codec applies it: never more than a header can carry.
    pub(crate) fn effective_max(&self) -> usize {
        self.max_frame_length.min(u32::MAX as usize)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_length: Self::DEFAULT_MAX_FRAME_LENGTH,
            max_stream_length: 0,
        }
    }
}
