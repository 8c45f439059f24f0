//! The `corosync.conf` reader: Corosync's file format in, a typed [`Config`] out.
//!
//! * [`Config::from_str`] parses text (pure; no file system, no name resolution, no clock) and
//!   returns the configuration plus a list of [`Warning`]s (unknown keys and sections, keys
//!   Corosync knows but this daemon ignores, `transport: knet` run as udpu, …) that the caller
//!   logs. Every error is a [`ConfigError`] naming `file:line` and the reason.
//!   [`Config::from_str_resolving`] is the same with a host name resolver.
//! * [`Config::load`] reads a file (host names resolved by the system's resolver) and the
//!   `uidgid { }` sections of the files in the `uidgid.d` directory beside it,
//!   [`Config::load_source`] follows a [`ConfigSource`] chosen by
//!   [`config_path`] from the environment (`COROSYNC_MAIN_CONFIG_FILE`,
//!   `COROSYNC_DEFAULT_CONFIG_IFACE`, `COROSYNC_TOTEM_AUTHKEY_FILE`, `COROSYNC_AMF_CONFIG_FILE`).
//! * [`Config::default_one_node`] is what `corosync -f` runs without a configuration file.
//! * [`Config::resolve_bind`] picks the local node and the address to bind from the host's
//!   interface addresses, which the daemon passes in (so this module stays pure).
//!
//! Both ways of naming the network are read: the nodelist (Corosync 2/3: `nodelist { node {
//! ring0_addr, nodeid, name } }`, transport udpu, udp or knet) and the multicast form of the
//! OpenAIS / Corosync 1 era (`transport: udp` — the default then — with `interface { bindnetaddr,
//! mcastaddr, mcastport, ttl }` and the node id derived from the bound IPv4 address).
//!
//! A node's `ringN_addr` may be a host name (as `pcs` writes it), resolved as Corosync does with
//! getaddrinfo when the file is read: the first address of the family `ip_version` prefers
//! (IPv6 first for udpu's default `ipv6-4`). Every other address (`bindnetaddr`, `mcastaddr`)
//! must be numeric. Resolving can wait on DNS, so the daemon reads its file before it starts the
//! network and, for a reload, on a thread of its own; every node must resolve the names alike
//! (the same hosts file or DNS), as with Corosync.
//!
//! Where this reader deliberately differs from Corosync 3 (all documented at the key):
//! crypto is accepted on every transport (our transport seals every frame, Corosync 3 only
//! encrypts knet); `knet` runs as udpu; a missing `version` defaults to 2; a zero timing value
//! means "default" as in Corosync but is reported as a warning; lines Corosync silently ignores
//! (neither key, section nor brace) are syntax errors; `uidgid.d` is the directory beside the
//! file read (Corosync's is always `/etc/corosync/uidgid.d`), read in name order, and what else
//! than `uidgid { uid, gid }` its files hold is warned about (Corosync refuses it).

mod bind;
mod build;
mod sections;
mod source;
mod syntax;
mod types;
mod values;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use bind::LocalBinding;
pub use build::{derived_mcastaddr, nodeid_from_addr};
pub use source::{
    config_path, config_path_with, ConfigSource, MainConfig, PathOrigin, Reader, SourceError,
    AMF_CONFIG_ENV, AUTHKEY_ENV, BUILT_IN_NOTE, CONFIG_IFACE_ENV, DEFAULT_AUTHKEY_FILE,
    DEFAULT_CONFIG_FILE, MAIN_CONFIG_ENV, OPENAIS_AUTHKEY_FILE, OPENAIS_CONFIG_FILE,
};
pub use types::*;
pub use values::Resolve;

/// The system's resolver (getaddrinfo: the hosts file, then DNS as nsswitch says): the
/// addresses of `name`, in the order it gives them.
pub fn system_resolve(name: &str) -> Result<Vec<IpAddr>, String> {
    use std::net::ToSocketAddrs;
    let addrs = (name, 0u16).to_socket_addrs().map_err(|e| e.to_string())?;
    let mut out: Vec<IpAddr> = Vec::new();
    for a in addrs {
        if !out.contains(&a.ip()) {
            out.push(a.ip());
        }
    }
    Ok(out)
}

/// Largest configuration file [`Config::load`] reads (Corosync's files are a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file name used in errors and warnings for [`Config::default_one_node`].
pub const BUILT_IN_NAME: &str = "<built-in default>";

/// The built-in configuration used when no configuration file exists: a one-node cluster on
/// loopback — node 1 at 127.0.0.1, transport udpu on port 5405, no crypto, no quorum provider,
/// logging to stderr, Corosync's default timings.
pub const DEFAULT_ONE_NODE_CONF: &str = "\
totem {
    version: 2
    cluster_name: corosync-rs
    transport: udpu
    nodeid: 1
    crypto_cipher: none
    crypto_hash: none
    interface {
        linknumber: 0
        mcastport: 5405
    }
}

nodelist {
    node {
        nodeid: 1
        name: localhost
        ring0_addr: 127.0.0.1
    }
}

logging {
    to_stderr: yes
    to_syslog: no
    to_logfile: no
}
";

/// An error in the configuration: `file:line: reason`.
///
/// `line` is 1-based; it is 0 only when no line is to blame (the file can't be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ConfigError {
    /// The file name as given to the reader.
    pub file: String,
    /// The line to blame (1-based), or 0 for the file as a whole.
    pub line: u32,
    /// What is wrong, in words.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(file: &str, line: u32, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            line,
            reason: reason.into(),
        }
    }
}

/// Something the reader accepted but the operator should hear about: `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file name as given to the reader.
    pub file: String,
    /// The line concerned (1-based).
    pub line: u32,
    /// What was noticed, in words.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl Config {
    /// Parses `text` (the contents of a `corosync.conf`); `file` names it in errors and warnings.
    ///
    /// Pure: reads nothing but `text`. Never panics, whatever the input.
    /// Host names in `ringN_addr` are refused here (no resolver); [`Config::load`] and
    /// [`Config::from_str_resolving`] look them up.
    pub fn from_str(text: &str, file: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        Config::from_str_resolving(text, file, &|_| {
            Err("host names are not looked up when parsing text (Config::from_str)".to_string())
        })
    }

    /// [`Config::from_str`] with `resolve` looking up the host names of nodes' addresses.
    pub fn from_str_resolving(
        text: &str,
        file: &str,
        resolve: Resolve<'_>,
    ) -> Result<(Config, Vec<Warning>), ConfigError> {
        let root = syntax::parse(text, file)?;
        build::build(&root, file, resolve)
    }

    /// Reads and parses the file at `path` (at most [`MAX_FILE_BYTES`]; UTF-8), then the
    /// `uidgid { }` sections of every file in the [`UIDGID_DIR`] directory beside it (see
    /// [`uidgid_dir_files`]), added to [`Config::uidgid`] after the file's own.
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let name = path.display().to_string();
        let text = read_text(path, &name)?;
        let (mut config, mut warnings) = Config::from_str_resolving(&text, &name, &system_resolve)?;
        let dir = path.parent().unwrap_or(Path::new("")).join(UIDGID_DIR);
        for file in uidgid_dir_files(&dir)? {
            let name = file.display().to_string();
            let text = read_text(&file, &name)?;
            let root = syntax::parse(&text, &name)?;
            let mut cx = values::Ctx::new(&name, &|_| Err("not looked up".to_string()));
            config.uidgid.extend(sections::uidgid_file(&mut cx, &root)?);
            warnings.extend(cx.warnings);
        }
        resolve_uidgid_names(
            &mut config.uidgid,
            Path::new(PASSWD_FILE),
            Path::new(GROUP_FILE),
        )?;
        Ok((config, warnings))
    }

    /// Loads what `source` names: its file, or [`Config::default_one_node`] for
    /// [`MainConfig::BuiltIn`].
    pub fn load_source(source: &ConfigSource) -> Result<(Config, Vec<Warning>), ConfigError> {
        match &source.main {
            MainConfig::File { path, .. } => Config::load(path),
            MainConfig::BuiltIn => Ok((Config::default_one_node(), Vec::new())),
        }
    }

    /// The built-in one-node configuration, [`DEFAULT_ONE_NODE_CONF`] parsed.
    pub fn default_one_node() -> Config {
        // The text is a constant checked by the tests; it cannot fail at run time.
        match Config::from_str(DEFAULT_ONE_NODE_CONF, BUILT_IN_NAME) {
            Ok((config, _)) => config,
            Err(e) => unreachable!("the built-in configuration is invalid: {e}"),
        }
    }
}

/// Where [`Config::load`] looks up the user names of `uidgid { uid }`.
pub const PASSWD_FILE: &str = "/etc/passwd";
/// Where [`Config::load`] looks up the group names of `uidgid { gid }`.
pub const GROUP_FILE: &str = "/etc/group";

/// Replaces every user and group name of `entries` by its id, looked up in `passwd` and
/// `group` (files in the `/etc/passwd` format: `name:password:id:...`); a name that is not
/// there is an error at its entry's line. Ids stay as they are.
pub fn resolve_uidgid_names(
    entries: &mut [UidGid],
    passwd: &Path,
    group: &Path,
) -> Result<(), ConfigError> {
    for e in entries.iter_mut() {
        for (ident, db, what) in [(&mut e.uid, passwd, "user"), (&mut e.gid, group, "group")] {
            if let Some(Ident::Name(name)) = ident {
                let id = lookup_id(db, name).ok_or_else(|| {
                    ConfigError::new(
                        &e.file,
                        e.line,
                        format!("{what} '{name}' not found in {}", db.display()),
                    )
                })?;
                *ident = Some(Ident::Id(id));
            }
        }
    }
    Ok(())
}

/// The id (third field) of `name` in a file in the `/etc/passwd` format.
fn lookup_id(db: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(db).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.parse().ok()
    })
}

/// The directory beside the configuration file whose files add `uidgid { }` sections
/// (Corosync reads `/etc/corosync/uidgid.d` whatever file it was given; this reader reads the
/// one beside the file it reads, which is that one for the default file).
pub const UIDGID_DIR: &str = "uidgid.d";

/// Most files [`Config::load`] reads from [`UIDGID_DIR`].
pub const MAX_UIDGID_FILES: usize = 1024;

/// The files of a `uidgid.d` directory [`Config::load`] reads, in name order: regular files
/// (or links to them) whose names are UTF-8 and neither start with `.` nor end with `~`
/// (editors' backups). No directory is no files; one that can't be read is an error naming it.
pub fn uidgid_dir_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let name = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConfigError::new(&name, 0, format!("cannot read: {e}"))),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::new(&name, 0, format!("cannot read: {e}")))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.starts_with('.') || file_name.ends_with('~') {
            continue;
        }
        let path = entry.path();
        // Follows links, as Corosync's stat() does.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
        if files.len() > MAX_UIDGID_FILES {
            return Err(ConfigError::new(
                &name,
                0,
                format!("more than {MAX_UIDGID_FILES} files"),
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// The file at `path` as text; errors name it as `name`.
fn read_text(path: &Path, name: &str) -> Result<String, ConfigError> {
    let bytes = read_limited(path).map_err(|e| ConfigError::new(name, 0, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        ConfigError::new(name, line, "the file is not valid UTF-8")
    })
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "the file is larger than {MAX_FILE_BYTES} bytes; not a corosync.conf"
        ));
    }
    Ok(bytes)
}
