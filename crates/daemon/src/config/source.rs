//! Where the configuration comes from: files and environment variables, chosen by a pure
//! function so that every case can be tested without touching `/etc`.

use std::path::{Path, PathBuf};

use super::Config;

/// Corosync's configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/corosync/corosync.conf";
/// OpenAIS's configuration file (same format), used when only it exists.
pub const OPENAIS_CONFIG_FILE: &str = "/etc/ais/openais.conf";
/// Corosync's shared key.
pub const DEFAULT_AUTHKEY_FILE: &str = "/etc/corosync/authkey";
/// OpenAIS's shared key, used when only it exists.
pub const OPENAIS_AUTHKEY_FILE: &str = "/etc/ais/authkey";

/// What `corosync` logs, once, when no configuration file exists and it runs
/// [`Config::default_one_node`] (one of [`ConfigSource::notes`]).
pub const BUILT_IN_NOTE: &str = "no /etc/corosync/corosync.conf or /etc/ais/openais.conf: \
running the built-in one-node configuration (node 1 on 127.0.0.1, port 5405), without a cluster key";

/// Overrides the configuration file's path.
pub const MAIN_CONFIG_ENV: &str = "COROSYNC_MAIN_CONFIG_FILE";
/// Overrides the shared key's path (`totem { keyfile }` wins over it).
pub const AUTHKEY_ENV: &str = "COROSYNC_TOTEM_AUTHKEY_FILE";
/// Colon-separated list of configuration modules; see [`Reader`].
pub const CONFIG_IFACE_ENV: &str = "COROSYNC_DEFAULT_CONFIG_IFACE";
/// OpenAIS's AMF configuration file: accepted and reported, not used.
pub const AMF_CONFIG_ENV: &str = "COROSYNC_AMF_CONFIG_FILE";

/// Which reader `COROSYNC_DEFAULT_CONFIG_IFACE` selected. Both read the same format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `corosync_parser` (Corosync's name, the default; `aisparser` is its old name).
    CorosyncParser,
    /// `openaisparser`: OpenAIS's reader; prefers `/etc/ais/openais.conf`.
    OpenAisParser,
}

/// How a path was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOrigin {
    /// From the command line (`-c`).
    CommandLine,
    /// From the environment variable.
    Environment,
    /// The standard Corosync location.
    Default,
    /// The OpenAIS location, because the Corosync one doesn't exist.
    OpenAis,
}

/// The main configuration to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainConfig {
    /// Read this file.
    File {
        /// Its path.
        path: PathBuf,
        /// Why this path.
        origin: PathOrigin,
    },
    /// No file exists: run [`Config::default_one_node`].
    BuiltIn,
}

/// Everything [`config_path`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The configuration to read.
    pub main: MainConfig,
    /// The reader selected.
    pub reader: Reader,
    /// The shared key's path unless the configuration names one (see
    /// [`ConfigSource::authkey_path`]).
    pub authkey: PathBuf,
    /// Why that key path.
    pub authkey_origin: PathOrigin,
    /// `COROSYNC_AMF_CONFIG_FILE`, if set (reserved: not read).
    pub amf_config_file: Option<PathBuf>,
    /// Things worth logging at start-up (ignored modules, the reserved AMF file, …).
    pub notes: Vec<String>,
}

impl ConfigSource {
    /// The shared key to read: `totem { keyfile }` if the configuration has one, otherwise
    /// [`ConfigSource::authkey`].
    pub fn authkey_path(&self, config: &Config) -> PathBuf {
        match &config.totem.keyfile {
            Some(path) => path.clone(),
            None => self.authkey.clone(),
        }
    }
}

/// `COROSYNC_DEFAULT_CONFIG_IFACE` named a module this daemon doesn't have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// An unknown configuration module.
    #[error("{CONFIG_IFACE_ENV}: unknown configuration reader '{0}' (known: corosync_parser, openaisparser, aisparser; openaisserviceenable and openaisserviceenableexperimental are accepted and have no effect)")]
    UnknownReader(String),
}

/// Modules that only switched on OpenAIS services in Corosync 1; ours are always available.
const SERVICE_ENABLERS: &[&str] = &["openaisserviceenable", "openaisserviceenableexperimental"];

/// Decides which files to read from the environment (`env`) and which files exist
/// (`exists`); pure, so the daemon passes `std::env::var` and `Path::exists`.
///
/// * Configuration: `COROSYNC_MAIN_CONFIG_FILE` if set and non-empty (even if missing: reading
///   it then fails, as in Corosync); else `/etc/corosync/corosync.conf` if it exists; else
///   `/etc/ais/openais.conf` if it exists (tried first with the `openaisparser` reader); else
///   the built-in one-node default.
/// * Key: `COROSYNC_TOTEM_AUTHKEY_FILE` if set and non-empty; else `/etc/corosync/authkey`,
///   unless only `/etc/ais/authkey` exists. `totem { keyfile }` overrides both
///   ([`ConfigSource::authkey_path`]).
/// * Reader: the first reader named in `COROSYNC_DEFAULT_CONFIG_IFACE` (colon-separated,
///   Corosync's syntax); the service enablers are accepted as no-ops; an unknown name is an
///   error.
pub fn config_path(
    env: impl Fn(&str) -> Option<String>,
    exists: impl Fn(&Path) -> bool,
) -> Result<ConfigSource, SourceError> {
    config_path_with(None, env, exists)
}

/// [`config_path`] with the file named on the command line (`corosync -c
/// FILE`), which wins over the environment and the default locations.
pub fn config_path_with(
    command_line: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    exists: impl Fn(&Path) -> bool,
) -> Result<ConfigSource, SourceError> {
    let mut notes = Vec::new();
    let reader = choose_reader(env(CONFIG_IFACE_ENV), &mut notes)?;
    let set = |name: &str| env(name).filter(|v| !v.is_empty());

    let main = if let Some(path) = command_line {
        MainConfig::File {
            path: path.to_path_buf(),
            origin: PathOrigin::CommandLine,
        }
    } else if let Some(path) = set(MAIN_CONFIG_ENV) {
        MainConfig::File {
            path: PathBuf::from(path),
            origin: PathOrigin::Environment,
        }
    } else {
        let corosync = Path::new(DEFAULT_CONFIG_FILE);
        let openais = Path::new(OPENAIS_CONFIG_FILE);
        let order: [(&Path, PathOrigin); 2] = match reader {
            Reader::CorosyncParser => [
                (corosync, PathOrigin::Default),
                (openais, PathOrigin::OpenAis),
            ],
            Reader::OpenAisParser => [
                (openais, PathOrigin::OpenAis),
                (corosync, PathOrigin::Default),
            ],
        };
        match order.iter().find(|(p, _)| exists(p)) {
            Some((path, origin)) => MainConfig::File {
                path: path.to_path_buf(),
                origin: *origin,
            },
            None => {
                notes.push(BUILT_IN_NOTE.to_string());
                MainConfig::BuiltIn
            }
        }
    };

    let (authkey, authkey_origin) = if let Some(path) = set(AUTHKEY_ENV) {
        (PathBuf::from(path), PathOrigin::Environment)
    } else if !exists(Path::new(DEFAULT_AUTHKEY_FILE)) && exists(Path::new(OPENAIS_AUTHKEY_FILE)) {
        (PathBuf::from(OPENAIS_AUTHKEY_FILE), PathOrigin::OpenAis)
    } else {
        (PathBuf::from(DEFAULT_AUTHKEY_FILE), PathOrigin::Default)
    };

    let amf_config_file = set(AMF_CONFIG_ENV).map(PathBuf::from);
    if let Some(path) = &amf_config_file {
        notes.push(format!(
            "{AMF_CONFIG_ENV}={} noted; AMF configuration files are not read (reserved)",
            path.display()
        ));
    }

    Ok(ConfigSource {
        main,
        reader,
        authkey,
        authkey_origin,
        amf_config_file,
        notes,
    })
}

fn choose_reader(value: Option<String>, notes: &mut Vec<String>) -> Result<Reader, SourceError> {
    let Some(value) = value else {
        return Ok(Reader::CorosyncParser);
    };
    let mut reader = None;
    for name in value.split(':').map(str::trim).filter(|n| !n.is_empty()) {
        let this = match name {
            "corosync_parser" | "aisparser" => Reader::CorosyncParser,
            "openaisparser" => Reader::OpenAisParser,
            n if SERVICE_ENABLERS.contains(&n) => {
                notes.push(format!(
                    "{CONFIG_IFACE_ENV}: '{n}' has no effect (every service is always available)"
                ));
                continue;
            }
            other => return Err(SourceError::UnknownReader(other.to_string())),
        };
        match reader {
            None => reader = Some(this),
            Some(_) => notes.push(format!(
                "{CONFIG_IFACE_ENV}: '{name}' ignored; only the first reader is used"
            )),
        }
    }
    Ok(reader.unwrap_or(Reader::CorosyncParser))
}
