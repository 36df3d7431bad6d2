//! Masks e-mail addresses, phone numbers and card numbers (those that pass
//! the Luhn check) in text bodies, and inside the string values of JSON
//! bodies, which stay valid JSON. Other bodies pass through unchanged.

use std::sync::LazyLock;

use herald_sdk::serde_json::{self, Value};
use herald_sdk::{Message, transform};
use regex_lite::{Captures, Regex};

static CARD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").unwrap());
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}").unwrap());
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\b\d{2,4})[ .-]?\d{3,4}[ .-]?\d{3,4}\b")
        .unwrap()
});

#[transform]
fn redact(mut msg: Message) -> Result<Message, String> {
    if let Ok(mut json) = msg.body_json::<Value>() {
        redact_json(&mut json);
        msg.set_body(serde_json::to_vec(&json).map_err(|error| error.to_string())?);
    } else if let Some(text) = msg.body_str() {
        msg.set_body(redact_text(text));
    }
    Ok(msg)
}

fn redact_json(value: &mut Value) {
    match value {
        Value::String(text) => *text = redact_text(text),
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(fields) => fields.values_mut().for_each(redact_json),
        _ => {}
    }
}

// Cards first: a card number would otherwise half-match as a phone number.
fn redact_text(text: &str) -> String {
    let card = |found: &Captures| match luhn(&found[0]) {
        true => "[card]".to_owned(),
        false => found[0].to_owned(),
    };
    let text = CARD.replace_all(text, card);
    let text = EMAIL.replace_all(&text, "[email]");
    PHONE.replace_all(&text, "[phone]").into_owned()
}

fn luhn(number: &str) -> bool {
    let digits = number.chars().rev().filter_map(|c| c.to_digit(10));
    let double = |(i, d): (usize, u32)| {
        if i % 2 == 1 {
            d * 2 - if d > 4 { 9 } else { 0 }
        } else {
            d
        }
    };
    digits.enumerate().map(double).sum::<u32>() % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(input: &str) -> String {
        let msg = redact(Message::new("t", input)).unwrap();
        String::from_utf8(msg.body).unwrap()
    }

    #[test]
    fn text_is_masked() {
        let input = "mail ann@example.co.uk or call +44 20 7946 0958, card 4111 1111 1111 1111";
        assert_eq!(body(input), "mail [email] or call [phone], card [card]");
    }

    #[test]
    fn json_stays_json() {
        let input = r#"{"who": ["bob@example.com", "(555) 123-4567"], "n": 4111111111111111}"#;
        let output: Value = serde_json::from_str(&body(input)).unwrap();
        assert_eq!(
            output,
            serde_json::json!({"who": ["[email]", "[phone]"], "n": 4111111111111111u64})
        );
    }

    #[test]
    fn non_luhn_numbers_and_dates_stay() {
        assert_eq!(
            body("order 1234567812345678 on 2024-01-31"),
            "order 1234567812345678 on 2024-01-31"
        );
    }
}
