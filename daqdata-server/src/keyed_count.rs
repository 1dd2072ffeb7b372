//! A count per key (a peer's streams, a peer's connections) whose guard
//! gives its one back when dropped and forgets a key whose count reaches
//! zero, so the map holds only the keys that hold something. Global limits
//! use tokio's `Semaphore`; this is its keyed counterpart, written once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;

/// Counts per key.
pub(crate) struct KeyedCounts<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    counts: Mutex<HashMap<K, usize>>,
    /// Set to the number of keys held whenever it changes.
    keys_gauge: Option<Gauge>,
}

/// One count of one key; given back when dropped.
pub(crate) struct KeyedGuard<K: Eq + Hash> {
    inner: Arc<Inner<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> KeyedCounts<K> {
    pub(crate) fn new() -> Self {
        Self::build(None)
    }

    /// Counts that keep `gauge` at the number of keys that hold a count.
    pub(crate) fn with_keys_gauge(gauge: Gauge) -> Self {
        Self::build(Some(gauge))
    }

    fn build(keys_gauge: Option<Gauge>) -> Self {
        KeyedCounts {
            inner: Arc::new(Inner {
                counts: Mutex::new(HashMap::new()),
                keys_gauge,
            }),
        }
    }

    /// Takes one for `key` if it holds fewer than `max`; otherwise returns
    /// how many it holds.
    pub(crate) fn try_take(&self, key: K, max: usize) -> Result<KeyedGuard<K>, usize> {
        let mut counts = self.inner.lock();
        let held = counts.entry(key.clone()).or_insert(0);
        if *held >= max {
            let held = *held;
            if held == 0 {
                counts.remove(&key);
            }
            return Err(held);
        }
        *held += 1;
        self.inner.publish(&counts);
        Ok(KeyedGuard {
            inner: self.inner.clone(),
            key,
        })
    }

    /// Takes one for `key`, without a limit.
    pub(crate) fn take(&self, key: K) -> KeyedGuard<K> {
        match self.try_take(key.clone(), usize::MAX) {
            Ok(guard) => guard,
            // A count of usize::MAX guards cannot exist in memory.
            Err(_) => unreachable!("a count reached usize::MAX"),
        }
    }

    /// How many `key` holds now.
    #[cfg(test)]
    pub(crate) fn held(&self, key: &K) -> usize {
        self.inner.lock().get(key).copied().unwrap_or(0)
    }

    /// How many keys hold at least one.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.inner.lock().len()
    }
}

impl<K> Clone for KeyedCounts<K> {
    fn clone(&self) -> Self {
        KeyedCounts {
            inner: self.inner.clone(),
        }
    }
}

impl<K> Inner<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, counts: &HashMap<K, usize>) {
        if let Some(gauge) = &self.keys_gauge {
            gauge.set(counts.len() as i64);
        }
    }
}

impl<K: Eq + Hash> Drop for KeyedGuard<K> {
    fn drop(&mut self) {
        let mut counts = self.inner.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
        self.inner.publish(&counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_max_and_others_are_not_affected() {
        let counts = KeyedCounts::new();
        let a1 = counts.try_take("a", 2).unwrap();
        let _a2 = counts.try_take("a", 2).unwrap();
        assert_eq!(counts.try_take("a", 2).err(), Some(2));
        assert!(counts.try_take("b", 2).is_ok());
        assert_eq!(counts.held(&"a"), 2);
        drop(a1);
        assert_eq!(counts.held(&"a"), 1);
        assert!(counts.try_take("a", 2).is_ok());
    }

    #[test]
    fn a_key_is_forgotten_when_its_last_guard_drops() {
        let gauge = Gauge::default();
        let counts = KeyedCounts::with_keys_gauge(gauge.clone());
        let a = counts.take("a");
        let b = counts.take("b");
        let a2 = counts.take("a");
        assert_eq!((counts.keys(), gauge.get()), (2, 2));
        drop(a);
        assert_eq!((counts.keys(), gauge.get()), (2, 2));
        drop(a2);
        assert_eq!((counts.keys(), gauge.get()), (1, 1));
        drop(b);
        assert_eq!((counts.keys(), gauge.get()), (0, 0));
        // A refusal at a max of zero leaves no empty entry behind.
        assert_eq!(counts.try_take("c", 0).err(), Some(0));
        assert_eq!(counts.keys(), 0);
    }

    #[test]
    fn guards_dropped_on_many_threads_give_every_count_back() {
        let counts = KeyedCounts::new();
        let guards: Vec<_> = (0..400).map(|i| counts.take(i % 7)).collect();
        assert_eq!(counts.held(&0), 58);
        let mut chunks: Vec<Vec<_>> = (0..8).map(|_| Vec::new()).collect();
        for (i, guard) in guards.into_iter().enumerate() {
            chunks[i % 8].push(guard);
        }
        std::thread::scope(|scope| {
            for chunk in chunks {
                scope.spawn(move || drop(chunk));
            }
        });
        assert_eq!(counts.keys(), 0);
    }
}
