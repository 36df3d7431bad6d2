//! Keeps messages whose body is JSON matching a JSON Schema.
//!
//! Config: `{"schema": {...}, "on_fail": "drop" | "reject"}` (`drop` by
//! default). A body that is not JSON fails the schema.

use herald_sdk::serde_json::Value;
use herald_sdk::{Message, Verdict, filter};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    schema: Value,
    #[serde(default)]
    on_fail: OnFail,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OnFail {
    #[default]
    Drop,
    Reject,
}

#[filter]
fn validate(msg: &Message, config: Config) -> Result<Verdict, String> {
    let schema = jsonschema::validator_for(&config.schema);
    let schema = schema.map_err(|error| format!("invalid config: bad schema: {error}"))?;
    let failure = match msg.body_json::<Value>() {
        Err(error) => format!("body is not JSON: {error}"),
        Ok(body) => match schema.validate(&body) {
            Ok(()) => return Ok(Verdict::Accept),
            Err(error) => format!("body does not match the schema: {error}"),
        },
    };
    Ok(match config.on_fail {
        OnFail::Drop => Verdict::Drop,
        OnFail::Reject => Verdict::Reject(failure),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::serde_json::{from_value, json};

    fn config(on_fail: &str) -> Config {
        let schema = json!({"type": "object", "required": ["order"]});
        from_value(json!({"schema": schema, "on_fail": on_fail})).unwrap()
    }

    #[test]
    fn matching_body_is_accepted() {
        let msg = Message::new("orders", r#"{"order": 42}"#);
        assert_eq!(validate(&msg, config("drop")), Ok(Verdict::Accept));
    }

    #[test]
    fn failures_drop_or_reject() {
        let msg = Message::new("orders", r#"{"total": 1}"#);
        assert_eq!(validate(&msg, config("drop")), Ok(Verdict::Drop));
        let Ok(Verdict::Reject(reason)) = validate(&msg, config("reject")) else {
            panic!("expected a rejection");
        };
        assert!(reason.contains("order"), "{reason}");
    }

    #[test]
    fn non_json_body_fails() {
        let msg = Message::new("orders", "not json");
        assert_eq!(validate(&msg, config("drop")), Ok(Verdict::Drop));
    }
}
