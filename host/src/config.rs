//! Layered configuration: embedded defaults, then an optional TOML file, then
//! `HERALD_*` environment variables (`__` separates sections, as in
//! `HERALD_SENDER__MAX_IN_FLIGHT=64`), then command-line flags.
//!
//! Unknown fields are rejected, so a typo stops start-up with the field's name
//! instead of being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `herald serve` can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the REST API listens on.
    pub listen: SocketAddr,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Local development mode: loopback listen address only, and webhook
    /// endpoints on loopback and private addresses are allowed.
    pub dev: bool,
    /// Which parts of the node run; tests and operators switch them off.
    pub roles: RolesConfig,
    pub store: StoreConfig,
    pub sender: SenderConfig,
    pub limits: LimitsConfig,
    pub security: SecurityConfig,
    /// Plugin limits: the defaults each attachment gets, and the ceilings
    /// it may ask for.
    pub plugins: crate::plugins::PluginsConfig,
    /// `tracing` filter directive, as in `RUST_LOG`.
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./herald-data"),
            dev: false,
            roles: RolesConfig::default(),
            store: StoreConfig::default(),
            sender: SenderConfig::default(),
            limits: LimitsConfig::default(),
            security: SecurityConfig::default(),
            plugins: crate::plugins::PluginsConfig::default(),
            log: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolesConfig {
    /// Serve the REST API.
    pub api: bool,
    /// Run the fan-out and delivery workers.
    pub sender: bool,
}

impl Default for RolesConfig {
    fn default() -> Self {
        RolesConfig {
            api: true,
            sender: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// redb in `data_dir`: one node owns the store.
    Embedded,
    /// A FoundationDB cluster shared by every node (cargo feature `fdb`).
    Fdb,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (the default) or `fdb`.
    pub backend: StoreBackend,
    /// The FoundationDB cluster file; the client's default
    /// (`/etc/foundationdb/fdb.cluster`) when unset. Only for `fdb`.
    pub cluster_file: Option<PathBuf>,
    /// Root subspace of this deployment, so several can share one cluster.
    pub prefix: String,
    /// Whether several nodes share this store. When true, every claimed
    /// delivery writes a lease that expires if the node dies; when false the
    /// single node skips that write, since after a crash every unfinished
    /// delivery is due again anyway. Always true on FoundationDB.
    pub shared: bool,
}

impl StoreConfig {
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            StoreBackend::Embedded => "embedded",
            StoreBackend::Fdb => "fdb",
        }
    }

    /// Whether claims must be written as leases: other nodes may share it.
    pub fn is_shared(&self) -> bool {
        self.shared || self.backend == StoreBackend::Fdb
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            cluster_file: None,
            prefix: "default".into(),
            shared: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderConfig {
    /// Deliveries in flight on this node, all endpoints together.
    pub max_in_flight: usize,
    /// Deliveries in flight to one endpoint URL, so a slow or dead endpoint
    /// cannot take the whole pool.
    pub max_in_flight_per_endpoint: usize,
    /// How often the due index is polled when nothing wakes the workers
    /// (work from other nodes, retries that come due, after a restart).
    pub poll_interval_ms: u64,
    /// How long a claimed delivery stays invisible to other nodes (shared
    /// stores). A node that dies holds its deliveries at most this long.
    pub lease_ms: u64,
    /// How often a delivery still in flight renews its lease; well below
    /// `lease_ms`, so a slow endpoint never loses its lease to another node.
    pub lease_renew_ms: u64,
    /// How long shutdown waits for in-flight deliveries before releasing them.
    pub shutdown_grace_ms: u64,
    /// Most subscriptions expanded per fan-out transaction.
    pub fanout_batch: usize,
    /// How often each node checks the metadata version key for changes
    /// written by other nodes.
    pub metadata_poll_ms: u64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            max_in_flight: 256,
            max_in_flight_per_endpoint: 16,
            poll_interval_ms: 1000,
            lease_ms: 30_000,
            lease_renew_ms: 10_000,
            shutdown_grace_ms: 10_000,
            fanout_batch: 500,
            metadata_poll_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message body accepted by publish, in bytes.
    pub max_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 256 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Accept webhook endpoints on loopback, private and link-local
    /// addresses. `--dev` turns this on.
    pub allow_private_endpoints: bool,
}

/// Flags given on the command line; they override every other layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
}

/// A config that failed to load or validate; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("config field `{field}`: {detail}")]
    Invalid { field: &'static str, detail: String },
}

impl Config {
    /// Loads the layers in order; `file` is optional.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            // HERALD_FDB_CLUSTER_FILE selects the FoundationDB test leg, not a field.
            .merge(
                Env::prefixed("HERALD_")
                    .split("__")
                    .ignore(&["fdb_cluster_file"]),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config.with_dev_defaults())
    }

    fn with_dev_defaults(mut self) -> Self {
        if self.dev {
            self.security.allow_private_endpoints = true;
        }
        self
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, detail: &str| {
            Err(ConfigError::Invalid {
                field,
                detail: detail.to_string(),
            })
        };
        if self.dev && !self.listen.ip().is_loopback() {
            return invalid(
                "listen",
                "--dev only listens on a loopback address (127.0.0.1 or [::1])",
            );
        }
        if self.sender.max_in_flight == 0 {
            return invalid("sender.max_in_flight", "must be at least 1");
        }
        if self.sender.max_in_flight_per_endpoint == 0 {
            return invalid("sender.max_in_flight_per_endpoint", "must be at least 1");
        }
        if self.sender.poll_interval_ms == 0 || self.sender.poll_interval_ms > 60_000 {
            return invalid("sender.poll_interval_ms", "must be between 1 and 60000");
        }
        if self.sender.metadata_poll_ms == 0 || self.sender.metadata_poll_ms > 1000 {
            return invalid("sender.metadata_poll_ms", "must be between 1 and 1000");
        }
        if self.sender.lease_ms < 1000 {
            return invalid("sender.lease_ms", "must be at least 1000");
        }
        if self.sender.fanout_batch == 0 || self.sender.fanout_batch > 5000 {
            return invalid("sender.fanout_batch", "must be between 1 and 5000");
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_body_bytes > 1024 * 1024 {
            return invalid(
                "limits.max_body_bytes",
                "must be between 1 and 1048576 bytes",
            );
        }
        if self.store.prefix.is_empty() {
            return invalid("store.prefix", "must not be empty");
        }
        if self.store.backend == StoreBackend::Fdb && !cfg!(feature = "fdb") {
            return invalid(
                "store.backend",
                "\"fdb\" needs a herald built with `--features fdb` (and libfdb_c installed)",
            );
        }
        if self.store.cluster_file.is_some() && self.store.backend != StoreBackend::Fdb {
            return invalid("store.cluster_file", "only applies to backend = \"fdb\"");
        }
        if self.sender.lease_renew_ms == 0 || self.sender.lease_renew_ms > self.sender.lease_ms / 2
        {
            return invalid(
                "sender.lease_renew_ms",
                "must be at least 1 and at most half of sender.lease_ms",
            );
        }
        Ok(())
    }

    /// A config for tests and benchmarks: a given data directory, an
    /// ephemeral loopback port, private endpoints allowed.
    pub fn for_local(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            dev: true,
            security: SecurityConfig {
                allow_private_endpoints: true,
            },
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_refuses_public_listen_address() {
        let overrides = Overrides {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            dev: true,
            ..Overrides::default()
        };
        let err = Config::load(None, &overrides).unwrap_err().to_string();
        assert!(err.contains("`listen`"), "{err}");
    }

    #[test]
    fn unknown_field_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, "[sender]\nmax_inflight = 3\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_inflight"), "{err}");
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[sender]\nmax_in_flight = 3\n",
        )
        .unwrap();
        let overrides = Overrides {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&file), &overrides).unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.sender.max_in_flight, 3);
        assert!(!config.security.allow_private_endpoints);
    }
}
