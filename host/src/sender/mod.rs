//! The sender: fan-out and delivery workers.
//!
//! - The fan-out loop expands published messages into deliveries
//!   ([`fanout`]).
//! - The delivery loop reads due deliveries from the sharded due index and
//!   starts an attempt for each, under two semaphores: one for the whole
//!   node and one per endpoint URL, so a slow or dead endpoint holds at most
//!   its own share of the pool and never delays the others.
//! - A publish on this node wakes the workers at once; polling is the
//!   fallback for other nodes' work, retries coming due, and restarts.
//! - On a shared store each attempt holds a lease (the due key moved to
//!   `now + lease`), renewed while the request runs. On a store that one node
//!   owns, the claim is only in memory: after a crash everything unfinished
//!   is due again, so writing a lease would cost a commit for nothing.

pub mod attempt;
pub mod fanout;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::SenderConfig;
use crate::deliveries::{self, DueEntry, Transition, TransitionError};
use crate::messages::{self, format_id};
use crate::metadata::endpoint::validate_endpoint;
use crate::metadata::{Metadata, Subscription};
use crate::metrics::Metrics;
use crate::plugins::chain::{ChainOutcome, PluginHost, apply_to_header, to_plugin_message};
use crate::store::keys::{Keys, SHARDS};
use crate::store::{Kv, KvError, KvExt};
use crate::time::now_ms;

/// Wake-ups shared by the API and the workers of one node.
#[derive(Default)]
pub struct Wakers {
    pub fanout: Notify,
    pub deliveries: Notify,
}

/// Most due entries read per shard and round.
const SCAN_PAGE: usize = 256;
/// Bound on the entries one round looks at, so a huge backlog on saturated
/// endpoints costs a bounded scan rather than a walk over all of it.
const SCAN_BUDGET: usize = 8192;
/// Fan-out tasks expanded concurrently; they share group commits.
const FANOUT_CONCURRENCY: usize = 32;

pub struct Sender {
    kv: Arc<dyn Kv>,
    keys: Keys,
    metadata: Metadata,
    config: SenderConfig,
    shared: bool,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    wakers: Arc<Wakers>,
    plugins: PluginHost,
    allow_private_endpoints: bool,
    in_flight: Mutex<HashSet<(String, u64)>>,
    pool: Arc<Semaphore>,
    endpoints: Mutex<HashMap<String, Arc<Semaphore>>>,
    lease_token: String,
    tasks: TaskTracker,
    /// Per shard, where the next event-driven round starts scanning.
    resume_points: Mutex<Vec<Option<Vec<u8>>>>,
}

/// A delivery after its subscription's plugins ran.
enum Prepared {
    Send(attempt::OutgoingRequest),
    /// Not sent, and finished: the metrics label says why.
    Skip(&'static str),
    /// A plugin failed: the attempt fails with this reason.
    Fail(String),
}

/// What [`Sender::try_start`] did with a due entry.
enum Start {
    /// Started now, or already running.
    Started,
    /// Left for a later round: its endpoint is saturated.
    Skipped,
    /// Left: the whole pool is busy.
    PoolFull,
}

pub struct SenderParts {
    pub kv: Arc<dyn Kv>,
    pub keys: Keys,
    pub metadata: Metadata,
    pub config: SenderConfig,
    pub shared: bool,
    pub metrics: Arc<Metrics>,
    pub wakers: Arc<Wakers>,
    pub plugins: PluginHost,
    pub allow_private_endpoints: bool,
}

impl Sender {
    pub fn new(parts: SenderParts) -> Arc<Sender> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(parts.config.max_in_flight_per_endpoint)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Arc::new(Sender {
            pool: Arc::new(Semaphore::new(parts.config.max_in_flight)),
            kv: parts.kv,
            keys: parts.keys,
            metadata: parts.metadata,
            shared: parts.shared,
            http,
            metrics: parts.metrics,
            wakers: parts.wakers,
            plugins: parts.plugins,
            allow_private_endpoints: parts.allow_private_endpoints,
            in_flight: Mutex::new(HashSet::new()),
            endpoints: Mutex::new(HashMap::new()),
            lease_token: crate::metadata::new_subscription_id().replacen("sub_", "lease_", 1),
            tasks: TaskTracker::new(),
            resume_points: Mutex::new(vec![None; SHARDS as usize]),
            config: parts.config,
        })
    }

    /// Runs both loops until `shutdown`, then drains in-flight attempts for
    /// up to the grace period. Attempts cut off there stay in the due index
    /// (or keep a lease that expires) and are retried later.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let fanout = tokio::spawn(self.clone().fanout_loop(shutdown.clone()));
        self.clone().delivery_loop(shutdown).await;
        let _ = fanout.await;
        self.tasks.close();
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; unfinished deliveries will be retried");
        }
    }

    async fn idle(&self, notify: &Notify, wait: Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = notify.notified() => true,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    async fn fanout_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            match self.fanout_round().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "fan-out round failed"),
            }
            if !self.idle(&self.wakers.fanout, poll, &shutdown).await {
                return;
            }
        }
    }

    /// Expands what is pending; returns whether it found anything.
    async fn fanout_round(&self) -> Result<bool, KvError> {
        let mut tasks = Vec::new();
        for shard in 0..SHARDS {
            tasks.extend(fanout::pending(self.kv.as_ref(), &self.keys, shard, 64).await?);
        }
        if tasks.is_empty() {
            return Ok(false);
        }
        let batch = self.config.fanout_batch;
        futures::stream::iter(tasks)
            .for_each_concurrent(FANOUT_CONCURRENCY, |(key, msg)| async move {
                loop {
                    match fanout::expand_batch(self.kv.as_ref(), &self.keys, key.clone(), msg, batch).await {
                        Ok((created, done)) => {
                            if created > 0 {
                                self.wakers.deliveries.notify_one();
                            }
                            if done {
                                return;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, msg = %format_id(msg), "fan-out failed; will retry");
                            return;
                        }
                    }
                }
            })
            .await;
        Ok(true)
    }

    async fn delivery_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut start_shard = 0u16;
        let mut last_full = std::time::Instant::now();
        loop {
            // Rounds woken by local events resume where the last one stopped;
            // once per poll interval a round starts from the head of every
            // shard, for anything that landed behind the resume points.
            let full = last_full.elapsed() >= poll;
            if full {
                last_full = std::time::Instant::now();
            }
            let wait = match self.delivery_round(start_shard, full).await {
                Ok(next_due) => next_due
                    .map(|due| Duration::from_millis(due.saturating_sub(now_ms())))
                    .unwrap_or(poll)
                    .min(poll),
                Err(err) => {
                    tracing::warn!(error = %err, "delivery round failed");
                    poll
                }
            };
            // Nodes sharing a store start their scans at different shards.
            start_shard = (start_shard + 1) % SHARDS;
            if !self.idle(&self.wakers.deliveries, wait, &shutdown).await {
                return;
            }
        }
    }

    fn endpoint_limit(&self, endpoint: &str) -> Arc<Semaphore> {
        let mut endpoints = self.endpoints.lock().expect("endpoint map");
        endpoints
            .entry(endpoint.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_in_flight_per_endpoint)))
            .clone()
    }

    /// Starts an attempt for every due delivery it can; returns the earliest
    /// future due time it saw. A `full` round scans every shard from its
    /// head; others start at each shard's resume point, the first entry the
    /// last round could not start (everything before it is in flight).
    async fn delivery_round(
        self: &Arc<Self>,
        start_shard: u16,
        full: bool,
    ) -> Result<Option<u64>, KvError> {
        let now = now_ms();
        let mut budget = SCAN_BUDGET;
        let mut earliest: Option<u64> = None;
        for offset in 0..SHARDS {
            let shard = (start_shard + offset) % SHARDS;
            let mut from = if full {
                None
            } else {
                self.resume_points.lock().expect("resume points")[shard as usize].clone()
            };
            let mut first_unstarted = None;
            let mut pool_full = false;
            while budget > 0 && !pool_full {
                let page = deliveries::scan_due(
                    self.kv.as_ref(),
                    &self.keys,
                    shard,
                    now,
                    from.clone(),
                    SCAN_PAGE,
                )
                .await?;
                budget = budget.saturating_sub(page.len());
                let more = page.len() == SCAN_PAGE;
                if let Some(last) = page.last() {
                    let mut next = last.key.clone();
                    next.push(0);
                    from = Some(next);
                }
                for entry in page {
                    let key = entry.key.clone();
                    match self.try_start(entry).await {
                        Start::Started => {}
                        Start::Skipped => {
                            first_unstarted.get_or_insert(key);
                        }
                        Start::PoolFull => {
                            first_unstarted.get_or_insert(key);
                            pool_full = true;
                            break;
                        }
                    }
                }
                if !more {
                    break;
                }
            }
            self.resume_points.lock().expect("resume points")[shard as usize] =
                first_unstarted.or(from);
            if pool_full {
                // A finishing attempt wakes the loop again.
                return Ok(earliest);
            }
            if let Some(due) =
                deliveries::next_due(self.kv.as_ref(), &self.keys, shard, now + 1).await?
            {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
        }
        Ok(earliest)
    }

    /// Starts one attempt unless it is already running, its endpoint is
    /// saturated, or the pool is full.
    async fn try_start(self: &Arc<Self>, entry: DueEntry) -> Start {
        let id = (entry.sub.clone(), entry.msg);
        if self.in_flight.lock().expect("in-flight set").contains(&id) {
            return Start::Started;
        }
        let sub = match self.metadata.subscription(&entry.sub).await {
            Ok(sub) => sub,
            Err(err) => {
                tracing::warn!(error = %err, "subscription lookup failed");
                return Start::Skipped;
            }
        };
        let endpoint_permit = match &sub {
            Some(sub) => match self.endpoint_limit(&sub.endpoint).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Start::Skipped,
            },
            None => None,
        };
        let Ok(pool_permit) = self.pool.clone().try_acquire_owned() else {
            return Start::PoolFull;
        };
        self.in_flight
            .lock()
            .expect("in-flight set")
            .insert(id.clone());
        self.metrics.in_flight.inc();
        let this = self.clone();
        let span = tracing::info_span!(
            "delivery",
            sub = %entry.sub,
            msg = %format_id(entry.msg),
            attempt = entry.state.attempts + 1,
        );
        self.tasks.spawn(
            async move {
                if let Err(err) = this.deliver(entry, sub, endpoint_permit).await {
                    match err {
                        TransitionError::LostLease => tracing::info!("lease lost to another node"),
                        TransitionError::Store(err) => tracing::warn!(error = %err, "recording the outcome failed; it will be retried"),
                    }
                }
                drop(pool_permit);
                this.in_flight.lock().expect("in-flight set").remove(&id);
                this.metrics.in_flight.dec();
                this.wakers.deliveries.notify_one();
            }
            .instrument(span),
        );
        Start::Started
    }

    /// One attempt. The endpoint permit is held only while the request is
    /// out: recording the outcome waits for a commit, and the endpoint
    /// should not sit idle meanwhile.
    async fn deliver(
        &self,
        entry: DueEntry,
        sub: Option<Arc<Subscription>>,
        endpoint_permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), TransitionError> {
        let Some(sub) = sub else {
            return self.finish_unsent(&entry, "dropped").await;
        };
        if sub.paused {
            let requeued =
                deliveries::apply(self.kv.as_ref(), &self.keys, &entry, Transition::Park).await?;
            if requeued.is_some() {
                // The store says it was resumed: this node's copy is stale.
                self.metadata.forget_subscription(&entry.sub).await;
            }
            return Ok(());
        }
        let message = {
            let (keys, topic, msg) = (self.keys.clone(), entry.state.topic.clone(), entry.msg);
            self.kv
                .run(move |txn| {
                    let (keys, topic) = (keys.clone(), topic.clone());
                    async move { messages::read_message(&txn, &keys, &topic, msg).await }
                })
                .await?
        };
        let Some(message) = message else {
            return self.finish_unsent(&entry, "dropped").await;
        };
        let mut entry = entry;
        let renew_every = Duration::from_millis(self.config.lease_renew_ms);
        let mut renewed_at = std::time::Instant::now();
        if self.shared {
            entry = self.renew_lease(&entry).await?;
        }
        let attempt = entry.state.attempts + 1;
        let outcome = match self.prepare(&sub, &message, attempt).await {
            Prepared::Skip(label) => return self.finish_unsent(&entry, label).await,
            Prepared::Fail(error) => attempt::AttemptOutcome::Transient {
                error,
                retry_after: None,
            },
            Prepared::Send(mut request) => {
                // The plugins may have run a while: the request goes out
                // only under a lease with most of its time left.
                if self.shared && renewed_at.elapsed() >= renew_every {
                    entry = self.renew_lease(&entry).await?;
                    renewed_at = std::time::Instant::now();
                }
                let id = format_id(message.header.id);
                attempt::sign(&mut request, &sub.secret, &id, (now_ms() / 1000) as i64);
                let timeout = Duration::from_millis(sub.timeout_ms);
                let send = attempt::send(&self.http, request, timeout);
                tokio::pin!(send);
                loop {
                    if !self.shared {
                        break send.await;
                    }
                    let next_renewal = renew_every.saturating_sub(renewed_at.elapsed());
                    tokio::select! {
                        outcome = &mut send => break outcome,
                        _ = tokio::time::sleep(next_renewal) => {
                            renewed_at = std::time::Instant::now();
                            match self.renew_lease(&entry).await {
                                Ok(renewed) => entry = renewed,
                                Err(TransitionError::LostLease) => {
                                    return Err(TransitionError::LostLease);
                                }
                                // The request is out; cutting it off would
                                // only make a duplicate. The next tick retries.
                                Err(TransitionError::Store(err)) => tracing::warn!(
                                    error = %err,
                                    "lease renewal failed; retrying at the next tick"
                                ),
                            }
                        }
                    }
                }
            }
        };
        drop(endpoint_permit);
        let mut state = entry.state.clone();
        state.attempts = attempt;
        let now = now_ms();
        let transition = attempt::decide(&sub, state, &outcome, now);
        let recorded = transition.clone();
        deliveries::apply(self.kv.as_ref(), &self.keys, &entry, transition).await?;
        // Counted once recorded, so metrics never run ahead of the store.
        match (&outcome, &recorded) {
            (attempt::AttemptOutcome::Delivered, _) => {
                self.metrics.delivery("delivered");
                let latency = now.saturating_sub(message.header.published_at_ms);
                self.metrics
                    .delivery_latency
                    .observe(latency as f64 / 1000.0);
                tracing::debug!("delivered");
            }
            (_, Transition::DeadLetter { state }) => {
                self.metrics.delivery("dead_lettered");
                tracing::warn!(
                    error = state.last_error.as_deref().unwrap_or(""),
                    "dead-lettered"
                );
            }
            (_, _) => {
                self.metrics.delivery("retried");
                tracing::info!(error = ?outcome, "attempt failed; retry scheduled");
            }
        }
        Ok(())
    }

    /// Finishes a delivery that is not sent: its subscription or message is
    /// gone, or a plugin filtered or skipped it.
    async fn finish_unsent(
        &self,
        entry: &DueEntry,
        label: &'static str,
    ) -> Result<(), TransitionError> {
        deliveries::apply(self.kv.as_ref(), &self.keys, entry, Transition::Finish).await?;
        self.metrics.delivery(label);
        tracing::debug!(outcome = label, "finished without sending");
        Ok(())
    }

    /// Runs the subscription's plugins and shapes the request.
    async fn prepare(
        &self,
        sub: &Subscription,
        message: &messages::Message,
        attempt: u32,
    ) -> Prepared {
        let mut message = message.clone();
        let mut seen = to_plugin_message(&message.header, &message.body);
        if !sub.plugins.is_empty() {
            match self.plugins.run_chain(&sub.plugins, seen, usize::MAX).await {
                Ok(ChainOutcome::Pass(transformed)) => {
                    apply_to_header(&mut message.header, &transformed);
                    message.body = transformed.body.clone().into();
                    seen = transformed;
                }
                Ok(ChainOutcome::Dropped { plugin }) => {
                    tracing::debug!(plugin, "filtered out");
                    return Prepared::Skip("filtered");
                }
                Ok(ChainOutcome::Rejected { plugin, reason }) => {
                    tracing::info!(plugin, reason, "rejected by the subscription's filter");
                    return Prepared::Skip("filtered");
                }
                Err(failure) => return Prepared::Fail(failure.to_string()),
            }
        }
        let request = attempt::build_request(sub, &message, attempt);
        if !sub.plugins.is_empty() {
            let default_url = request.url.clone();
            match self.plugins.shape(&sub.plugins, &seen, request).await {
                Ok(None) => return Prepared::Skip("skipped"),
                Ok(Some(shaped)) => {
                    if shaped.url != default_url
                        && let Err(err) =
                            validate_endpoint(&shaped.url, self.allow_private_endpoints)
                    {
                        return Prepared::Fail(format!(
                            "delivery plugin set a URL that is not allowed: {err}"
                        ));
                    }
                    return Prepared::Send(shaped);
                }
                Err(failure) => return Prepared::Fail(failure.to_string()),
            }
        }
        Prepared::Send(request)
    }

    async fn renew_lease(&self, entry: &DueEntry) -> Result<DueEntry, TransitionError> {
        let transition = Transition::Lease {
            due_ms: now_ms() + self.config.lease_ms,
            token: self.lease_token.clone(),
        };
        deliveries::apply(self.kv.as_ref(), &self.keys, entry, transition)
            .await?
            .ok_or(TransitionError::LostLease)
    }
}
