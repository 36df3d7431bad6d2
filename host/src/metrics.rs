//! Prometheus metrics, rendered by `/metrics` in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    pub publishes: Counter,
    pub deliveries: Family<OutcomeLabels, Counter>,
    /// Seconds from publish to a delivered 2xx.
    pub delivery_latency: Histogram,
    pub backlog: Gauge,
    pub in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let publishes = Counter::default();
        registry.register(
            "publishes",
            "Messages accepted by publish",
            publishes.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts and their outcomes (delivered, retried, dead_lettered, dropped)",
            deliveries.clone(),
        );
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 300.0,
        ];
        let delivery_latency = Histogram::new(buckets);
        registry.register(
            "delivery_latency_seconds",
            "Time from publish to successful delivery",
            delivery_latency.clone(),
        );
        let backlog = Gauge::default();
        registry.register(
            "backlog",
            "Deliveries not yet finished, across the store",
            backlog.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight",
            "Deliveries being attempted on this node",
            in_flight.clone(),
        );
        Metrics {
            registry,
            publishes,
            deliveries,
            delivery_latency,
            backlog,
            in_flight,
        }
    }

    pub fn delivery(&self, outcome: &'static str) {
        self.deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
