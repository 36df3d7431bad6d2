//! The group committer: one thread that validates and applies commit requests
//! in batches, one redb write transaction (and so one fsync) per batch.
//!
//! redb allows one writer at a time and pays an fsync per commit, so
//! committing transactions one by one would cap throughput at the disk's sync
//! rate. Draining the queue into a batch lets every transaction that arrived
//! during the previous fsync share the next one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, Table};
use tokio::sync::oneshot;

use super::TABLE;
use super::buffer::{KeySet, PointOp, WriteBuffer, encode_counter};
use crate::store::{KvError, KvResult, decode_counter, limits};

/// How long committed write sets are kept for conflict checks. Longer than
/// [`limits::MAX_TXN_AGE`] so a transaction that passed its age check just
/// before queueing still finds every write it must be checked against.
const LOG_RETENTION: Duration = Duration::from_secs(limits::MAX_TXN_AGE.as_secs() + 1);

/// State shared by the committer and the transactions that read versions.
pub(crate) struct Shared {
    pub(crate) db: Database,
    /// The version of the last batch whose redb commit returned.
    pub(crate) version: AtomicU64,
    /// redb commits performed by the committer.
    pub(crate) commits: AtomicU64,
}

pub(crate) struct CommitRequest {
    pub(crate) read_version: u64,
    pub(crate) reads: KeySet,
    pub(crate) writes: WriteBuffer,
    pub(crate) reply: oneshot::Sender<KvResult<()>>,
}

/// Write sets of recent batches, oldest first.
struct RecentCommits {
    log: VecDeque<(u64, KeySet, Instant)>,
    /// The newest version dropped from the log: transactions that read before
    /// it can no longer be checked.
    trimmed_through: u64,
}

impl RecentCommits {
    fn check(&self, request: &CommitRequest) -> KvResult<()> {
        if request.read_version < self.trimmed_through {
            return Err(KvError::TooOld);
        }
        let conflicted = self
            .log
            .iter()
            .rev()
            .take_while(|(version, _, _)| *version > request.read_version)
            .any(|(_, writes, _)| writes.intersects(&request.reads));
        if conflicted {
            Err(KvError::Conflict)
        } else {
            Ok(())
        }
    }

    fn push(&mut self, version: u64, writes: KeySet) {
        let now = Instant::now();
        self.log.push_back((version, writes, now));
        while let Some((version, _, at)) = self.log.front() {
            if now.duration_since(*at) <= LOG_RETENTION {
                break;
            }
            self.trimmed_through = *version;
            self.log.pop_front();
        }
    }
}

/// Runs until every sender is gone.
pub(crate) fn run(shared: Arc<Shared>, requests: Receiver<CommitRequest>) {
    let mut recent = RecentCommits {
        log: VecDeque::new(),
        trimmed_through: 0,
    };
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter());
        commit_batch(&shared, &mut recent, batch);
    }
}

fn commit_batch(shared: &Shared, recent: &mut RecentCommits, batch: Vec<CommitRequest>) {
    let mut accepted = Vec::with_capacity(batch.len());
    let mut batch_writes = KeySet::default();
    let mut pending = batch.into_iter();
    let outcome = (|| -> Result<(), redb::Error> {
        let txn = shared.db.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for request in pending.by_ref() {
                let verdict = recent.check(&request).and_then(|()| {
                    if batch_writes.intersects(&request.reads) {
                        Err(KvError::Conflict)
                    } else {
                        Ok(())
                    }
                });
                if let Err(err) = verdict {
                    let _ = request.reply.send(Err(err));
                    continue;
                }
                // Accepted before applying, so a storage error below still
                // reaches this request through the batch-wide failure reply.
                accepted.push(request.reply);
                apply(&mut table, &request.writes)?;
                batch_writes.extend(&request.writes.write_set());
            }
        }
        if accepted.is_empty() {
            txn.abort()?;
            return Ok(());
        }
        txn.commit()?;
        Ok(())
    })();
    match outcome {
        Ok(()) if accepted.is_empty() => {}
        Ok(()) => {
            shared.commits.fetch_add(1, Ordering::Relaxed);
            // Published only now that the commit returned, so a reader that
            // sees this version also sees the batch in its snapshot.
            let version = shared.version.load(Ordering::Acquire) + 1;
            recent.push(version, batch_writes);
            shared.version.store(version, Ordering::Release);
            for reply in accepted {
                let _ = reply.send(Ok(()));
            }
        }
        Err(err) => {
            let err = KvError::Backend(format!("commit: {err}"));
            // Requests the failure kept from being looked at fail with it too.
            accepted.extend(pending.map(|request| request.reply));
            for reply in accepted {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

fn apply(table: &mut Table<&[u8], &[u8]>, writes: &WriteBuffer) -> Result<(), redb::Error> {
    for (begin, end) in writes.cleared.iter() {
        table.retain_in(begin..end, |_, _| false)?;
    }
    for (key, op) in &writes.points {
        match op {
            PointOp::Set(value) => {
                table.insert(key.as_slice(), value.as_slice())?;
            }
            PointOp::Clear => {
                table.remove(key.as_slice())?;
            }
            PointOp::Add(delta) => {
                let current =
                    decode_counter(table.get(key.as_slice())?.as_ref().map(|v| v.value()));
                let next = encode_counter(current.wrapping_add(*delta));
                table.insert(key.as_slice(), next.as_slice())?;
            }
        }
    }
    Ok(())
}
