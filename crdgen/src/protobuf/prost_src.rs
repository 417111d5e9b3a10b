//! Reader of k8s-pb's prost-generated sources: every message with its fields' tags, types and labels.

use std::collections::BTreeMap;
use std::path::Path;

/// The wire type of a field, or of a map's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// `string`, `bool`, `int32`, `int64`, `double` or `bytes`.
    Scalar(String),
    /// A message, by full name (`api.core.v1.Pod`).
    Message(String),
}

/// How a field repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Single,
    Repeated,
    /// `map<string, V>`: repeated entries (1 key, 2 value).
    Map,
}

/// One field of a prost message.
#[derive(Debug, Clone)]
pub struct Field {
    pub tag: u32,
    /// The Rust (snake_case) name, without `r#`.
    pub rust_name: String,
    pub ty: Type,
    pub label: Label,
}

/// Messages by full name (module path joined with `.`, then the struct name).
pub type Messages = BTreeMap<String, Vec<Field>>;

/// Parses every `mod.rs` under `src` (k8s-pb's `src/` directory).
pub fn read_messages(src: &Path) -> anyhow::Result<Messages> {
    let mut out = Messages::new();
    walk(src, &mut Vec::new(), &mut out)?;
    anyhow::ensure!(
        !out.is_empty(),
        "no prost messages found under {}",
        src.display()
    );
    Ok(out)
}

fn walk(dir: &Path, module: &mut Vec<String>, out: &mut Messages) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_dir() {
            module.push(name);
            walk(&e.path(), module, out)?;
            module.pop();
        } else if name == "mod.rs" && !module.is_empty() {
            let text = std::fs::read_to_string(e.path())?;
            parse_module(&text, module, out)
                .map_err(|err| anyhow::anyhow!("{}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Parses the structs of one module file.
pub fn parse_module(text: &str, module: &[String], out: &mut Messages) -> anyhow::Result<()> {
    let mut current: Option<(String, Vec<Field>)> = None;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.starts_with("//"));
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest.split([' ', '{', ';']).next().unwrap_or_default();
            let full = format!("{}.{name}", module.join("."));
            if rest.ends_with('{') {
                current = Some((full, Vec::new()));
            } else {
                // `pub struct X {}` or `pub struct X;`: a message without fields.
                out.insert(full, Vec::new());
            }
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                out.insert(name, fields);
            }
        } else if let Some(attr) = line.strip_prefix("#[prost(") {
            let Some((_, fields)) = current.as_mut() else {
                continue;
            };
            // The declaration may span several lines (rustfmt breaks long types).
            let mut decl = String::new();
            for l in lines.by_ref() {
                decl.push_str(l);
                if l.ends_with(',') && depth(&decl) == 0 {
                    break;
                }
            }
            fields.push(parse_field(attr, &decl, module)?);
        }
    }
    anyhow::ensure!(current.is_none(), "unterminated struct");
    Ok(())
}

fn depth(s: &str) -> i32 {
    s.chars().fold(0, |d, c| match c {
        '<' => d + 1,
        '>' => d - 1,
        _ => d,
    })
}

fn parse_field(attr: &str, decl: &str, module: &[String]) -> anyhow::Result<Field> {
    let attr = attr.trim_end_matches(")]");
    let tag = attr
        .split("tag = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no tag in #[prost({attr})]"))?;
    let (name, ty) = decl
        .strip_prefix("pub ")
        .and_then(|d| d.split_once(':'))
        .ok_or_else(|| anyhow::anyhow!("unexpected field declaration {decl:?}"))?;
    let rust_name = name.trim().trim_start_matches("r#").to_owned();
    let ty = ty
        .trim()
        .trim_end_matches(',')
        .replace(' ', "")
        .replace(",>", ">");
    let first = attr.split(',').next().unwrap_or_default().trim();
    let repeated = attr.split(',').any(|p| p.trim() == "repeated");
    let (label, ty) = if let Some(map) = attr.strip_prefix("btree_map = \"") {
        let value = map
            .split('"')
            .next()
            .unwrap_or_default()
            .split(',')
            .nth(1)
            .unwrap_or_default()
            .trim();
        let ty = match value {
            "message" => {
                let inner = ty
                    .rsplit_once(',')
                    .map(|(_, v)| v.trim_end_matches('>'))
                    .unwrap_or_default();
                Type::Message(resolve(inner, module)?)
            }
            "string" | "bytes" => Type::Scalar(value.to_owned()),
            v => anyhow::bail!("unsupported map value type {v} in {decl:?}"),
        };
        (Label::Map, ty)
    } else {
        let label = if repeated {
            Label::Repeated
        } else {
            Label::Single
        };
        let ty = match first {
            "message" => Type::Message(resolve(&innermost(&ty), module)?),
            "bytes = \"vec\"" => Type::Scalar("bytes".into()),
            s @ ("string" | "bool" | "int32" | "int64" | "double") => Type::Scalar(s.into()),
            s => anyhow::bail!("unsupported field type {s} in #[prost({attr})]"),
        };
        (label, ty)
    };
    Ok(Field {
        tag,
        rust_name,
        ty,
        label,
    })
}

/// `Option<Box<super::X>>` -> `super::X`.
fn innermost(ty: &str) -> String {
    let mut t = ty;
    for wrapper in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ] {
        if let Some(inner) = t.strip_prefix(wrapper) {
            t = inner.strip_suffix('>').unwrap_or(inner);
        }
    }
    if let Some(inner) = t.strip_prefix("::prost::alloc::boxed::Box<") {
        t = inner.strip_suffix('>').unwrap_or(inner);
    }
    t.to_owned()
}

/// Resolves a Rust path relative to `module` into a full message name.
fn resolve(path: &str, module: &[String]) -> anyhow::Result<String> {
    let mut base = module.to_vec();
    let mut parts = path.split("::").peekable();
    while parts.peek() == Some(&"super") {
        parts.next();
        anyhow::ensure!(base.pop().is_some(), "path {path} leaves the crate");
    }
    let rest: Vec<&str> = parts.collect();
    anyhow::ensure!(
        rest.iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_')),
        "unexpected type path {path:?}"
    );
    base.extend(rest.iter().map(|s| s.to_string()));
    Ok(base.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_every_shape_are_read() {
        let src = r#"
/// doc
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Foo {
    /// comment
    #[prost(message, optional, tag = "1")]
    pub metadata: ::core::option::Option<super::super::meta::v1::ObjectMeta>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub limits: ::prost::alloc::collections::BTreeMap<
        ::prost::alloc::string::String,
        super::super::resource::Quantity,
    >,
    #[prost(int32, repeated, packed = "false", tag = "3")]
    pub r#type: ::prost::alloc::vec::Vec<i32>,
    #[prost(message, optional, boxed, tag = "4")]
    pub not: ::core::option::Option<::prost::alloc::boxed::Box<Foo>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub raw: ::core::option::Option<::prost::alloc::vec::Vec<u8>>,
}
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Empty {}
"#;
        let module: Vec<String> = ["api", "x", "v1"].iter().map(|s| s.to_string()).collect();
        let mut out = Messages::new();
        parse_module(src, &module, &mut out).unwrap();
        let foo = &out["api.x.v1.Foo"];
        assert_eq!(foo.len(), 5);
        assert_eq!(foo[0].ty, Type::Message("api.meta.v1.ObjectMeta".into()));
        assert_eq!(
            (foo[1].label, &foo[1].ty),
            (Label::Map, &Type::Message("api.resource.Quantity".into()))
        );
        assert_eq!(
            (foo[2].tag, foo[2].rust_name.as_str(), foo[2].label),
            (3, "type", Label::Repeated)
        );
        assert_eq!(foo[3].ty, Type::Message("api.x.v1.Foo".into()));
        assert_eq!(foo[4].ty, Type::Scalar("bytes".into()));
        assert!(out["api.x.v1.Empty"].is_empty());
    }
}
