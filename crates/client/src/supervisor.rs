//! A reconnecting client's supervisor: one task per client that waits for
//! the current connection to end, then redials with backoff.
//!
//! ```text
//!            link ends                 dial ok
//!   Up(link) ---------> Down --redial--------> Up(new link)   (Reconnected)
//!      |                 |  attempts used up
//!      |                 +-----------------> GaveUp            (GaveUp)
//!      +-- close() / last handle dropped --> Closed  (the task ends)
//! ```
//!
//! The state lives in a `watch` channel: handles read it to find the link
//! (an uncontended read lock held for an `Arc` clone), and wait on it while
//! the client is down.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

use crate::dial::dial;
use crate::link::{Link, Wiring};
use enchufe_engine::retry::{retry, GaveUp, Start};

use crate::{Backoff, Config, Error, Event, Reconnect, Result, WhileDown};

/// Where a reconnecting client stands.
#[derive(Debug)]
enum State {
    /// Connected through this link (which may have just ended, until the
    /// supervisor notices).
    Up(Link),
    /// Redialing.
    Down,
    /// The backoff ran out; the supervisor has ended.
    GaveUp { attempts: u32, last: Arc<Error> },
    /// [`Client::close`](crate::Client::close) was called. The half-closed
    /// link is kept so its reader can deliver the server's last words.
    Closed(Option<Link>),
}

impl State {
    /// Whether a call can be answered now (with a link or an error), rather
    /// than wait for the supervisor.
    fn settled(&self) -> bool {
        match self {
            State::Up(link) => !link.is_ended(),
            State::Down => false,
            State::GaveUp { .. } | State::Closed(_) => true,
        }
    }
}

/// The handles' side of a supervised client. Dropping it (with the last
/// handle) stops the supervisor task, which drops the connection.
#[derive(Debug)]
pub(crate) struct Supervised {
    state: watch::Sender<State>,
    /// Stops the supervisor task.
    stop: CancellationToken,
    while_down: WhileDown,
    /// The address as given, for [`Error::GaveUp`].
    addr: String,
    events: broadcast::Sender<Event>,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Supervised {
    /// Starts supervising `link`, which `addr` dialed.
    pub(crate) fn start(
        link: Link,
        addr: String,
        config: Config,
        policy: Reconnect,
        wiring: Wiring,
    ) -> Supervised {
        let state = watch::Sender::new(State::Up(link.clone()));
        let stop = CancellationToken::new();
        let events = wiring.events.clone();
        let task = Task {
            addr: addr.clone(),
            config,
            backoff: policy.backoff,
            wiring,
            state: state.clone(),
            stop: stop.clone(),
        };
        let span = tracing::info_span!("reconnect", server = %addr);
        tokio::spawn(task.run(link).instrument(span));
        Supervised {
            state,
            stop,
            while_down: policy.while_down,
            addr,
            events,
        }
    }

    pub(crate) fn events(&self) -> &broadcast::Sender<Event> {
        &self.events
    }

    /// The live link now, or `None` while redialing or stopped.
    pub(crate) fn link_now(&self) -> Option<Link> {
        match &*self.state.borrow() {
            State::Up(link) if !link.is_ended() => Some(link.clone()),
            _ => None,
        }
    }

    /// The live link, waiting for one per [`WhileDown`] while redialing.
    ///
    /// # Errors
    /// [`Error::Disconnected`] when it cannot wait (longer);
    /// [`Error::GaveUp`] or [`Error::Closed`] once the client has stopped.
    pub(crate) async fn link(&self) -> Result<Link> {
        if let Some(now) = self.answer(&self.state.borrow()) {
            return now;
        }
        let WhileDown::Wait(bound) = self.while_down else {
            return Err(Error::Disconnected);
        };
        let mut state = self.state.subscribe();
        let settled = tokio::time::timeout(bound, async {
            // The sender is `self.state`, alive as long as `self`: no error.
            let settled = state.wait_for(State::settled).await.ok()?;
            self.answer(&settled)
        });
        settled
            .await
            .ok()
            .flatten()
            .unwrap_or(Err(Error::Disconnected))
    }

    /// What a call gets in this state, `None` if it must wait.
    fn answer(&self, state: &State) -> Option<Result<Link>> {
        match state {
            State::Up(link) if !link.is_ended() => Some(Ok(link.clone())),
            State::Up(_) | State::Down => None,
            State::GaveUp { attempts, last } => Some(Err(Error::GaveUp {
                addr: self.addr.clone(),
                attempts: *attempts,
                last: last.clone(),
            })),
            State::Closed(_) => Some(Err(Error::Closed)),
        }
    }

    /// Stops redialing and marks the client closed; returns the live link,
    /// if any, for the caller to half-close.
    pub(crate) fn close(&self) -> Option<Link> {
        self.stop.cancel();
        let mut live = None;
        self.state.send_modify(|state| {
            let next = match std::mem::replace(state, State::Down) {
                State::Up(link) | State::Closed(Some(link)) => {
                    live = Some(link.clone());
                    State::Closed(Some(link))
                }
                given_up @ State::GaveUp { .. } => given_up,
                State::Down | State::Closed(None) => State::Closed(None),
            };
            *state = next;
        });
        live
    }

    /// Whether the client has stopped for good (closed, or given up).
    pub(crate) fn is_stopped(&self) -> bool {
        matches!(
            *self.state.borrow(),
            State::GaveUp { .. } | State::Closed(_)
        )
    }
}

/// The supervisor task's own state.
struct Task {
    addr: String,
    config: Config,
    backoff: Backoff,
    wiring: Wiring,
    state: watch::Sender<State>,
    stop: CancellationToken,
}

impl Task {
    async fn run(self, mut link: Link) {
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = link.ended() => {}
            }
            // Only an `Up` goes `Down`: a client closed meanwhile stays closed.
            let down = self.state.send_if_modified(|state| {
                let up = matches!(state, State::Up(_));
                if up {
                    *state = State::Down;
                }
                up
            });
            // The dead link's tasks end once nobody holds it.
            drop(link);
            if !down {
                return;
            }
            link = match self.redial().await {
                Some(link) => link,
                None => return,
            };
        }
    }

    /// Dials until it works (returning the new link, installed), the
    /// backoff runs out (`None`, state `GaveUp`), or the client stops.
    async fn redial(&self) -> Option<Link> {
        // The lost link counts as a failure, so the first redial waits too:
        // a server that accepts and hangs up at once would otherwise be
        // redialed in a tight loop.
        let redialed = retry(
            &self.backoff,
            Start::AfterLoss,
            || dial(&self.addr, &self.config, &self.wiring),
            |_| true,
        );
        let GaveUp { attempts, last } = tokio::select! {
            () = self.stop.cancelled() => return None,
            redialed = redialed => match redialed {
                Ok((link, attempts)) => return self.install(link, attempts),
                Err(gave_up) => gave_up,
            },
        };
        info!(attempts, error = %last, "giving up reconnecting");
        let last = Arc::new(last);
        self.state.send_if_modified(|state| {
            let down = matches!(state, State::Down);
            if down {
                *state = State::GaveUp {
                    attempts,
                    last: last.clone(),
                };
            }
            down
        });
        let _ = self.wiring.events.send(Event::GaveUp {
            attempts,
            last: last.clone(),
        });
        // `recv` learns why, once; bounded by the client's life.
        let gave_up = Error::GaveUp {
            addr: self.addr.clone(),
            attempts,
            last,
        };
        tokio::select! {
            _ = self.wiring.incoming.send(Err(gave_up)) => {}
            () = self.stop.cancelled() => {}
        }
        None
    }

    /// Makes `link` the client's connection, unless it was closed meanwhile.
    fn install(&self, link: Link, attempts: u32) -> Option<Link> {
        let installed = self.state.send_if_modified(|state| {
            let down = matches!(state, State::Down);
            if down {
                *state = State::Up(link.clone());
            }
            down
        });
        if !installed {
            return None;
        }
        info!(addr = ?link.peer_addr(), attempts, "reconnected");
        // A TCP link has a peer address unless the socket died already.
        if let Some(addr) = link.peer_addr() {
            let _ = self
                .wiring
                .events
                .send(Event::Reconnected { addr, attempts });
        }
        Some(link)
    }
}
