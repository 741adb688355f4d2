//! The `transfer` section: one file between two processes of the
//! `file_transfer` example over loopback, in enchufe's transfer protocol
//! (chunks, XXH3-128 on both ends, `fsync`) and in the course's (size and
//! body), against iperf3 moving as many bytes in one stream, from memory
//! to memory and into a file (`-F`, as both protocols' receivers do); the
//! four back to back in rotating order, round after round.
//!
//! ```text
//!  iperf3 -s -1            <── iperf3 -c -n SIZE -J
//!  iperf3 -s -1 -F FILE    <── iperf3 -c -n SIZE -J
//!  file_transfer recv      <── file_transfer send --file F
//!  file_transfer recv --course  <── file_transfer send --course --file F
//! ```
//!
//! A transfer's time runs from starting the sender's process to its exit
//! (connect, offer, body, the receiver's verdict): it includes what iperf3's
//! own interval leaves out. Peak RSS is `VmHWM` of each process; every
//! received copy is compared byte for byte with the original.

use std::fmt::Write as _;
use std::path::Path;

use crate::child;
use crate::error::Result;
use crate::transfer::{between_processes, iperf, random_file, Run, TempDir};

use super::bench::Bench;
use super::duel::{spread, Spread};
use super::report::{meets, ratio};

/// The contenders of a round, in the order of round 0.
const WHO: [Who; 4] = [Who::Iperf, Who::IperfFile, Who::Transfer, Who::Course];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// iperf3, memory to memory: the target's peer.
    Iperf,
    /// iperf3 with its receiver writing to a file (`-F`).
    IperfFile,
    Transfer,
    Course,
}

/// Every round of one contender.
#[derive(Debug, Default)]
struct Column {
    /// MiB/s per round (`None`: that round failed).
    rates: Vec<Option<f64>>,
    /// The highest peak RSS over the rounds, KiB: sender, receiver.
    hwm: (u64, u64),
}

/// `compare --only transfer`: the table, or why there is none.
pub(super) async fn transfer(bench: &Bench) -> String {
    match run(bench).await {
        Ok(t) => t,
        Err(e) => format!("### File transfer\n\nFAILED: {e}\n"),
    }
}

async fn run(bench: &Bench) -> Result<String> {
    let exe = child::build_example("file_transfer").await?;
    let has_iperf = tokio::process::Command::new("iperf3")
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    // A tmpfs, when there is one: the receiver's `fsync` then costs
    // nothing and the figures are the transfer's (network, hash, copies),
    // not the disk's.
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let tmp = TempDir::under(&parent)?;
    let mib: u64 = if bench.quick { 256 } else { 1024 };
    let size = mib << 20;
    let file = tmp.0.join("origen.bin");
    eprintln!("transfer: writing {mib} MiB of pseudo-random bytes...");
    random_file(&file, size)?;

    let mut columns: [Column; 4] = Default::default();
    let iperf_file = tmp.0.join("iperf3.bin");
    let iperf_file = iperf_file.to_string_lossy();
    let mut errors = Vec::new();
    for round in 0..bench.rounds {
        for k in 0..WHO.len() {
            let i = (round + k) % WHO.len();
            let who = WHO[i];
            let got = match who {
                Who::Iperf | Who::IperfFile if !has_iperf => continue,
                Who::Iperf => iperf(&["-n", &size.to_string()], &[])
                    .await
                    .map(|r| (r, None)),
                Who::IperfFile => {
                    let r = iperf(&["-n", &size.to_string()], &["-F", &iperf_file]).await;
                    let _ = std::fs::remove_file(&*iperf_file);
                    r.map(|r| (r, None))
                }
                Who::Transfer | Who::Course => {
                    let course = who == Who::Course;
                    between_processes(&exe, &tmp.0, &file, course, &[])
                        .await
                        .map(|run: Run| (run.mib_per_sec(size), Some(run)))
                }
            };
            let column = &mut columns[i];
            match got {
                Ok((rate, run)) => {
                    column.rates.push(Some(rate));
                    if let Some(run) = run {
                        column.hwm.0 = column.hwm.0.max(run.sender_hwm_kib);
                        column.hwm.1 = column.hwm.1.max(run.receiver_hwm_kib);
                    }
                }
                Err(e) => {
                    column.rates.push(None);
                    errors.push(format!("round {}, {who:?}: {e}", round + 1));
                }
            }
        }
    }
    Ok(table(bench, mib, &parent, has_iperf, &columns, &errors))
}

/// Per-round `a / b`, over the rounds where both ran.
fn per_round(a: &Column, b: &Column) -> Option<Spread> {
    let ratios = a
        .rates
        .iter()
        .zip(&b.rates)
        .filter_map(|(x, y)| Some((*x)? / (*y)?))
        .collect();
    spread(ratios)
}

fn median(c: &Column) -> String {
    spread(c.rates.iter().flatten().copied().collect())
        .map_or_else(|| "failed".into(), |s| format!("{:.0} MiB/s", s.median))
}

fn table(
    bench: &Bench,
    mib: u64,
    dir: &Path,
    has_iperf: bool,
    columns: &[Column; 4],
    errors: &[String],
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### File transfer: `file_transfer` vs iperf3\n\n\
         {mib} MiB of pseudo-random bytes under `{}`, {} rounds, the contenders back to back in \
         rotating order. A transfer is timed from the sender's start to its exit; iperf3 \
         (`-c -n {mib}M`, one stream) by its own report; `× iperf3 -F` is against iperf3 whose \
         receiver writes what it gets to a file beside ours, the cost of a file that iperf3 \
         from memory to memory does not pay. Peak RSS: the highest `VmHWM` over the \
         rounds (limit 64 MiB each). Every received file is compared byte for byte with the \
         original.\n",
        dir.display(),
        bench.rounds
    );
    let _ = writeln!(
        t,
        "| what | throughput | × iperf3 | target | met | × iperf3 -F | sender peak RSS | receiver peak RSS |\n\
         |---|---|---|---|---|---|---|---|"
    );
    let mem = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let rows = [
        ("transfer protocol (chunks, XXH3-128, fsync)", 2, 0.8),
        ("course protocol (size + body, no hash)", 3, 0.9),
    ];
    for (what, i, target) in rows {
        let c = &columns[i];
        let (r, to_file) = match has_iperf {
            true => (per_round(c, &columns[0]), per_round(c, &columns[1])),
            false => (None, None),
        };
        let shown = |r| match has_iperf {
            true => ratio(r),
            false => "no iperf3".into(),
        };
        let _ = writeln!(
            t,
            "| {what} | {} | {} | ≥ {target} | {} | {} | {} | {} |",
            median(c),
            shown(r),
            meets(r, target, true),
            shown(to_file),
            mem(c.hwm.0),
            mem(c.hwm.1)
        );
    }
    let iperf = if has_iperf {
        median(&columns[0])
    } else {
        "not installed (`scripts/bench-transfer` installs it)".into()
    };
    let _ = writeln!(t, "| iperf3, one stream | {iperf} | 1 | | | | | |");
    if has_iperf {
        let _ = writeln!(
            t,
            "| iperf3 -F, one stream into a file | {} | {} | | | 1 | | |",
            median(&columns[1]),
            ratio(per_round(&columns[1], &columns[0]))
        );
    }
    for e in errors {
        let _ = writeln!(t, "- FAILED, {e}");
    }
    t
}
