//! Keeps messages for which an expression over their attributes holds.
//!
//! Config: `{"expr": "kind == \"order.created\" && region != \"eu\""}`.
//! Names are attributes, except `topic` and `content_type`, which are the
//! message's own; an absent one is the empty string. See `expr.rs` for the
//! grammar.

mod expr;

use herald_sdk::{Message, Verdict, filter};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    expr: String,
}

#[filter]
fn route(msg: &Message, config: Config) -> Result<Verdict, String> {
    let lookup = |name: &str| match name {
        "topic" => msg.topic.clone(),
        "content_type" => msg.content_type.clone().unwrap_or_default(),
        _ => msg.attribute(name).unwrap_or_default().to_owned(),
    };
    let keep = expr::eval(&config.expr, &lookup);
    Ok(Verdict::accept_if(keep.map_err(|error| {
        format!("invalid config: expr: {error}")
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expr: &str, msg: &Message) -> Result<Verdict, String> {
        route(msg, Config { expr: expr.into() })
    }

    #[test]
    fn accepts_on_true_and_drops_on_false() {
        let expr = r#"kind == "order.created" && region != "eu""#;
        let msg = Message::new("orders", "").with_attribute("kind", "order.created");
        assert_eq!(run(expr, &msg), Ok(Verdict::Accept));
        let eu = msg.with_attribute("region", "eu");
        assert_eq!(run(expr, &eu), Ok(Verdict::Drop));
    }

    #[test]
    fn unknown_attributes_are_empty() {
        let msg = Message::new("orders", "");
        assert_eq!(run(r#"missing == """#, &msg), Ok(Verdict::Accept));
    }

    #[test]
    fn message_fields_grouping_and_negation() {
        let msg = Message::new("orders", "").with_content_type("application/json");
        let expr = r#"!(topic == "other" || content_type != "application/json")"#;
        assert_eq!(run(expr, &msg), Ok(Verdict::Accept));
    }

    #[test]
    fn bad_expressions_are_errors() {
        let msg = Message::new("orders", "");
        for expr in [
            "kind ==",
            r#"kind = "a""#,
            r#"(kind == "a""#,
            r#""a" == "a" b"#,
        ] {
            assert!(
                run(expr, &msg).unwrap_err().starts_with("invalid config"),
                "{expr}"
            );
        }
    }
}
