//! Reading typed values out of sections: the error/warning context, the key tracker that
//! reports duplicates and unknown keys, and one parser per value form.

use std::net::IpAddr;

use super::syntax::{Entry, Section};
use super::{ConfigError, Warning};

/// Looks up a host name: its addresses, or why there are none.
pub type Resolve<'r> = &'r dyn Fn(&str) -> Result<Vec<IpAddr>, String>;

/// The file name, the host name resolver and the warnings gathered so far.
pub(crate) struct Ctx<'f> {
    pub file: &'f str,
    pub resolve: Resolve<'f>,
    pub warnings: Vec<Warning>,
}

impl<'f> Ctx<'f> {
    pub fn new(file: &'f str, resolve: Resolve<'f>) -> Self {
        Ctx {
            file,
            resolve,
            warnings: Vec::new(),
        }
    }

    pub fn err(&self, line: u32, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, line, reason)
    }

    pub fn warn(&mut self, line: u32, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_string(),
            line,
            message: message.into(),
        });
    }
}

/// The `key: value` entries of one or more same-named sections (Corosync merges repeated
/// sections such as two `totem { }`), with a record of which keys were read.
pub(crate) struct Keys<'a> {
    path: String,
    entries: Vec<&'a Entry>,
    used: Vec<bool>,
}

impl<'a> Keys<'a> {
    /// The entries of `sections`, in file order; `path` names them in messages (`totem`).
    pub fn new(path: &str, sections: &[&'a Section]) -> Self {
        let entries: Vec<&'a Entry> = sections.iter().flat_map(|s| s.entries.iter()).collect();
        let used = vec![false; entries.len()];
        Keys {
            path: path.to_string(),
            entries,
            used,
        }
    }

    /// The last entry for `key` (Corosync keeps the last value), warning about earlier ones and
    /// about values in quotes (Corosync keeps the quotes as part of the value).
    pub fn take(&mut self, cx: &mut Ctx, key: &str) -> Option<&'a Entry> {
        self.take_any(cx, &[key])
    }

    /// Like [`Keys::take`] for a key with several names (`ringnumber` / `linknumber`).
    pub fn take_any(&mut self, cx: &mut Ctx, names: &[&str]) -> Option<&'a Entry> {
        let mut found: Option<&'a Entry> = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if !names.contains(&entry.key.as_str()) {
                continue;
            }
            self.used[i] = true;
            if let Some(earlier) = found {
                cx.warn(
                    earlier.line,
                    format!(
                        "'{}.{}' is set again at line {}; the later value is used",
                        self.path, earlier.key, entry.line
                    ),
                );
            }
            found = Some(entry);
        }
        if let Some(entry) = found {
            let v = entry.value.as_str();
            if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                cx.warn(
                    entry.line,
                    format!(
                        "the quotes are part of the value of '{}' (Corosync does not strip them)",
                        entry.key
                    ),
                );
            }
        }
        found
    }

    /// Warns about every entry not read: `ignored` names keys Corosync knows that this daemon
    /// doesn't use; anything else is unknown.
    pub fn finish(self, cx: &mut Ctx, ignored: &[&str]) {
        for (entry, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            if ignored.contains(&entry.key.as_str()) {
                cx.warn(
                    entry.line,
                    format!(
                        "'{}.{}' is not used by corosync-rs; ignored",
                        self.path, entry.key
                    ),
                );
            } else {
                cx.warn(
                    entry.line,
                    format!("unknown key '{}' in {}; ignored", entry.key, self.path),
                );
            }
        }
    }
}

/// Warns about every sub-section of `section` whose name isn't in `known` (those are read by
/// the caller); `ignored` are Corosync's, not used here, with `why` appended.
pub(crate) fn check_subsections(
    cx: &mut Ctx,
    path: &str,
    sections: &[&Section],
    known: &[&str],
    ignored: &[(&str, &str)],
) {
    for sub in sections.iter().flat_map(|s| s.sections.iter()) {
        if known.contains(&sub.name.as_str()) {
            continue;
        }
        match ignored.iter().find(|(name, _)| *name == sub.name) {
            Some((_, why)) => cx.warn(
                sub.line,
                format!("section '{path}.{}' ignored: {why}", sub.name),
            ),
            None => cx.warn(
                sub.line,
                format!("unknown section '{}' in {path}; ignored", sub.name),
            ),
        }
    }
}

fn not_integer(cx: &Ctx, e: &Entry) -> ConfigError {
    let hint = if e.value.contains('#') {
        " (a comment must be on a line of its own)"
    } else {
        ""
    };
    cx.err(
        e.line,
        format!(
            "value of '{}' must be an integer, but '{}' was given{hint}",
            e.key, e.value
        ),
    )
}

/// A non-negative decimal integer.
pub(crate) fn integer(cx: &Ctx, e: &Entry) -> Result<u64, ConfigError> {
    let v = e.value.as_str();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_integer(cx, e));
    }
    v.parse::<u64>()
        .map_err(|_| cx.err(e.line, format!("value of '{}' is too large: '{v}'", e.key)))
}

/// An integer in `min ..= max`.
pub(crate) fn u32_in(cx: &Ctx, e: &Entry, min: u32, max: u32) -> Result<u32, ConfigError> {
    let n = integer(cx, e)?;
    if n < u64::from(min) || n > u64::from(max) {
        return Err(cx.err(
            e.line,
            format!(
                "value of '{}' must be between {min} and {max}, but {n} was given",
                e.key
            ),
        ));
    }
    Ok(n as u32)
}

/// A timing or constant where 0 means "the default", as in Corosync (reported as a warning).
pub(crate) fn nonzero_or_default(
    cx: &mut Ctx,
    e: &Entry,
    default: u32,
) -> Result<u32, ConfigError> {
    let n = u32_in(cx, e, 0, u32::MAX)?;
    if n == 0 {
        cx.warn(
            e.line,
            format!("'{}: 0' means the default ({default})", e.key),
        );
        return Ok(default);
    }
    Ok(n)
}

/// yes / no (also on / off, true / false, 1 / 0: Corosync uses each form somewhere).
pub(crate) fn boolean(cx: &Ctx, e: &Entry) -> Result<bool, ConfigError> {
    match e.value.as_str() {
        "yes" | "on" | "true" | "1" => Ok(true),
        "no" | "off" | "false" | "0" => Ok(false),
        v => Err(cx.err(
            e.line,
            format!(
                "value of '{}' must be yes or no, but '{v}' was given",
                e.key
            ),
        )),
    }
}

/// One of `allowed` (exact, lower case).
pub(crate) fn choice(
    cx: &Ctx,
    e: &Entry,
    allowed: &[&'static str],
) -> Result<&'static str, ConfigError> {
    match allowed.iter().find(|a| **a == e.value) {
        Some(a) => Ok(a),
        None => Err(cx.err(
            e.line,
            format!(
                "value of '{}' must be one of {}, but '{}' was given",
                e.key,
                allowed.join(", "),
                e.value
            ),
        )),
    }
}

/// A numeric IPv4 or IPv6 address.
pub(crate) fn ip(cx: &Ctx, e: &Entry) -> Result<IpAddr, ConfigError> {
    match e.value.parse::<IpAddr>() {
        Ok(addr) => Ok(addr),
        Err(_) => {
            let v = e.value.as_str();
            let hint = if looks_like_host_name(v) {
                " (host names are resolved only in a node's ringN_addr)"
            } else {
                ""
            };
            Err(cx.err(
                e.line,
                format!(
                    "value of '{}' must be a numeric IP address, but '{v}' was given{hint}",
                    e.key
                ),
            ))
        }
    }
}

/// Whether `v` can be a host name getaddrinfo looks up (letters, digits,
/// '-', '_' and '.', at least one letter, at most 253 characters; hosts
/// files take underscores, which DNS names do not).
pub(crate) fn looks_like_host_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && v.chars().any(|c| c.is_ascii_alphabetic())
}

/// A node's address: numeric, or a host name looked up with the context's
/// resolver (as Corosync does with getaddrinfo), taking the first address
/// of the family `ip_version` prefers and refusing a name with none of the
/// families it allows.
pub(crate) fn node_addr(
    cx: &Ctx,
    e: &Entry,
    ip_version: super::IpVersion,
) -> Result<IpAddr, ConfigError> {
    use super::IpVersion;
    if let Ok(addr) = e.value.parse::<IpAddr>() {
        return Ok(addr);
    }
    let name = e.value.as_str();
    if !looks_like_host_name(name) {
        return Err(cx.err(
            e.line,
            format!(
                "value of '{}' must be an IP address or a host name, but '{name}' was given",
                e.key
            ),
        ));
    }
    let found = (cx.resolve)(name)
        .map_err(|why| cx.err(e.line, format!("{}: cannot resolve '{name}': {why}", e.key)))?;
    let v4 = found.iter().find(|a| a.is_ipv4());
    let v6 = found.iter().find(|a| a.is_ipv6());
    let pick = match ip_version {
        IpVersion::Ipv4 => v4,
        IpVersion::Ipv6 => v6,
        IpVersion::Ipv4Then6 => v4.or(v6),
        IpVersion::Ipv6Then4 => v6.or(v4),
    };
    pick.copied().ok_or_else(|| {
        cx.err(
            e.line,
            format!(
                "{}: host name '{name}' has no address allowed by ip_version {} (found: {})",
                e.key,
                ip_version.as_str(),
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        )
    })
}

/// A non-empty value, verbatim (a path, a name).
pub(crate) fn word(cx: &Ctx, e: &Entry) -> Result<String, ConfigError> {
    if e.value.is_empty() {
        return Err(cx.err(e.line, format!("value of '{}' is empty", e.key)));
    }
    Ok(e.value.clone())
}
