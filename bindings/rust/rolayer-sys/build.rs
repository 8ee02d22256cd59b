// SPDX-License-Identifier: Apache-2.0
//! Finds librolayer with pkg-config (0.1 <= version < 0.2). The bindings are checked in
//! (src/bindings.rs): bindgen does not run here.
//!
//! Point PKG_CONFIG_PATH at `<prefix>/lib/pkgconfig` for a library installed outside the
//! default search path (and LD_LIBRARY_PATH at `<prefix>/lib` to run what links it).
//!
//! * Feature `static`: `pkg-config --static`, linking `librolayer.a` (and the private
//!   dependencies the .pc lists) when the install has one; without a static library in the
//!   library directory the shared one is linked, as pkg-config finds it.
//! * `DOCS_RS` set (docs.rs builds documentation without the C library): nothing is probed
//!   or linked. Documentation needs no linking; nothing built this way can run.

fn main() {
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if std::env::var_os("DOCS_RS").is_some() {
        return;
    }
    let statik = std::env::var_os("CARGO_FEATURE_STATIC").is_some();
    match pkg_config::Config::new()
        .range_version("0.1".."0.2")
        .statik(statik)
        .probe("rolayer")
    {
        Ok(lib) => {
            // Exposed to dependents' build scripts as DEP_ROLAYER_INCLUDE / DEP_ROLAYER_VERSION.
            let include = std::env::join_paths(&lib.include_paths).expect("include paths");
            println!("cargo:include={}", include.to_string_lossy());
            println!("cargo:version={}", lib.version);
            println!("cargo:static={}", if statik { 1 } else { 0 });
            // Rebuild when the .pc file changes (say, a reinstall to another prefix).
            if let Ok(dir) = pkg_config::get_variable("rolayer", "pcfiledir") {
                println!("cargo:rerun-if-changed={dir}/rolayer.pc");
            }
        }
        Err(e) => {
            eprintln!(
                "rolayer-sys: librolayer >= 0.1, < 0.2 was not found with pkg-config.\n\
                 Install it (cmake --install <build> --prefix <prefix>) and set\n\
                 PKG_CONFIG_PATH=<prefix>/lib/pkgconfig (and LD_LIBRARY_PATH=<prefix>/lib to run).\n\
                 (Building documentation only? Set DOCS_RS=1 to skip the library.)\n\n{e}"
            );
            std::process::exit(1);
        }
    }
}
