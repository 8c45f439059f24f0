//! `corosync-cmapctl`: read and write the configuration and statistics map.
//!
//! ```text
//! corosync-cmapctl [-b] [-m icmap|stats]             dump every key
//! corosync-cmapctl [-b] [-m MAP] PREFIX...           keys under each prefix
//! corosync-cmapctl [-b] [-m MAP] -g KEY...           get keys
//! corosync-cmapctl -s KEY TYPE VALUE                 set (TYPE: i8..u64, flt, dbl, str, bin)
//! corosync-cmapctl -d KEY...  |  -D PREFIX...        delete keys / every key under a prefix
//! corosync-cmapctl [-b] [-m MAP] -t KEY  |  -T PREFIX  track changes ("q" or EOF on stdin ends)
//! corosync-cmapctl -p FILE                           set "KEY TYPE VALUE" lines from a file
//! corosync-cmapctl [-b] -q -g KEY...                 values only
//! corosync-cmapctl -C ipc|totem|knet|all             clear statistics (-m stats implied)
//! ```
//!
//! Output as Corosync's: `key (type) = value`; tracked changes as
//! `create> `, `modify> `, `delete> ` followed by the key line. Errors: one
//! line on stderr and exit status 1.

use std::io::{BufRead, Read};
use std::process::ExitCode;
use std::sync::Arc;

use corosync_rs::cmap::{track, Cmap, Map, Value};
use corosync_rs::{CsError, DispatchFlags};

const MAX_TRY_AGAIN: u32 = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Print,
    Get,
    Set,
    Delete,
    DeletePrefix,
    Track { prefix: bool },
    Load,
    ClearStats,
}

struct Args {
    action: Action,
    show_binary: bool,
    quiet: bool,
    map: Map,
    file: Option<String>,
    params: Vec<String>,
}

fn usage() {
    println!(
        "\nusage:  corosync-cmapctl [-b] [-DdghsTtp] [-m map] [params...]\n\n    \
         -b show binary values\n    -m select map to use (icmap or stats)\n\n\
         Set key:\n    corosync-cmapctl -s key_name type value\n\n    \
         where type is one of ([i|u][8|16|32|64] | flt | dbl | str | bin)\n    \
         for bin, value is file name (or - for stdin)\n\n\
         Load settings from a file:\n    corosync-cmapctl -p filename\n\n\
         Delete key:\n    corosync-cmapctl -d key_name...\n\n\
         Delete multiple keys with prefix:\n    corosync-cmapctl -D key_prefix...\n\n\
         Get key:\n    corosync-cmapctl [-b] -g key_name...\n\n\
         Quiet output:\n    corosync-cmapctl [-b] -q -g key_name...\n\n\
         Display all keys:\n    corosync-cmapctl [-b]\n\n\
         Display keys with prefix key_name:\n    corosync-cmapctl [-b] key_name...\n\n\
         Track changes on keys with key_name:\n    corosync-cmapctl [-b] -t key_name\n\n\
         Track changes on keys with key prefix:\n    corosync-cmapctl [-b] -T key_prefix\n\n\
         Clear statistics (-mstats is implied)\n    corosync-cmapctl -C [ipc|totem|knet|all]\n"
    );
}

/// getopt-style parsing of `hgsdDtTbqp:m:C:` (flags may be grouped).
fn parse(argv: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        action: Action::Print,
        show_binary: false,
        quiet: false,
        map: Map::Icmap,
        file: None,
        params: Vec::new(),
    };
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        if arg == "--" {
            a.params.extend(argv[i + 1..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg.len() < 2 {
            a.params.push(arg.clone());
            i += 1;
            continue;
        }
        let flags: Vec<char> = arg[1..].chars().collect();
        let mut j = 0;
        while j < flags.len() {
            match flags[j] {
                'h' => {
                    usage();
                    return Ok(None);
                }
                'b' => a.show_binary = true,
                'q' => a.quiet = true,
                'g' => a.action = Action::Get,
                's' => a.action = Action::Set,
                'd' => a.action = Action::Delete,
                'D' => a.action = Action::DeletePrefix,
                't' => a.action = Action::Track { prefix: false },
                'T' => a.action = Action::Track { prefix: true },
                c @ ('p' | 'm' | 'C') => {
                    let rest: String = flags[j + 1..].iter().collect();
                    let val = if !rest.is_empty() {
                        rest
                    } else {
                        i += 1;
                        argv.get(i)
                            .cloned()
                            .ok_or_else(|| format!("option requires an argument -- '{c}'"))?
                    };
                    if c == 'p' {
                        a.action = Action::Load;
                        a.file = Some(val);
                    } else if c == 'C' {
                        if !["ipc", "totem", "knet", "all"].contains(&val.as_str()) {
                            return Err(format!(
                                "invalid clear option {val}: expected ipc, totem, knet or all"
                            ));
                        }
                        a.action = Action::ClearStats;
                        a.map = Map::Stats;
                        a.params = vec![val];
                    } else {
                        a.map = match val.as_str() {
                            "icmap" => Map::Icmap,
                            "stats" => Map::Stats,
                            _ => return Err(format!("invalid map name: {val}")),
                        };
                    }
                    j = flags.len();
                    continue;
                }
                c => return Err(format!("invalid option -- '{c}'")),
            }
            j += 1;
        }
        i += 1;
    }
    Ok(Some(a))
}

fn type_name(v: &Value) -> &'static str {
    Value::type_name(v.type_code()).unwrap_or("?")
}

fn key_line(key: &str, v: &Value, show_binary: bool) -> String {
    match v {
        Value::Binary(_) if !show_binary => format!("{key} (bin)"),
        Value::Binary(b) if b.is_empty() => format!("{key} (bin) = *empty*"),
        v => format!("{key} ({}) = {v}", type_name(v)),
    }
}

fn retry<T>(mut f: impl FnMut() -> Result<T, CsError>) -> Result<T, CsError> {
    let mut tries = 0;
    loop {
        match f() {
            Err(CsError::TryAgain) if tries < MAX_TRY_AGAIN => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

fn print_prefix(cmap: &Cmap, prefix: &str, bin: bool) -> Result<(), String> {
    let all = retry(|| cmap.dump(prefix))
        .map_err(|e| format!("Failed to initialize iteration. Error {e}"))?;
    for (k, v) in all {
        println!("{}", key_line(&k, &v, bin));
    }
    Ok(())
}

/// Parses `value` as `ty` (Corosync's range checks and messages).
fn parse_value(ty: &str, value: &str) -> Result<Value, String> {
    let bad = || format!("{value} is not valid {ty} type value");
    let code = Value::type_from_name(ty).ok_or_else(|| format!("Unknown type {ty}"))?;
    let int = |lo: i128, hi: i128| -> Result<i128, String> {
        let n: i128 = value.trim().parse().map_err(|_| bad())?;
        if n < lo || n > hi {
            return Err(format!("{value} is not valid {ty} integer"));
        }
        Ok(n)
    };
    Ok(match code {
        1 => Value::I8(int(i8::MIN.into(), i8::MAX.into())? as i8),
        2 => Value::U8(int(0, u8::MAX.into())? as u8),
        3 => Value::I16(int(i16::MIN.into(), i16::MAX.into())? as i16),
        4 => Value::U16(int(0, u16::MAX.into())? as u16),
        5 => Value::I32(int(i32::MIN.into(), i32::MAX.into())? as i32),
        6 => Value::U32(int(0, u32::MAX.into())? as u32),
        7 => Value::I64(int(i64::MIN.into(), i64::MAX.into())? as i64),
        8 => Value::U64(int(0, u64::MAX.into())? as u64),
        9 => Value::Float(value.trim().parse().map_err(|_| bad())?),
        10 => Value::Double(value.trim().parse().map_err(|_| bad())?),
        11 => Value::Str(value.to_string()),
        _ => {
            let mut b = Vec::new();
            let r = if value == "-" {
                std::io::stdin().read_to_end(&mut b)
            } else {
                std::fs::File::open(value).and_then(|mut f| f.read_to_end(&mut b))
            };
            r.map_err(|e| format!("Can't open input file: {e}"))?;
            Value::Binary(b)
        }
    })
}

fn set_key(cmap: &Cmap, key: &str, ty: &str, value: &str) -> Result<(), String> {
    let v = parse_value(ty, value)?;
    retry(|| cmap.set(key, &v)).map_err(|e| format!("Failed to set key {key}. Error {e}"))
}

fn track(cmap: &Arc<Cmap>, keys: &[String], prefix: bool, bin: bool) -> Result<(), String> {
    let mut tt = track::ADD | track::DELETE | track::MODIFY;
    if prefix {
        tt |= track::PREFIX;
    }
    for k in keys {
        cmap.track_add(k, tt, move |_, _, event, key, new, old| {
            let (tag, v) = match event {
                track::ADD => ("create> ", new),
                track::DELETE => ("delete> ", old),
                track::MODIFY => ("modify> ", new),
                _ => ("unknown change> ", None),
            };
            match v {
                Some(v) => println!("{tag}{}", key_line(key, v, bin)),
                None => println!("{tag}"),
            }
        })
        .map_err(|e| format!("Failed to add tracking function. Error {e}"))?;
    }
    println!("Type \"q\" to finish");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    {
        // Callbacks run on this thread; the main thread waits for "q".
        let cmap = Arc::clone(cmap);
        std::thread::spawn(move || {
            if let Err(e) = cmap.dispatch(DispatchFlags::Blocking) {
                if e != CsError::BadHandle {
                    eprintln!("Dispatch error {e}");
                    std::process::exit(1);
                }
            }
        });
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.starts_with('q') => break,
            Ok(_) => {}
        }
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

fn load_file(cmap: &Cmap, path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("Couldn't open file.: {e}"))?;
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut f = l.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some(k), Some(t), Some(v)) => set_key(cmap, k, t, v)?,
            _ => return Err(format!("invalid line in {path}: {line}")),
        }
    }
    Ok(())
}

fn run(a: Args) -> Result<(), String> {
    if a.params.is_empty() && !matches!(a.action, Action::Print | Action::Load) {
        return Err("Expected key after options".into());
    }
    let cmap = Arc::new(
        retry(|| Cmap::initialize(a.map))
            .map_err(|e| format!("Failed to initialize the cmap API. Error {e}"))?,
    );
    let bin = a.show_binary;
    let mut failed = None;
    match a.action {
        Action::Print if a.params.is_empty() => print_prefix(&cmap, "", bin)?,
        Action::Print => {
            for p in &a.params {
                print_prefix(&cmap, p, bin)?;
            }
        }
        Action::Get => {
            for k in &a.params {
                match retry(|| cmap.get(k)) {
                    Ok(v) if a.quiet => println!("{v}"),
                    Ok(v) => println!("{}", key_line(k, &v, bin)),
                    Err(e) => failed = Some(format!("Can't get key {k}. Error {e}")),
                }
            }
        }
        Action::Set => {
            if a.params.len() < 3 {
                return Err("At least 3 parameters are expected for set".into());
            }
            set_key(&cmap, &a.params[0], &a.params[1], &a.params[2])?;
        }
        Action::Delete => {
            for k in &a.params {
                if let Err(e) = retry(|| cmap.delete(k)) {
                    failed = Some(format!("Can't delete key {k}. Error {e}"));
                }
            }
        }
        Action::DeletePrefix => {
            for p in &a.params {
                let keys = retry(|| cmap.dump(p))
                    .map_err(|e| format!("Failed to initialize iteration. Error {e}"))?;
                for (k, _) in keys {
                    if let Err(e) = cmap.delete(&k) {
                        failed = Some(format!("Can't delete key {k}. Error {e}"));
                    }
                }
            }
        }
        Action::Track { prefix } => track(&cmap, &a.params, prefix, bin)?,
        Action::Load => load_file(&cmap, a.file.as_deref().unwrap_or(""))?,
        Action::ClearStats => {
            let key = format!("stats.clear.{}", a.params[0]);
            retry(|| cmap.set(&key, &Value::U32(1)))
                .map_err(|e| format!("Failed to clear stats. Error {e}"))?;
        }
    }
    match failed {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

fn main() -> ExitCode {
    let argv = match daemon::args::utf8_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("corosync-cmapctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args = match parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corosync-cmapctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
