use herald_sdk::{Message, Verdict, filter};

struct Config;

#[filter]
fn keep(_msg: &Message, _config: Config) -> Result<Verdict, String> {
    Ok(Verdict::Accept)
}

fn main() {}
