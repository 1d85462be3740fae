//! A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a fresh data
//! folder, a free loopback port, password (SCRAM) authentication like a real server.
//! Stopped and deleted when dropped.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, Result, run};

/// The superuser the tests connect as, and its password.
const USER: &str = "sync";
const PASSWORD: &str = "sync-test-password";

pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    /// `postgres://sync:...@127.0.0.1:PORT/postgres`: the maintenance database; the
    /// tests create their own databases beside it.
    pub url: String,
}

/// The newest installed server version's binaries (`/usr/lib/postgresql/<v>/bin`).
fn server_bin() -> Result<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(base)
        .map_err(|error| format!("{}: {error} (is the apt package postgresql installed?)", base.display()))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| format!("no PostgreSQL server under {}", base.display()))
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|error| format!("finding a free port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("finding a free port: {error}"))
}

/// Connections a test cluster takes: the tests and the bench stay well below.
pub const TEST_CONNECTIONS: u32 = 200;

impl Cluster {
    /// A throwaway cluster that takes `max_connections` at once.
    pub fn start(max_connections: u32) -> Result<Self> {
        let bin = server_bin()?;
        // initdb refuses to run as root: then the cluster belongs to Debian's `postgres` user.
        let as_postgres = cmd::output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
        let data = std::env::temp_dir().join(format!("sync-postgres-{}", std::process::id()));
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&data).map_err(|error| format!("creating {}: {error}", data.display()))?;
        let password_file = data.join("password");
        fs::write(&password_file, PASSWORD).map_err(|error| format!("writing the password file: {error}"))?;
        let mut cluster = Self { bin, data, as_postgres, url: String::new() };
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&cluster.data))?;
        }
        let pgdata = cluster.data.join("data");
        run(cluster
            .command("initdb")
            .arg("--pgdata")
            .arg(&pgdata)
            .args(["--username", USER, "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync"])
            .arg(format!("--pwfile={}", password_file.display()))
            .arg("--encoding=UTF8"))?;
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -k {} -c fsync=off -c max_connections={max_connections}",
            cluster.data.display()
        );
        run(cluster
            .command("pg_ctl")
            .arg("--pgdata")
            .arg(&pgdata)
            .args(["--options", &options, "--log"])
            .arg(cluster.data.join("server.log"))
            .args(["--wait", "start"]))?;
        cluster.url = format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres");
        eprintln!("postgres: a throwaway cluster at {}", cluster.url);
        Ok(cluster)
    }

    /// A server binary, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.url.is_empty() {
            let _ = run(self.command("pg_ctl").arg("--pgdata").arg(self.data.join("data")).args([
                "--mode",
                "immediate",
                "--wait",
                "stop",
            ]));
        }
        let _ = fs::remove_dir_all(&self.data);
    }
}
