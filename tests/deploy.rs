//! The deploy/ files are checked by the tools that will read them, without Docker or systemd
//! running: `systemd-analyze verify` on the unit, `nginx -t` on the proxy config.

use std::path::Path;
use std::process::Command;

fn deploy(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    }
    // The unit names the installed binary; point it at the one just built.
    let unit = std::fs::read_to_string(deploy("bitseed.service")).unwrap();
    let unit = unit.replace("/usr/local/bin/bitseed", env!("CARGO_BIN_EXE_bitseed"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bitseed.service");
    std::fs::write(&path, unit).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // Only our unit's own problems count (the host may lack units ours is ordered after).
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("bitseed.service"))
        .collect();
    assert!(o.status.success() && ours.is_empty(), "{err}");
}

#[test]
fn nginx_config_passes_nginx_t() {
    if Command::new("nginx").arg("-v").output().is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("nginx is missing: tests/run.sh installs it");
        }
        eprintln!("skipping: nginx is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("nginx.conf");
    std::fs::write(
        &main,
        format!(
            "pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  include {1};\n}}\n",
            dir.path().display(),
            deploy("nginx.conf").display()
        ),
    )
    .unwrap();
    let o = Command::new("nginx")
        .args(["-t", "-q", "-c"])
        .arg(&main)
        .arg("-p")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
