//! The floors: what russh itself does on the same loopback sshd, with no
//! MCP, no component and no session manager in the way. Every row of the
//! table that has one is measured against these in the same run.
//!
//! - [`Raw::exec`]: open a channel, exec, wait for it to close (a warm
//!   call's floor);
//! - [`Raw::load`]: many tasks on one connection, at most `cap` channels at
//!   a time (the server's own per-connection cap);
//! - [`first_exec`]: connect, key exchange, authenticate, exec `true`;
//! - [`Raw::read_all`]: the bytes of a command's stdout, counted and
//!   dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::Channel;
use russh::client::{self, Handle, Msg};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Semaphore;

use mcp_ssh_session::ssh::net::QuickAckStream;

use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

/// Trusts exactly the fixture's host key.
pub struct Pinned(PublicKey);

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(key.key_data() == self.0.key_data())
    }
}

/// How a raw connection authenticates.
#[derive(Clone, Copy)]
pub enum Auth {
    Key,
    Password,
}

/// One authenticated russh connection to a fixture port.
pub struct Raw {
    handle: Handle<Pinned>,
}

async fn connect(sshd: &Sshd, port: u16, auth: Auth) -> Handle<Pinned> {
    let host_key = std::fs::read_to_string(sshd.dir().join("host_ed25519.pub")).unwrap();
    // The server's own settings: a 16 MiB receive window, its ciphers.
    let mut config = client::Config {
        nodelay: true,
        window_size: 16 << 20,
        ..client::Config::default()
    };
    config.preferred.cipher = mcp_ssh_session::ssh::cipher::preferred().into();
    // The server's own stream (TCP_QUICKACK re-armed after each read):
    // without it, a delayed ACK stalls the first exec by 40 ms.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut handle = client::connect_stream(
        Arc::new(config),
        QuickAckStream::new(tcp),
        Pinned(PublicKey::from_openssh(host_key.trim()).unwrap()),
    )
    .await
    .unwrap();
    let ok = match auth {
        Auth::Key => {
            let key = russh::keys::load_secret_key(sshd.client_key(), None).unwrap();
            handle
                .authenticate_publickey(TEST_USER, PrivateKeyWithHashAlg::new(Arc::new(key), None))
                .await
        }
        Auth::Password => handle.authenticate_password(TEST_USER, TEST_PASSWORD).await,
    };
    assert!(ok.unwrap().success(), "raw russh could not authenticate");
    handle
}

/// Connect, authenticate and run `true` on a new connection: the floor of
/// a first call. The connection is closed after, outside the time.
pub async fn first_exec(sshd: &Sshd, auth: Auth) -> Duration {
    let started = Instant::now();
    let raw = Raw {
        handle: connect(sshd, sshd.port(), auth).await,
    };
    raw.exec("true").await;
    let took = started.elapsed();
    raw.close().await;
    took
}

impl Raw {
    pub async fn new(sshd: &Sshd, port: u16) -> Self {
        Self {
            handle: connect(sshd, port, Auth::Key).await,
        }
    }

    /// A session channel. sshd frees a closed channel's slot a little
    /// after the close, so one opened at once may be refused: retried
    /// after 5, 10, 15... ms, as the server does.
    async fn open(&self) -> Channel<Msg> {
        let mut attempt = 0;
        loop {
            match self.handle.channel_open_session().await {
                Err(russh::Error::ChannelOpenFailure(_)) if attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 * attempt.min(20))).await;
                }
                other => return other.unwrap(),
            }
        }
    }

    /// One exec on a new channel, to its close.
    pub async fn exec(&self, command: &str) -> Duration {
        let started = Instant::now();
        let mut ch = self.open().await;
        ch.exec(true, command).await.unwrap();
        while ch.wait().await.is_some() {}
        started.elapsed()
    }

    /// The length of `command`'s stdout, read to the channel's close, and
    /// how long that took.
    pub async fn read_all(&self, command: &str) -> (usize, Duration) {
        let started = Instant::now();
        let mut ch = self.open().await;
        ch.exec(true, command).await.unwrap();
        let mut bytes = 0;
        while let Some(msg) = ch.wait().await {
            if let ChannelMsg::Data { data } = msg {
                bytes += data.len();
            }
        }
        (bytes, started.elapsed())
    }

    /// `tasks` tasks each running `calls` execs of `true` on this one
    /// connection, at most `cap` channels open at once: calls per second.
    pub async fn load(&self, tasks: usize, calls: usize, cap: usize) -> f64 {
        let slots = Semaphore::new(cap);
        let started = Instant::now();
        let each = (0..tasks).map(|_| async {
            for _ in 0..calls {
                let _slot = slots.acquire().await.unwrap();
                self.exec("true").await;
            }
        });
        futures::future::join_all(each).await;
        (tasks * calls) as f64 / started.elapsed().as_secs_f64()
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// `tasks` tasks on each of `raws`, as [`Raw::load`]: calls per second
/// over all of them.
pub async fn load_many(raws: &[Raw], tasks: usize, calls: usize, cap: usize) -> f64 {
    let started = Instant::now();
    futures::future::join_all(raws.iter().map(|r| r.load(tasks, calls, cap))).await;
    (raws.len() * tasks * calls) as f64 / started.elapsed().as_secs_f64()
}
