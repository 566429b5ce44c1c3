//! Small field helpers shared by the RFC 5424 and RFC 3164 readers: PRI, SD-PARAM unescaping,
//! conversion of `syslog_loose`'s structured data, and locating a sub-slice in its line.
//!
//! No I/O, no parsing policy: the readers decide what a field means.

use syslog_loose::StructuredElement;

use super::SdElement;

/// The line without the transport residue a sender may leave at its end (LF, CR, NUL).
pub fn strip_line_end(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r', '\0'])
}

/// `(pri, facility, severity)` from a PRI value; `None` above 191.
pub fn split_pri(pri: u32) -> Option<(u8, u8, u8)> {
    let pri = u8::try_from(pri).ok().filter(|p| *p <= 191)?;
    Some((pri, pri >> 3, pri & 7))
}

/// `<NNN>` at the start of `text`: the PRI value (1 to 3 digits, at most 191) and the rest.
pub fn leading_pri(text: &str) -> Option<(u8, &str)> {
    let inner = text.strip_prefix('<')?;
    let close = inner.find('>')?;
    let digits = &inner[..close];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (pri, _, _) = split_pri(digits.parse().ok()?)?;
    Some((pri, &inner[close + 1..]))
}

/// An SD-PARAM value as written between its quotes, with the RFC 5424 escapes `\"`, `\\` and
/// `\]` undone. Any other backslash is kept literally (RFC 5424 section 6.3.3).
pub fn unescape_param_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if matches!(next, '"' | '\\' | ']') {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

pub fn convert_sd(elements: &[StructuredElement<&str>]) -> Vec<SdElement> {
    elements
        .iter()
        .map(|element| SdElement {
            id: element.id.to_string(),
            params: element
                .params
                .iter()
                .map(|(name, value)| (name.to_string(), unescape_param_value(value)))
                .collect(),
        })
        .collect()
}

/// Byte offset of `part` inside `whole`, if `part` is a sub-slice of it.
pub fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len() && whole.is_char_boundary(start)).then_some(start)
}

/// `None` for empty strings.
pub fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_only_the_rfc_escapes() {
        let cases = [
            (r#"a\"b"#, r#"a"b"#),
            (r"a\\b", r"a\b"),
            (r"a\]b", "a]b"),
            (r"a\nb", r"a\nb"),
            (r"trailing\", r"trailing\"),
            (r#"\\\""#, r#"\""#),
        ];
        for (input, expected) in cases {
            assert_eq!(unescape_param_value(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn leading_pri_limits() {
        assert_eq!(leading_pri("<34>x"), Some((34, "x")));
        assert_eq!(leading_pri("<191>x"), Some((191, "x")));
        assert_eq!(leading_pri("<002>x"), Some((2, "x")));
        assert_eq!(leading_pri("<192>x"), None);
        assert_eq!(leading_pri("<>x"), None);
        assert_eq!(leading_pri("<1234>x"), None);
        assert_eq!(leading_pri("34>x"), None);
    }

    #[test]
    fn offset_of_sub_slices() {
        let whole = "hello world";
        assert_eq!(offset_in(whole, &whole[6..]), Some(6));
        let other = String::from("other");
        assert_eq!(offset_in(whole, &other), None);
    }
}
