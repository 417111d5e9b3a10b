//! YAML request bodies within a nesting limit checked in linear time.
//!
//! libyaml's scanner costs time quadratic in the nesting depth (it revisits every open
//! level on each token), and serde_yaml only counts depth after the whole document has
//! been scanned: 80,000 nested flow mappings kept a thread busy for half a minute before
//! being refused. So the depth is estimated first, in one pass over the text, and a
//! document deeper than serde_yaml would read anyway is refused before libyaml sees it.
//! A body that is JSON (what kubectl and Helm send, also as `apply-patch+yaml`) is read
//! as JSON, with JSON's limit.

use serde_json::Value;

use crate::json;

/// serde_yaml's own recursion limit: nothing deeper can be read.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("exceeded max depth of {0}")]
    TooDeep(usize),
    #[error("{0}")]
    Syntax(#[from] serde_yaml::Error),
}

/// Parses a YAML (or JSON) document.
pub fn from_slice(text: &[u8]) -> Result<Value, Error> {
    if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        match json::from_slice(text) {
            Ok(v) => return Ok(v),
            Err(json::Error::TooDeep(limit)) => return Err(Error::TooDeep(limit)),
            // Flow-style YAML such as `{a: b}` is no JSON: read it as YAML below.
            Err(json::Error::Syntax(_)) => {}
        }
    }
    if nesting(text) > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let value: Value = serde_yaml::from_slice(text)?;
    // YAML nests at most as deep as was estimated; JSON's limit is far above it.
    Ok(value)
}

/// A cautious estimate (never below the truth for documents libyaml accepts) of how
/// deeply a YAML text nests: the block levels open at each line (indentation steps
/// plus compact `- ` entries) plus the flow collections (`[`, `{`) open around each
/// point. Quoted scalars, comments and block scalars (`|`, `>`) are skipped; brackets
/// inside a block-context plain scalar do not open anything and are not counted.
pub fn nesting(text: &[u8]) -> usize {
    let mut s = Scanner::default();
    for line in text.split(|&b| b == b'\n') {
        s.line(line);
    }
    s.max
}

#[derive(Default)]
struct Scanner {
    max: usize,
    /// The block levels open: their indentation, and whether a sequence also opened at
    /// that column (`key:` then `- item` at the same indentation is two levels).
    indents: Vec<(usize, bool)>,
    /// Flow collections open.
    flow: usize,
    /// Inside a quoted scalar that continues on the next line.
    quote: Option<u8>,
    /// The indentation of the line that started a block scalar still going on.
    block_scalar: Option<usize>,
    /// Block depth of the current line (levels plus compact entries).
    block: usize,
}

impl Scanner {
    fn line(&mut self, line: &[u8]) {
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let blank = line[indent..].iter().all(u8::is_ascii_whitespace);
        if let Some(parent) = self.block_scalar {
            if blank || indent > parent {
                return;
            }
            self.block_scalar = None;
        }
        let mut i = 0;
        if self.quote.is_none() && self.flow == 0 {
            if blank || line[indent] == b'#' {
                return;
            }
            while self.indents.last().is_some_and(|&(top, _)| top > indent) {
                self.indents.pop();
            }
            if self.indents.last().map(|&(top, _)| top) != Some(indent) {
                self.indents.push((indent, false));
            }
            i = indent;
            // Entries (`- x`, `? key`), maybe compact (`- - x`): a sequence at this
            // column, and a level at the column where each entry's content starts.
            while i < line.len()
                && matches!(line[i], b'-' | b'?')
                && line.get(i + 1).is_none_or(|b| *b == b' ' || *b == b'\t')
            {
                if let Some(level) = self.indents.last_mut() {
                    level.1 = true;
                }
                i = skip_spaces(line, i + 1);
                self.indents.push((i, false));
            }
            self.block = self
                .indents
                .iter()
                .map(|&(_, seq)| 1 + usize::from(seq))
                .sum();
            self.max = self.max.max(self.block);
            i = self.node(line, i, indent);
        }
        self.rest(line, i, indent);
    }

    /// At the start of a node in block context: a flow collection, a block scalar, a
    /// quoted or a plain scalar (maybe a mapping key followed by its value). Returns
    /// where flow or quote scanning has to go on, or the line's end.
    fn node(&mut self, line: &[u8], mut i: usize, indent: usize) -> usize {
        loop {
            // Anchors and tags before the node itself.
            while i < line.len() && matches!(line[i], b'&' | b'!') {
                while i < line.len() && line[i] != b' ' {
                    i += 1;
                }
                i = skip_spaces(line, i);
            }
            match line.get(i) {
                None | Some(b'#') => return line.len(),
                Some(b'[' | b'{' | b'"' | b'\'') => return i,
                Some(b'|' | b'>') => {
                    self.block_scalar = Some(indent);
                    return line.len();
                }
                Some(_) => {
                    // A plain scalar; a `: ` in it ends a mapping key and starts its value.
                    let mut j = i;
                    loop {
                        match line.get(j) {
                            None => return line.len(),
                            Some(b':')
                                if line.get(j + 1).is_none_or(|b| *b == b' ' || *b == b'\t') =>
                            {
                                break
                            }
                            Some(b'#') if j > i && line[j - 1] == b' ' => return line.len(),
                            _ => j += 1,
                        }
                    }
                    self.max = self.max.max(self.block + 2);
                    i = skip_spaces(line, j + 1);
                }
            }
        }
    }

    /// Scans flow collections and quoted scalars from `i` to the end of the line.
    fn rest(&mut self, line: &[u8], mut i: usize, indent: usize) {
        while i < line.len() {
            let b = line[i];
            if let Some(q) = self.quote {
                match b {
                    b'\\' if q == b'"' => i += 1,
                    b'\'' if q == b'\'' && line.get(i + 1) == Some(&b'\'') => i += 1,
                    _ if b == q => self.quote = None,
                    _ => {}
                }
                i += 1;
                if self.quote.is_none() && self.flow == 0 {
                    // After a quoted key: `"k": value`.
                    let j = skip_spaces(line, i);
                    if line.get(j) == Some(&b':') {
                        i = self.node(line, skip_spaces(line, j + 1), indent);
                    } else {
                        return;
                    }
                }
                continue;
            }
            match b {
                b'"' | b'\'' => self.quote = Some(b),
                b'#' if i == 0 || matches!(line[i - 1], b' ' | b'\t') => return,
                b'[' | b'{' => {
                    self.flow += 1;
                    self.max = self.max.max(self.block + self.flow);
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    if self.flow == 0 {
                        return;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

fn skip_spaces(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && matches!(line[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth of the parsed document, for documents serde_yaml reads.
    fn real_depth(text: &str) -> usize {
        json::depth(&serde_yaml::from_str::<Value>(text).expect("valid YAML"))
    }

    #[test]
    fn the_estimate_is_never_below_the_real_depth() {
        let cases = [
            ("flat_mapping", "a: 1\nb: two\n"),
            (
                "block_nesting",
                "a:\n  b:\n    c:\n      - d\n      - e: [1, {f: 2}]\n",
            ),
            ("compact_sequences", "- - - x\n  - y\n"),
            ("flow_over_lines", "a: {b: [1,\n  2, {c: d}],\n  e: f}\n"),
            ("quoted_brackets_ignored", "a: \"{{[[\"\nb: '[[{'\n"),
            ("comment_brackets_ignored", "a: 1 # [[[[\n# {{{{\n"),
            (
                "block_scalar_skipped",
                "a: |\n  {{{{ [[[[\n  more\nb: {c: 1}\n",
            ),
            ("plain_scalar_brackets", "cmd: echo {{ .Values }} [x]\n"),
            ("quoted_key", "\"k\": [1, [2]]\n"),
            (
                "sequence_of_mappings",
                "items:\n- name: a\n  value: {x: [1]}\n- name: b\n",
            ),
        ];
        for (name, text) in cases {
            let (estimate, real) = (nesting(text.as_bytes()), real_depth(text));
            assert!(
                estimate >= real,
                "{name}: estimated {estimate}, real {real}"
            );
            assert!(
                estimate <= 2 * real + 2,
                "{name}: estimated {estimate}, far above real {real}"
            );
        }
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let levels = 80_000;
        let text = format!("k: {}x{}", "{a: ".repeat(levels), "}".repeat(levels));
        // Refused by the estimate: libyaml itself would scan for tens of seconds and
        // then fail with serde_yaml's recursion error, not this one.
        let err = from_slice(text.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::TooDeep(MAX_DEPTH)), "{err}");
        // A document that opens like JSON is measured as JSON first, also in one pass.
        let err = from_slice(&text.as_bytes()[3..]).unwrap_err();
        assert!(matches!(err, Error::TooDeep(json::MAX_DEPTH)), "{err}");
        let seq = format!("{}x\n", "- ".repeat(levels));
        assert!(matches!(from_slice(seq.as_bytes()), Err(Error::TooDeep(_))));
    }

    #[test]
    fn json_bodies_are_read_as_json_and_flow_yaml_as_yaml() {
        assert_eq!(
            from_slice(br#" {"a": [1]}"#).unwrap(),
            serde_json::json!({"a": [1]})
        );
        assert_eq!(
            from_slice(b"{a: b}").unwrap(),
            serde_json::json!({"a": "b"})
        );
        assert_eq!(
            from_slice(b"kind: X\nspec: {n: 1}\n").unwrap(),
            serde_json::json!({"kind": "X", "spec": {"n": 1}})
        );
    }
}
