//! The `corosync.conf` syntax: nested `name {` … `}` sections and `key: value` lines.
//!
//! The rules follow Corosync's own reader (`exec/coroparse.c`), checked line by line:
//!
//! * A trailing `\r` and trailing blanks (space, tab) are dropped; leading blanks are skipped.
//! * An empty line, or one whose first non-blank character is `#`, is ignored. There are no
//!   inline comments: in `token: 3000 # ms` the value is `3000 # ms` (Corosync does the same,
//!   and then rejects it as "not an integer").
//! * A line that contains `{` opens a section named by the text before the `{` (a trailing `:`
//!   is dropped, so `totem: {` works as in Corosync). Text after the `{` is an error here
//!   (Corosync silently ignores it, which turns `quorum { provider: x }` into an unclosed section).
//! * Otherwise a line that contains `:` is `key: value`, split at the first `:` (so IPv6
//!   addresses keep their colons); the value is taken verbatim: quotes are part of the value,
//!   as in Corosync.
//! * Otherwise a line that is `}` closes the current section.
//! * Anything else is a syntax error (Corosync ignores such lines silently).
//!
//! Names (of keys and sections) are ASCII letters, digits, `_`, `-` and `.`.

use super::ConfigError;

/// Sections nest at most this deep (Corosync's deepest is `logging.logger_subsys`, depth 2).
pub(crate) const MAX_DEPTH: usize = 16;

/// One `key: value` line.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    pub line: u32,
}

/// One `name { … }` section, or the file itself (the root, with an empty name and line 0).
#[derive(Debug, Clone, Default)]
pub(crate) struct Section {
    pub name: String,
    pub line: u32,
    pub entries: Vec<Entry>,
    pub sections: Vec<Section>,
}

impl Section {
    /// The sub-sections called `name`, in file order.
    pub fn sections_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections.iter().filter(move |s| s.name == name)
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// The name of the section a `name {` line opens (`open` is the index of the `{`).
fn section_name(line: &str, open: usize) -> Result<String, String> {
    let name = line[..open].trim_matches(is_blank);
    let name = name
        .strip_suffix(':')
        .unwrap_or(name)
        .trim_matches(is_blank);
    let rest = line[open + 1..].trim_matches(is_blank);
    if !valid_name(name) {
        return Err(format!("invalid section name '{name}' before '{{'"));
    }
    if !rest.is_empty() {
        return Err(format!(
            "unexpected text '{rest}' after '{name} {{' (put each key and the closing '}}' on its own line)"
        ));
    }
    Ok(name.to_string())
}

/// Parses the whole text into a tree rooted at an unnamed section.
pub(crate) fn parse(text: &str, file: &str) -> Result<Section, ConfigError> {
    let err = |line: u32, reason: String| ConfigError::new(file, line, reason);
    // The stack holds the open sections; the root is at the bottom.
    let mut stack: Vec<Section> = vec![Section::default()];
    let mut line_no: u32 = 0;

    for raw in text.split('\n') {
        line_no = line_no.saturating_add(1);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line = raw.trim_matches(is_blank);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }

        if let Some(open) = line.find('{') {
            let name = section_name(line, open).map_err(|reason| err(line_no, reason))?;
            if stack.len() > MAX_DEPTH {
                return Err(err(
                    line_no,
                    format!("sections nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            stack.push(Section {
                name,
                line: line_no,
                ..Section::default()
            });
            continue;
        }

        if let Some(colon) = line.find(':') {
            let key = line[..colon].trim_matches(is_blank);
            let value = line[colon + 1..].trim_matches(is_blank);
            if !valid_name(key) {
                return Err(err(line_no, format!("invalid key name '{key}' before ':'")));
            }
            let top = stack.last_mut().expect("the root is never popped");
            top.entries.push(Entry {
                key: key.to_string(),
                value: value.to_string(),
                line: line_no,
            });
            continue;
        }

        if line.contains('}') {
            if line != "}" {
                return Err(err(
                    line_no,
                    format!("unexpected text around '}}' in '{line}'"),
                ));
            }
            if stack.len() == 1 {
                return Err(err(
                    line_no,
                    "unexpected closing brace '}' (no section is open)".to_string(),
                ));
            }
            let done = stack.pop().expect("checked: more than the root");
            stack
                .last_mut()
                .expect("the root is never popped")
                .sections
                .push(done);
            continue;
        }

        return Err(err(
            line_no,
            format!("expected 'key: value', 'name {{' or '}}', found '{line}'"),
        ));
    }

    if stack.len() > 1 {
        let open = stack.last().expect("checked: more than the root");
        return Err(err(
            open.line,
            format!(
                "missing closing brace for section '{}' opened here",
                open.name
            ),
        ));
    }
    Ok(stack.pop().expect("the root"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sections_keys_and_comments() {
        let text =
            "# top\n\ntotem {\n\tversion: 2\n  interface {\n    bindnetaddr: fe80::1\n  }\n}\r\n";
        let root = parse(text, "f").unwrap();
        assert_eq!(root.sections.len(), 1);
        let totem = &root.sections[0];
        assert_eq!((totem.name.as_str(), totem.line), ("totem", 3));
        assert_eq!(totem.entries[0].key, "version");
        assert_eq!(totem.entries[0].value, "2");
        assert_eq!(totem.sections[0].entries[0].value, "fe80::1");
        assert_eq!(totem.sections[0].entries[0].line, 6);
    }

    #[test]
    fn colon_before_brace_and_verbatim_values() {
        let root = parse("totem: {\n cluster_name: \"a b\" # x\n}\n", "f").unwrap();
        assert_eq!(root.sections[0].name, "totem");
        assert_eq!(root.sections[0].entries[0].value, "\"a b\" # x");
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let cases = [
            ("totem {\n", "f:1: missing closing brace"),
            ("}\n", "f:1: unexpected closing brace"),
            ("totem {\n garbage\n}\n", "f:2: expected"),
            ("totem { token: 1 }\n", "f:1: unexpected text"),
            (" {\n}\n", "f:1: invalid section name"),
            ("a b: c\n", "f:1: invalid key name"),
            ("totem {\n} }\n", "f:2: unexpected text around"),
        ];
        for (text, want) in cases {
            let e = parse(text, "f").unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let text = "a {\n".repeat(MAX_DEPTH + 1);
        let e = parse(&text, "f").unwrap_err();
        assert_eq!(e.line as usize, MAX_DEPTH + 1);
    }
}
