//! Gives the shared library a SONAME, so a program linked with `-lcpg`
//! (a symlink to `libcorosync_rs.so`) records `libcorosync_rs.so` as its
//! dependency and finds it through `LD_LIBRARY_PATH` or the ld cache.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcorosync_rs.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
