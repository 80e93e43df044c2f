//! Long texts: splitting at a provider's length limit, and remembering how much of a
//! split delivery went out, so a retry of the same delivery continues instead of
//! repeating the parts already sent.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Splits `text` into parts of at most `limit` characters, preferring a line break in the
/// last quarter of a part. The parts joined give the text back.
pub fn chunks(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(4);
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= limit {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = (start + limit).min(chars.len());
        if end < chars.len()
            && let Some(nl) = chars[start + limit * 3 / 4..end]
                .iter()
                .rposition(|c| *c == '\n')
        {
            end = start + limit * 3 / 4 + nl + 1;
        }
        out.push(chars[start..end].iter().collect());
        start = end;
    }
    out
}

/// Parts already sent per delivery id, for the deliveries of this worker's life (bounded:
/// the oldest are forgotten first).
pub struct Progress {
    sent: Mutex<VecDeque<(String, usize, String)>>,
    keep: usize,
}

impl Progress {
    pub const fn new(keep: usize) -> Progress {
        Progress {
            sent: Mutex::new(VecDeque::new()),
            keep,
        }
    }

    /// `(parts sent, provider id of the last one)` for a delivery.
    pub fn of(&self, delivery: &str) -> (usize, String) {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(d, _, _)| d == delivery)
            .map(|(_, n, id)| (*n, id.clone()))
            .unwrap_or((0, String::new()))
    }

    pub fn record(&self, delivery: &str, sent: usize, last_id: &str) {
        let mut p = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        p.retain(|(d, _, _)| d != delivery);
        p.push_back((delivery.to_owned(), sent, last_id.to_owned()));
        while p.len() > self.keep {
            p.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_split_at_line_breaks_below_the_limit() {
        assert_eq!(chunks("short", 4000), vec!["short"]);
        let line = "x".repeat(99) + "\n";
        let text = line.repeat(100); // 10 000 chars
        let parts = chunks(&text, 4000);
        assert!(parts.len() >= 3);
        assert!(
            parts
                .iter()
                .all(|p| p.chars().count() <= 4000 && p.ends_with('\n'))
        );
        assert_eq!(parts.concat(), text);
        let wide = "é".repeat(4001);
        assert_eq!(chunks(&wide, 4000).len(), 2);
    }

    #[test]
    fn progress_is_remembered_per_delivery_and_bounded() {
        let p = Progress::new(2);
        p.record("a", 1, "m1");
        p.record("b", 2, "m2");
        p.record("a", 2, "m3");
        assert_eq!(p.of("a"), (2, "m3".into()));
        p.record("c", 1, "m4");
        assert_eq!(p.of("b"), (0, String::new()), "the oldest is forgotten");
    }
}
