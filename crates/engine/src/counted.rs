//! A count of things alive: one more while a [`Counted`] lives.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Adds one to a count for as long as it lives: a request in flight, a
/// sender waiting for room. Acquire-release, so that a reader who sees the
/// count (an `Acquire` load) also sees what was done before it rose.
#[derive(Debug)]
pub struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    /// Counts one more in `count` until dropped.
    pub fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Counted(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_while_alive() {
        let count = AtomicUsize::new(0);
        let a = Counted::new(&count);
        let b = Counted::new(&count);
        assert_eq!(count.load(Ordering::Acquire), 2);
        drop(a);
        assert_eq!(count.load(Ordering::Acquire), 1);
        drop(b);
        assert_eq!(count.load(Ordering::Acquire), 0);
    }
}
