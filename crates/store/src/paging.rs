//! `nextToken`/`maxResults` pagination over name-ordered listings.
//!
//! A token names the last item of the previous page, so a listing resumes
//! after it even when items were added or removed in between.

use crate::error::StoreError;

/// The page size when a request names none.
pub const DEFAULT_PAGE: usize = 50;
/// The largest page a request may ask for.
pub const MAX_PAGE: usize = 250;

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::InvalidPage(message.into())
}

const TOKEN_PREFIX: &str = "h1.";

#[derive(Debug, Clone)]
pub struct Page {
    after: Option<String>,
    max: usize,
}

pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

fn encode(name: &str) -> String {
    let mut token = String::from(TOKEN_PREFIX);
    for b in name.bytes() {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

fn decode(token: &str) -> Option<String> {
    let hex = token.strip_prefix(TOKEN_PREFIX)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Page {
    /// Checks a request's `nextToken` (empty: first page) and `maxResults` (0: default).
    pub fn new(next_token: &str, max_results: u32) -> Result<Page, StoreError> {
        let max = match max_results as usize {
            0 => DEFAULT_PAGE,
            n @ 1..=MAX_PAGE => n,
            n => {
                return Err(invalid(format!(
                    "maxResults must be between 1 and {MAX_PAGE}, got {n}"
                )));
            }
        };
        let after = match next_token {
            "" => None,
            token => Some(decode(token).ok_or_else(|| invalid("The nextToken is not valid"))?),
        };
        Ok(Page { after, max })
    }

    /// The token of a page that starts after `name`, for listings that page
    /// on their own.
    pub fn token_after(name: &str) -> String {
        encode(name)
    }

    /// The name the page starts after.
    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// Takes one page from `items`, which start after [`Page::after`] in name order.
    pub fn collect<T, Err>(
        &self,
        items: impl Iterator<Item = Result<(String, T), Err>>,
    ) -> Result<Paged<T>, Err> {
        let mut out = Vec::new();
        let mut last = None;
        for item in items {
            let (name, item) = item?;
            if out.len() == self.max {
                return Ok(Paged {
                    items: out,
                    next_token: last.as_deref().map(encode),
                });
            }
            last = Some(name);
            out.push(item);
        }
        Ok(Paged {
            items: out,
            next_token: None,
        })
    }

    /// Takes one page from sorted names that may start before [`Page::after`].
    pub fn collect_sorted(&self, names: impl Iterator<Item = String>) -> Paged<String> {
        let after = self.after.clone();
        let names = names
            .filter(move |n| after.as_ref().is_none_or(|a| n > a))
            .map(|n| Ok::<_, std::convert::Infallible>((n.clone(), n)));
        match self.collect(names) {
            Ok(paged) => paged,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_strangers_are_refused() {
        assert_eq!(
            decode(&encode("thing:a_b-1")).as_deref(),
            Some("thing:a_b-1")
        );
        assert!(Page::new("garbage", 0).is_err());
        assert_eq!(
            Page::new("garbage", 0).unwrap_err(),
            StoreError::InvalidPage("The nextToken is not valid".to_owned())
        );
        assert!(Page::new("h1.zz", 0).is_err());
        assert!(Page::new("", 251).is_err());
        assert_eq!(Page::new("", 0).unwrap().max, DEFAULT_PAGE);
    }

    #[test]
    fn pages_resume_after_the_last_item() {
        let names: Vec<String> = (0..7).map(|i| format!("n{i}")).collect();
        let mut page = Page::new("", 3).unwrap();
        let mut seen = Vec::new();
        loop {
            let paged = page.collect_sorted(names.clone().into_iter());
            seen.extend(paged.items);
            match paged.next_token {
                Some(token) => page = Page::new(&token, 3).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, names);
    }
}
