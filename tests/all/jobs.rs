//! Background jobs: start, status, paging by offset, the bounded ring,
//! interrupt with a verified kill, connection loss, and the per-session cap.

use std::time::{Duration, Instant};

use rmcp::model::CallToolResult;
use serde_json::{Value, json};

use crate::server::{
    Server, exec_args, password_args, remote_running, structured, text, tool_error, wait_until,
};
use crate::sshd::{KEY_PASSPHRASE, Sshd, TEST_PASSWORD};

async fn start(server: &Server, sshd: &Sshd, command: &str) -> String {
    let res = server.call("start_command", exec_args(sshd, command)).await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    structured(&res)["job_id"].as_str().unwrap().to_string()
}

async fn status(server: &Server, id: &str) -> Value {
    let res = server
        .call("get_command_status", json!({"job_id": id}))
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    structured(&res).clone()
}

/// Polls until the job leaves `running`; returns its final status.
pub(crate) async fn wait_done(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(server, id).await;
        if s["state"] != "running" {
            return s;
        }
        assert!(Instant::now() < deadline, "job {id} still running: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read(server: &Server, id: &str, offset: u64, max: u32) -> CallToolResult {
    let res = server
        .call(
            "get_command_output",
            json!({"job_id": id, "offset": offset, "max_bytes": max}),
        )
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    res
}

#[tokio::test]
async fn a_job_returns_at_once_and_reports_how_it_ended() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let started = Instant::now();
    let id = start(&server, &sshd, "sleep 1; echo done; exit 7").await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "start waited for the command"
    );
    assert_eq!(status(&server, &id).await["state"], "running");
    let s = wait_done(&server, &id).await;
    assert_eq!(s["state"], "exited");
    assert_eq!(s["exit_status"], 7);
    assert_eq!(s["stdout_bytes"], 5);
    let out = read(&server, &id, 0, 1000).await;
    assert_eq!(structured(&out)["data"], "done\n");
    assert_eq!(structured(&out)["complete"], true);
}

#[tokio::test]
async fn output_pages_by_offset_without_rereading() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let id = start(&server, &sshd, "seq 1 20000").await;
    wait_done(&server, &id).await;
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    let (mut got, mut offset, mut pages) = (String::new(), 0u64, 0);
    loop {
        let page = read(&server, &id, offset, 10_000).await;
        let s = structured(&page);
        assert_eq!(s["offset"], offset);
        assert_eq!(s["dropped"], 0);
        got.push_str(s["data"].as_str().unwrap());
        offset = s["next_offset"].as_u64().unwrap();
        pages += 1;
        if s["complete"] == true {
            break;
        }
        assert!(pages < 100, "paging does not end");
    }
    assert_eq!(pages, expected.len().div_ceil(10_000));
    assert!(got == expected, "paged output differs");
}

#[tokio::test]
async fn output_that_is_not_utf8_is_paged_with_replacement_characters() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    // Valid text, a lone continuation byte, an invalid lead byte, and a
    // two-byte character cut by the end of the page.
    let id = start(&server, &sshd, r"printf 'ok \200 \377 é'").await;
    wait_done(&server, &id).await;
    let whole = read(&server, &id, 0, 1000).await;
    assert_eq!(structured(&whole)["data"], "ok \u{fffd} \u{fffd} é");
    // "ok \200 \377 " is 7 bytes; the 8th is the first half of "é".
    let cut = read(&server, &id, 0, 8).await;
    let data = structured(&cut)["data"].as_str().unwrap().to_string();
    assert!(
        data.starts_with("ok \u{fffd} \u{fffd} "),
        "bad bytes not replaced: {data:?}"
    );
    assert!(
        !data.contains('é'),
        "a cut character was completed: {data:?}"
    );
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_output_and_says_so() {
    let sshd = Sshd::start();
    let server = Server::builder()
        .arg("--job-buffer-bytes")
        .arg("65536")
        .spawn()
        .await;
    let id = start(&server, &sshd, "seq 1 100000").await;
    let s = wait_done(&server, &id).await;
    let total = s["stdout_bytes"].as_u64().unwrap();
    assert_eq!(total, 588_895);
    let page = read(&server, &id, 0, 100_000).await;
    let c = structured(&page);
    assert_eq!(c["dropped"], total - 65536);
    assert_eq!(c["offset"], total - 65536);
    assert!(c["data"].as_str().unwrap().ends_with("\n99999\n100000\n"));
    assert!(text(&page).contains(&format!("{} earlier bytes were dropped", total - 65536)));
}

#[tokio::test]
async fn interrupt_stops_the_job_and_its_children() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let (a, b) = (
        format!("sleep 11{}", sshd.port()),
        format!("sleep 12{}", sshd.port()),
    );
    let id = start(&server, &sshd, &format!("{a} & {b}")).await;
    wait_until("the job runs", || remote_running(&a) && remote_running(&b)).await;
    let res = server
        .call("interrupt_command", json!({"job_id": id}))
        .await;
    let s = structured(&res);
    assert_eq!(s["state"], "killed", "{}", text(&res));
    assert_eq!(s["remote_stopped"], true);
    assert!(
        !remote_running(&a) && !remote_running(&b),
        "a child survived"
    );
    assert!(text(&res).contains("verified"));
}

/// An agent that changes its mind at once: the interrupt may arrive before
/// the command has said who it is, and the stop is still verified.
#[tokio::test]
async fn an_interrupt_right_after_the_start_is_still_verified() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    // A first call opens the session, so the job starts at once.
    let res = server
        .call("execute_command", exec_args(&sshd, "true"))
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    for round in 0..5 {
        let marker = format!("sleep 13{}{round}", sshd.port());
        let id = start(&server, &sshd, &format!("{marker} & {marker}; wait")).await;
        let res = server
            .call("interrupt_command", json!({"job_id": id}))
            .await;
        let s = structured(&res);
        assert_eq!(s["state"], "killed", "{}", text(&res));
        assert_eq!(s["remote_stopped"], true, "round {round}: {}", text(&res));
        assert!(!remote_running(&marker), "round {round}: a child survived");
    }
}

#[tokio::test]
async fn a_job_whose_connection_dies_is_lost_and_keeps_its_output() {
    let mut sshd = Sshd::start();
    let server = Server::start().await;
    let id = start(&server, &sshd, "echo before; sleep 300").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&server, &id).await["stdout_bytes"] != 7 {
        assert!(Instant::now() < deadline, "no output");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sshd.restart();
    let s = wait_done(&server, &id).await;
    assert_eq!(s["state"], "lost", "{s}");
    assert!(s["exit_status"].is_null());
    let out = read(&server, &id, 0, 100).await;
    assert_eq!(structured(&out)["data"], "before\n");
}

#[tokio::test]
async fn jobs_are_capped_per_session_and_never_starve_execute_command() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(start(&server, &sshd, &format!("sleep 13{}{i}", sshd.port())).await);
    }
    let res = server.call("start_command", exec_args(&sshd, "true")).await;
    let msg = tool_error(&res);
    assert!(msg.contains("already runs 4 background jobs"), "{msg}");
    // Four jobs hold four channels; commands still get theirs.
    let res = server.exec(&sshd, "echo free").await;
    assert_eq!(structured(&res)["stdout"], "free\n");
    let listed = server.call("list_commands", json!({})).await;
    assert_eq!(structured(&listed)["jobs"].as_array().unwrap().len(), 4);
    for id in &ids {
        server
            .call("interrupt_command", json!({"job_id": id}))
            .await;
    }
}

#[tokio::test]
async fn an_unknown_job_id_is_a_clear_error() {
    let server = Server::start().await;
    for tool in ["get_command_status", "interrupt_command"] {
        let res = server.call(tool, json!({"job_id": "job-424242"})).await;
        let msg = tool_error(&res);
        assert!(msg.contains("no job \"job-424242\""), "{msg}");
    }
    let res = server
        .call(
            "get_command_output",
            json!({"job_id": "nope", "stream": "stderr"}),
        )
        .await;
    tool_error(&res);
    let res = server.call("list_commands", json!({})).await;
    assert_eq!(text(&res), "No background jobs");
}

#[tokio::test]
async fn closing_a_session_stops_its_jobs_instead_of_waiting_for_them() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let sleeper = format!("sleep 4716.{}", sshd.port());
    // No timeout: before, the close waited for this job forever, keeping
    // the connection and its credentials.
    let id = start(&server, &sshd, &sleeper).await;
    wait_until("the job runs", || remote_running(&sleeper)).await;
    let res = server
        .call(
            "close_session",
            json!({"host": "127.0.0.1", "port": sshd.port(), "username": crate::sshd::TEST_USER}),
        )
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    let done = wait_done(&server, &id).await;
    assert_eq!(done["state"], "killed", "{done}");
    assert_eq!(done["remote_stopped"], true, "{done}");
    assert!(!remote_running(&sleeper));
    // The connection itself went away: sshd saw the client disconnect.
    wait_until("sshd sees the session closed", || {
        sshd.log().contains("Received disconnect") || sshd.log().contains("Disconnected from")
    })
    .await;
}

/// A call with other credentials would replace the session, and so stop
/// its jobs: it is refused while one runs, and the job goes on.
#[tokio::test]
async fn other_credentials_do_not_stop_a_sessions_jobs_unasked() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server
        .call(
            "start_command",
            password_args(&sshd, TEST_PASSWORD, "sleep 30"),
        )
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    let id = structured(&res)["job_id"].as_str().unwrap().to_string();
    let msg = tool_error(
        &server
            .call("execute_command", exec_args(&sshd, "echo key"))
            .await,
    );
    assert!(
        msg.contains("1 background job(s) running") && msg.contains("nothing was run"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&server, &id).await["state"], "running");
    // Without credentials, the session is used as it is.
    let mut bare = exec_args(&sshd, "echo bare");
    bare.as_object_mut().unwrap().remove("key_filename");
    let res = server.call("execute_command", bare).await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    // Once the job is stopped, the other credentials replace the session.
    let res = server
        .call("interrupt_command", json!({"job_id": id}))
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    wait_done(&server, &id).await;
    let res = server
        .call("execute_command", exec_args(&sshd, "echo key"))
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
}

/// A job started on a session while a call with other credentials is
/// connecting (decrypting its key, authenticating) to replace it: the job
/// runs on, whichever session it landed on.
#[tokio::test]
async fn a_job_started_while_other_credentials_connect_runs_on() {
    let sshd = Sshd::start();
    let server = std::sync::Arc::new(Server::start().await);
    let opened = server
        .call(
            "execute_command",
            password_args(&sshd, TEST_PASSWORD, "true"),
        )
        .await;
    assert_eq!(opened.is_error, Some(false), "{}", text(&opened));
    let mut other = exec_args(&sshd, "echo other");
    other["key_filename"] = json!(sshd.encrypted_key());
    other["passphrase"] = json!(KEY_PASSPHRASE);
    let replacing = {
        let server = server.clone();
        tokio::spawn(async move { server.call("execute_command", other).await })
    };
    // The key's decryption (bcrypt, in a debug build) takes far longer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut bare = exec_args(&sshd, "sleep 30");
    bare.as_object_mut().unwrap().remove("key_filename");
    let res = server.call("start_command", bare).await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
    let id = structured(&res)["job_id"].as_str().unwrap().to_string();
    let other = replacing.await.unwrap();
    eprintln!("the other credentials' call: {}", text(&other));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = status(&server, &id).await;
    assert_eq!(s["state"], "running", "{s}");
    let res = server
        .call("interrupt_command", json!({"job_id": id}))
        .await;
    assert_eq!(res.is_error, Some(false), "{}", text(&res));
}
