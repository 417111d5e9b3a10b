//! `$(VAR)` references in env values (and in command and args), expanded as upstream's
//! forked `expansion` package does: a defined reference is replaced, an undefined one is left
//! as written, `$$` is a literal `$`, and a `$(` without a closing `)` stays as it is.

/// Expands `$(NAME)` in `input` using `lookup`; names `lookup` does not know stay verbatim.
pub fn expand(input: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            // How many bytes after the `$` this expression consumed.
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|b| *b == b')') {
                    Some(close) => {
                        // Both ends are ASCII, so the name is valid UTF-8.
                        let name = std::str::from_utf8(&rest[1..close]).unwrap_or_default();
                        match lookup(name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    // Only whole ASCII bytes or whole input runs were copied, so this cannot fail.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn expands_references_as_upstream() {
        let vars = |name: &str| match name {
            "VAR_A" => Some("A".to_string()),
            "VAR_B" => Some("B".to_string()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("$(VAR_A)".to_string()),
            _ => None,
        };
        let cases = [
            ("no references", "plain value", "plain value"),
            ("one reference", "$(VAR_A)", "A"),
            ("references among text", "x-$(VAR_A)-$(VAR_B)-y", "x-A-B-y"),
            ("adjacent references", "$(VAR_A)$(VAR_B)", "AB"),
            ("undefined stays verbatim", "$(UNKNOWN)", "$(UNKNOWN)"),
            ("empty value", "a$(EMPTY)b", "ab"),
            ("escaped reference", "$$(VAR_A)", "$(VAR_A)"),
            ("double escape then reference", "$$$(VAR_A)", "$A"),
            ("escaped dollar", "cost: $$5", "cost: $5"),
            ("unclosed reference", "$(VAR_A", "$(VAR_A"),
            ("unclosed after a reference", "$(VAR_A)$(", "A$("),
            ("dollar without paren", "$VAR_A", "$VAR_A"),
            ("trailing dollar", "price$", "price$"),
            ("lone dollar", "$", "$"),
            ("empty name", "$()", "$()"),
            ("values are not re-expanded", "$(NESTED)", "$(VAR_A)"),
            ("multibyte text around", "ü$(VAR_A)ö$é", "üAö$é"),
            ("empty input", "", ""),
        ];
        for (name, input, want) in cases {
            assert_eq!(expand(input, vars), want, "{name}: {input:?}");
        }
    }
}
