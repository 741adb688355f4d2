//! Names on disk: the output directory's check, a transfer's partial-file
//! name, and the check that an offered name is one plain file name.

use std::path::Path;

use crate::error::{Error, Result};
use crate::protocol::TransferId;

/// Creates `dir` (and its parents) if it is missing, and checks that a file
/// can be created in it: a receiver that calls this at start refuses then,
/// naming the directory and why, instead of failing every transfer.
///
/// # Errors
/// [`Error::Storage`] with the directory and the operating system's error.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::storage(dir, e))?;
    let probe = dir.join(format!("{PART_PREFIX}probe-{}", TransferId::random()));
    std::fs::File::create(&probe).map_err(|e| Error::storage(dir, e))?;
    remove_quietly(&probe);
    Ok(())
}

/// The temporary name of a transfer's file: hidden, and never a name an
/// offer may take (see [`check_name`]).
pub(super) fn part_name(id: TransferId) -> String {
    format!("{PART_PREFIX}{id}.part")
}

pub(super) const PART_PREFIX: &str = ".enchufe-";

/// Refuses anything but one plain file name: the name comes from the
/// network and is joined to the receiver's directory.
///
/// ```
/// use enchufe::transfer::receiver::check_name;
/// assert!(check_name("informe final.pdf").is_ok());
/// for bad in ["", "..", "a/../b", "/etc/passwd", "a\\b", "a\0b", ".enchufe-x.part"] {
///     assert!(check_name(bad).is_err(), "{bad:?}");
/// }
/// ```
///
/// # Errors
/// [`Error::BadName`] saying what is wrong.
pub fn check_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "empty"
    } else if name.contains('\0') {
        "contains a NUL"
    } else if name.starts_with('/') || name.starts_with('\\') || name.contains(':') {
        "an absolute path"
    } else if name.contains('/') || name.contains('\\') {
        "contains a path separator"
    } else if name.contains("..") || name == "." {
        "contains `..` or is `.`"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else if name.starts_with(PART_PREFIX) {
        "a temporary file's name"
    } else {
        return Ok(());
    };
    Err(Error::BadName {
        name: name.to_owned(),
        why,
    })
}

pub(crate) fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial file");
        }
    }
}
