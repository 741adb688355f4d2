//! Files for the transfer tests: pseudo-random contents made at test time,
//! byte-for-byte comparison, and a tiny tmpfs for a full disk.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `len` pseudo-random bytes (xorshift64 from `seed`: no two seeds
/// give the same file, no RNG crate needed) to `dir/name`.
pub fn random_file(dir: &Path, name: &str, len: u64, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut x = (seed << 1) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let n = buf.len().min(left as usize);
        out.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
    path
}

/// Panics unless the two files hold the same bytes, saying where they
/// first differ.
pub fn assert_same_file(actual: &Path, expected: &Path) {
    let open = |p: &Path| {
        std::io::BufReader::new(
            std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
    };
    let (mut a, mut e) = (open(actual), open(expected));
    let (mut ba, mut be) = (vec![0; 1 << 16], vec![0; 1 << 16]);
    let mut at = 0u64;
    loop {
        let na = read_full(&mut a, &mut ba);
        let ne = read_full(&mut e, &mut be);
        if let Some(i) = ba[..na].iter().zip(&be[..ne]).position(|(x, y)| x != y) {
            panic!(
                "{} differs from {} at byte {}",
                actual.display(),
                expected.display(),
                at + i as u64
            );
        }
        assert_eq!(
            na,
            ne,
            "{} and {} differ in length",
            actual.display(),
            expected.display()
        );
        if na == 0 {
            return;
        }
        at += na as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    got
}

/// The names in `dir`, sorted (hidden temporary files included).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A tmpfs of a few bytes mounted on a temporary directory: a disk that
/// fills up for real (ENOSPC). Unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one of `bytes` bytes. Needs root (CI runs as root); fails
    /// loudly otherwise, unless `ENCHUFE_SKIP_TMPFS=1`, which returns `None`
    /// after saying so on stderr.
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        if std::env::var_os("ENCHUFE_SKIP_TMPFS").is_some_and(|v| v == "1") {
            eprintln!("*** SKIPPED: the full-disk case (ENCHUFE_SKIP_TMPFS=1)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("cannot run mount");
        assert!(
            status.success(),
            "mounting a tmpfs (to fill a disk) needs root; run as root or set \
             ENCHUFE_SKIP_TMPFS=1 to skip the full-disk cases"
        );
        Some(Tmpfs { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
