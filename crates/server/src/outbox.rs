//! One connection's outbound queue: bounded, shared by replies and pushes,
//! and able to evict its oldest push (which tokio's mpsc cannot), so every
//! slow-consumer policy fits one structure.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use enchufe_framing::OutFrame;
use tokio::sync::Notify;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the writer: a frame was queued or the outbox closed.
    readable: Notify,
    /// Wakes a waiting sender: a frame was taken or the outbox closed.
    writable: Notify,
}

#[derive(Debug)]
struct State {
    /// Frames in send order; the flag marks pushes, which may be evicted.
    frames: VecDeque<(OutFrame, bool)>,
    closed: bool,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::with_capacity(capacity.min(1024)),
                closed: false,
            }),
            capacity: capacity.max(1),
            readable: Notify::new(),
            writable: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame if there is room now.
    pub(crate) fn try_send(&self, frame: OutFrame, is_push: bool) -> Result<(), Refused> {
        let mut state = self.state();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.frames.len() >= self.capacity {
            return Err(Refused::Full);
        }
        state.frames.push_back((frame, is_push));
        drop(state);
        self.readable.notify_one();
        Ok(())
    }

    /// Queues a frame, waiting for room. Not bounded in time by itself: the
    /// caller wraps it in its write timeout.
    pub(crate) async fn send(&self, frame: OutFrame, is_push: bool) -> Result<(), Refused> {
        let mut frame = Some(frame);
        loop {
            // Registered before the check, so a `notify_one` between the
            // check and the await is not lost (Notify keeps one permit).
            let room = self.writable.notified();
            {
                let mut state = self.state();
                if state.closed {
                    return Err(Refused::Closed);
                }
                if state.frames.len() < self.capacity {
                    if let Some(frame) = frame.take() {
                        state.frames.push_back((frame, is_push));
                    }
                    drop(state);
                    self.readable.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Queues a push, evicting the oldest queued push if full. Returns how
    /// many frames were evicted (0 or 1); when the queue is full of replies
    /// only, the new push is the one refused.
    pub(crate) fn send_evicting(&self, frame: OutFrame) -> Result<usize, Refused> {
        let mut state = self.state();
        if state.closed {
            return Err(Refused::Closed);
        }
        let mut evicted = 0;
        if state.frames.len() >= self.capacity {
            match state.frames.iter().position(|(_, is_push)| *is_push) {
                Some(oldest) => {
                    state.frames.remove(oldest);
                    evicted = 1;
                }
                None => return Err(Refused::Full),
            }
        }
        state.frames.push_back((frame, true));
        drop(state);
        self.readable.notify_one();
        Ok(evicted)
    }

    /// Takes the next frame, waiting for one; `None` once closed and empty.
    pub(crate) async fn recv(&self) -> Option<OutFrame> {
        loop {
            let ready = self.readable.notified();
            if let Some(frame) = self.try_recv() {
                return Some(frame);
            }
            if self.state().closed {
                return None;
            }
            ready.await;
        }
    }

    /// Takes the next frame if one is queued.
    pub(crate) fn try_recv(&self) -> Option<OutFrame> {
        let frame = self.state().frames.pop_front().map(|(frame, _)| frame);
        if frame.is_some() {
            self.writable.notify_one();
        }
        frame
    }

    /// Refuses new frames; those queued can still be taken.
    pub(crate) fn close(&self) {
        self.state().closed = true;
        self.readable.notify_one();
        self.writable.notify_waiters();
    }

    /// Frames queued now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(n: u8) -> OutFrame {
        OutFrame::plain(Bytes::from(vec![n]))
    }

    #[tokio::test]
    async fn full_refuses_and_taking_one_makes_room() {
        let outbox = Outbox::new(2);
        outbox.try_send(frame(1), true).unwrap();
        outbox.try_send(frame(2), false).unwrap();
        assert_eq!(outbox.try_send(frame(3), true), Err(Refused::Full));
        let waiting = outbox.send(frame(3), true);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        assert_eq!(outbox.recv().await.unwrap().body()[..], [1]);
        waiting.await.unwrap();
        assert_eq!(outbox.len(), 2);
    }

    #[tokio::test]
    async fn eviction_takes_the_oldest_push_never_a_reply() {
        let outbox = Outbox::new(3);
        outbox.try_send(frame(1), false).unwrap(); // a reply
        outbox.try_send(frame(2), true).unwrap();
        outbox.try_send(frame(3), true).unwrap();
        assert_eq!(outbox.send_evicting(frame(4)), Ok(1));
        let order: Vec<u8> = std::iter::from_fn(|| outbox.try_recv())
            .map(|f| f.body()[0])
            .collect();
        assert_eq!(order, [1, 3, 4]);

        let replies = Outbox::new(1);
        replies.try_send(frame(1), false).unwrap();
        assert_eq!(replies.send_evicting(frame(2)), Err(Refused::Full));
    }

    #[tokio::test]
    async fn close_wakes_waiters_and_drains() {
        let outbox = std::sync::Arc::new(Outbox::new(1));
        outbox.try_send(frame(1), true).unwrap();
        let sender = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.send(frame(2), true).await })
        };
        tokio::task::yield_now().await;
        outbox.close();
        assert_eq!(sender.await.unwrap(), Err(Refused::Closed));
        assert_eq!(outbox.recv().await.unwrap().body()[..], [1]);
        assert!(outbox.recv().await.is_none());
    }
}
