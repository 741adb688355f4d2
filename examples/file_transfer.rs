//! Sends a file, verified with XXH3-128 and resumable, with a progress bar
//! on both ends (on stderr, when it is a terminal).
//!
//! ```sh
//! cargo run --example file_transfer -- recv --addr 127.0.0.1:8080 --out /tmp/in
//! cargo run --example file_transfer -- send --addr 127.0.0.1:8080 --file README.md
//! ```
//!
//! `recv` creates `--out` if missing (or refuses, saying why) and serves until
//! Ctrl-C, SIGTERM or `--count N` files; `send` resumes a cut file. `--course`
//! on both speaks the course's protocol (4-byte size, body, `Gracias.`);
//! `send --zero-copy` sends the chunks from the file (`sendfile`).

mod support;

use std::path::{Path, PathBuf};

use clap::Parser;
use enchufe::transfer::{course, receiver::prepare_dir, sender, Receiver, Upload};
use enchufe::{Client, Server};
use support::progress;

#[derive(Parser)]
struct Cli {
    /// `recv` files into `--out`, or `send` a `--file`.
    #[arg(value_parser = ["recv", "send"])]
    mode: String,
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    #[arg(long, required_if_eq("mode", "recv"))]
    out: Option<PathBuf>,
    #[arg(long, required_if_eq("mode", "send"))]
    file: Option<PathBuf>,
    /// `recv`: exit 0 after this many files.
    #[arg(long)]
    count: Option<usize>,
    /// Speak the course's protocol (size, body, `Gracias.`).
    #[arg(long)]
    course: bool,
    /// `recv --course`: the largest size accepted, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_size: u64,
    /// `send`: the chunks leave from the file (`sendfile` on plain TCP).
    #[arg(long)]
    zero_copy: bool,
}

#[tokio::main]
async fn main() {
    support::log::init();
    let cli = Cli::parse();
    let done = match (cli.mode.as_str(), &cli.out, &cli.file) {
        ("recv", Some(out), _) => recv(&cli, out).await,
        (_, _, file) => send(&cli, file.as_deref().expect("clap requires it")).await,
    };
    if let Err(e) = done {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Either receiver (enchufe's is a server's handler) reports files as `Event`s.
async fn recv(cli: &Cli, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    prepare_dir(out).map_err(|e| format!("--out: {e}"))?;
    let listener = support::listen::bind(&cli.addr).await?;
    let course = course::Receiver::new(out, course::Config::default().max_size(cli.max_size));
    let files = Receiver::new(out, Default::default());
    let events = (course.events(), files.events());
    let server = if cli.course {
        course.serve(listener);
        None
    } else {
        Some(Server::from_listener(listener).serve(files.clone()))
    };
    let events = if cli.course { events.0 } else { events.1 };
    tokio::select! {
        () = progress::print_events(events, cli.count) => {}
        () = support::stop::signal() => {}
    }
    if let Some(server) = server {
        server.shutdown().await;
    }
    tokio::join!(course.shutdown(), files.shutdown());
    Ok(())
}

/// The course's sender opens the file, connects, sends and waits for
/// `Gracias.`; an `Upload` resumes where the receiver's copy ends.
async fn send(cli: &Cli, file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if cli.course {
        let bar = progress::Bar::new(progress::name_of(file));
        let config = course::Config::default();
        let sent = course::send_file(file, &cli.addr, &config, Some(bar.sender())).await;
        bar.finish().await;
        println!("{} bytes sent; Respuesta: Gracias.", sent?);
        return Ok(());
    }
    let config = sender::Config::default().zero_copy(cli.zero_copy);
    let upload = Upload::file(file).await?.config(config);
    let client = Client::connect(&cli.addr).await?;
    progress::show(progress::name_of(file), upload.progress());
    let r = upload.send(&client).await?;
    let how = format!("xxh3-128 {}, resumed from {}", r.hash, r.resumed_from);
    println!("sent {} ({} bytes, {how})", r.name, r.size);
    Ok(())
}
