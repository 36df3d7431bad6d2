//! Plugins as stored: a record per name with its versions, the `.wasm`
//! bytes of each version in chunks, and which topics and subscriptions
//! attach it. Compiled code is cached by sha256, so a version is compiled
//! once per node however many attachments use it.

use std::sync::Arc;

use moka::future::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Compiled, PluginEngine, PluginError, PluginKind, validate};
use crate::error::{ApiError, ApiResult};
use crate::messages::CHUNK_BYTES;
use crate::metadata::{Metadata, decode, encode};
use crate::store::keys::Keys;
use crate::store::{Kv, KvError, KvExt};
use crate::time::now_ms;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PluginVersion {
    pub version: u32,
    /// Hex sha256 of the component.
    pub digest: String,
    pub size: usize,
    pub uploaded_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PluginRecord {
    pub name: String,
    pub kind: PluginKind,
    /// Oldest first; the last is the latest.
    pub versions: Vec<PluginVersion>,
    pub created_at_ms: u64,
}

impl PluginRecord {
    pub fn latest(&self) -> Option<&PluginVersion> {
        self.versions.last()
    }

    pub fn version(&self, pinned: Option<u32>) -> Option<&PluginVersion> {
        match pinned {
            Some(v) => self.versions.iter().find(|pv| pv.version == v),
            None => self.latest(),
        }
    }
}

/// Plugin names follow topic names: 1–256 of `A–Z a–z 0–9 - _ .`.
pub fn validate_name(name: &str) -> ApiResult<()> {
    crate::metadata::model::validate_topic_name(name).map_err(|_| {
        ApiError::bad_request(
            "invalid_plugin_name",
            "plugin names are 1-256 characters of A-Z a-z 0-9 - _ .",
        )
    })
}

#[derive(Clone)]
pub struct PluginRegistry {
    kv: Arc<dyn Kv>,
    keys: Keys,
    metadata: Metadata,
    engine: Arc<PluginEngine>,
    compiled: Cache<String, Arc<Compiled>>,
}

/// The outcome of an upload.
pub struct Uploaded {
    pub record: PluginRecord,
    pub version: PluginVersion,
    /// False when these exact bytes already were the latest version.
    pub created: bool,
}

impl PluginRegistry {
    pub fn new(kv: Arc<dyn Kv>, keys: Keys, metadata: Metadata, engine: Arc<PluginEngine>) -> Self {
        PluginRegistry {
            kv,
            keys,
            metadata,
            engine,
            compiled: Cache::builder().max_capacity(256).build(),
        }
    }

    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// Validates and compiles a component off the async runtime.
    async fn compile(
        &self,
        bytes: Arc<Vec<u8>>,
    ) -> Result<(Arc<Compiled>, PluginKind), PluginError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            let (component, kind) = validate::inspect(&engine, &bytes)?;
            Ok((Arc::new(engine.prepare(&component, kind)?), kind))
        })
        .await
        .map_err(|err| PluginError::Engine(format!("compile task: {err}")))?
    }

    /// Stores a new version of `name` after validating it.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> ApiResult<Uploaded> {
        validate_name(name)?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let bytes = Arc::new(bytes);
        let (compiled, kind) = self.compile(bytes.clone()).await.map_err(|err| match err {
            PluginError::Invalid(detail) => ApiError::bad_request("invalid_plugin", detail),
            other => ApiError::Internal(other.to_string()),
        })?;
        let (keys, name_owned, metadata) =
            (self.keys.clone(), name.to_string(), self.metadata.clone());
        let digest_owned = digest.clone();
        let uploaded = self
            .kv
            .run(move |txn| {
                let (keys, name, metadata, digest, bytes) = (
                    keys.clone(),
                    name_owned.clone(),
                    metadata.clone(),
                    digest_owned.clone(),
                    bytes.clone(),
                );
                async move {
                    let key = keys.plugin(&name);
                    let mut record = match txn.get(&key, false).await? {
                        Some(existing) => decode::<PluginRecord>(&existing)?,
                        None => PluginRecord {
                            name: name.clone(),
                            kind,
                            versions: Vec::new(),
                            created_at_ms: now_ms(),
                        },
                    };
                    if record.kind != kind {
                        return Err(ApiError::Conflict(format!(
                            "plugin {name} is a {} plugin; a {} cannot be a new version of it",
                            record.kind.as_str(),
                            kind.as_str()
                        )));
                    }
                    if let Some(latest) = record.latest()
                        && latest.digest == digest
                    {
                        let version = latest.clone();
                        return Ok(Uploaded {
                            record,
                            version,
                            created: false,
                        });
                    }
                    let version = PluginVersion {
                        version: record.latest().map_or(1, |v| v.version + 1),
                        digest,
                        size: bytes.len(),
                        uploaded_at_ms: now_ms(),
                    };
                    for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
                        txn.set(
                            &keys.plugin_bin_chunk(&name, version.version, i as u32),
                            chunk,
                        )?;
                    }
                    record.versions.push(version.clone());
                    txn.set(&key, &encode(&record))?;
                    metadata.bump_version(&txn)?;
                    Ok(Uploaded {
                        record,
                        version,
                        created: true,
                    })
                }
            })
            .await?;
        self.compiled.insert(digest, compiled).await;
        self.metadata.invalidate_plugin(name).await;
        Ok(uploaded)
    }

    pub async fn record(&self, name: &str) -> ApiResult<Option<Arc<PluginRecord>>> {
        self.metadata.plugin(name).await
    }

    pub async fn require(&self, name: &str) -> ApiResult<Arc<PluginRecord>> {
        self.record(name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("plugin {name} does not exist")))
    }

    pub async fn list(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> ApiResult<(Vec<PluginRecord>, Option<String>)> {
        let (mut begin, end) = self.keys.plugins();
        if let Some(after) = cursor {
            begin = self.keys.plugin(after);
            begin.push(0);
        }
        let rows = self
            .kv
            .run(move |txn| {
                let (begin, end) = (begin.clone(), end.clone());
                async move { txn.get_range(&begin, &end, limit, false, true).await }
            })
            .await?;
        let items: Vec<PluginRecord> = rows
            .iter()
            .map(|(_, v)| decode(v))
            .collect::<Result<_, _>>()?;
        let next = (items.len() == limit)
            .then(|| items.last().map(|p| p.name.clone()))
            .flatten();
        Ok((items, next))
    }

    /// Deletes a plugin that nothing attaches; 409 names who still does.
    pub async fn delete(&self, name: &str) -> ApiResult<()> {
        let (keys, name_owned, metadata) =
            (self.keys.clone(), name.to_string(), self.metadata.clone());
        self.kv
            .run(move |txn| {
                let (keys, name, metadata) = (keys.clone(), name_owned.clone(), metadata.clone());
                async move {
                    if txn.get(&keys.plugin(&name), false).await?.is_none() {
                        return Err(ApiError::NotFound(format!("plugin {name} does not exist")));
                    }
                    let (b, e) = keys.plugin_uses(&name);
                    let users = txn.get_range(&b, &e, 5, false, false).await?;
                    if !users.is_empty() {
                        let owners: Vec<String> = users
                            .iter()
                            .filter_map(|(k, _)| {
                                keys.unpack::<(String, String, String)>(k).map(|t| t.2)
                            })
                            .collect();
                        return Err(ApiError::Conflict(format!(
                            "plugin {name} is still attached to {}; detach it first",
                            owners.join(", ")
                        )));
                    }
                    txn.clear(&keys.plugin(&name))?;
                    let (b, e) = keys.plugin_bins(&name);
                    txn.clear_range(&b, &e)?;
                    metadata.bump_version(&txn)?;
                    Ok(())
                }
            })
            .await?;
        self.metadata.invalidate_plugin(name).await;
        Ok(())
    }

    /// The compiled code of a version, from the cache or the store.
    pub async fn compiled(
        &self,
        name: &str,
        version: &PluginVersion,
    ) -> Result<Arc<Compiled>, PluginError> {
        if let Some(compiled) = self.compiled.get(&version.digest).await {
            return Ok(compiled);
        }
        let (begin, end) = self.keys.plugin_bin(name, version.version);
        let bytes = self
            .kv
            .run(move |txn| {
                let (begin, end) = (begin.clone(), end.clone());
                async move {
                    let chunks = txn.get_range(&begin, &end, 0, false, true).await?;
                    Ok::<_, KvError>(chunks.into_iter().flat_map(|(_, v)| v).collect::<Vec<u8>>())
                }
            })
            .await
            .map_err(|err| PluginError::Engine(format!("loading the plugin: {err}")))?;
        if bytes.len() != version.size {
            return Err(PluginError::Engine(format!(
                "plugin {name} version {} is missing from the store",
                version.version
            )));
        }
        let (compiled, _) = self.compile(Arc::new(bytes)).await?;
        self.compiled
            .insert(version.digest.clone(), compiled.clone())
            .await;
        Ok(compiled)
    }
}
