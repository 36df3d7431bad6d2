//! Metadata: topics and subscriptions, kept in the store and read through a
//! moka cache.
//!
//! A write invalidates this node's cache at once and bumps the metadata
//! version key; every node watches that key (a FoundationDB watch, or a poll
//! every `sender.metadata_poll_ms`, at most a second) and drops its whole
//! cache when it moved, so other nodes' writes reach it within the bound.

pub mod endpoint;
pub mod model;

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use rand::RngCore;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};
use crate::store::keys::Keys;
use crate::store::{Kv, KvError, KvExt, Txn, decode_counter};
use crate::time::now_ms;
pub use model::{PluginAttachment, Protocol, RetryPolicy, Subscription, SubscriptionView, Topic};

use crate::plugins::registry::PluginRecord;

/// Reads and writes topics and subscriptions.
#[derive(Clone)]
pub struct Metadata {
    kv: Arc<dyn Kv>,
    keys: Keys,
    topics: Cache<String, Option<Arc<Topic>>>,
    subs: Cache<String, Option<Arc<Subscription>>>,
    plugins: Cache<String, Option<Arc<PluginRecord>>>,
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, KvError> {
    serde_json::from_slice(bytes).map_err(|err| KvError::Backend(format!("corrupt record: {err}")))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn new_cache<V: Clone + Send + Sync + 'static>(capacity: u64) -> Cache<String, V> {
    Cache::builder()
        .max_capacity(capacity)
        // A safety net: even a missed version bump heals within this.
        .time_to_live(Duration::from_secs(60))
        .build()
}

/// One page of a list.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl Metadata {
    pub fn new(kv: Arc<dyn Kv>, keys: Keys) -> Self {
        Metadata {
            kv,
            keys,
            topics: new_cache(10_000),
            subs: new_cache(100_000),
            plugins: new_cache(10_000),
        }
    }

    pub(crate) fn bump_version(&self, txn: &Txn) -> Result<(), KvError> {
        txn.atomic_add(&self.keys.meta_version(), 1)
    }

    /// The current metadata version, for the change poller.
    pub async fn version(&self) -> Result<i64, KvError> {
        let key = self.keys.meta_version();
        self.kv
            .run(move |txn| {
                let key = key.clone();
                async move { Ok::<_, KvError>(decode_counter(txn.get(&key, true).await?.as_deref())) }
            })
            .await
    }

    /// Drops every cached record; called when another node changed metadata.
    pub fn invalidate_all(&self) {
        self.topics.invalidate_all();
        self.subs.invalidate_all();
        self.plugins.invalidate_all();
    }

    pub async fn plugin(&self, name: &str) -> ApiResult<Option<Arc<PluginRecord>>> {
        let key = self.keys.plugin(name);
        self.plugins
            .try_get_with(name.to_string(), async {
                self.load::<PluginRecord>(key)
                    .await
                    .map(|p| p.map(Arc::new))
            })
            .await
            .map_err(|err| ApiError::Store((*err).clone()))
    }

    pub async fn invalidate_plugin(&self, name: &str) {
        self.plugins.invalidate(name).await;
    }

    /// Polls the version key until `shutdown`, invalidating on change.
    pub async fn watch_changes(
        self,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut seen = self.version().await.ok();
        let key = self.keys.meta_version();
        loop {
            // The version key holds a little-endian counter; absent is 0.
            let seen_value = seen.filter(|v| *v != 0).map(i64::to_le_bytes);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.kv.wait_for_change(&key, seen_value.as_ref().map(|v| &v[..]), every) => {}
            }
            match self.version().await {
                Ok(version) if Some(version) != seen => {
                    self.invalidate_all();
                    seen = Some(version);
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "metadata version poll failed"),
            }
        }
    }

    async fn load<T: DeserializeOwned + Send + 'static>(
        &self,
        key: Vec<u8>,
    ) -> Result<Option<T>, KvError> {
        self.kv
            .run(move |txn| {
                let key = key.clone();
                async move {
                    match txn.get(&key, true).await? {
                        Some(bytes) => Ok(Some(decode(&bytes)?)),
                        None => Ok(None),
                    }
                }
            })
            .await
    }

    pub async fn topic(&self, name: &str) -> ApiResult<Option<Arc<Topic>>> {
        let key = self.keys.topic(name);
        self.topics
            .try_get_with(name.to_string(), async {
                self.load::<Topic>(key).await.map(|t| t.map(Arc::new))
            })
            .await
            .map_err(|err| ApiError::Store((*err).clone()))
    }

    pub async fn require_topic(&self, name: &str) -> ApiResult<Arc<Topic>> {
        self.topic(name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("topic {name} does not exist")))
    }

    /// Creates the topic if it is new, and sets its plugin chain when
    /// `plugins` is given; returns it and whether it was created.
    pub async fn put_topic(
        &self,
        name: &str,
        plugins: Option<Vec<PluginAttachment>>,
    ) -> ApiResult<(Topic, bool)> {
        model::validate_topic_name(name)?;
        let key = self.keys.topic(name);
        let name = name.to_string();
        let this = self.clone();
        let result = self
            .kv
            .run(move |txn| {
                let (key, name, this, plugins) =
                    (key.clone(), name.clone(), this.clone(), plugins.clone());
                async move {
                    let owner = format!("topic:{name}");
                    if let Some(existing) = txn.get(&key, false).await? {
                        let mut topic = decode::<Topic>(&existing)?;
                        if let Some(plugins) = plugins
                            && plugins != topic.plugins
                        {
                            this.record_plugin_uses(&txn, &owner, &topic.plugins, &plugins)
                                .await?;
                            topic.plugins = plugins;
                            txn.set(&key, &encode(&topic))?;
                            this.bump_version(&txn)?;
                        }
                        return Ok::<_, ApiError>((topic, false));
                    }
                    let plugins = plugins.unwrap_or_default();
                    this.record_plugin_uses(&txn, &owner, &[], &plugins).await?;
                    let topic = Topic {
                        name,
                        created_at_ms: now_ms(),
                        plugins,
                    };
                    txn.set(&key, &encode(&topic))?;
                    this.bump_version(&txn)?;
                    Ok((topic, true))
                }
            })
            .await?;
        self.topics.invalidate(&result.0.name).await;
        Ok(result)
    }

    /// Keeps the `plugin_use` index in step with an owner's attachments, and
    /// checks, inside the same transaction, that every attached plugin still
    /// exists, so an attach and a delete cannot both commit.
    async fn record_plugin_uses(
        &self,
        txn: &Txn,
        owner: &str,
        old: &[PluginAttachment],
        new: &[PluginAttachment],
    ) -> ApiResult<()> {
        for attachment in old {
            txn.clear(&self.keys.plugin_use(&attachment.name, owner))?;
        }
        for attachment in new {
            if txn
                .get(&self.keys.plugin(&attachment.name), false)
                .await?
                .is_none()
            {
                return Err(ApiError::NotFound(format!(
                    "plugin {} does not exist",
                    attachment.name
                )));
            }
            txn.set(&self.keys.plugin_use(&attachment.name, owner), b"")?;
        }
        Ok(())
    }

    pub async fn list_topics(&self, cursor: Option<&str>, limit: usize) -> ApiResult<Page<Topic>> {
        let (mut begin, end) = self.keys.topics();
        if let Some(after) = cursor {
            begin = self.keys.topic(after);
            begin.push(0);
        }
        let rows = self.scan(begin, end, limit).await?;
        let items: Vec<Topic> = rows
            .iter()
            .map(|(_, v)| decode(v))
            .collect::<Result<_, _>>()?;
        let next_cursor = (items.len() == limit)
            .then(|| items.last().map(|t| t.name.clone()))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    async fn scan(
        &self,
        begin: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
    ) -> ApiResult<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .kv
            .run(move |txn| {
                let (begin, end) = (begin.clone(), end.clone());
                async move { txn.get_range(&begin, &end, limit, false, true).await }
            })
            .await?)
    }

    /// Deletes a topic, its subscriptions, their dead letters and its messages.
    /// Deliveries still in the due index are dropped by the sender when it
    /// finds their subscription gone. Returns whether the topic existed.
    pub async fn delete_topic(&self, name: &str) -> ApiResult<bool> {
        if self.topic(name).await?.is_none() {
            return Ok(false);
        }
        // Subscriptions go in batches so a huge topic stays within the
        // transaction limits; the topic record goes last.
        loop {
            let (begin, end) = self.keys.topic_subs(name);
            let rows = self.scan(begin, end, 200).await?;
            let ids: Vec<String> = rows
                .iter()
                .filter_map(|(k, _)| self.keys.unpack::<(String, String, String)>(k).map(|t| t.2))
                .collect();
            for id in &ids {
                self.delete_subscription(id).await?;
            }
            if rows.len() < 200 {
                break;
            }
        }
        let keys = self.keys.clone();
        let topic = name.to_string();
        let this = self.clone();
        self.kv
            .run(move |txn| {
                let (keys, topic, this) = (keys.clone(), topic.clone(), this.clone());
                async move {
                    if let Some(bytes) = txn.get(&keys.topic(&topic), false).await? {
                        let record: Topic = decode(&bytes)?;
                        this.record_plugin_uses(
                            &txn,
                            &format!("topic:{topic}"),
                            &record.plugins,
                            &[],
                        )
                        .await?;
                    }
                    txn.clear(&keys.topic(&topic))?;
                    for (begin, end) in keys.topic_messages(&topic) {
                        txn.clear_range(&begin, &end)?;
                    }
                    this.bump_version(&txn)?;
                    Ok::<_, ApiError>(())
                }
            })
            .await?;
        self.topics.invalidate(name).await;
        Ok(true)
    }

    pub async fn subscription(&self, id: &str) -> ApiResult<Option<Arc<Subscription>>> {
        let key = self.keys.sub(id);
        self.subs
            .try_get_with(id.to_string(), async {
                self.load::<Subscription>(key)
                    .await
                    .map(|s| s.map(Arc::new))
            })
            .await
            .map_err(|err| ApiError::Store((*err).clone()))
    }

    /// Drops this node's cached copy of a subscription found to be stale.
    pub async fn forget_subscription(&self, id: &str) {
        self.subs.invalidate(id).await;
    }

    pub async fn require_subscription(&self, id: &str) -> ApiResult<Arc<Subscription>> {
        self.subscription(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("subscription {id} does not exist")))
    }

    /// Stores a new subscription on an existing topic.
    pub async fn create_subscription(&self, sub: Subscription) -> ApiResult<Subscription> {
        let keys = self.keys.clone();
        let this = self.clone();
        let stored = sub.clone();
        self.kv
            .run(move |txn| {
                let (keys, sub, this) = (keys.clone(), stored.clone(), this.clone());
                async move {
                    if txn.get(&keys.topic(&sub.topic), false).await?.is_none() {
                        return Err(ApiError::NotFound(format!(
                            "topic {} does not exist",
                            sub.topic
                        )));
                    }
                    this.record_plugin_uses(&txn, &format!("sub:{}", sub.id), &[], &sub.plugins)
                        .await?;
                    txn.set(&keys.sub(&sub.id), &encode(&sub))?;
                    txn.set(&keys.topic_sub(&sub.topic, &sub.id), b"")?;
                    this.bump_version(&txn)?;
                    Ok(())
                }
            })
            .await?;
        self.subs.invalidate(&sub.id).await;
        Ok(sub)
    }

    pub async fn list_subscriptions(
        &self,
        topic: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> ApiResult<Page<Arc<Subscription>>> {
        let (mut begin, end) = self.keys.topic_subs(topic);
        if let Some(after) = cursor {
            begin = self.keys.topic_sub(topic, after);
            begin.push(0);
        }
        let rows = self.scan(begin, end, limit).await?;
        let mut items = Vec::with_capacity(rows.len());
        for (key, _) in &rows {
            if let Some((_, _, id)) = self.keys.unpack::<(String, String, String)>(key)
                && let Some(sub) = self.subscription(&id).await?
            {
                items.push(sub);
            }
        }
        let next_cursor = (rows.len() == limit)
            .then(|| {
                rows.last()
                    .and_then(|(k, _)| self.keys.unpack::<(String, String, String)>(k))
            })
            .flatten()
            .map(|t| t.2);
        Ok(Page { items, next_cursor })
    }

    /// Replaces a subscription record with `update(current)`.
    pub async fn update_subscription<F>(&self, id: &str, update: F) -> ApiResult<Subscription>
    where
        F: Fn(&mut Subscription) -> ApiResult<()> + Send + Sync + Clone + 'static,
    {
        let key = self.keys.sub(id);
        let this = self.clone();
        let id_owned = id.to_string();
        let updated = self
            .kv
            .run(move |txn| {
                let (key, this, update, id) =
                    (key.clone(), this.clone(), update.clone(), id_owned.clone());
                async move {
                    let Some(bytes) = txn.get(&key, false).await? else {
                        return Err(ApiError::NotFound(format!(
                            "subscription {id} does not exist"
                        )));
                    };
                    let mut sub: Subscription = decode(&bytes)?;
                    let before = sub.plugins.clone();
                    update(&mut sub)?;
                    if sub.plugins != before {
                        this.record_plugin_uses(&txn, &format!("sub:{id}"), &before, &sub.plugins)
                            .await?;
                    }
                    txn.set(&key, &encode(&sub))?;
                    this.bump_version(&txn)?;
                    Ok(sub)
                }
            })
            .await?;
        self.subs.invalidate(id).await;
        Ok(updated)
    }

    /// Deletes a subscription and its dead letters. Its parked deliveries go
    /// back to the due index afterwards, so the sender, finding the
    /// subscription gone, drops them and releases their hold on the message.
    pub async fn delete_subscription(&self, id: &str) -> ApiResult<bool> {
        let Some(sub) = self.subscription(id).await? else {
            return Ok(false);
        };
        let keys = self.keys.clone();
        let this = self.clone();
        self.kv
            .run(move |txn| {
                let (keys, sub, this) = (keys.clone(), sub.clone(), this.clone());
                async move {
                    this.record_plugin_uses(&txn, &format!("sub:{}", sub.id), &sub.plugins, &[])
                        .await?;
                    txn.clear(&keys.sub(&sub.id))?;
                    txn.clear(&keys.topic_sub(&sub.topic, &sub.id))?;
                    let (b, e) = keys.dlq_all(&sub.id);
                    txn.clear_range(&b, &e)?;
                    let (b, e) = keys.dlq_bodies(&sub.id);
                    txn.clear_range(&b, &e)?;
                    this.bump_version(&txn)?;
                    Ok::<_, ApiError>(())
                }
            })
            .await?;
        self.subs.invalidate(id).await;
        crate::deliveries::unpark_all(self.kv.as_ref(), &self.keys, id).await?;
        Ok(true)
    }
}

/// A fresh subscription id: `sub_` and 16 random hex digits.
pub fn new_subscription_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("sub_{}", hex::encode(bytes))
}
