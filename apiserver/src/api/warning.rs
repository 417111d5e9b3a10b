//! `Warning` response headers from the warnings a request collected, with the rules of
//! upstream's warning recorder (`endpoints/filters/warning.go`): empty and repeated texts
//! are dropped; once the texts add up to more than 4 Ki characters every text is cut to
//! 256 characters, and texts arriving after the budget is spent are dropped. When any
//! were dropped, a last `additional warnings truncated` says so (upstream drops them
//! silently; the client should know its list is incomplete).

use http::HeaderValue;

/// The characters (Unicode scalar values, Go's runes) of warning text sent in total.
const TOTAL_CHARS: usize = 4 * 1024;

/// What each warning is cut to once the total is over [`TOTAL_CHARS`].
const ITEM_CHARS: usize = 256;

/// The last warning when others were dropped.
const TRUNCATED: &str = "additional warnings truncated";

/// The `Warning` header values for `warnings`, in order.
pub(super) fn headers(warnings: impl IntoIterator<Item = String>) -> Vec<HeaderValue> {
    let mut seen = std::collections::HashSet::new();
    let mut recorded: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut written = 0;
    let mut truncating = false;
    for text in warnings {
        if text.is_empty() {
            continue;
        }
        if truncating && written >= TOTAL_CHARS {
            out.extend(header(TRUNCATED));
            break;
        }
        if !seen.insert(text.clone()) {
            continue;
        }
        recorded.push(text);
        let text = recorded.last().expect("just pushed");
        let (shown, chars) = if truncating {
            cut(text)
        } else {
            (text.as_str(), text.chars().count())
        };
        let Some(value) = header(shown) else { continue };
        if truncating || written + chars <= TOTAL_CHARS {
            written += chars;
            out.push(value);
            continue;
        }
        // Over budget for the first time: every warning so far is sent again, cut short.
        tracing::warn!("exceeded max warning header size, truncating");
        truncating = true;
        out.clear();
        written = 0;
        for text in &recorded {
            let (shown, chars) = cut(text);
            if let Some(value) = header(shown) {
                written += chars;
                out.push(value);
            }
        }
    }
    out
}

/// `text` cut to [`ITEM_CHARS`] characters, and its length in characters.
fn cut(text: &str) -> (&str, usize) {
    match text.char_indices().nth(ITEM_CHARS) {
        Some((end, _)) => (&text[..end], ITEM_CHARS),
        None => (text, text.chars().count()),
    }
}

/// `299 - "text"` (RFC 7234 warn-code 299, no agent), with `"` and `\` escaped; none
/// for a text with control characters, which upstream refuses too.
fn header(text: &str) -> Option<HeaderValue> {
    if text.chars().any(char::is_control) {
        return None;
    }
    let mut value = String::with_capacity(text.len() + 8);
    value.push_str("299 - \"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            value.push('\\');
        }
        value.push(c);
    }
    value.push('"');
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(warnings: &[&str]) -> Vec<String> {
        headers(warnings.iter().map(|w| w.to_string()))
            .into_iter()
            .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn warnings_are_quoted_once_each_and_empty_or_unprintable_ones_dropped() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("none", &[], &[]),
            ("empty text", &[""], &[]),
            (
                "one",
                &["unknown field \"spec.x\""],
                &[r#"299 - "unknown field \"spec.x\"""#],
            ),
            ("backslash", &[r"a\b"], &[r#"299 - "a\\b""#]),
            (
                "repeated",
                &["same", "other", "same"],
                &[r#"299 - "same""#, r#"299 - "other""#],
            ),
            (
                "control character",
                &["line\nbreak", "kept"],
                &[r#"299 - "kept""#],
            ),
            (
                "unicode",
                &["Iñtërnâtiônàlizætiøn"],
                &["299 - \"Iñtërnâtiônàlizætiøn\""],
            ),
        ];
        for (name, warnings, want) in cases {
            assert_eq!(sent(warnings), *want, "{name}");
        }
    }

    #[test]
    fn warnings_within_4ki_characters_are_sent_whole() {
        let long = "a".repeat(2000);
        let other = "b".repeat(2096);
        assert_eq!(
            sent(&[&long, &other]),
            vec![format!("299 - \"{long}\""), format!("299 - \"{other}\"")]
        );
    }

    #[test]
    fn past_4ki_characters_every_warning_is_cut_to_256_and_later_ones_dropped_once_the_budget_is_spent(
    ) {
        let first = "a".repeat(3000);
        let second = "b".repeat(300);
        let over = "c".repeat(2000); // 5,300 characters in all: truncation starts here
        let mut warnings = vec![first, second, over];
        // Each cut to 256: 3 + 13 of them make 16 * 256 = 4,096, the budget.
        warnings.extend((0..13).map(|i| format!("{i:02}{}", "d".repeat(300))));
        warnings.push("dropped".into());
        let mut sent = headers(warnings.clone());
        assert_eq!(
            sent.len(),
            17,
            "all but the last warning, and the note: {:?}",
            sent.len()
        );
        assert_eq!(
            sent.pop().unwrap(),
            "299 - \"additional warnings truncated\""
        );
        for (header, text) in sent.iter().zip(&warnings) {
            let cut: String = text.chars().take(256).collect();
            assert_eq!(header.to_str().unwrap(), format!("299 - \"{cut}\""));
        }
        let total: usize = sent.iter().map(|h| h.len() - "299 - \"\"".len()).sum();
        assert_eq!(total, 4096, "the whole budget, no more");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        // 1,500 three-byte characters are 4,500 bytes but within 4 Ki characters.
        let wide = "€".repeat(1500);
        assert_eq!(sent(&[&wide]), vec![format!("299 - \"{wide}\"")]);
        let wider = "€".repeat(5000);
        let cut: String = "€".repeat(256);
        assert_eq!(sent(&[&wider]), vec![format!("299 - \"{cut}\"")]);
    }
}
