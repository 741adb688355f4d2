//! The three tasks of an attached cluster: the publisher, the receiver and
//! the heartbeat. Each holds only a weak reference to the cluster, so
//! dropping the last `Cluster` ends them.

use std::sync::atomic::Ordering;
use std::sync::Weak;

use tokio_util::sync::CancellationToken;

use super::shared::{Inner, Outgoing};
use crate::queue::Drain;
use crate::{Error, Subscription};

/// Publishes what the cluster queued, one at a time, in order; once
/// detaching, until the queue is empty.
pub(super) async fn publisher(
    inner: Weak<Inner>,
    mut drain: Drain<Outgoing>,
    closing: CancellationToken,
    cancel: CancellationToken,
) {
    loop {
        let item = tokio::select! {
            // In this order: what is queued goes before a goodbye.
            biased;
            _ = cancel.cancelled() => return,
            item = drain.recv() => match item {
                Some(item) => item,
                None => return,
            },
            _ = closing.cancelled() => match drain.queued_bytes() {
                0 => return,
                _ => continue,
            },
        };
        let Some(inner) = inner.upgrade() else { return };
        let channel = &inner.config.channel;
        let publish = async {
            let Some((log, keep)) = item.log.as_ref().zip(inner.config.history) else {
                return inner.bus.publish(channel, item.envelope).await;
            };
            match inner
                .bus
                .publish_logged(channel, log, item.envelope.clone(), keep)
                .await
            {
                // A bus that keeps no history still carries the message;
                // recovery will say what it cannot find.
                Err(Error::NoHistory) => inner.bus.publish(channel, item.envelope).await,
                published => published,
            }
        };
        let published = tokio::select! {
            _ = cancel.cancelled() => return,
            published = publish => published,
        };
        match &published {
            Ok(_) => inner.published.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(error = %e, "cluster message not published");
                inner.publish_failures.fetch_add(1, Ordering::Relaxed)
            }
        };
        if item.log.is_some() {
            inner.settled.send_modify(|n| *n += 1);
        }
        if let Some(confirm) = item.confirm {
            let _ = confirm.send(published);
        }
    }
}

/// Delivers what other servers published; after the subscription was lost
/// and came back, first what it missed (from the histories).
pub(super) async fn receiver(inner: Weak<Inner>, mut sub: Subscription, cancel: CancellationToken) {
    let mut caught_up_to = sub.resumes();
    loop {
        let message = tokio::select! {
            _ = cancel.cancelled() => return,
            message = sub.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let Some(inner) = inner.upgrade() else { return };
        inner
            .incoming_dropped
            .store(sub.dropped(), Ordering::Relaxed);
        let resumes = sub.resumes();
        if resumes != caught_up_to {
            // The subscription was lost and is back: what was published
            // meanwhile is only in the histories. Here, before any message
            // of the new connection (a message delivered by the catch-up
            // is skipped when it comes again, by its number).
            caught_up_to = resumes;
            inner.catch_up().await;
        }
        inner.on_message(message.payload);
    }
}

/// Tells the other servers who is in this server's rooms, every
/// [`Config::heartbeat`](crate::Config::heartbeat).
pub(super) async fn heartbeat(inner: Weak<Inner>, cancel: CancellationToken) {
    let Some(period) = inner.upgrade().map(|inner| inner.config.heartbeat) else {
        return;
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let presence = inner.presence();
        let size = presence.len();
        let item = Outgoing {
            envelope: presence,
            log: None,
            confirm: None,
        };
        inner.outgoing.offer(item, size);
    }
}
