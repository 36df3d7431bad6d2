//! nginx in front of test nodes, from the shipped `deploy/nginx.conf`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx binary, if this machine has one.
pub struct Nginx {
    binary: PathBuf,
}

/// A running nginx; stopped on drop.
pub struct Balancer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn find() -> Option<Nginx> {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .map(|binary| Nginx { binary })
    }

    /// Starts nginx with the shipped config, its three upstreams rewritten
    /// to `nodes`, and waits until `/readyz` answers through it.
    pub async fn start(&self, nodes: &[SocketAddr]) -> Balancer {
        let dir = tempfile::tempdir().expect("tempdir");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx.conf");
        let mut config = std::fs::read_to_string(&shipped).expect("deploy/nginx.conf");
        let upstreams: String = nodes
            .iter()
            .map(|addr| format!("        server {addr} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        let start = config
            .find("        server 127.0.0.1:8081")
            .expect("upstream lines");
        let end = config.find("        keepalive").expect("keepalive line");
        config.replace_range(start..end, &upstreams);
        let addr: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        let tmp = dir.path().display().to_string();
        config = config
            .replace("listen 127.0.0.1:8080;", &format!("listen {addr};"))
            .replace("/tmp/herald-nginx", &format!("{tmp}/nginx"));
        // As root, nginx would switch its worker to `nobody`, which cannot
        // reach the temporary directory.
        config = format!("user root;\ndaemon off;\n{config}");
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config).expect("write nginx.conf");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let balancer = Balancer {
            child,
            addr,
            _dir: dir,
        };
        balancer.wait_ready().await;
        balancer
    }
}

impl Balancer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.url())).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "nginx never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its worker; SIGKILL would orphan it,
        // still listening.
        // SAFETY: a signal to our own child process, by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}
