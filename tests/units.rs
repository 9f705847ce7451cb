//! The packaging files, checked without a running systemd: the unit files
//! (`systemd/interviewd.service`, `systemd/interviewd.socket`), the conffile
//! the package installs as /etc/interviewd/config.toml (`systemd/config.toml`),
//! and the `[package.metadata.deb]` table of Cargo.toml that `cargo deb`
//! builds the package from.
//!
//! Runs as any user. The unit checks need `systemd-analyze` (Debian:
//! `systemd`); without it they print why they skip, or fail when
//! INTERVIEWD_REQUIRE_ROOT_TESTS=1 (CI). tests/systemd.rs runs the units and
//! the package under a real systemd.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The highest `systemd-analyze security` exposure the service may have
/// (0 is the most locked down, 10 the least). Raising it needs a reason in
/// the unit file.
const MAX_EXPOSURE: f64 = 1.5;

const BIN: &str = env!("CARGO_BIN_EXE_interviewd");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Prints why a test cannot run here and returns, unless
/// INTERVIEWD_REQUIRE_ROOT_TESTS=1 says it must run.
fn skip(test: &str, why: &str) {
    if std::env::var("INTERVIEWD_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test}: {why}, and INTERVIEWD_REQUIRE_ROOT_TESTS=1");
    }
    eprintln!("{test}: skipped: {why}");
}

/// `systemd-analyze`, if installed.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip(
            test,
            "systemd-analyze is not installed (Debian: apt install systemd)",
        );
    }
    found
}

/// A fresh directory under the target directory, removed first if left over.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("units-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies of both units with `/usr/bin/interviewd` pointed at the binary
/// under test (`verify` checks that ExecStart= and ExecReload= programs
/// exist, and nothing else in the units differs from what is shipped).
fn units_for_this_binary(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let service = read("systemd/interviewd.service");
    assert!(
        service.contains("/usr/bin/interviewd "),
        "the service runs /usr/bin/interviewd, where the package puts it"
    );
    std::fs::write(
        dir.join("interviewd.service"),
        service.replace("/usr/bin/interviewd ", &format!("{BIN} ")),
    )
    .unwrap();
    std::fs::write(
        dir.join("interviewd.socket"),
        read("systemd/interviewd.socket"),
    )
    .unwrap();
    (
        dir.join("interviewd.service"),
        dir.join("interviewd.socket"),
    )
}

/// `systemd-analyze verify` finds nothing to say about either unit: no
/// unknown directive, no bad value, no missing program, no dependency
/// problem (it exits 0 even when it warns, so any output is a failure).
#[test]
fn units_verify_silently() {
    let Some(analyze) = systemd_analyze("units_verify_silently") else {
        return;
    };
    let (service, socket) = units_for_this_binary("verify");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&service)
        .arg(&socket)
        .current_dir(service.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify must print nothing:\n{}",
        text(&out)
    );
}

/// The service's sandbox stays tight: `systemd-analyze security` rates it at
/// most MAX_EXPOSURE (the shipped unit, offline, as a fresh install has it).
#[test]
fn service_exposure_is_low() {
    let Some(analyze) = systemd_analyze("service_exposure_is_low") else {
        return;
    };
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(root().join("systemd/interviewd.service"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure level:\n{}", text(&out)));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    println!("systemd-analyze security: interviewd.service exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE}:\n{stdout}"
    );
}

/// Runs `interviewd check-config FILE`; its stdout, or the failure.
fn check_config(file: &Path) -> String {
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(file)
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config {}:\n{}",
        file.display(),
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every `section.key` that `check-config` prints.
fn printed_keys(toml_text: &str) -> BTreeSet<String> {
    let value: toml::Table = toml::from_str(toml_text).expect("check-config prints TOML");
    let mut keys = BTreeSet::new();
    for (section, table) in &value {
        let table = table.as_table().expect("check-config prints sections");
        for key in table.keys() {
            keys.insert(format!("{section}.{key}"));
        }
    }
    keys
}

/// The `section.key` of every commented-out setting (`#key = value`) in
/// the conffile, with whether it is marked "unset by default".
fn commented_keys(conffile: &str) -> Vec<(String, bool, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in conffile.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some(setting) = line.strip_prefix('#') {
            let Some((key, _)) = setting.split_once(" = ") else {
                continue;
            };
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                keys.push((
                    format!("{section}.{key}"),
                    line.contains("# unset by default"),
                    line.to_owned(),
                ));
            }
        }
    }
    keys
}

/// The conffile lists every key of the configuration, commented out with
/// its default: each key `check-config` prints for an empty file, and the
/// optional ones it leaves out, so that an operator finds them all in
/// /etc/interviewd/config.toml.
#[test]
fn conffile_mentions_every_key() {
    let dir = scratch("conffile-keys");
    std::fs::write(dir.join("empty.toml"), "").unwrap();
    let defaults = check_config(&dir.join("empty.toml"));
    let conffile = read("systemd/config.toml");
    let commented: BTreeSet<String> = commented_keys(&conffile)
        .into_iter()
        .map(|(key, _, _)| key)
        .collect();
    let mut expected = printed_keys(&defaults);
    // Unset by default, so not printed: every optional key of src/config.rs.
    for key in [
        "server.state_dir",
        "server.tls_cert",
        "server.tls_key",
        "interview.script",
        "interview.scripts_dir",
        "openai.api_key_file",
        "openai.ca_file",
        "access.mode",
        "metrics.token_file",
    ] {
        expected.insert(key.to_owned());
    }
    let missing: Vec<_> = expected.difference(&commented).collect();
    assert!(missing.is_empty(), "systemd/config.toml lacks {missing:?}");
    let unknown: Vec<_> = commented.difference(&expected).collect();
    assert!(
        unknown.is_empty(),
        "systemd/config.toml names keys check-config does not know: {unknown:?}"
    );
    for line in conffile.lines() {
        let setting = line.trim_start();
        assert!(
            setting.is_empty() || setting.starts_with('#') || setting.starts_with('['),
            "systemd/config.toml must set nothing, only comment: {line:?}"
        );
    }
}

/// The conffile as shipped is the defaults: it parses, and its effective
/// configuration is exactly that of an empty file. Uncommenting every
/// default (the keys not marked "unset by default") changes nothing either,
/// so each commented value is the true default.
#[test]
fn conffile_is_the_defaults() {
    let dir = scratch("conffile-defaults");
    std::fs::write(dir.join("empty.toml"), "").unwrap();
    let defaults = check_config(&dir.join("empty.toml"));
    let conffile = read("systemd/config.toml");
    std::fs::write(dir.join("config.toml"), &conffile).unwrap();
    assert_eq!(
        check_config(&dir.join("config.toml")),
        defaults,
        "systemd/config.toml as shipped must configure nothing"
    );
    let unset: Vec<String> = commented_keys(&conffile)
        .into_iter()
        .filter(|(_, unset, _)| !*unset)
        .map(|(_, _, line)| line)
        .collect();
    let uncommented: String = conffile
        .lines()
        .map(|line| match unset.iter().any(|l| l == line) {
            true => &line[1..],
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("uncommented.toml"), uncommented).unwrap();
    assert_eq!(
        check_config(&dir.join("uncommented.toml")),
        defaults,
        "a commented value in systemd/config.toml is not the default"
    );
}

/// `[package.metadata.deb]` of Cargo.toml.
fn deb_metadata() -> toml::Table {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// `(source, dest)` of every asset.
fn assets(deb: &toml::Table) -> Vec<(String, String)> {
    deb["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("assets are [source, dest, mode]");
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Files a `dir/*.ext` or plain asset source names.
fn expand(source: &str) -> Vec<PathBuf> {
    match source.rsplit_once("/*") {
        Some((dir, suffix)) => std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
            .collect(),
        None => vec![root().join(source)],
    }
}

/// The package `cargo deb` builds is whole and agrees with the units: every
/// asset exists; the binary goes where the units run it; the conffile and
/// the documents the units and docs name are shipped; the units and the
/// maintainer scripts are where cargo-deb looks for them, and the
/// maintainer scripts keep cargo-deb's `#DEBHELPER#` hook and agree with
/// the unit on the credential file they create and purge.
#[test]
fn deb_metadata_is_consistent() {
    let deb = deb_metadata();
    assert_eq!(deb["depends"].as_str(), Some("$auto"));
    let assets = assets(&deb);
    for (source, _) in &assets {
        if source.starts_with("target/release/") {
            continue; // cargo-deb's name for the built binary
        }
        let files = expand(source);
        assert!(!files.is_empty(), "asset {source} matches nothing");
        for f in files {
            assert!(f.is_file(), "asset {} does not exist", f.display());
        }
    }
    let shipped = |source: &str, dest: &str| assets.iter().any(|(s, d)| s == source && d == dest);
    assert!(shipped("target/release/interviewd", "usr/bin/"));
    assert!(shipped("systemd/config.toml", "etc/interviewd/config.toml"));
    for doc in [
        "README.md",
        "docs/*.md",
        "docs/report.schema.json",
        "docs/example-script.toml",
    ] {
        assert!(
            shipped(doc, "usr/share/doc/interviewd/"),
            "{doc} is not shipped"
        );
    }

    let service = read("systemd/interviewd.service");
    assert!(service
        .contains("ExecStart=/usr/bin/interviewd serve --config /etc/interviewd/config.toml\n"));
    assert!(service.contains("Documentation=file:/usr/share/doc/interviewd/operations.md\n"));
    assert!(read("systemd/interviewd.socket")
        .contains("Documentation=file:/usr/share/doc/interviewd/operations.md\n"));

    let units = deb["systemd-units"].as_table().expect("systemd-units");
    let units_dir = units["unit-scripts"].as_str().expect("unit-scripts");
    for unit in ["interviewd.service", "interviewd.socket"] {
        assert!(
            root().join(units_dir).join(unit).is_file(),
            "cargo-deb looks for {unit} in {units_dir}/"
        );
    }
    for key in ["enable", "start"] {
        assert_eq!(units[key].as_bool(), Some(true), "systemd-units.{key}");
    }

    let scripts = root().join(
        deb["maintainer-scripts"]
            .as_str()
            .expect("maintainer-scripts"),
    );
    for name in ["postinst", "postrm"] {
        let path = scripts.join(name);
        let script = std::fs::read_to_string(&path).unwrap();
        assert!(script.starts_with("#!/bin/sh\n"), "{name}: a sh script");
        assert_eq!(
            script.matches("#DEBHELPER#").count(),
            1,
            "{name}: cargo-deb replaces every #DEBHELPER#, comments too; keep exactly one"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{name} is executable");
        let sh = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(sh.status.success(), "{name}: sh -n:\n{}", text(&sh));
    }
    let credential = "/etc/interviewd/openai-api-key";
    assert!(service.contains(&format!("LoadCredential=openai-api-key:{credential}\n")));
    let postinst = std::fs::read_to_string(scripts.join("postinst")).unwrap();
    let postrm = std::fs::read_to_string(scripts.join("postrm")).unwrap();
    assert!(
        postinst.contains(&format!("> {credential}")),
        "postinst creates {credential}"
    );
    assert!(
        postrm.contains(&format!("rm -f {credential}")),
        "purge removes {credential}"
    );
    for state in ["/var/lib/private/interviewd", "/var/lib/interviewd"] {
        assert!(
            postrm.contains(&format!("rm -rf {state}\n")),
            "purge removes {state}"
        );
    }
}

/// The pinned cargo-deb packages the binary under test as the tests of
/// tests/systemd.rs do (no rebuild), and the package holds the units, the
/// conffile, the binary and the maintainer scripts with systemd's snippets.
/// Skips without cargo-deb (CI installs it: .ci/run).
#[test]
fn cargo_deb_packages_the_test_binary() {
    const TEST: &str = "cargo_deb_packages_the_test_binary";
    let version = Command::new("cargo").args(["deb", "--version"]).output();
    match version {
        Ok(out) if out.status.success() => {}
        _ => {
            return skip(
                TEST,
                "cargo-deb is not installed (cargo install cargo-deb --locked)",
            )
        }
    }
    let Some(dpkg_deb) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("dpkg-deb"))
            .find(|p| p.is_file())
    }) else {
        return skip(TEST, "dpkg-deb is not installed");
    };
    // The binary cargo-deb packages with --profile dev is TARGET/debug/interviewd.
    let bin = Path::new(BIN);
    let target_dir = bin.parent().unwrap().parent().unwrap();
    let out_dir = scratch("deb");
    let out = Command::new("cargo")
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--quiet",
            "--output",
        ])
        .arg(&out_dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo deb:\n{}", text(&out));
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let contents = Command::new(&dpkg_deb)
        .arg("--contents")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(contents.status.success(), "{}", text(&contents));
    let contents = String::from_utf8_lossy(&contents.stdout);
    for path in [
        "./usr/bin/interviewd",
        "./etc/interviewd/config.toml",
        "./usr/lib/systemd/system/interviewd.service",
        "./usr/lib/systemd/system/interviewd.socket",
        "./usr/share/doc/interviewd/operations.md",
        "./usr/share/doc/interviewd/copyright",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{contents}"
        );
    }
    let control = out_dir.join("control");
    let x = Command::new(&dpkg_deb)
        .arg("--control")
        .arg(&deb)
        .arg(&control)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", text(&x));
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    assert!(
        fields.contains("\nDepends: libc6"),
        "depends = \"$auto\" found no Depends (is dpkg-shlibdeps, from dpkg-dev, installed?):\n{fields}"
    );
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/interviewd/config.toml");
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(!postinst.contains("#DEBHELPER#"), "the hook was filled in");
    assert!(postinst.contains("deb-systemd-helper enable interviewd.service"));
    assert!(postinst.contains("deb-systemd-helper enable interviewd.socket"));
    assert!(postinst.contains("deb-systemd-invoke start interviewd.service interviewd.socket"));
    let prerm = std::fs::read_to_string(control.join("prerm")).unwrap();
    assert!(prerm.contains("deb-systemd-invoke stop interviewd.service interviewd.socket"));
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(postrm.contains("deb-systemd-helper purge interviewd.service interviewd.socket"));
}
