//! The relay's binary carries a copy of www/ (`src/http/page.rs`): rebuild it whenever anything
//! under www/ changes, www/pkg (the contributor module, built by `cargo xtask build`) included.

fn main() {
    println!("cargo:rerun-if-changed=../www");
    println!("cargo:rerun-if-changed=build.rs");
}
