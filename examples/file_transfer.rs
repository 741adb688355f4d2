//! Sends a file, verified with XXH3-128 and resumable, with a progress bar
//! on both ends (on stderr, when it is a terminal).
//!
//! ```sh
//! cargo run --example file_transfer -- recv --addr 127.0.0.1:8080 --out /tmp/in
//! cargo run --example file_transfer -- send --addr 127.0.0.1:8080 --file informe.pdf
//! ```
//!
//! `recv` creates `--out` if missing (or refuses at once, saying why) and
//! serves until Ctrl-C, or `--count N` files; `send` exits 0 once the file
//! is confirmed, and resumes a cut one. With `--course` on both, they speak
//! the course's protocol (4-byte size, body, `Gracias.`), also with its
//! Python scripts; `recv` names files `recibido-N.bin`.

mod support;

use std::path::{Path, PathBuf};

use clap::Parser;
use enchufe::transfer::{course, receiver::prepare_dir, Event, Receiver, Upload};
use enchufe::{Client, Server};
use support::progress;
use tokio::net::TcpListener;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

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
async fn recv(cli: &Cli, out: &Path) -> Result {
    prepare_dir(out).map_err(|e| format!("--out: {e}"))?;
    let listener = TcpListener::bind(&cli.addr).await;
    let listener = listener.map_err(|e| format!("cannot listen on {}: {e}", cli.addr))?;
    println!("listening on {}", listener.local_addr()?);
    let course = course::Receiver::new(out, course::Config::default().max_size(cli.max_size));
    let files = Receiver::new(out, Default::default());
    let mut events = files.events();
    let server = if cli.course {
        events = course.events();
        course.serve(listener);
        None
    } else {
        Some(Server::from_listener(listener).serve(files.clone()))
    };
    let received = async {
        let mut done = 0;
        while cli.count != Some(done) {
            match events.recv().await {
                Ok(Event::Started { name, progress, .. }) => drop(progress::show(name, progress)),
                Ok(Event::Finished { path, size, .. }) => {
                    println!("received {} ({size} bytes)", path.display());
                    done += 1;
                }
                Ok(Event::Failed { name, error, .. }) => eprintln!("{name}: {error}"),
                _ => {}
            }
        }
    };
    tokio::select! { () = received => {}, () = support::stop::signal() => {} }
    if let Some(server) = server {
        server.shutdown().await;
    }
    tokio::join!(course.shutdown(), files.shutdown());
    Ok(())
}

/// The course's sender opens the file, connects, sends and waits for
/// `Gracias.`; an `Upload` resumes where the receiver's copy ends.
async fn send(cli: &Cli, file: &Path) -> Result {
    if cli.course {
        let bar = progress::Bar::new(progress::name_of(file));
        let config = course::Config::default();
        let sent = course::send_file(file, &cli.addr, &config, Some(bar.sender())).await;
        bar.finish().await;
        println!("{} bytes sent; Respuesta: Gracias.", sent?);
        return Ok(());
    }
    let (upload, client) = (Upload::file(file).await?, Client::connect(&cli.addr).await?);
    progress::show(progress::name_of(file), upload.progress());
    let r = upload.send(&client).await?;
    let how = format!("xxh3-128 {}, resumed from {}", r.hash, r.resumed_from);
    println!("sent {} ({} bytes, {how})", r.name, r.size);
    Ok(())
}
