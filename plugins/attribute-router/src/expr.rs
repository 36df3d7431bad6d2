//! A tiny boolean language, small enough that no dependency is worth it:
//!
//! ```text
//! or      = and { "||" and }
//! and     = unary { "&&" unary }
//! unary   = "!" unary | "(" or ")" | operand ("==" | "!=") operand
//! operand = name | "string"          (name: letters, digits, _ . -)
//! ```

#[derive(Debug, PartialEq)]
enum Token {
    Name(String),
    Text(String),
    Eq,
    Ne,
    And,
    Or,
    Not,
    Open,
    Close,
}

pub fn eval(source: &str, lookup: &dyn Fn(&str) -> String) -> Result<bool, String> {
    let mut parser = Parser {
        tokens: tokenize(source)?.into_iter().peekable(),
        lookup,
    };
    let value = parser.or()?;
    match parser.tokens.next() {
        None => Ok(value),
        Some(token) => Err(format!("unexpected {token:?}")),
    }
}

fn is_name(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn tokenize(source: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            c if c.is_whitespace() => continue,
            '(' => Token::Open,
            ')' => Token::Close,
            '!' if chars.next_if_eq(&'=').is_some() => Token::Ne,
            '!' => Token::Not,
            '=' if chars.next_if_eq(&'=').is_some() => Token::Eq,
            '&' if chars.next_if_eq(&'&').is_some() => Token::And,
            '|' if chars.next_if_eq(&'|').is_some() => Token::Or,
            '"' => {
                let mut text = String::new();
                loop {
                    match chars.next().ok_or("unterminated string")? {
                        '"' => break Token::Text(text),
                        '\\' => text.extend(chars.next()),
                        c => text.push(c),
                    }
                }
            }
            c if is_name(c) => {
                let mut name = String::from(c);
                name.extend(std::iter::from_fn(|| chars.next_if(|&c| is_name(c))));
                Token::Name(name)
            }
            c => return Err(format!("unexpected `{c}`")),
        });
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: std::iter::Peekable<std::vec::IntoIter<Token>>,
    lookup: &'a dyn Fn(&str) -> String,
}

impl Parser<'_> {
    fn or(&mut self) -> Result<bool, String> {
        let mut value = self.and()?;
        while self.eat(Token::Or) {
            value |= self.and()?;
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut value = self.unary()?;
        while self.eat(Token::And) {
            value &= self.unary()?;
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<bool, String> {
        if self.eat(Token::Not) {
            return Ok(!self.unary()?);
        }
        if self.eat(Token::Open) {
            let value = self.or()?;
            return if self.eat(Token::Close) {
                Ok(value)
            } else {
                Err("expected `)`".into())
            };
        }
        let left = self.operand()?;
        let equal = match self.tokens.next() {
            Some(Token::Eq) => true,
            Some(Token::Ne) => false,
            other => return Err(format!("expected `==` or `!=`, found {other:?}")),
        };
        Ok((left == self.operand()?) == equal)
    }

    fn operand(&mut self) -> Result<String, String> {
        match self.tokens.next() {
            Some(Token::Text(text)) => Ok(text),
            Some(Token::Name(name)) => Ok((self.lookup)(&name)),
            other => Err(format!("expected a name or a string, found {other:?}")),
        }
    }

    fn eat(&mut self, token: Token) -> bool {
        self.tokens.next_if_eq(&token).is_some()
    }
}
