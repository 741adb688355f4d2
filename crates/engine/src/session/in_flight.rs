//! The requests one end has sent and not yet seen answered.

/// The requests one end has sent and not yet seen answered, by id, with
/// the slot each answer goes to: shared by the client's connections and by
/// peer links (requests both ways), so registering, answering, giving up
/// and the connection's end follow one set of rules.
///
/// - Ids are never 0 (0 belongs to pushes and one-way messages), and no two
///   requests in flight share one; an id freed is not seen again soon (see
///   below), so a late answer to a request given up never reaches a newer
///   one.
/// - Whoever takes a slot out answers it: the reply, the caller giving up
///   ([`Abandon`]), or the end of the connection ([`InFlight::end`]).
/// - After the end, registering fails at once: nobody waits forever.
///
/// The table is a slab, not a map: an id is a place's index (low 32 bits,
/// plus one) and how many times that place was used before (high 32 bits),
/// so registering and taking cost an index and a compare, no hashing, and
/// memory is bounded by the most requests ever in flight at once (places
/// are reused, newest freed first, while still in cache). A place's id
/// comes back only after 2^31 reuses of that place.
///
/// The top bit of an id from the table is always clear: ids with it set
/// are the caller's to give out by a rule of its own (the client's
/// pipelines number their requests by place) without meeting the table's.
///
/// ```
/// use enchufe_engine::session::InFlight;
/// let table: InFlight<&str> = InFlight::new();
/// let id = table.register("slot").unwrap();
/// assert_eq!(table.take(id), Some("slot"));
/// assert_eq!(table.take(id), None, "answered once");
/// let again = table.register("next").unwrap();
/// assert_ne!(again, id, "a freed id is not given again");
/// assert_eq!(table.take(id), None, "nor does it reach the newer request");
/// assert_eq!(table.end(), vec!["next"]);
/// assert!(table.register("late").is_err());
/// ```
#[derive(Debug)]
pub struct InFlight<S> {
    /// `None` once the connection has ended.
    slots: std::sync::Mutex<Option<Slab<S>>>,
}

/// The places of an [`InFlight`] table.
#[derive(Debug)]
struct Slab<S> {
    /// Each place: its use count (the id's high half) and its slot, if one
    /// waits there.
    places: Vec<(u32, Option<S>)>,
    /// Places without a slot, the most recently freed last.
    free: Vec<u32>,
    /// Slots waiting.
    len: usize,
}

/// A place's use count wraps within these bits: an id's top bit stays clear.
const USES: u32 = u32::MAX >> 1;

impl<S> Slab<S> {
    fn new() -> Self {
        Slab {
            places: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn id(at: u32, uses: u32) -> u64 {
        (u64::from(uses) << 32) | (u64::from(at) + 1)
    }

    /// Puts `slot` in a free place (the most recently freed) and returns
    /// its id; gives it back when every index is taken.
    fn insert(&mut self, slot: S) -> Result<u64, S> {
        let at = match self.free.pop() {
            Some(at) => at,
            // The index plus one must fit the id's low half.
            None => match u32::try_from(self.places.len()) {
                Ok(at) if at < u32::MAX => {
                    self.places.push((0, None));
                    at
                }
                _ => return Err(slot),
            },
        };
        let place = &mut self.places[at as usize];
        place.1 = Some(slot);
        self.len += 1;
        Ok(Self::id(at, place.0))
    }

    /// Empties place `at`: its next use gets a new id.
    fn free(&mut self, at: u32) -> Option<S> {
        let place = &mut self.places[at as usize];
        let slot = place.1.take()?;
        // Within 31 bits, so that no id has the top bit set.
        place.0 = place.0.wrapping_add(1) & USES;
        self.free.push(at);
        self.len -= 1;
        Some(slot)
    }

    fn remove(&mut self, id: u64) -> Option<S> {
        let at = (id & u64::from(u32::MAX)).checked_sub(1)?;
        let at = u32::try_from(at).ok()?;
        let uses = self.places.get(at as usize)?.0;
        if u64::from(uses) != id >> 32 {
            return None; // an earlier use of the place, already answered
        }
        self.free(at)
    }
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
            slots: std::sync::Mutex::new(Some(Slab::new())),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Option<Slab<S>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a slot under a fresh id, before its request can be sent.
    ///
    /// # Errors
    /// The slot back, once the connection has ended (or, never in practice,
    /// with 2^32 - 1 requests in flight).
    pub fn register(&self, slot: S) -> Result<u64, S> {
        self.registrar().register(slot)
    }

    /// The table held, to register a batch of slots under one lock (a
    /// pipeline's requests). Hold it briefly: answers wait for it.
    pub fn registrar(&self) -> Registrar<'_, S> {
        Registrar(self.slots())
    }

    /// Takes the slot of `id` out, if it is still there.
    pub fn take(&self, id: u64) -> Option<S> {
        self.slots().as_mut()?.remove(id)
    }

    /// Keeps only the slots `keep` says to, and hands the others to it
    /// (`keep` returns false after answering one): how deadlines are swept.
    pub fn retain(&self, mut keep: impl FnMut(u64, &mut S) -> bool) {
        let mut slots = self.slots();
        let Some(slab) = slots.as_mut() else {
            return;
        };
        for at in 0..slab.places.len() {
            let (uses, slot) = &mut slab.places[at];
            let Some(s) = slot else { continue };
            // `places` never holds more than u32::MAX entries.
            let at = at as u32;
            if !keep(Slab::<S>::id(at, *uses), s) {
                slab.free(at);
            }
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.slots().as_ref().map_or(0, |slab| slab.len)
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
            .map(|slab| slab.places.into_iter().filter_map(|(_, s)| s).collect())
            .unwrap_or_default()
    }
}

/// An [`InFlight`] table held for a batch of registrations
/// ([`InFlight::registrar`]).
pub struct Registrar<'a, S>(std::sync::MutexGuard<'a, Option<Slab<S>>>);

impl<S> std::fmt::Debug for Registrar<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar").finish_non_exhaustive()
    }
}

impl<S> Registrar<'_, S> {
    /// As [`InFlight::register`].
    ///
    /// # Errors
    /// As [`InFlight::register`].
    pub fn register(&mut self, slot: S) -> Result<u64, S> {
        match self.0.as_mut() {
            Some(slab) => slab.insert(slot),
            None => Err(slot),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_reused_under_new_ids_and_bounded_by_the_most_in_flight() {
        let table: InFlight<u64> = InFlight::new();
        let mut waiting = std::collections::VecDeque::new();
        let mut seen = std::collections::HashSet::new();
        for n in 0..10_000u64 {
            let id = table.register(n).unwrap();
            assert_ne!(id, 0, "0 is for pushes");
            assert!(seen.insert(id), "id {id} given twice");
            waiting.push_back((id, n));
            if waiting.len() > 3 {
                // Answered out of order now and then, as multiplexed replies are.
                let (id, n) = if n % 7 == 0 {
                    waiting.remove(1).unwrap()
                } else {
                    waiting.pop_front().unwrap()
                };
                assert_eq!(table.take(id), Some(n));
                assert_eq!(table.take(id), None, "a late second answer");
            }
        }
        assert_eq!(table.len(), 3);
        let places = table.slots().as_ref().map(|slab| slab.places.len());
        assert_eq!(
            places,
            Some(4),
            "the table grows to the most in flight, no further"
        );
        // Every early id, reused place or not, is gone for good.
        let mut stale: Vec<u64> = seen.iter().copied().collect();
        stale.retain(|id| !waiting.iter().any(|(w, _)| w == id));
        assert!(stale.iter().all(|&id| table.take(id).is_none()));
        assert_eq!(table.len(), 3);
        // A sweep frees what it drops, under ids not seen before.
        table.retain(|_, n| *n % 2 == 0);
        let kept = table.len();
        for _ in kept..4 {
            assert!(seen.insert(table.register(0).unwrap()));
        }
        assert_eq!(
            table.slots().as_ref().map(|slab| slab.places.len()),
            Some(4)
        );
        assert_eq!(table.end().len(), 4);
        assert_eq!(table.register(1), Err(1));
        assert_eq!(table.take(*seen.iter().next().unwrap()), None);
    }

    #[test]
    fn ids_keep_their_top_bit_clear_as_a_place_wraps() {
        let table: InFlight<()> = InFlight::new();
        let id = table.register(()).unwrap();
        table.take(id);
        if let Some(slab) = table.slots().as_mut() {
            slab.places[0].0 = USES; // the last use before the count wraps
        }
        let last = table.register(()).unwrap();
        assert_eq!(last >> 63, 0);
        assert_eq!(table.take(last), Some(()));
        let wrapped = table.register(()).unwrap();
        assert_eq!(wrapped, 1, "the count starts again at 0, not at bit 31");
    }

    #[test]
    fn ids_that_name_no_place_are_ignored() {
        let table: InFlight<()> = InFlight::new();
        let id = table.register(()).unwrap();
        for bogus in [0, u64::MAX, id + 1, id | (7 << 32), u64::from(u32::MAX)] {
            assert_eq!(table.take(bogus), None, "{bogus:#x}");
        }
        assert_eq!(table.take(id), Some(()));
    }
}
