use herald_sdk::{Message, transform};

#[transform]
fn nothing(_msg: Message) {}

fn main() {}
