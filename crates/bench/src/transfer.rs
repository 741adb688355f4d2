//! `transfer`: one large file through the `file_transfer` example, sender
//! and receiver in separate processes over loopback, against iperf3's
//! single-stream loopback rate measured in the same run.
//!
//! ```text
//!  iperf3 -s -1  <── iperf3 -c -t SECS -J          (before)
//!  file_transfer recv --count 1  <── file_transfer send --file F   (hash, fsync)
//!  the same with glibc's malloc tuned to keep freed memory
//!  file_transfer recv --course --count 1  <── send --course        (no hash)
//!  iperf3 -s -1  <── iperf3 -c -t SECS -J          (after)
//!  in this process: a multiplexed server + Client, a transfer of the same
//!  size, and "ping" requests on the same connection, timed
//! ```
//!
//! Peak memory is `VmHWM` of each process, read from `/proc` every 20 ms
//! until it exits (the peak is monotonic, so the last reading is it, up to
//! what the last 20 ms could add). Every received file is compared byte for
//! byte with the original.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use enchufe::transfer::{Receiver, Routed, Upload};
use enchufe::{Client, Connection, Handler, Profile, Server};
use tokio::process::Command;

use crate::child::{self, ServerSpec};
use crate::error::{Error, Result};
use crate::procfs;

/// Options of `enchufe-bench transfer`.
#[derive(Debug, clap::Args)]
pub(crate) struct Opts {
    /// File size, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Where the file and the received copies go (default: a temporary
    /// directory, removed at the end). On a tmpfs (`/dev/shm/...`) the
    /// receiver's `fsync` costs nothing and the figures are the network's
    /// and the hash's; on a disk they include the disk.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How long each iperf3 run lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    iperf_secs: u32,
    /// Use this file_transfer binary instead of building the example.
    #[arg(long)]
    file_transfer: Option<PathBuf>,
}

/// One transfer between two processes.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) secs: f64,
    pub(crate) sender_hwm_kib: u64,
    pub(crate) receiver_hwm_kib: u64,
}

impl Run {
    pub(crate) fn mib_per_sec(&self, bytes: u64) -> f64 {
        bytes as f64 / (1 << 20) as f64 / self.secs
    }
}

pub(crate) async fn run(opts: Opts) -> Result<()> {
    let exe = match &opts.file_transfer {
        Some(path) => path.clone(),
        None => child::build_example("file_transfer").await?,
    };
    let tmp;
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            tmp = TempDir::new()?;
            tmp.0.clone()
        }
    };
    let size = opts.size_mib << 20;
    let file = dir.join("origen.bin");
    eprintln!("writing {} MiB of pseudo-random bytes...", opts.size_mib);
    random_file(&file, size)?;
    // On disk, not only in the page cache: its writeback would otherwise
    // compete with the first transfer's writes.
    std::fs::File::open(&file)?.sync_all()?;

    let secs = opts.iperf_secs.to_string();
    let iperf_before = iperf(&["-t", &secs], &[]).await?;
    let ours = between_processes(&exe, &dir, &file, false, &[]).await?;
    let tuned = between_processes(&exe, &dir, &file, false, GLIBC_TUNED).await?;
    let course = between_processes(&exe, &dir, &file, true, &[]).await?;
    let iperf_after = iperf(&["-t", &secs], &[]).await?;
    let latency = requests_during_a_transfer(&dir, &file).await?;

    let iperf_mib = iperf_before.max(iperf_after);
    let row = |what: &str, r: &Run| {
        let rate = r.mib_per_sec(size);
        println!(
            "| {what} | {:.2} s | {rate:.0} MiB/s | {:.2}× | {:.1} MiB | {:.1} MiB |",
            r.secs,
            rate / iperf_mib,
            r.sender_hwm_kib as f64 / 1024.0,
            r.receiver_hwm_kib as f64 / 1024.0,
        );
    };
    println!(
        "\n{} MiB over loopback, separate processes:\n",
        opts.size_mib
    );
    println!("| what | time | throughput | × iperf3 | sender peak RSS | receiver peak RSS |");
    println!("|---|---|---|---|---|---|");
    row("`file_transfer` (chunks, XXH3-128, fsync)", &ours);
    row(
        "the same, glibc malloc told to keep freed memory (`MALLOC_*` below)",
        &tuned,
    );
    row("`file_transfer --course` (size + body, no hash)", &course);
    println!(
        "| iperf3, one stream (before / after) | | {iperf_before:.0} / {iperf_after:.0} MiB/s | 1× | | |"
    );
    let tunables: Vec<String> = GLIBC_TUNED
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("\n`MALLOC_*`: {}", tunables.join(" "));
    println!(
        "\nRequests on the same multiplexed connection during a {} MiB transfer (one process): \
         {} answered, p50 {:?}, p99 {:?}, max {:?}; transfer {:.0} MiB/s",
        opts.size_mib, latency.count, latency.p50, latency.p99, latency.max, latency.mib_per_sec
    );
    Ok(())
}

/// glibc's malloc returns freed memory to the kernel eagerly, so each new
/// 1 MiB chunk buffer is fresh pages: page faults and zeroing, most of the
/// kernel time of a transfer. These keep it (a trim threshold over the
/// window, large buffers from the heap rather than their own mappings).
const GLIBC_TUNED: &[(&str, &str)] = &[
    ("MALLOC_TRIM_THRESHOLD_", "268435456"),
    ("MALLOC_MMAP_THRESHOLD_", "16777216"),
    ("MALLOC_TOP_PAD_", "67108864"),
];

/// Sends `file` from one `file_transfer` process to another, both with the
/// environment `env`.
pub(crate) async fn between_processes(
    exe: &Path,
    dir: &Path,
    file: &Path,
    course: bool,
    env: &[(&str, &str)],
) -> Result<Run> {
    let out = dir.join(if course {
        "recibido-course"
    } else {
        "recibido"
    });
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut args: Vec<std::ffi::OsString> =
        vec!["recv".into(), "--addr".into(), "127.0.0.1:0".into()];
    args.extend([
        "--out".into(),
        out.clone().into_os_string(),
        "--count".into(),
        "1".into(),
    ]);
    if course {
        args.extend([
            "--course".into(),
            "--max-size".into(),
            u64::MAX.to_string().into(),
        ]);
    }
    let spec = ServerSpec {
        name: format!("receiver{}", if course { "-course" } else { "" }),
        program: exe.to_owned(),
        args,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut receiver = child::Server::start(&spec, dir).await?;
    let start = Instant::now();
    let mut sender = Command::new(exe)
        .args(["send", "--addr", &receiver.addr.to_string(), "--file"])
        .arg(file)
        .args(course.then_some("--course"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let sender_pid = sender
        .id()
        .ok_or_else(|| Error::harness("the sender exited at once"))?;
    let (mut sender_hwm, mut receiver_hwm) = (0, 0);
    let limit = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Ok(m) = procfs::memory(sender_pid) {
            sender_hwm = sender_hwm.max(m.hwm);
        }
        if let Ok(m) = procfs::memory(receiver.pid) {
            receiver_hwm = receiver_hwm.max(m.hwm);
        }
        if Instant::now() > limit {
            return Err(Error::harness("the transfer ran over 600 s"));
        }
        // Sample memory every 20 ms, but take the sender's exit when it
        // happens: a 20 ms tick would add up to 2.5% to a 0.8 s transfer.
        tokio::select! {
            status = sender.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(Error::harness(format!("the sender failed: {status}")));
    }
    // The receiver exits after its one transfer; it may still be writing
    // its last line.
    let gone = Instant::now() + Duration::from_secs(30);
    while receiver.is_alive() && Instant::now() < gone {
        if let Ok(m) = procfs::memory(receiver.pid) {
            receiver_hwm = receiver_hwm.max(m.hwm);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.stop().await;
    let received = if course {
        out.join("recibido-1.bin")
    } else {
        out.join("origen.bin")
    };
    same_file(&received, file)?;
    std::fs::remove_dir_all(&out)?;
    Ok(Run {
        secs,
        sender_hwm_kib: sender_hwm,
        receiver_hwm_kib: receiver_hwm,
    })
}

/// iperf3's single-stream loopback rate, in MiB/s (what the receiver got),
/// for a run of `how` (`-t SECS` or `-n BYTES`), its server given `server`
/// besides (`-F FILE` writes what it receives to a file).
pub(crate) async fn iperf(how: &[&str], server: &[&str]) -> Result<f64> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port().to_string()
    };
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .args(server)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::harness(format!(
                "cannot run iperf3 ({e}); ./scripts/bench-transfer installs it (see docs/TESTING.md)"
            ))
        })?;
    // The server needs a moment to listen: the client is retried while it
    // reports an error (in its JSON) instead of a result.
    let mut bits = None;
    let mut last = String::new();
    for _ in 0..50 {
        let o = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port, "-J"])
            .args(how)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        bits = json["end"]["sum_received"]["bits_per_second"].as_f64();
        if bits.is_some() {
            break;
        }
        last = json["error"].as_str().unwrap_or("no JSON").to_owned();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.kill().await;
    let bits = bits.ok_or_else(|| Error::harness(format!("iperf3 -c failed: {last}")))?;
    Ok(bits / 8.0 / (1 << 20) as f64)
}

struct Latency {
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    mib_per_sec: f64,
}

/// A server that takes transfers and answers `ping`.
struct App(Receiver);

impl Handler for App {
    type Request = Routed<String>;
    type Response = Routed<String>;
    type Error = std::convert::Infallible;

    async fn handle(
        &self,
        req: Routed<String>,
        conn: &Connection,
    ) -> std::result::Result<Option<Routed<String>>, Self::Error> {
        Ok(Some(match req {
            Routed::Transfer(frame) => Routed::Transfer(self.0.handle(frame, conn).await),
            Routed::App(text) => Routed::App(text),
        }))
    }
}

/// Times `ping` requests on the connection a transfer of `file` is using.
async fn requests_during_a_transfer(dir: &Path, file: &Path) -> Result<Latency> {
    let out = dir.join("recibido-mux");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let files = Receiver::new(&out, Default::default());
    let server = Server::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::harness(e.to_string()))?
        .with_config(enchufe::server::Config::default().profile(Profile::Multiplexed))
        .serve(App(files.clone()));
    let config = enchufe::client::Config::default().profile(Profile::Multiplexed);
    let client = Client::connect_with(server.local_addr(), config).await?;
    let upload = Upload::file(file)
        .await
        .map_err(|e| Error::harness(e.to_string()))?;
    let size = std::fs::metadata(file)?.len();
    let sender = client.clone();
    let start = Instant::now();
    let mut sending = tokio::spawn(async move { upload.send(&sender).await });
    let mut times = Vec::new();
    let result = loop {
        let t = Instant::now();
        tokio::select! {
            r = &mut sending => break r,
            reply = client.request::<_, String>("ping") => {
                reply?;
                times.push(t.elapsed());
            }
        }
    };
    let secs = start.elapsed().as_secs_f64();
    result
        .map_err(|e| Error::harness(e.to_string()))?
        .map_err(|e| Error::harness(e.to_string()))?;
    server.shutdown().await;
    files.shutdown().await;
    same_file(&out.join(file.file_name().expect("a file name")), file)?;
    std::fs::remove_dir_all(&out)?;
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Ok(Latency {
        count: times.len(),
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
        mib_per_sec: size as f64 / (1 << 20) as f64 / secs,
    })
}

/// Pseudo-random bytes (xorshift64): incompressible enough, and fast to make.
pub(crate) fn random_file(path: &Path, len: u64) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = buf.len().min(left as usize);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// Errors unless the two files hold the same bytes.
fn same_file(a: &Path, b: &Path) -> Result<()> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0; 1 << 20], vec![0; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if ba[..na] != bb[..nb] {
            return Err(Error::harness(format!(
                "{} differs from {}",
                a.display(),
                b.display()
            )));
        }
        if na == 0 {
            return Ok(());
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// A directory under the system's temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> std::io::Result<TempDir> {
        TempDir::under(&std::env::temp_dir())
    }

    /// A fresh directory under `parent`.
    pub(crate) fn under(parent: &Path) -> std::io::Result<TempDir> {
        let dir = parent.join(format!("enchufe-bench-transfer-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
