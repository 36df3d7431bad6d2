//! Helpers on the WIT types, so plugins read like ordinary Rust.

use crate::{Message, OutgoingRequest, Verdict};

impl Message {
    /// A message on `topic` with `body`, for unit tests: fixed id, no
    /// attributes, published at the epoch.
    pub fn new(topic: &str, body: impl Into<Vec<u8>>) -> Message {
        Message {
            id: "msg_0000000000000001".into(),
            topic: topic.into(),
            body: body.into(),
            content_type: None,
            attributes: Vec::new(),
            published_at_ms: 0,
            group_id: None,
        }
    }

    /// The body as text; `None` when it is not UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON, whatever the content type says.
    pub fn body_json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }

    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = body.into();
    }

    /// Whether the content type is `application/json` or `…+json`.
    pub fn is_json(&self) -> bool {
        let Some(content_type) = &self.content_type else {
            return false;
        };
        let essence = content_type.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
            || essence.to_ascii_lowercase().ends_with("+json")
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        let found = self.attributes.iter().find(|(key, _)| key == name);
        found.map(|(_, value)| value.as_str())
    }

    /// Replaces the attribute, or adds it.
    pub fn set_attribute(&mut self, name: &str, value: impl Into<String>) {
        match self.attributes.iter_mut().find(|(key, _)| key == name) {
            Some((_, old)) => *old = value.into(),
            None => self.attributes.push((name.into(), value.into())),
        }
    }

    pub fn remove_attribute(&mut self, name: &str) -> Option<String> {
        let index = self.attributes.iter().position(|(key, _)| key == name)?;
        Some(self.attributes.remove(index).1)
    }

    pub fn with_attribute(mut self, name: &str, value: impl Into<String>) -> Message {
        self.set_attribute(name, value);
        self
    }

    pub fn with_content_type(mut self, content_type: &str) -> Message {
        self.content_type = Some(content_type.into());
        self
    }
}

impl Verdict {
    /// `Accept` when `keep`, else `Drop`.
    pub fn accept_if(keep: bool) -> Verdict {
        if keep { Verdict::Accept } else { Verdict::Drop }
    }

    pub fn reject(reason: impl Into<String>) -> Verdict {
        Verdict::Reject(reason.into())
    }
}

impl OutgoingRequest {
    /// A bodiless `POST` to `url`, for unit tests.
    pub fn new(url: &str) -> OutgoingRequest {
        OutgoingRequest {
            method: "POST".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The first header called `name`, ignoring ASCII case as HTTP does.
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name));
        found.map(|(_, value)| value.as_str())
    }

    /// Replaces every header called `name` (ignoring case) with one.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
    }

    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = body.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_replace_in_place() {
        let mut msg = Message::new("orders", "{}").with_attribute("kind", "a");
        msg.set_attribute("kind", "b");
        msg.set_attribute("region", "eu");
        assert_eq!(msg.attribute("kind"), Some("b"));
        assert_eq!(msg.attributes.len(), 2);
        assert_eq!(msg.remove_attribute("kind").as_deref(), Some("b"));
        assert_eq!(msg.attribute("kind"), None);
    }

    #[test]
    fn json_content_types() {
        let msg = Message::new("t", "{}");
        assert!(!msg.is_json());
        assert!(
            msg.clone()
                .with_content_type("application/json; charset=utf-8")
                .is_json()
        );
        assert!(
            msg.with_content_type("application/cloudevents+json")
                .is_json()
        );
    }

    #[test]
    fn headers_ignore_case() {
        let mut request = OutgoingRequest::new("http://x");
        request.set_header("Content-Type", "text/plain");
        request.set_header("content-type", "application/json");
        assert_eq!(request.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(request.headers.len(), 1);
    }

    #[test]
    fn config_off_wasm_is_empty() {
        let parsed: serde_json::Value = crate::config().unwrap();
        assert_eq!(parsed, serde_json::json!({}));
    }
}
