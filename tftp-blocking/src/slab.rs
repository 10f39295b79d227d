//! An event loop's sessions by key: a slab. A key names a slot by its index and by the slot's
//! generation, which changes each time the slot is vacated, so that a key outliving its
//! session (a timer still queued, a pool job's answer, a readiness event of the same batch)
//! finds nothing rather than the slot's next session.
//!
//! A look-up is an index, not a hash table's probe: at 10,000 transfers the table had left the
//! CPU's caches, and each look-up (a readiness event, a timer firing early) waited for its
//! control bytes before it could ask for the entry (`perf`: a third of the loop's own time went
//! to those probes).

/// Keys below this are not the slab's (an event loop gives them to its listeners).
pub(crate) const FIRST_KEY: u64 = 1 << 32;

/// Generations a slot goes through before they repeat: its keys stay below `1 << 62`, which
/// an event loop sets for a session's second socket.
const GENERATIONS: u32 = 1 << 29;

pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Vacant slots, the last vacated last: the next session takes it, its lines maybe still
    /// in the cache.
    free: Vec<u32>,
    len: usize,
    /// The key of the only value, when there was one last time [`Slab::sole`] looked.
    sole: Option<u64>,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

fn key_of(index: u32, generation: u32) -> u64 {
    (u64::from(generation) + 1) << 32 | u64::from(index)
}

/// The slot index and generation `key` names, if it can be one of the slab's.
fn parts(key: u64) -> Option<(usize, u32)> {
    let generation = u32::try_from((key >> 32).checked_sub(1)?).ok()?;
    (generation < GENERATIONS).then_some((key as u32 as usize, generation))
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            sole: None,
        }
    }
}

impl<T> Slab<T> {
    /// Store `value`; returns its key.
    pub(crate) fn insert(&mut self, value: T) -> u64 {
        let key = self.place(value);
        self.len += 1;
        if self.len == 1 {
            self.sole = Some(key);
        }
        key
    }

    fn place(&mut self, value: T) -> u64 {
        if let Some(index) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(index as usize) {
                slot.value = Some(value);
                return key_of(index, slot.generation);
            }
        }
        // u32::MAX slots would be hundreds of gigabytes of sessions: not reached.
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        key_of(index, 0)
    }

    /// The only value and its key, if there is exactly one. An event loop asks this for every
    /// packet (lone mode): the slots are scanned once after the count comes down to one (a
    /// boot storm leaves thousands of vacant slots), not every time.
    pub(crate) fn sole(&mut self) -> Option<(u64, &T)> {
        if self.len != 1 {
            return None;
        }
        let cached = self.sole.and_then(|key| Some((key, self.index(key)?)));
        let (key, index) = match cached {
            Some(found) => found,
            None => {
                let key = self.keys().next()?;
                self.sole = Some(key);
                (key, self.index(key)?)
            }
        };
        Some((key, self.slots.get(index)?.value.as_ref()?))
    }

    /// The slot `key` names, if the slot is still in the key's generation.
    fn index(&self, key: u64) -> Option<usize> {
        let (index, generation) = parts(key)?;
        (self.slots.get(index)?.generation == generation).then_some(index)
    }

    pub(crate) fn get(&self, key: u64) -> Option<&T> {
        self.slots.get(self.index(key)?)?.value.as_ref()
    }

    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        let index = self.index(key)?;
        self.slots.get_mut(index)?.value.as_mut()
    }

    /// Take the value of `key` out; its slot is vacant from now, under a new generation.
    pub(crate) fn remove(&mut self, key: u64) -> Option<T> {
        let index = self.index(key)?;
        let slot = self.slots.get_mut(index)?;
        let value = slot.value.take()?;
        slot.generation = (slot.generation + 1) % GENERATIONS;
        self.free.push(index as u32);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys of every stored value.
    pub(crate) fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| key_of(i as u32, s.generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_outliving_its_value_finds_nothing() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert!((FIRST_KEY..1 << 62).contains(&a));
        assert_eq!(slab.get(a), Some(&"a"));
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!((slab.len(), slab.is_empty()), (0, true));
        // The same slot, a new generation: the old key names nothing.
        let b = slab.insert("b");
        assert_ne!(a, b);
        assert_eq!(a as u32, b as u32, "the slot vacated last is taken first");
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get_mut(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.sole(), Some((b, &"b")));
        // Keys that cannot be the slab's.
        for key in [0, 7, FIRST_KEY - 1, u64::MAX, b | 1 << 62] {
            assert_eq!(slab.get(key), None, "{key:#x}");
        }
    }

    #[test]
    fn values_are_found_by_their_keys_through_reuse() {
        let mut slab = Slab::default();
        let mut live: Vec<(u64, u32)> = Vec::new();
        let mut gone = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for n in 0..20_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed % 3 == 0 && !live.is_empty() {
                let (key, value) = live.swap_remove(seed as usize % live.len());
                assert_eq!(slab.remove(key), Some(value));
                gone.push(key);
            } else {
                live.push((slab.insert(n), n));
            }
            assert_eq!(slab.len(), live.len());
        }
        for &(key, value) in &live {
            assert_eq!(slab.get(key), Some(&value));
        }
        for key in gone {
            assert_eq!(slab.get(key), None);
        }
        let len = slab.len();
        assert_eq!(slab.sole(), None, "{len} values");
        let keep = live.pop().map(|(key, _)| key);
        for (key, _) in live.drain(..) {
            assert!(slab.remove(key).is_some());
        }
        assert_eq!(
            slab.sole().map(|(key, _)| key),
            keep,
            "the one left, among thousands of vacant slots"
        );
        assert_eq!(slab.sole().map(|(key, _)| key), keep);
        live.extend(keep.map(|key| (key, *slab.get(key).unwrap_or(&0))));
        let mut keys: Vec<u64> = slab.keys().collect();
        keys.sort_unstable();
        let mut expected: Vec<u64> = live.iter().map(|(k, _)| *k).collect();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn generations_wrap_below_the_catcher_bit() {
        let mut slab = Slab::default();
        slab.insert(());
        slab.slots[0].generation = GENERATIONS - 1;
        let key = key_of(0, GENERATIONS - 1);
        assert!(key < 1 << 62);
        assert_eq!(slab.remove(key), Some(()));
        assert_eq!(slab.slots[0].generation, 0);
    }
}
