//! Builders for the keyspace documented in the module docs of [`crate::store`].
//!
//! Every key Herald writes is made here, so the layout has one home.

use foundationdb_tuple::{Subspace, TuplePack, TupleUnpack};

/// Number of due-index and fan-out shards. Spreading keys over shards keeps
/// any one range from being hot for every publish once several nodes share a
/// store; changing it needs a migration, so it is a constant.
pub const SHARDS: u16 = 16;

/// The key builder for one deployment's root subspace.
#[derive(Clone, Debug)]
pub struct Keys {
    root: Subspace,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            root: Subspace::all().subspace(&("herald", prefix)),
        }
    }

    pub fn pack<T: TuplePack>(&self, t: &T) -> Vec<u8> {
        self.root.pack(t)
    }

    /// The `[begin, end)` range of every key that starts with tuple `t`.
    pub fn range<T: TuplePack>(&self, t: &T) -> (Vec<u8>, Vec<u8>) {
        self.root.subspace(t).range()
    }

    pub fn unpack<'de, T: TupleUnpack<'de>>(&self, key: &'de [u8]) -> Option<T> {
        self.root.unpack(key).ok()
    }

    pub fn topic(&self, name: &str) -> Vec<u8> {
        self.pack(&("topic", name))
    }
    pub fn topics(&self) -> (Vec<u8>, Vec<u8>) {
        self.range(&("topic",))
    }
    pub fn sub(&self, id: &str) -> Vec<u8> {
        self.pack(&("sub", id))
    }
    pub fn topic_sub(&self, topic: &str, sub: &str) -> Vec<u8> {
        self.pack(&("topic_sub", topic, sub))
    }
    pub fn topic_subs(&self, topic: &str) -> (Vec<u8>, Vec<u8>) {
        self.range(&("topic_sub", topic))
    }
    pub fn msg(&self, topic: &str, msg: u64) -> Vec<u8> {
        self.pack(&("msg", topic, msg))
    }
    pub fn msg_body(&self, topic: &str, msg: u64) -> (Vec<u8>, Vec<u8>) {
        self.range(&("msgb", topic, msg))
    }
    pub fn msg_body_chunk(&self, topic: &str, msg: u64, chunk: u32) -> Vec<u8> {
        self.pack(&("msgb", topic, msg, chunk))
    }
    pub fn msg_refs(&self, topic: &str, msg: u64) -> Vec<u8> {
        self.pack(&("msgref", topic, msg))
    }
    /// Every message-related range of a topic, for topic deletion.
    pub fn topic_messages(&self, topic: &str) -> [(Vec<u8>, Vec<u8>); 3] {
        [
            self.range(&("msg", topic)),
            self.range(&("msgb", topic)),
            self.range(&("msgref", topic)),
        ]
    }
    pub fn fanout(&self, shard: u16, msg: u64) -> Vec<u8> {
        self.pack(&("fanout", shard, msg))
    }
    pub fn fanouts(&self, shard: u16) -> (Vec<u8>, Vec<u8>) {
        self.range(&("fanout", shard))
    }
    pub fn due(&self, shard: u16, due_ms: u64, sub: &str, msg: u64) -> Vec<u8> {
        self.pack(&("due", shard, due_ms, sub, msg))
    }
    /// Due entries of `shard` whose due time is before `until_ms`.
    pub fn due_until(&self, shard: u16, until_ms: u64) -> (Vec<u8>, Vec<u8>) {
        let (begin, _) = self.range(&("due", shard));
        (begin, self.pack(&("due", shard, until_ms)))
    }
    pub fn due_shard(&self, shard: u16) -> (Vec<u8>, Vec<u8>) {
        self.range(&("due", shard))
    }
    pub fn parked(&self, sub: &str, msg: u64) -> Vec<u8> {
        self.pack(&("parked", sub, msg))
    }
    pub fn parked_all(&self, sub: &str) -> (Vec<u8>, Vec<u8>) {
        self.range(&("parked", sub))
    }
    pub fn dlq(&self, sub: &str, msg: u64) -> Vec<u8> {
        self.pack(&("dlq", sub, msg))
    }
    pub fn dlq_all(&self, sub: &str) -> (Vec<u8>, Vec<u8>) {
        self.range(&("dlq", sub))
    }
    pub fn dlq_body(&self, sub: &str, msg: u64) -> (Vec<u8>, Vec<u8>) {
        self.range(&("dlqb", sub, msg))
    }
    pub fn dlq_body_chunk(&self, sub: &str, msg: u64, chunk: u32) -> Vec<u8> {
        self.pack(&("dlqb", sub, msg, chunk))
    }
    pub fn dlq_bodies(&self, sub: &str) -> (Vec<u8>, Vec<u8>) {
        self.range(&("dlqb", sub))
    }
    pub fn plugin(&self, name: &str) -> Vec<u8> {
        self.pack(&("plugin", name))
    }
    pub fn plugins(&self) -> (Vec<u8>, Vec<u8>) {
        self.range(&("plugin",))
    }
    pub fn plugin_bin_chunk(&self, name: &str, version: u32, chunk: u32) -> Vec<u8> {
        self.pack(&("pluginbin", name, version, chunk))
    }
    pub fn plugin_bin(&self, name: &str, version: u32) -> (Vec<u8>, Vec<u8>) {
        self.range(&("pluginbin", name, version))
    }
    pub fn plugin_bins(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        self.range(&("pluginbin", name))
    }
    pub fn plugin_use(&self, name: &str, owner: &str) -> Vec<u8> {
        self.pack(&("plugin_use", name, owner))
    }
    pub fn plugin_uses(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        self.range(&("plugin_use", name))
    }
    pub fn counter(&self, name: &str, shard: u16) -> Vec<u8> {
        self.pack(&("counter", name, shard))
    }
    pub fn counters(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        self.range(&("counter", name))
    }
    pub fn id_block(&self, name: &str) -> Vec<u8> {
        self.pack(&("ids", name))
    }
    pub fn meta_version(&self) -> Vec<u8> {
        self.pack(&("meta_version",))
    }
}

/// The shard of a delivery or fan-out task; stable for a given input.
pub fn shard_of(parts: &[&[u8]]) -> u16 {
    // FNV-1a: tiny, stable across builds and platforms, and good enough to
    // spread ids that are already unique.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (hash % u64::from(SHARDS)) as u16
}
