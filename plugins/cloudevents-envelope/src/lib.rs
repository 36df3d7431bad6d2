//! Wraps the message as a CloudEvents 1.0 event in structured mode
//! (`application/cloudevents+json`).
//!
//! Config (all optional): `source`, default `herald://{topic}`; `type`,
//! else the message's `type` attribute, else `herald.message`. A JSON body
//! (by content type, or untyped and parsing as JSON) becomes `data`; any
//! other body becomes `data_base64`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_sdk::serde_json::{self, Value, json};
use herald_sdk::{Message, transform};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Default, Deserialize)]
#[serde(default)]
struct Config {
    source: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[transform]
fn envelope(mut msg: Message, config: Config) -> Result<Message, String> {
    let kind = config
        .kind
        .or_else(|| msg.attribute("type").map(str::to_owned));
    let published =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(msg.published_at_ms) * 1_000_000);
    let time = published
        .map_err(|e| e.to_string())?
        .format(&Rfc3339)
        .map_err(|e| e.to_string())?;
    let mut event = json!({
        "specversion": "1.0",
        "id": msg.id,
        "source": config.source.unwrap_or_else(|| format!("herald://{}", msg.topic)),
        "type": kind.as_deref().unwrap_or("herald.message"),
        "time": time,
    });
    let json = msg
        .body_json::<Value>()
        .ok()
        .filter(|_| msg.is_json() || msg.content_type.is_none());
    if let Some(content_type) = msg
        .content_type
        .take()
        .or(json.is_some().then(|| "application/json".into()))
    {
        event["datacontenttype"] = Value::String(content_type);
    }
    match json {
        Some(data) => event["data"] = data,
        None => event["data_base64"] = STANDARD.encode(&msg.body).into(),
    }
    msg.set_body(serde_json::to_vec(&event).map_err(|e| e.to_string())?);
    msg.content_type = Some("application/cloudevents+json".into());
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(msg: Message, config: Config) -> Value {
        let out = envelope(msg, config).unwrap();
        assert_eq!(
            out.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        out.body_json().unwrap()
    }

    #[test]
    fn json_body_becomes_data() {
        let mut msg =
            Message::new("orders", r#"{"order": 42}"#).with_attribute("type", "order.created");
        msg.published_at_ms = 1_700_000_000_123;
        assert_eq!(
            event(msg, Config::default()),
            json!({
                "specversion": "1.0", "id": "msg_0000000000000001", "source": "herald://orders",
                "type": "order.created", "time": "2023-11-14T22:13:20.123Z",
                "datacontenttype": "application/json", "data": {"order": 42},
            })
        );
    }

    #[test]
    fn other_bodies_become_base64() {
        let msg = Message::new("t", "hi").with_content_type("text/plain");
        let config = Config {
            source: Some("urn:x".into()),
            kind: Some("k".into()),
        };
        let event = event(msg, config);
        assert_eq!(
            (&event["data_base64"], &event["source"], &event["type"]),
            (&json!("aGk="), &json!("urn:x"), &json!("k"))
        );
        assert_eq!(event["datacontenttype"], "text/plain");
        assert!(event.get("data").is_none());
    }
}
