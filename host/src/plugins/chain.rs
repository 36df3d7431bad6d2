//! Running attachments: a topic's chain at publish, a subscription's before
//! each delivery. Every call resolves the attachment anew (through the
//! metadata cache), so a changed attachment or a new version takes effect
//! with the next message.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bindings::{Message, OutgoingRequest, Verdict};
use super::registry::PluginRegistry;
use super::{CallLimits, Compiled, Invocation, PluginError, PluginKind, PluginsConfig};
use crate::error::{ApiError, ApiResult};
use crate::messages::{MessageHeader, format_id};
use crate::metadata::PluginAttachment;

/// Largest attachment config, in bytes of JSON.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Where plugins are being attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Topic,
    Subscription,
}

/// What a chain of filters and transforms made of a message.
#[derive(Debug)]
pub enum ChainOutcome {
    Pass(Message),
    Dropped { plugin: String },
    Rejected { plugin: String, reason: String },
}

/// A plugin that did not finish, and which one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin} {error}")]
pub struct ChainFailure {
    pub plugin: String,
    pub error: PluginError,
}

#[derive(Clone)]
pub struct PluginHost {
    pub registry: PluginRegistry,
    pub config: PluginsConfig,
}

/// The message a plugin sees.
pub fn to_plugin_message(header: &MessageHeader, body: &[u8]) -> Message {
    Message {
        id: format_id(header.id),
        topic: header.topic.clone(),
        body: body.to_vec(),
        content_type: header.content_type.clone(),
        attributes: header
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        published_at_ms: header.published_at_ms,
        group_id: None,
    }
}

/// Takes what a transform may change back into the header.
pub fn apply_to_header(header: &mut MessageHeader, message: &Message) -> BTreeMap<String, String> {
    header.content_type = message.content_type.clone();
    header.attributes = message.attributes.iter().cloned().collect();
    header.body_len = message.body.len();
    header.attributes.clone()
}

impl PluginHost {
    fn limits(&self, attachment: &PluginAttachment) -> CallLimits {
        let defaults = self.config.default_limits();
        CallLimits {
            memory_bytes: attachment.memory_bytes.unwrap_or(defaults.memory_bytes),
            timeout_ms: attachment.timeout_ms.unwrap_or(defaults.timeout_ms),
            output_bytes: attachment.output_bytes.unwrap_or(defaults.output_bytes),
        }
    }

    /// Checks attachments before they are stored.
    pub async fn validate_attachments(
        &self,
        owner: Owner,
        attachments: &[PluginAttachment],
    ) -> ApiResult<()> {
        let bad = |detail: String| Err(ApiError::bad_request("invalid_plugins", detail));
        if attachments.len() > 16 {
            return bad("at most 16 plugins per topic or subscription".into());
        }
        let mut deliveries = 0;
        for (i, attachment) in attachments.iter().enumerate() {
            let record = self.registry.require(&attachment.name).await?;
            if record.version(attachment.version).is_none() {
                return Err(ApiError::NotFound(format!(
                    "plugin {} has no version {}",
                    attachment.name,
                    attachment.version.unwrap_or(0)
                )));
            }
            match (record.kind, owner) {
                (PluginKind::Delivery, Owner::Topic) => {
                    return bad(format!(
                        "{} is a delivery plugin; delivery plugins attach to subscriptions",
                        attachment.name
                    ));
                }
                (PluginKind::Delivery, Owner::Subscription) => {
                    deliveries += 1;
                    if i + 1 != attachments.len() {
                        return bad("the delivery plugin must come last".into());
                    }
                }
                _ => {}
            }
            if !attachment.config.is_object() {
                return bad(format!(
                    "config of {} must be a JSON object",
                    attachment.name
                ));
            }
            if attachment.config.to_string().len() > MAX_CONFIG_BYTES {
                return bad(format!(
                    "config of {} is over {MAX_CONFIG_BYTES} bytes",
                    attachment.name
                ));
            }
            let limits = self.limits(attachment);
            let c = &self.config;
            if limits.memory_bytes < 1024 * 1024 || limits.memory_bytes > c.max_memory_bytes {
                return bad(format!(
                    "memory_bytes must be between 1048576 and {}",
                    c.max_memory_bytes
                ));
            }
            if limits.timeout_ms == 0 || limits.timeout_ms > c.max_timeout_ms {
                return bad(format!(
                    "timeout_ms must be between 1 and {}",
                    c.max_timeout_ms
                ));
            }
            if limits.output_bytes == 0 || limits.output_bytes > c.max_output_bytes {
                return bad(format!(
                    "output_bytes must be between 1 and {}",
                    c.max_output_bytes
                ));
            }
        }
        if deliveries > 1 {
            return bad("at most one delivery plugin per subscription".into());
        }
        Ok(())
    }

    async fn resolve(
        &self,
        attachment: &PluginAttachment,
    ) -> Result<(Arc<Compiled>, Invocation), ChainFailure> {
        let fail = |error: PluginError| ChainFailure {
            plugin: attachment.name.clone(),
            error,
        };
        let record = self
            .registry
            .record(&attachment.name)
            .await
            .map_err(|err| fail(PluginError::Engine(err.to_string())))?
            .ok_or_else(|| fail(PluginError::Engine("is not installed".into())))?;
        let version = record
            .version(attachment.version)
            .ok_or_else(|| fail(PluginError::Engine("has no such version".into())))?
            .clone();
        let label = format!("{}@{}", attachment.name, version.version);
        let compiled = self
            .registry
            .compiled(&attachment.name, &version)
            .await
            .map_err(|error| ChainFailure {
                plugin: label.clone(),
                error,
            })?;
        let invocation = Invocation {
            label: label.into(),
            config: attachment.config.to_string(),
            limits: self.limits(attachment),
        };
        Ok((compiled, invocation))
    }

    /// Runs filters and transforms in order; delivery plugins are skipped
    /// here (see [`PluginHost::shape`]). `max_body` caps transform output.
    pub async fn run_chain(
        &self,
        attachments: &[PluginAttachment],
        mut message: Message,
        max_body: usize,
    ) -> Result<ChainOutcome, ChainFailure> {
        let engine = self.registry.engine().clone();
        for attachment in attachments {
            let (compiled, invocation) = self.resolve(attachment).await?;
            let label = invocation.label.to_string();
            let cap = invocation.limits.output_bytes.min(max_body);
            let fail = |error| ChainFailure {
                plugin: label.clone(),
                error,
            };
            match &*compiled {
                Compiled::Filter(pre) => {
                    let verdict = engine
                        .call_filter(pre, invocation, &message)
                        .await
                        .map_err(fail)?;
                    match verdict {
                        Verdict::Accept => {}
                        Verdict::Drop => return Ok(ChainOutcome::Dropped { plugin: label }),
                        Verdict::Reject(reason) => {
                            return Ok(ChainOutcome::Rejected {
                                plugin: label,
                                reason,
                            });
                        }
                    }
                }
                Compiled::Transform(pre) => {
                    let output = engine
                        .call_transform(pre, invocation, &message)
                        .await
                        .map_err(fail)?;
                    if output.body.len() > cap {
                        return Err(fail(PluginError::OutputTooLarge(output.body.len(), cap)));
                    }
                    if let Err(err) = crate::messages::validate_attributes(
                        &output.attributes.iter().cloned().collect(),
                    ) {
                        return Err(fail(PluginError::Returned(format!(
                            "invalid attributes: {err}"
                        ))));
                    }
                    if let Some(content_type) = &output.content_type
                        && !crate::messages::is_header_safe(content_type)
                    {
                        return Err(fail(PluginError::Returned(format!(
                            "invalid content type {content_type:?}: it must be printable ASCII"
                        ))));
                    }
                    // Only the body, content type and attributes are the plugin's to change.
                    message.body = output.body;
                    message.content_type = output.content_type;
                    message.attributes = output.attributes;
                }
                Compiled::Delivery(_) => {}
            }
        }
        Ok(ChainOutcome::Pass(message))
    }

    /// Runs the attachments' delivery plugin, if any, on the request about to
    /// go out. `Ok(None)` means the plugin skipped the delivery.
    pub async fn shape(
        &self,
        attachments: &[PluginAttachment],
        message: &Message,
        request: OutgoingRequest,
    ) -> Result<Option<OutgoingRequest>, ChainFailure> {
        let engine = self.registry.engine().clone();
        for attachment in attachments {
            let (compiled, invocation) = self.resolve(attachment).await?;
            let Compiled::Delivery(pre) = &*compiled else {
                continue;
            };
            let label = invocation.label.to_string();
            let cap = invocation.limits.output_bytes;
            let shaped = engine
                .call_shape(pre, invocation, message, request)
                .await
                .map_err(|error| ChainFailure {
                    plugin: label.clone(),
                    error,
                })?;
            if let Some(request) = &shaped
                && request.body.len() > cap
            {
                return Err(ChainFailure {
                    plugin: label,
                    error: PluginError::OutputTooLarge(request.body.len(), cap),
                });
            }
            return Ok(shaped);
        }
        Ok(Some(request))
    }
}
