use herald_sdk::{Message, Verdict, filter};

#[filter]
fn keep(_msg: Message) -> Result<Verdict, String> {
    Ok(Verdict::Accept)
}

fn main() {}
