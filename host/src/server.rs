//! Assembles a node: store, metadata, API and sender, each switchable in
//! config. Tests start whole nodes in-process on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::{Config, StoreBackend};
use crate::metadata::Metadata;
use crate::metrics::Metrics;
use crate::plugins::PluginEngine;
use crate::plugins::chain::PluginHost;
use crate::plugins::registry::PluginRegistry;
use crate::sender::{Sender, SenderParts, Wakers};
use crate::store::embedded::EmbeddedKv;
use crate::store::ids::IdAllocator;
use crate::store::keys::Keys;
use crate::store::{Kv, KvError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the store: {0}")]
    Store(#[from] KvError),
    #[error("starting the plugin engine: {0}")]
    Plugins(crate::plugins::PluginError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Opens the store the config names.
pub fn open_store(config: &Config) -> Result<Arc<dyn Kv>, KvError> {
    match config.store.backend {
        StoreBackend::Embedded => Ok(Arc::new(EmbeddedKv::open(
            &config.data_dir.join("herald.redb"),
        )?)),
        #[cfg(feature = "fdb")]
        StoreBackend::Fdb => Ok(Arc::new(crate::store::fdb::FdbKv::open(
            config.store.cluster_file.as_deref(),
        )?)),
        #[cfg(not(feature = "fdb"))]
        StoreBackend::Fdb => Err(KvError::Backend(
            "this herald was built without FoundationDB support (cargo feature `fdb`)".into(),
        )),
    }
}

/// A running node.
pub struct Node {
    /// Where the API listens (the real port when the config said `:0`).
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Opens the configured store and starts a node on it.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        let kv = open_store(&config)?;
        Node::start_with_store(config, kv).await
    }

    /// Starts a node on a store that may be shared with other nodes.
    pub async fn start_with_store(config: Config, kv: Arc<dyn Kv>) -> Result<Node, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let config = Arc::new(config);
        let keys = Keys::new(&config.store.prefix);
        let metadata = Metadata::new(kv.clone(), keys.clone());
        let metrics = Arc::new(Metrics::new());
        let wakers = Arc::new(Wakers::default());
        let shutdown = CancellationToken::new();
        let plugins = PluginHost {
            registry: PluginRegistry::new(
                kv.clone(),
                keys.clone(),
                metadata.clone(),
                Arc::new(PluginEngine::new().map_err(StartError::Plugins)?),
            ),
            config: config.plugins.clone(),
        };
        let mut tasks = Vec::new();

        tasks.push(tokio::spawn(metadata.clone().watch_changes(
            Duration::from_millis(config.sender.metadata_poll_ms),
            shutdown.clone(),
        )));
        if config.roles.sender {
            let sender = Sender::new(SenderParts {
                kv: kv.clone(),
                keys: keys.clone(),
                metadata: metadata.clone(),
                config: config.sender.clone(),
                shared: config.store.is_shared(),
                metrics: metrics.clone(),
                wakers: wakers.clone(),
                plugins: plugins.clone(),
                allow_private_endpoints: config.security.allow_private_endpoints,
            });
            tasks.push(tokio::spawn(sender.run(shutdown.clone())));
        }
        if config.roles.api {
            let state = AppState {
                message_ids: Arc::new(IdAllocator::new(kv.clone(), keys.id_block("msg"), 1024)),
                kv,
                keys,
                metadata,
                config: config.clone(),
                metrics,
                wakers,
                plugins,
            };
            let app = api::router(state);
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(err) = served {
                    tracing::error!(error = %err, "API server stopped");
                }
            }));
        }
        tracing::info!(%addr, store = %config.store.backend_name(), dev = config.dev, "herald is listening");
        Ok(Node {
            addr,
            shutdown,
            tasks,
        })
    }

    /// `http://addr`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking work, drains in-flight deliveries (within the grace
    /// period) and returns when everything has stopped.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops the node's tasks at once, with no cleanup: a crash, for tests.
    pub fn abort(self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs a node until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let served = serve_until_signal(config).await;
    // FoundationDB's client network must stop before the process exits.
    #[cfg(feature = "fdb")]
    crate::store::fdb::stop_network();
    served
}

async fn serve_until_signal(config: Config) -> Result<(), StartError> {
    let node = Node::start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight deliveries");
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
