use herald_sdk::{Message, OutgoingRequest, delivery};

#[delivery]
fn shape(_msg: &Message) -> Result<Option<OutgoingRequest>, String> {
    Ok(None)
}

fn main() {}
