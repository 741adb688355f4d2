//! Leftovers: the partial files of cut transfers, kept for a resume and
//! pruned by age and total size, the oldest evicted first on a full disk.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::protocol::TransferId;

use super::names::{remove_quietly, PART_PREFIX};

/// A leftover: the partial file of a transfer not running.
pub(super) struct Leftover {
    path: PathBuf,
    bytes: u64,
    modified: SystemTime,
}

/// The partial files in `dir` (`.enchufe-<id>.part`) of transfers not in
/// `keep`, oldest first.
pub(super) fn leftovers(dir: &Path, keep: &HashSet<TransferId>) -> std::io::Result<Vec<Leftover>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PART_PREFIX)?.strip_suffix(".part"))
            .and_then(|id| id.parse::<TransferId>().ok())
        else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue; // removed meanwhile
        };
        if keep.contains(&id) || !meta.is_file() {
            continue;
        }
        found.push(Leftover {
            path: entry.path(),
            bytes: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    found.sort_by_key(|l| l.modified);
    Ok(found)
}

/// Removes the leftovers older than `max_age`, then the oldest until the
/// rest hold at most `max_bytes`.
pub(super) fn prune_parts(
    dir: &Path,
    keep: &HashSet<TransferId>,
    max_age: Duration,
    max_bytes: u64,
) -> std::io::Result<()> {
    let found = leftovers(dir, keep)?;
    let mut total: u64 = found.iter().map(|l| l.bytes).sum();
    let now = SystemTime::now();
    for l in found {
        let old = now.duration_since(l.modified).unwrap_or_default() > max_age;
        if old || total > max_bytes {
            tracing::info!(path = %l.path.display(), bytes = l.bytes, old, "removing a leftover partial file");
            remove_quietly(&l.path);
            total -= l.bytes;
        }
    }
    Ok(())
}

/// Removes the oldest leftover, to make room on a full disk. Whether there
/// was one.
pub(super) fn evict_oldest(dir: &Path, keep: &HashSet<TransferId>) -> bool {
    match leftovers(dir, keep) {
        Ok(found) => found.first().is_some_and(|l| {
            tracing::info!(path = %l.path.display(), bytes = l.bytes, "disk full: removing the oldest leftover partial file");
            std::fs::remove_file(&l.path).is_ok()
        }),
        Err(_) => false,
    }
}
