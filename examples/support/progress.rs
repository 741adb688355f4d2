//! The `file_transfer` example's progress bars (indicatif), one per
//! transfer, drawn on stderr only when it is a terminal, and its receiver's
//! log of files.

use std::io::IsTerminal;
use std::path::Path;

use enchufe::transfer::{Event, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{broadcast, watch};

/// Prints each file a receiver stores or fails to store, with a bar for
/// each transfer under way, until `count` files have arrived (with `None`,
/// until the receiver is gone).
pub(crate) async fn print_events(mut events: broadcast::Receiver<Event>, count: Option<usize>) {
    let mut done = 0;
    while count != Some(done) {
        match events.recv().await {
            Ok(Event::Started { name, progress, .. }) => drop(show(name, progress)),
            Ok(Event::Finished { path, size, .. }) => {
                println!("received {} ({size} bytes)", path.display());
                done += 1;
            }
            Ok(Event::Failed { name, error, .. }) => eprintln!("{name}: {error}"),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => eprintln!("{n} events missed"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Follows one transfer until its sender goes away, in the background.
pub(crate) fn show(
    name: String,
    progress: watch::Receiver<Progress>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(bar(name, progress))
}

async fn bar(name: String, mut progress: watch::Receiver<Progress>) {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target).with_message(name);
    bar.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("template"),
    );
    loop {
        let p = *progress.borrow_and_update();
        bar.set_length(p.total);
        bar.set_position(p.done);
        if progress.changed().await.is_err() {
            break;
        }
    }
    bar.finish();
}

/// A path's file name, for the bar's label.
pub(crate) fn name_of(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// A bar for a transfer that reports through a watch channel of its
/// caller's (`course::send_file`, `course::receive`).
pub(crate) struct Bar {
    progress: watch::Sender<Progress>,
    shown: tokio::task::JoinHandle<()>,
}

impl Bar {
    /// Starts drawing a bar labelled `name`.
    pub(crate) fn new(name: String) -> Bar {
        let (progress, rx) = watch::channel(Progress::default());
        let shown = show(name, rx);
        Bar { progress, shown }
    }

    /// Where the transfer reports its progress.
    pub(crate) fn sender(&self) -> &watch::Sender<Progress> {
        &self.progress
    }

    /// Ends the bar once it has drawn the last progress reported.
    pub(crate) async fn finish(self) {
        drop(self.progress);
        let _ = self.shown.await;
    }
}
