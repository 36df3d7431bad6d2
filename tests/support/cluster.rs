//! Several Herald nodes over one store, in one test process: each node has
//! its own API listener, sender and metadata cache, and runs on a tokio
//! runtime of its own, so killing a node drops every task it had (request
//! handlers and in-flight deliveries too) without any cleanup, as a crash
//! would.
//!
//! The store is the embedded one, opened once and shared, unless
//! `HERALD_FDB_CLUSTER_FILE` is set in a build with the `fdb` feature: then
//! the nodes share that FoundationDB cluster, under a prefix of their own.

use std::sync::Arc;

use herald::config::Config;
use herald::server::Node;
use herald::store::Kv;

use crate::{TestClient, test_config};

/// The store the nodes share, and what must outlive it.
pub struct SharedStore {
    pub kv: Arc<dyn Kv>,
    /// The root subspace every node of this test uses.
    pub prefix: String,
    _dir: tempfile::TempDir,
}

impl SharedStore {
    pub fn open() -> SharedStore {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = format!("test-{}", rand_suffix());
        #[cfg(feature = "fdb")]
        if let Some(cluster_file) = fdb_cluster_file() {
            let kv = herald::store::fdb::FdbKv::open(Some(std::path::Path::new(&cluster_file)))
                .expect("FoundationDB opens");
            println!("store: FoundationDB at {cluster_file}, prefix {prefix}");
            return SharedStore {
                kv: Arc::new(kv),
                prefix,
                _dir: dir,
            };
        }
        let kv = herald::store::embedded::EmbeddedKv::open(&dir.path().join("shared.redb"))
            .expect("embedded store opens");
        SharedStore {
            kv: Arc::new(kv),
            prefix,
            _dir: dir,
        }
    }
}

/// The cluster file of the FoundationDB test leg, when one is set.
pub fn fdb_cluster_file() -> Option<String> {
    std::env::var("HERALD_FDB_CLUSTER_FILE")
        .ok()
        .filter(|value| !value.is_empty())
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// One node of a [`TestCluster`].
pub struct ClusterNode {
    runtime: Option<tokio::runtime::Runtime>,
    node: Option<Node>,
    pub client: TestClient,
    pub addr: std::net::SocketAddr,
}

impl ClusterNode {
    pub fn is_alive(&self) -> bool {
        self.runtime.is_some()
    }
}

/// N nodes sharing one store.
pub struct TestCluster {
    pub store: SharedStore,
    pub nodes: Vec<ClusterNode>,
}

/// Test defaults for nodes that share a store: leases on, short enough that
/// a dead node's deliveries move on within seconds.
pub fn cluster_config(prefix: &str) -> Config {
    let dir = std::env::temp_dir();
    let mut config = test_config(&dir);
    config.store.shared = true;
    config.store.prefix = prefix.to_string();
    config.sender.lease_ms = 2_000;
    config.sender.lease_renew_ms = 500;
    config
}

impl TestCluster {
    pub async fn start(nodes: usize, tune: impl Fn(usize, &mut Config)) -> TestCluster {
        let store = SharedStore::open();
        let mut cluster = TestCluster {
            store,
            nodes: Vec::new(),
        };
        for index in 0..nodes {
            let mut config = cluster_config(&cluster.store.prefix);
            tune(index, &mut config);
            let node = start_on_own_runtime(config, cluster.store.kv.clone()).await;
            cluster.nodes.push(node);
        }
        cluster
    }

    pub fn client(&self, index: usize) -> &TestClient {
        &self.nodes[index].client
    }

    /// Kills node `index`: its runtime goes away with every task on it, and
    /// nothing is released, flushed or recorded.
    pub fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        drop(node.node.take());
        if let Some(runtime) = node.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Stops every live node gracefully.
    pub async fn shutdown(mut self) {
        for node in &mut self.nodes {
            if let (Some(runtime), Some(running)) = (node.runtime.take(), node.node.take()) {
                let stopped = runtime.spawn(running.shutdown());
                let _ = stopped.await;
                runtime.shutdown_background();
            }
        }
    }
}

async fn start_on_own_runtime(config: Config, kv: Arc<dyn Kv>) -> ClusterNode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("node runtime");
    let node = runtime
        .spawn(Node::start_with_store(config, kv))
        .await
        .expect("node task")
        .expect("node starts");
    ClusterNode {
        client: TestClient::new(&node.url()),
        addr: node.addr,
        node: Some(node),
        runtime: Some(runtime),
    }
}

/// The value of an unlabelled Prometheus sample, or of one with the given
/// label set, in a `/metrics` page.
pub fn metric(page: &str, sample: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
