//! The sending end: [`Upload`], sent with a [`Client`].
//!
//! ```text
//!  offer ──────────────> Accept{offset, prefix hash}   (resume: check the prefix)
//!  chunk, chunk, ... ──> Ack, Ack, ...                 (at most `window` unacknowledged)
//!  finish{XXH3} ───────> Done                          (file under its final name)
//! ```

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use enchufe_client::Client;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::digest::{Digest, ALGORITHM};
use crate::error::{open_to_send, Error, Result, Violation};
use crate::protocol::{Control, Frame, FrameKind, TransferId, CHUNK_HEADER};
use crate::Progress;

mod config;
mod regions;
mod source;

pub use config::Config;
use source::{produce, Job, Source};

/// What the receiver confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The transfer's id.
    pub id: TransferId,
    /// The file's name at the receiver.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its XXH3-128 (both ends agreed), in hex.
    pub hash: String,
    /// Bytes the receiver already held from an earlier attempt (0 for a
    /// fresh transfer).
    pub resumed_from: u64,
}

/// Cancels an [`Upload`] from anywhere: the receiver is told and deletes
/// the partial file. (Dropping the `send` future instead is a *cut*: the
/// partial file stays for a resume.)
#[derive(Debug, Clone, Default)]
pub struct Canceller(CancellationToken);

impl Canceller {
    /// Cancels the upload; `send` returns [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether [`Canceller::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// One file or stream to send: its bytes, its name and size, its id.
///
/// # Examples
///
/// Progress and cancellation, before the upload starts:
///
/// ```no_run
/// # async fn f(client: enchufe::client::Client) -> Result<(), enchufe::transfer::Error> {
/// use enchufe::transfer::Upload;
/// let upload = Upload::file("informe.pdf").await?;
/// let mut progress = upload.progress();
/// let cancel = upload.canceller(); // cancel.cancel() from anywhere
/// tokio::spawn(async move {
///     while progress.changed().await.is_ok() {
///         let p = *progress.borrow();
///         println!("{} / {}", p.done, p.total);
///     }
/// });
/// let receipt = upload.send(&client).await?;
/// println!("sent {} bytes, XXH3-128 {}", receipt.size, receipt.hash);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Upload {
    source: Source,
    name: String,
    size: u64,
    id: TransferId,
    restart: bool,
    config: Config,
    progress: watch::Sender<Progress>,
    cancel: Canceller,
}

impl Upload {
    /// The file at `path`, under its own file name. Its id comes from its
    /// name, size and modification time ([`TransferId::for_file`]), so
    /// sending the same file again after a cut resumes.
    ///
    /// # Errors
    /// [`Error::Open`], naming the file, when it cannot be opened or is not
    /// a regular file;
    /// [`Error::BadName`] when its name is not UTF-8.
    pub async fn file(path: impl AsRef<Path>) -> Result<Upload> {
        let path = path.as_ref();
        let (file, meta) = open_to_send(path).await?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::BadName {
                name: path.display().to_string(),
                why: "not a UTF-8 file name",
            })?
            .to_owned();
        let id = TransferId::for_file(&name, meta.len(), meta.modified().ok());
        Ok(Upload::new(Source::File(file), name, meta.len(), id))
    }

    /// Any reader that gives exactly `size` bytes, sent as `name`, with a
    /// fresh id (give the same [`Upload::id`] to resume).
    pub fn reader(
        reader: impl AsyncRead + Send + 'static,
        name: impl Into<String>,
        size: u64,
    ) -> Upload {
        Upload::new(
            Source::Reader(std::sync::Mutex::new(Box::pin(reader))),
            name.into(),
            size,
            TransferId::random(),
        )
    }

    fn new(source: Source, name: String, size: u64, id: TransferId) -> Upload {
        Upload {
            source,
            name,
            size,
            id,
            restart: false,
            config: Config::default(),
            progress: watch::channel(Progress {
                done: 0,
                total: size,
            })
            .0,
            cancel: Canceller::default(),
        }
    }

    /// Uses this id: the same id as a cut transfer resumes it.
    pub fn id(mut self, id: TransferId) -> Self {
        self.id = id;
        self
    }

    /// Sends as `name` instead.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Ignores any partial file the receiver holds for this id.
    pub fn restart(mut self) -> Self {
        self.restart = true;
        self
    }

    /// Uses these settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// This upload's id.
    pub fn transfer_id(&self) -> TransferId {
        self.id
    }

    /// Bytes acknowledged by the receiver so far, and the total.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// A handle that cancels this upload.
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// Sends it and waits until the receiver confirms the file is complete,
    /// verified and under its name.
    ///
    /// Works on both profiles: chunks are ordinary requests, up to `window`
    /// in flight. On the multiplexed profile other requests on the same
    /// `Client` go on between chunks.
    ///
    /// # Errors
    /// [`Error::Refused`] with the receiver's [`Reason`](crate::Reason)
    /// (too large, bad name, exists, busy, hash mismatch, disk full, ...);
    /// [`Error::Client`] when the connection fails (the receiver keeps the
    /// partial file: send again to resume); [`Error::Source`] or
    /// [`Error::SourceEnded`] for the local source; [`Error::Cancelled`].
    ///
    /// # Cancel safety
    /// Dropping the future cuts the transfer: the receiver keeps what it
    /// wrote and the same id resumes from there.
    pub async fn send(mut self, client: &Client) -> Result<Receipt> {
        let cancel = self.cancel.0.clone();
        match self.run(client, &cancel).await {
            // A source that failed (or does not match what the receiver
            // holds) cannot finish the transfer either: the receiver is told
            // at once rather than at its idle deadline.
            Err(
                e @ (Error::Cancelled
                | Error::Source(_)
                | Error::SourceEnded { .. }
                | Error::ResumeMismatch { .. }),
            ) => {
                let frame = Frame::control(Control::Cancel { id: self.id });
                let _ = client
                    .request_timeout::<_, Frame>(frame, self.config.cancel_timeout)
                    .await;
                Err(e)
            }
            other => other,
        }
    }

    async fn run(&mut self, client: &Client, cancel: &CancellationToken) -> Result<Receipt> {
        let (mut offset, max_chunk, window, prefix) =
            self.offer(client, cancel, self.restart).await?;
        let mut hasher = Digest::new();
        if offset > 0 && !self.prefix_matches(&mut hasher, offset, &prefix).await? {
            match &mut self.source {
                Source::File(file) => {
                    file.rewind().await.map_err(Error::Source)?;
                    hasher.reset();
                    offset = self.offer(client, cancel, true).await?.0;
                }
                _ => return Err(Error::ResumeMismatch { offset }),
            }
        }
        let resumed_from = offset;
        self.progress.send_replace(Progress {
            done: offset,
            total: self.size,
        });
        let chunk = self.config.chunk_size.min(max_chunk).max(1) as u64;
        let window = self.config.window.min(window).max(1) as usize;

        let source = std::mem::replace(&mut self.source, Source::Spent);
        let hasher = match source {
            // Asked for: a file's chunks leave from the file itself
            // (`sendfile` on plain TCP), hashed by a pass of their own.
            Source::File(file) if self.config.zero_copy => {
                let file = std::sync::Arc::new(file.into_std().await);
                let job = Job::new(self.id, offset, self.size, chunk as usize, hasher);
                self.send_regions(client, cancel, file, job, window).await?
            }
            source => {
                let job = Job::new(self.id, offset, self.size, chunk as usize, hasher);
                self.send_chunks(client, cancel, source, job, window)
                    .await?
            }
        };

        let hash = hasher.hex();
        let finish = Frame::control(Control::Finish {
            id: self.id,
            hash: hash.clone(),
        });
        match self
            .ask(client, finish, self.config.finish_timeout, cancel)
            .await?
        {
            Control::Done { size } if size == self.size => Ok(Receipt {
                id: self.id,
                name: self.name.clone(),
                size,
                hash,
                resumed_from,
            }),
            other => Err(unexpected(FrameKind::Control(other))),
        }
    }

    /// Sends chunks read (and hashed) ahead by a producer with `window` in
    /// flight: the hash of the whole body.
    async fn send_chunks(
        &self,
        client: &Client,
        cancel: &CancellationToken,
        source: Source,
        job: Job,
        window: usize,
    ) -> Result<Digest> {
        // A producer reads and hashes the chunks (a blocking thread for a
        // file, a task for a reader) while this loop keeps `window` of them
        // in flight (a request goes out only when polled). Reading, hashing
        // and the socket then overlap, and a slow source never holds back
        // chunks already read.
        let mut acked = job.offset();
        let mut next = job.offset();
        let mut ahead = Ahead::new(window, job.chunk as u64);
        let (mut chunks, recycle, producer) = produce(source, job, window).await?;
        let mut in_flight: FuturesUnordered<_> = FuturesUnordered::new();
        let mut producing = true;
        while producing || !in_flight.is_empty() {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(Error::Cancelled),
                Some((reply, at, len, sent)) = in_flight.next(), if !in_flight.is_empty() => {
                    let reply: Frame = reply?;
                    match reply.0 {
                        FrameKind::Control(Control::Ack { .. }) => {}
                        other => return Err(unexpected(other)),
                    }
                    // Answered, so the connection has written it and let it
                    // go: its buffer serves a later chunk.
                    if let Ok(buf) = Bytes::try_into_mut(sent) {
                        let _ = recycle.try_send(buf);
                    }
                    ahead.acked(at);
                    acked += len;
                    self.progress.send_replace(Progress {
                        done: acked,
                        total: self.size,
                    });
                }
                frame = chunks.recv(), if producing && ahead.allows(next) => match frame {
                    Some(Ok(frame)) => {
                        let len = (frame.len() - CHUNK_HEADER) as u64;
                        let sent = frame.clone();
                        let at = next;
                        in_flight.push(async move {
                            let reply: Result<Frame> = client.request(frame).await.map_err(Error::from);
                            (reply, at, len, sent)
                        });
                        ahead.sent(at);
                        next += len;
                    }
                    Some(Err(e)) => return Err(e),
                    None => producing = false,
                },
            }
        }
        producer.finish().await
    }

    /// Offers the transfer: `(offset, max_chunk, window, prefix_hash)`.
    async fn offer(
        &self,
        client: &Client,
        cancel: &CancellationToken,
        restart: bool,
    ) -> Result<(u64, u32, u32, String)> {
        let offer = Frame::control(Control::Offer {
            id: self.id,
            name: self.name.clone(),
            size: self.size,
            digest: ALGORITHM.into(),
            restart,
        });
        // The receiver may hash a long partial file back first: as long as
        // a finish may take.
        match self
            .ask(client, offer, self.config.finish_timeout, cancel)
            .await?
        {
            Control::Accept {
                offset,
                prefix_hash,
                max_chunk,
                window,
            } if offset <= self.size => Ok((offset, max_chunk, window, prefix_hash)),
            other => Err(unexpected(FrameKind::Control(other))),
        }
    }

    /// One control request; a refusal becomes [`Error::Refused`].
    async fn ask(
        &self,
        client: &Client,
        frame: Frame,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Control> {
        let reply: Frame = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(Error::Cancelled),
            reply = client.request_timeout(frame, timeout) => reply?,
        };
        match reply.0 {
            FrameKind::Control(Control::Refused { reason, message }) => {
                Err(Error::Refused { reason, message })
            }
            FrameKind::Control(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// Reads and hashes the first `offset` bytes of the source; whether
    /// they hash to what the receiver holds.
    async fn prefix_matches(
        &mut self,
        hasher: &mut Digest,
        offset: u64,
        prefix: &str,
    ) -> Result<bool> {
        let mut buf = vec![0; 256 << 10];
        let mut left = offset;
        let reader = self.source.reader()?;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = reader.read(&mut buf[..want]).await.map_err(Error::Source)?;
            if n == 0 {
                return Err(Error::SourceEnded {
                    expected: self.size,
                    read: offset - left,
                });
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(hasher.hex() == prefix)
    }
}

/// The chunks in flight, by offset. A chunk goes only while it starts
/// within `window` chunks of the oldest one not yet acknowledged: what the
/// receiver checks, since its writer takes chunks in order while the acks
/// of later chunks can come before an earlier one's (its handlers run side
/// by side). Counting chunks in flight alone would let the sender run
/// ahead of a chunk whose handler is slow.
struct Ahead {
    offsets: std::collections::BTreeSet<u64>,
    span: u64,
    window: usize,
}

impl Ahead {
    fn new(window: usize, chunk: u64) -> Ahead {
        Ahead {
            offsets: Default::default(),
            span: chunk.saturating_mul(window as u64),
            window,
        }
    }

    /// Whether a chunk at `offset` may go now.
    fn allows(&self, offset: u64) -> bool {
        self.offsets.len() < self.window
            && self
                .offsets
                .first()
                .is_none_or(|&oldest| offset < oldest.saturating_add(self.span))
    }

    fn sent(&mut self, offset: u64) {
        self.offsets.insert(offset);
    }

    fn acked(&mut self, offset: u64) {
        self.offsets.remove(&offset);
    }
}

fn unexpected(reply: FrameKind) -> Error {
    match reply {
        FrameKind::Control(Control::Refused { reason, message }) => {
            Error::Refused { reason, message }
        }
        FrameKind::Control(other) => {
            Error::Protocol(Violation::UnexpectedReply(format!("{other:?}")))
        }
        FrameKind::Chunk(_) => Error::Protocol(Violation::ChunkForReply),
    }
}
