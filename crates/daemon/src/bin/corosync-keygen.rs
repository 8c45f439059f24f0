//! `corosync-keygen`: writes a new cluster key.
//!
//! ```text
//! corosync-keygen [-k FILE] [-s SIZE] [-l] [-h]
//! ```
//!
//! SIZE random bytes (default 256) from `/dev/urandom` go to FILE (default
//! `/etc/corosync/authkey`), mode 0400; an existing file is overwritten, as
//! Corosync does. `-l` (use /dev/urandom) is accepted for compatibility:
//! it is always the source. Errors: one line on stderr, exit 1.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::process::ExitCode;

const DEFAULT_KEYFILE: &str = "/etc/corosync/authkey";
const DEFAULT_SIZE: usize = 256;
const MIN_SIZE: usize = 128;
const MAX_SIZE: usize = 4096;

fn usage() {
    println!("Usage: corosync-keygen [-k <keyfile>] [-s size] [-l] [-h]");
    println!("     -k / --key-file=<filename> -  Write to the specified keyfile");
    println!("            instead of the default {DEFAULT_KEYFILE}.");
    println!("     -s / --size=<size>         -  Size of the generated key in bytes.");
    println!(
        "            Default is {DEFAULT_SIZE} bytes, minimum {MIN_SIZE}, maximum {MAX_SIZE}."
    );
    println!("     -l / --less-secure         -  Use /dev/urandom (always used here).");
    println!("     -h / --help                -  Print basic usage.");
}

fn run(argv: &[String]) -> Result<bool, String> {
    let mut file = DEFAULT_KEYFILE.to_string();
    let mut size = DEFAULT_SIZE;
    let mut i = 0;
    while i < argv.len() {
        let a = argv[i].as_str();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            argv.get(i)
                .cloned()
                .ok_or_else(|| format!("option requires an argument -- '{name}'"))
        };
        match flag {
            "-h" | "--help" => {
                usage();
                return Ok(false);
            }
            "-l" | "--less-secure" => {}
            "-k" | "--key-file" => file = value("k")?,
            "-s" | "--size" => {
                let v = value("s")?;
                size = v
                    .parse()
                    .ok()
                    .filter(|n| (MIN_SIZE..=MAX_SIZE).contains(n))
                    .ok_or_else(|| {
                        format!("Invalid key size {v}: must be {MIN_SIZE} to {MAX_SIZE} bytes")
                    })?;
            }
            other => return Err(format!("invalid option -- '{other}'")),
        }
        i += 1;
    }
    println!("Corosync Cluster Engine Authentication key generator.");
    println!("Gathering {} bits for key from /dev/urandom.", size * 8);
    let mut key = vec![0u8; size];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("Could not read /dev/urandom: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .map_err(|e| format!("Could not create {file}: {e}"))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o400))
        .map_err(|e| format!("Could not set the mode of {file}: {e}"))?;
    println!("Writing corosync key to {file}.");
    f.write_all(&key)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("Could not write {file}: {e}"))?;
    Ok(true)
}

fn main() -> ExitCode {
    let argv = match daemon::args::utf8_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("corosync-keygen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&argv) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
