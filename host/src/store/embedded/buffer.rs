//! A transaction's buffered writes, its read conflict set, and the merge of
//! the buffer over the snapshot that gives read-your-writes.
//!
//! Everything here is plain data with no redb in it, so the committer can
//! move it to its thread and the merge rules can be read in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::store::{KeyValue, decode_counter};

/// A set of half-open byte ranges, kept disjoint and merged, so membership and
/// overlap are one ordered lookup each.
#[derive(Debug, Default, Clone)]
pub(crate) struct RangeSet {
    // begin -> end; disjoint and non-adjacent, hence ends ascend with begins.
    ranges: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl RangeSet {
    pub(crate) fn insert(&mut self, begin: &[u8], end: &[u8]) {
        if begin >= end {
            return;
        }
        let mut begin = begin.to_vec();
        let mut end = end.to_vec();
        if let Some((start, stop)) = self.ranges.range(..=begin.clone()).next_back()
            && *stop >= begin
        {
            begin = start.clone();
            if *stop > end {
                end = stop.clone();
            }
        }
        let swallowed: Vec<Vec<u8>> = self
            .ranges
            .range(begin.clone()..=end.clone())
            .map(|(start, _)| start.clone())
            .collect();
        for start in swallowed {
            if let Some(stop) = self.ranges.remove(&start)
                && stop > end
            {
                end = stop;
            }
        }
        self.ranges.insert(begin, end);
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|(_, end)| key < end.as_slice())
    }

    /// Whether any range meets `[begin, end)`. Because the ranges are disjoint,
    /// the last one starting before `end` reaches furthest.
    pub(crate) fn overlaps(&self, begin: &[u8], end: &[u8]) -> bool {
        begin < end
            && self
                .ranges
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(end)))
                .next_back()
                .is_some_and(|(_, stop)| stop.as_slice() > begin)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.ranges
            .iter()
            .map(|(b, e)| (b.as_slice(), e.as_slice()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Keys and ranges, used both as a read conflict set and as a write set.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeySet {
    points: BTreeSet<Vec<u8>>,
    ranges: RangeSet,
}

impl KeySet {
    pub(crate) fn add_key(&mut self, key: &[u8]) {
        if !self.ranges.contains(key) {
            self.points.insert(key.to_vec());
        }
    }

    pub(crate) fn add_range(&mut self, begin: &[u8], end: &[u8]) {
        self.ranges.insert(begin, end);
    }

    pub(crate) fn extend(&mut self, other: &KeySet) {
        for (begin, end) in other.ranges.iter() {
            self.ranges.insert(begin, end);
        }
        for key in &other.points {
            self.add_key(key);
        }
    }

    fn touches_key(&self, key: &[u8]) -> bool {
        self.points.contains(key) || self.ranges.contains(key)
    }

    fn touches_range(&self, begin: &[u8], end: &[u8]) -> bool {
        begin < end
            && (self
                .points
                .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
                .next()
                .is_some()
                || self.ranges.overlaps(begin, end))
    }

    /// Whether the two sets share any key.
    pub(crate) fn intersects(&self, other: &KeySet) -> bool {
        self.points.iter().any(|key| other.touches_key(key))
            || self
                .ranges
                .iter()
                .any(|(begin, end)| other.touches_range(begin, end))
    }
}

/// What a transaction last did to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PointOp {
    Set(Vec<u8>),
    Clear,
    /// An add over the value committed when the batch applies it. An add over
    /// a value this transaction already determined becomes a `Set` instead.
    Add(i64),
}

/// The mutations of one transaction. A point op always postdates any cleared
/// range covering its key (clear_range drops the ops it covers), so applying
/// the ranges first and the points second replays the transaction exactly.
#[derive(Debug, Default)]
pub(crate) struct WriteBuffer {
    pub(crate) cleared: RangeSet,
    pub(crate) points: BTreeMap<Vec<u8>, PointOp>,
}

/// What the buffer says about one key, before looking at the snapshot.
pub(crate) enum Local<'a> {
    /// The buffer does not mention the key: the snapshot decides.
    Untouched,
    /// The buffer fully determines the value.
    Known(Option<&'a [u8]>),
    /// The snapshot value plus this delta.
    Add(i64),
}

pub(crate) fn encode_counter(value: i64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// The value an add yields over `base`, as the committer will compute it.
pub(crate) fn add_over(base: Option<&[u8]>, delta: i64) -> Vec<u8> {
    encode_counter(decode_counter(base).wrapping_add(delta))
}

impl WriteBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.cleared.is_empty() && self.points.is_empty()
    }

    pub(crate) fn set(&mut self, key: &[u8], value: &[u8]) {
        self.points
            .insert(key.to_vec(), PointOp::Set(value.to_vec()));
    }

    pub(crate) fn clear(&mut self, key: &[u8]) {
        self.points.insert(key.to_vec(), PointOp::Clear);
    }

    pub(crate) fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        if begin >= end {
            return;
        }
        let covered: Vec<Vec<u8>> = self
            .points
            .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in covered {
            self.points.remove(&key);
        }
        self.cleared.insert(begin, end);
    }

    pub(crate) fn atomic_add(&mut self, key: &[u8], delta: i64) {
        let op = match self.local(key) {
            Local::Untouched => PointOp::Add(delta),
            Local::Known(value) => PointOp::Set(add_over(value, delta)),
            Local::Add(prior) => PointOp::Add(prior.wrapping_add(delta)),
        };
        self.points.insert(key.to_vec(), op);
    }

    pub(crate) fn local(&self, key: &[u8]) -> Local<'_> {
        match self.points.get(key) {
            Some(PointOp::Set(value)) => Local::Known(Some(value)),
            Some(PointOp::Clear) => Local::Known(None),
            Some(PointOp::Add(delta)) => Local::Add(*delta),
            None if self.cleared.contains(key) => Local::Known(None),
            None => Local::Untouched,
        }
    }

    /// Every key the transaction writes, for other transactions' conflict checks.
    pub(crate) fn write_set(&self) -> KeySet {
        let mut set = KeySet::default();
        for (begin, end) in self.cleared.iter() {
            set.add_range(begin, end);
        }
        for key in self.points.keys() {
            set.add_key(key);
        }
        set
    }

    /// Merges `snapshot` (the committed entries of `[begin, end)`, already in
    /// the requested direction) with the buffer, returning at most `limit`
    /// entries (0: all) in that direction.
    pub(crate) fn merge_range<E>(
        &self,
        mut snapshot: impl Iterator<Item = Result<KeyValue, E>>,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, E> {
        let mut out = Vec::new();
        if begin >= end {
            return Ok(out);
        }
        let local = self
            .points
            .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)));
        let mut local: Box<dyn Iterator<Item = (&Vec<u8>, &PointOp)>> = if reverse {
            Box::new(local.rev())
        } else {
            Box::new(local)
        };
        // "Comes first" in the direction of the read.
        let first = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut snap = snapshot.next().transpose()?;
        let mut buffered = local.next();
        while limit == 0 || out.len() < limit {
            match (&snap, buffered) {
                (None, None) => break,
                (Some((snap_key, _)), next) if next.is_none_or(|(key, _)| first(snap_key, key)) => {
                    let (key, value) = snap.take().expect("matched Some");
                    snap = snapshot.next().transpose()?;
                    if !self.cleared.contains(&key) {
                        out.push((key, value));
                    }
                }
                (current, Some((key, op))) => {
                    // The buffer's op decides; a snapshot entry for the same
                    // key only matters as the base of an add.
                    let base = if current
                        .as_ref()
                        .is_some_and(|(snap_key, _)| snap_key == key)
                    {
                        let (_, value) = snap.take().expect("matched Some");
                        snap = snapshot.next().transpose()?;
                        Some(value)
                    } else {
                        None
                    };
                    match op {
                        PointOp::Set(value) => out.push((key.clone(), value.clone())),
                        PointOp::Clear => {}
                        PointOp::Add(delta) => {
                            out.push((key.clone(), add_over(base.as_deref(), *delta)));
                        }
                    }
                    buffered = local.next();
                }
                (Some(_), None) => unreachable!("the guard above takes the snapshot entry"),
            }
        }
        Ok(out)
    }
}

/// The smallest key after `key`, so `[begin, key_after(k))` includes `k`.
pub(crate) fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn snap(entries: &[(&str, &str)], reverse: bool) -> Vec<Result<KeyValue, ()>> {
        let mut all: Vec<_> = entries.iter().map(|(k, v)| Ok(kv(k, v))).collect();
        if reverse {
            all.reverse();
        }
        all
    }

    #[test]
    fn range_set_merges_and_answers() {
        let mut set = RangeSet::default();
        set.insert(b"c", b"e");
        set.insert(b"a", b"b");
        set.insert(b"b", b"c");
        set.insert(b"x", b"z");
        assert_eq!(set.iter().count(), 2);
        assert!(set.contains(b"a") && set.contains(b"d") && !set.contains(b"e"));
        assert!(set.overlaps(b"d", b"f") && !set.overlaps(b"e", b"x"));
        assert!(set.overlaps(b"y", b"y\0") && !set.overlaps(b"z", b"zz"));
        set.insert(b"0", b"zz");
        assert_eq!(set.iter().count(), 1);
    }

    #[test]
    fn key_sets_intersect_on_points_and_ranges() {
        let mut reads = KeySet::default();
        reads.add_key(b"k");
        let mut writes = KeySet::default();
        writes.add_range(b"a", b"j");
        assert!(!reads.intersects(&writes));
        writes.add_range(b"j", b"l");
        assert!(reads.intersects(&writes));
        let mut range_reads = KeySet::default();
        range_reads.add_range(b"m", b"p");
        let mut point_writes = KeySet::default();
        point_writes.add_key(b"n");
        assert!(range_reads.intersects(&point_writes));
        assert!(point_writes.intersects(&range_reads));
    }

    #[test]
    fn merge_applies_buffer_both_ways_with_limit() {
        let mut buf = WriteBuffer::default();
        buf.clear_range(b"b", b"d");
        buf.set(b"c", b"C");
        buf.clear(b"e");
        buf.atomic_add(b"f", 2);
        buf.set(b"g", b"G");
        let committed = [("a", "1"), ("b", "2"), ("c", "3"), ("e", "5"), ("h", "8")];
        let fwd = buf
            .merge_range(snap(&committed, false).into_iter(), b"a", b"z", 0, false)
            .unwrap();
        let keys: Vec<_> = fwd.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, [b"a", b"c", b"f", b"g", b"h"].map(|k| k.to_vec()));
        assert_eq!(fwd[1].1, b"C");
        assert_eq!(decode_counter(Some(&fwd[2].1)), 2);
        let rev = buf
            .merge_range(snap(&committed, true).into_iter(), b"a", b"z", 3, true)
            .unwrap();
        let keys: Vec<_> = rev.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, [b"h", b"g", b"f"].map(|k| k.to_vec()));
    }
}
