//! A throwaway OpenSSH server: `/usr/sbin/sshd -D` on a spare port of
//! 127.0.0.1, with its own generated host key, config, authorized client
//! key and pid file in a temporary directory; killed and removed on drop.
//! It lets root in by key only. It never touches the system's sshd.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_backup::{SshAuth, SshConfig};

use super::unique;

pub struct Sshd {
    pub dir: PathBuf,
    pub port: u16,
    child: Child,
}

/// Generates an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-C",
            "sluice-test",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ssh-keygen -l`'s SHA-256 fingerprint of a public key file.
pub fn fingerprint(pub_path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(pub_path)
        .output()
        .expect("ssh-keygen -l");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_owned()
}

fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    /// Starts a server; `extra` is appended to its config, with `{dir}`
    /// standing for the server's directory.
    pub fn start(extra: &str) -> Self {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd missing: run scripts/services.sh (installs openssh-server)"
        );
        // sshd insists on its privilege separation directory.
        fs::create_dir_all("/run/sshd").unwrap();
        let dir = std::env::temp_dir().join(unique("sluice-sshd"));
        fs::create_dir_all(&dir).unwrap();
        keygen(&dir.join("host"), "");
        keygen(&dir.join("client"), "");
        fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
        let d = dir.display();
        let config = format!(
            "ListenAddress 127.0.0.1\n\
             HostKey {d}/host\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             LogLevel DEBUG1\n\
             {extra}\n",
            extra = extra.replace("{dir}", &d.to_string())
        );
        fs::write(dir.join("sshd_config"), config).unwrap();
        let mut last = String::new();
        // A spare port may be taken between finding and binding it: retry.
        for _ in 0..5 {
            let port = spare_port();
            let log = fs::File::create(dir.join("sshd.log")).unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(dir.join("sshd_config"))
                .args(["-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd { dir, port, child };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            last = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        }
        panic!("sshd did not start: {last}");
    }

    pub fn client_key(&self) -> String {
        fs::read_to_string(self.dir.join("client")).unwrap()
    }

    /// The host key's fingerprint as `ssh-keygen -l` prints it.
    pub fn host_fingerprint(&self) -> String {
        fingerprint(&self.dir.join("host.pub"))
    }

    /// Root, by the authorized client key, no expected host key.
    pub fn config(&self) -> SshConfig {
        SshConfig::new(
            "127.0.0.1",
            "root",
            SshAuth::PrivateKey {
                pem: self.client_key(),
                passphrase: None,
            },
        )
        .port(self.port)
        .connect_timeout(Duration::from_secs(10))
    }

    /// Adds a public key to the authorized ones.
    pub fn authorize(&self, pub_path: &Path) {
        let mut keys = fs::read_to_string(self.dir.join("authorized_keys")).unwrap();
        keys.push_str(&fs::read_to_string(pub_path).unwrap());
        fs::write(self.dir.join("authorized_keys"), keys).unwrap();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
