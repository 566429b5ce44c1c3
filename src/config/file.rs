//! Reading the configuration file: TOML text to a [`Config`] and the line of every key in
//! it ([`KeyLines`]), so that every refusal — a syntax error, a value of the wrong type, a
//! value `validate` refuses — can say which key, on which line, and what was expected.
//!
//! Sizes are read here, structurally: a string value of any key whose name ends in
//! `-bytes` is parsed with [`parse_size`] (`64KiB`, `1GiB`) and handed on as the number of
//! bytes, so every size key, present and future, accepts units without a `deserialize_with`
//! of its own (the store's types, which this module may not be imported by, included).

use std::collections::BTreeMap;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

use super::value::{operator_words, parse_size, SIZE_FORM};
use super::Config;

/// The line (1-based) of each key of a file, by its dotted path (`store.retention.max-age`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLines(BTreeMap<String, usize>);

impl KeyLines {
    /// The line of `key`, or of the nearest enclosing key that has one
    /// (`syslog.udp.rfc3164-timezone` falls back to `syslog.udp`).
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let mut key = key;
        loop {
            if let Some(line) = self.0.get(key) {
                return Some(*line);
            }
            key = &key[..key.rfind(['.', '['])?];
        }
    }

    /// Whether the file set `key` (or a key inside it).
    pub fn contains(&self, key: &str) -> bool {
        self.line_of(key).is_some()
    }

    fn collect(&mut self, text: &str, prefix: &str, table: &Table) {
        for (name, item) in table.iter() {
            let path = join(prefix, name);
            let span = table.key(name).and_then(|key| key.span()).or(item.span());
            if let Some(span) = span {
                self.0.insert(path.clone(), line_at(text, span));
            }
            match item {
                Item::Table(inner) => self.collect(text, &path, inner),
                Item::ArrayOfTables(array) => {
                    for (index, inner) in array.iter().enumerate() {
                        self.collect(text, &format!("{path}[{index}]"), inner);
                    }
                }
                Item::Value(value) => self.collect_value(text, &path, value),
                Item::None => {}
            }
        }
    }

    fn collect_value(&mut self, text: &str, path: &str, value: &Value) {
        match value {
            Value::InlineTable(inline) => {
                for (name, inner) in inline.iter() {
                    let inner_path = join(path, name);
                    let span = inline.key(name).and_then(|key| key.span()).or(inner.span());
                    if let Some(span) = span {
                        self.0.insert(inner_path.clone(), line_at(text, span));
                    }
                    self.collect_value(text, &inner_path, inner);
                }
            }
            Value::Array(array) => {
                for (index, inner) in array.iter().enumerate() {
                    let inner_path = format!("{path}[{index}]");
                    if let Some(span) = inner.span() {
                        self.0.insert(inner_path.clone(), line_at(text, span));
                    }
                    self.collect_value(text, &inner_path, inner);
                }
            }
            _ => {}
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn line_at(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// Parses TOML text into a [`Config`] (not yet validated) and the lines of its keys. The
/// error is one line: `line N: invalid value for `KEY`: WHAT (expected FORM)`.
pub fn parse(text: &str) -> Result<(Config, KeyLines), String> {
    let document = ImDocument::parse(text.to_string()).map_err(|error| {
        let message = error.message().trim_end().replace('\n', "; ");
        match error.span() {
            Some(span) => format!("line {}: {message}", line_at(text, span)),
            None => message,
        }
    })?;
    let mut lines = KeyLines::default();
    lines.collect(text, "", document.as_table());
    let mut document = document.into_mut();
    sizes_to_bytes(document.as_table_mut(), "", &lines)?;
    let normalized = document.to_string();
    let deserializer = toml::Deserializer::new(&normalized);
    serde_path_to_error::deserialize::<_, Config>(deserializer)
        .map_err(|error| {
            let key = error.path().to_string();
            let inner = error.into_inner();
            let line = lines
                .line_of(&key)
                .filter(|_| key != ".")
                .or_else(|| inner.span().map(|span| line_at(&normalized, span)));
            let raw = inner.message().trim_end().replace('\n', "; ");
            // Our own parsers already name their key; serde's messages name none.
            let message = if raw.starts_with("invalid value for `") || key == "." {
                raw
            } else if raw.starts_with("unknown field") {
                match key.rsplit_once('.') {
                    Some((section, _)) if lines.contains(section) || section.contains('.') => {
                        format!("in [{section}]: {raw}")
                    }
                    _ => raw,
                }
            } else {
                format!("invalid value for `{key}`: {}", operator_words(&raw))
            };
            match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })
        .map(|config| (config, lines))
}

/// Replaces the string value of every `*-bytes` key by the number of bytes it names.
fn sizes_to_bytes(table: &mut Table, prefix: &str, lines: &KeyLines) -> Result<(), String> {
    for (name, item) in table.iter_mut() {
        let path = join(prefix, name.get());
        match item {
            Item::Table(inner) => sizes_to_bytes(inner, &path, lines)?,
            Item::ArrayOfTables(array) => {
                for (index, inner) in array.iter_mut().enumerate() {
                    sizes_to_bytes(inner, &format!("{path}[{index}]"), lines)?;
                }
            }
            Item::Value(value) => value_sizes_to_bytes(value, &path, name.get(), lines)?,
            Item::None => {}
        }
    }
    Ok(())
}

fn value_sizes_to_bytes(
    value: &mut Value,
    path: &str,
    name: &str,
    lines: &KeyLines,
) -> Result<(), String> {
    match value {
        Value::String(text) if name.ends_with("-bytes") => {
            let refuse = |message: String| match lines.line_of(path) {
                Some(line) => format!("line {line}: invalid value for `{path}`: {message}"),
                None => format!("invalid value for `{path}`: {message}"),
            };
            let bytes = parse_size(text.value()).map_err(refuse)?;
            let bytes = i64::try_from(bytes)
                .map_err(|_| refuse(format!("{bytes} is too large; expected {SIZE_FORM}")))?;
            let decor = text.decor().clone();
            let mut replacement = Value::from(bytes);
            *replacement.decor_mut() = decor;
            *value = replacement;
        }
        Value::InlineTable(inline) => {
            for (inner_name, inner) in inline.iter_mut() {
                let inner_path = join(path, inner_name.get());
                value_sizes_to_bytes(inner, &inner_path, inner_name.get(), lines)?;
            }
        }
        Value::Array(array) => {
            for (index, inner) in array.iter_mut().enumerate() {
                value_sizes_to_bytes(inner, &format!("{path}[{index}]"), name, lines)?;
            }
        }
        _ => {}
    }
    Ok(())
}
