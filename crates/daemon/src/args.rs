//! The tools' command-line arguments.

/// The arguments after the program's name, or which of them is not UTF-8
/// (an error to print, where `std::env::args` would panic).
pub fn utf8_args() -> Result<Vec<String>, String> {
    std::env::args_os()
        .skip(1)
        .enumerate()
        .map(|(i, a)| {
            a.into_string().map_err(|a| {
                format!(
                    "argument {} is not valid UTF-8: {}",
                    i + 1,
                    a.to_string_lossy()
                )
            })
        })
        .collect()
}
