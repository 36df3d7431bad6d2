//! The FoundationDB leg: the `Kv` conformance suite against a real cluster.
//!
//! Runs in a build with the `fdb` feature (which links libfdb_c) when
//! `HERALD_FDB_CLUSTER_FILE` names a cluster file; each case prints
//! `skipped: …` otherwise. The multi-node suite (`nodes`) uses the same
//! cluster through [`herald_tests::cluster::SharedStore`]. See the README's
//! "Running on FoundationDB".

use std::path::Path;
use std::sync::Arc;

use herald::store::Kv;
use herald::store::fdb::FdbKv;
use herald_tests::cluster::fdb_cluster_file;

/// The cluster, when one is configured. Cases work under random prefixes of
/// their own, so they share it safely.
fn cluster() -> Option<Arc<dyn Kv>> {
    let Some(file) = fdb_cluster_file() else {
        println!("skipped: no FoundationDB cluster (HERALD_FDB_CLUSTER_FILE is not set)");
        return None;
    };
    let kv = FdbKv::open(Some(Path::new(&file))).expect("FoundationDB opens");
    Some(Arc::new(kv))
}

mod conformance {
    herald::kv_conformance_tests!(optional: super::cluster());
}
