//! The requests one end has sent and not yet seen answered.

/// The requests one end has sent and not yet seen answered, by id, with
/// the slot each answer goes to: shared by the client's connections and by
/// peer links (requests both ways), so registering, answering, giving up
/// and the connection's end follow one set of rules.
///
/// - Ids start at 1 (0 belongs to pushes and one-way messages).
/// - Whoever takes a slot out answers it: the reply, the caller giving up
///   ([`Abandon`]), or the end of the connection ([`InFlight::end`]).
/// - After the end, registering fails at once: nobody waits forever.
///
/// ```
/// use enchufe_engine::session::InFlight;
/// let table: InFlight<&str> = InFlight::new();
/// let id = table.register("slot").unwrap();
/// assert_eq!(table.take(id), Some("slot"));
/// assert_eq!(table.take(id), None, "answered once");
/// assert_eq!(table.end(), Vec::<&str>::new());
/// assert!(table.register("late").is_err());
/// ```
#[derive(Debug)]
pub struct InFlight<S> {
    next_id: std::sync::atomic::AtomicU64,
    /// `None` once the connection has ended.
    slots: std::sync::Mutex<Option<std::collections::HashMap<u64, S>>>,
}

impl<S> Default for InFlight<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> InFlight<S> {
    /// An empty table (allocates nothing until the first request).
    pub fn new() -> Self {
        InFlight {
            next_id: std::sync::atomic::AtomicU64::new(1),
            slots: std::sync::Mutex::new(Some(std::collections::HashMap::new())),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Option<std::collections::HashMap<u64, S>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a slot under a fresh id, before its request can be sent.
    ///
    /// # Errors
    /// The slot back, once the connection has ended.
    pub fn register(&self, slot: S) -> Result<u64, S> {
        let mut slots = self.slots();
        let Some(map) = slots.as_mut() else {
            return Err(slot);
        };
        // A u64 never wraps in practice.
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        map.insert(id, slot);
        Ok(id)
    }

    /// Takes the slot of `id` out, if it is still there.
    pub fn take(&self, id: u64) -> Option<S> {
        self.slots().as_mut()?.remove(&id)
    }

    /// Keeps only the slots `keep` says to, and hands the others to it
    /// (`keep` returns false after answering one): how deadlines are swept.
    pub fn retain(&self, mut keep: impl FnMut(u64, &mut S) -> bool) {
        if let Some(map) = self.slots().as_mut() {
            map.retain(|id, slot| keep(*id, slot));
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.slots().as_ref().map_or(0, |map| map.len())
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connection ended: every slot still waiting, to be answered with
    /// why; later registrations fail.
    pub fn end(&self) -> Vec<S> {
        self.slots()
            .take()
            .map(|map| map.into_values().collect())
            .unwrap_or_default()
    }
}

/// A request between registering its slot and its answer: dropped while its
/// slot is still registered means the caller gave up (a timeout, a dropped
/// future), so the slot is freed at once and, if the request went out,
/// `cancel` is called with its id to tell the other end.
pub struct Abandon<'a, S> {
    table: &'a InFlight<S>,
    id: u64,
    sent: bool,
    cancel: &'a (dyn Fn(u64) + Sync),
}

impl<S> std::fmt::Debug for Abandon<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Abandon")
            .field("id", &self.id)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<'a, S> Abandon<'a, S> {
    /// Guards request `id` of `table`; `cancel` runs if it is abandoned
    /// after [`Abandon::sent`].
    pub fn new(table: &'a InFlight<S>, id: u64, cancel: &'a (dyn Fn(u64) + Sync)) -> Self {
        Abandon {
            table,
            id,
            sent: false,
            cancel,
        }
    }

    /// The request went out: abandoning it now owes the other end a cancel.
    pub fn sent(&mut self) {
        self.sent = true;
    }
}

impl<S> Drop for Abandon<'_, S> {
    fn drop(&mut self) {
        // If the answer (or the end) already took the slot, nothing is owed.
        if self.table.take(self.id).is_some() && self.sent {
            (self.cancel)(self.id);
        }
    }
}
