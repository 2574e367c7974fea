//! One exec channel of the fallback, streamed both ways: a fixed script
//! and its argv words through the launcher (so no path is ever spliced
//! into a shell line), data fed to stdin with the channel's flow control,
//! stdout handed to a sink as it arrives. A cancel or the deadline stops
//! the remote process group the way `exec` does, through the connection's
//! stopper.

use std::future::Future;

use russh::client::{Handler, Msg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::io::AsyncRead;

use super::common::{self, Ctl, Feed};
use super::shell::Shell;
use super::{CHUNK, FileError};
use crate::ssh::SshError;
use crate::ssh::exec::Remote;
use crate::ssh::kill::{self, Victim};
use crate::ssh::launch::{self, Marker, Payload, Reach};
use crate::ssh::manager::FileChannel;

/// Stderr kept, from the end: enough for a tool's complaint.
const STDERR_MAX: usize = 4096;

/// Where stdout goes.
pub(crate) trait Sink {
    fn data(&mut self, data: &[u8]) -> impl Future<Output = Result<(), FileError>>;
}

/// Keeps stdout in memory, up to a limit (the caller's cap, plus the
/// script's own lines).
pub(crate) struct Collect {
    pub(crate) out: Vec<u8>,
    pub(crate) limit: usize,
}

impl Sink for Collect {
    async fn data(&mut self, data: &[u8]) -> Result<(), FileError> {
        if self.out.len() + data.len() > self.limit {
            return Err(FileError::TooLarge(format!(
                "the remote output passed {} bytes",
                self.limit
            )));
        }
        self.out.extend_from_slice(data);
        Ok(())
    }
}

/// How the script ended.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) status: Option<u32>,
    pub(crate) stderr: String,
}

/// What the script wrote to stderr: after its mark (see
/// [`super::scripts::PRELUDE`]), not what the login shell's start-up files
/// wrote before it. All of it when the mark is not there (the script's own
/// output pushed it out of what is kept, or it never started).
pub(super) fn scripts_stderr(stderr: &[u8]) -> &[u8] {
    const MARK: &[u8] = b"\x1emcp-ssh-stderr\x1e";
    match memchr::memmem::rfind(stderr, MARK) {
        Some(at) => &stderr[at + MARK.len()..],
        None => stderr,
    }
}

/// A script for `/bin/sh -c` and its arguments, as one argv.
pub(crate) fn argv(script: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "mcp-ssh-files".to_string(),
    ];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// Runs `argv` on a fresh exec channel of the target's session, feeding
/// `stdin` (then end-of-file) and handing stdout to `sink`.
pub(crate) async fn run<R: AsyncRead + Unpin, S: Sink>(
    on: &Shell<'_>,
    what: &str,
    argv: &[String],
    mut stdin: Option<&mut Feed<R>>,
    sink: &mut S,
    ctl: &Ctl,
) -> Result<Ended, FileError> {
    let session = on.session;
    launch::check(Payload::Argv(argv)).map_err(SshError::InvalidArgument)?;
    let FileChannel { channel, conn } = on
        .manager
        .file_channel(on.target, ctl.deadline, &ctl.cancel)
        .await?;
    let remote = conn.remote();
    let packet = match channel.writable_packet_size().await {
        0 => 32 * 1024,
        n => n,
    };
    let server = launch::Server {
        shell: remote.shell.get().map(String::as_str),
        openssh: remote.openssh,
        packet,
    };
    let launch = launch::build(Payload::Argv(argv), &server);
    if launch.stdin.is_some() && stdin.is_some() {
        // The launcher would read its words from stdin up to end-of-file,
        // leaving none for the data.
        return Err(SshError::InvalidArgument(format!(
            "{session}: {what}: the path is too long for this server's exec fallback"
        ))
        .into());
    }
    let (mut rd, wr) = channel.split();
    wr.exec(true, launch.line.as_bytes())
        .await
        .map_err(|e| SshError::Channel(format!("{session}: {what}: could not start: {e}")))?;
    // Boxed to be dropped before a stop (see `exec::drive`): left unpolled,
    // a writer parked on the window would stall the whole connection.
    let mut feeder = Box::pin(async {
        if let Some(words) = &launch.stdin {
            wr.data(&words[..]).await.map_err(|_| None)?;
        }
        if let Some(feed) = stdin.as_deref_mut() {
            while let Some(chunk) = feed.next(CHUNK).await.map_err(Some)? {
                wr.data_bytes(chunk).await.map_err(|_| None)?;
            }
        }
        wr.eof().await.map_err(|_| None)
    });
    let mut feeding = true;
    // What the login shell's start-up files print comes before the
    // marker: not the script's answer.
    let mut marker = Marker::after(&launch.nonce);
    let mut status = None;
    let mut signal = None;
    let mut stderr: Vec<u8> = Vec::new();
    let mut failure: Option<FileError> = None;
    loop {
        tokio::select! {
            biased;
            () = ctl.cancel.cancelled() => {
                failure = Some(common::cancelled(session, what));
                break;
            }
            () = tokio::time::sleep_until(ctl.deadline) => {
                failure = Some(common::timed_out(session, what));
                break;
            }
            r = &mut feeder, if feeding => {
                feeding = false;
                // A send error means the channel closed: the exit status
                // says why. A local read error ends the call.
                if let Err(Some(e)) = r {
                    failure = Some(e);
                    break;
                }
            }
            m = rd.wait() => match m {
                Some(ChannelMsg::Data { data }) => {
                    let own = marker.feed(&data);
                    if let Err(e) = sink.data(&own).await {
                        failure = Some(e);
                        break;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    stderr.extend_from_slice(&data);
                    if stderr.len() > STDERR_MAX {
                        stderr.drain(..stderr.len() - STDERR_MAX);
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    signal = Some(crate::ssh::exec::signal_name(&signal_name));
                }
                Some(ChannelMsg::Failure) => {
                    return Err(SshError::Channel(format!(
                        "{session}: {what}: the server refused to run the command"
                    ))
                    .into());
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    if let Some(started) = marker.started() {
        let _ = remote.shell.set(started.shell.clone());
    }
    drop(feeder);
    if let Some(e) = failure {
        stop(&remote, &mut rd, &wr, &mut marker, status).await;
        return Err(e);
    }
    let held = marker.flush();
    sink.data(&held).await?;
    let stderr = String::from_utf8_lossy(scripts_stderr(&stderr)).into_owned();
    if status.is_none() {
        if let Some(sig) = signal {
            return Err(SshError::Other(format!(
                "{session}: {what}: the remote command was killed by signal {sig}"
            ))
            .into());
        }
        conn.mark_broken();
        return Err(SshError::ConnectionLost(format!(
            "{session}: {what}: the connection was lost; the operation may be incomplete"
        ))
        .into());
    }
    Ok(Ended { status, stderr })
}

/// Stops the remote side of a script the call gave up on: a `cat` writing
/// a temporary file must not live on after the call. The channel is read
/// all along: russh hands it what the server still sends (output, the
/// end) with a wait, and a full queue would stall the connection the stop
/// runs on.
async fn stop<H: Handler + 'static>(
    remote: &Remote<'_, H>,
    rd: &mut ChannelReadHalf,
    wr: &ChannelWriteHalf<Msg>,
    marker: &mut Marker,
    mut status: Option<u32>,
) {
    let bound = tokio::time::Instant::now() + kill::STOP_BOUND;
    // A script stopped as soon as it was sent may not have said its PID
    // yet. TERM reaches its login shell's group at once (on OpenSSH, which
    // makes the shell lead it; Dropbear ignores the request): a script
    // still behind a slow rc file never runs, instead of running its
    // course while we wait, and one already running removes its temporary
    // file on the way out (KILL would leave it for a clean-up that must
    // sit through the rc file too). Its PID, if it comes, is still waited
    // for: a script in a session of its own (Dropbear) is out of that
    // signal's reach, and would create its temporary file after the
    // caller removed it.
    let mut open = true;
    if marker.started().is_none() && status.is_none() {
        let _ = wr.signal(Sig::TERM).await;
        let wait = tokio::time::sleep(kill::MARKER_WAIT);
        tokio::pin!(wait);
        while open && marker.started().is_none() && status.is_none() {
            tokio::select! {
                () = &mut wait => break,
                m = rd.wait() => match m {
                    Some(ChannelMsg::Data { data }) => {
                        let _ = marker.feed(&data);
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                    Some(_) => {}
                    None => open = false,
                },
            }
        }
    }
    let victim = marker.started().and_then(|s| match s.reach {
        Reach::Session => Some(Victim::Group(s.pid)),
        Reach::Tree => Some(Victim::Tree(s.pid)),
        Reach::Unknown => None,
    });
    match victim {
        Some(v) if status.is_none() => {
            let kill =
                tokio::time::timeout_at(bound, remote.stopper.stop(remote.handle.clone(), v));
            tokio::pin!(kill);
            loop {
                tokio::select! {
                    _ = &mut kill => break,
                    m = rd.wait(), if open => open = m.is_some(),
                }
            }
        }
        _ => {
            let _ = wr.signal(Sig::KILL).await;
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), wr.close()).await;
}
