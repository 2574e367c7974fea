//! Real MCP clients against the real binary: the MCP Inspector CLI and the
//! official Python SDK, each at the version pinned in `tests/clients/` and
//! installed by `scripts/test`, which tells the tests where through
//! [`INSPECTOR_VAR`] and [`PYTHON_VAR`]. Without them these tests fail
//! rather than skip: a client that is not run is a client that breaks
//! unseen.
//!
//! Each client spawns the server itself, with the HOME, plugin dir and
//! config a [`Builder`] sets up, against a real sshd. The Inspector CLI
//! starts a new server for every call (it does one method per run), so
//! what spans calls (sessions, jobs) is exercised through the Python SDK,
//! which keeps one connection for its whole run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::server::{BIN, BUILT_IN_TOOLS, Builder, Leftovers, Server, guest_wasm, install_plugin};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

/// The Inspector CLI's entry point (`.../clients/cli/build/index.js`).
const INSPECTOR_VAR: &str = "MCP_SSH_INSPECTOR";
/// The `node` that runs it (the one on PATH if unset).
const NODE_VAR: &str = "MCP_SSH_NODE";
/// The Python of the venv that holds the pinned `mcp` SDK.
const PYTHON_VAR: &str = "MCP_SSH_CLIENT_PYTHON";

/// Every built-in tool: each client must call each of them.
const BUILT_IN: [&str; 16] = BUILT_IN_TOOLS;

/// Tool arguments as `--tool-arg` pairs.
type Args = [(&'static str, String)];

/// The third-party component, installed from the example.
pub(crate) const THIRD_PARTY: &str = "disk_usage";

pub(crate) fn installed(var: &str) -> PathBuf {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(path) if path.exists() => path,
        Some(path) => panic!(
            "{var}={} does not exist: run the suite through scripts/test, which installs \
             the pinned MCP clients of tests/clients/",
            path.display()
        ),
        None => panic!(
            "{var} is not set: run the suite through scripts/test, which installs the pinned \
             MCP clients of tests/clients/ and sets it"
        ),
    }
}

/// The transfer root of a server from [`with_third_party`]: a directory
/// in its home, made on first use.
fn transfer_root(builder: &Builder) -> PathBuf {
    let root = builder.home().join("transfers");
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// A directory the test user may write on the host, removed on drop.
struct RemoteDir(PathBuf);

impl RemoteDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for RemoteDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server with the disk-usage example installed and granted for `sshd`,
/// and a transfer root for the file tools.
pub(crate) fn with_third_party(sshd: &Sshd) -> Builder {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../guest-tools/examples/disk-usage/disk_usage.toml"),
    )
    .unwrap();
    let grant = format!(
        "[plugins.disk_usage]\nhosts = [\"127.0.0.1\"]\nusers = [\"{TEST_USER}\"]\n\
         commands = [[\"df\", \"-P\", \"-k\", \"*\"]]\nports = [{}]\n",
        sshd.port()
    );
    let builder = install_plugin(
        Server::builder(),
        &guest_wasm(THIRD_PARTY),
        THIRD_PARTY,
        Some(&manifest),
        &grant,
    );
    let root = transfer_root(&builder);
    builder
        .arg("--transfer-root")
        .arg(root.display().to_string())
}

/// The Inspector CLI, spawning the server as `builder` would.
struct Inspector {
    cli: PathBuf,
    builder: Builder,
}

impl Inspector {
    fn new(builder: Builder) -> Self {
        Self {
            cli: installed(INSPECTOR_VAR),
            builder,
        }
    }

    /// Runs one Inspector method; its JSON answer (`{"result": ...}` or
    /// `{"error": ...}`).
    fn run(&self, method: &[String]) -> Value {
        parse_answer(&self.output(method))
    }

    fn output(&self, method: &[String]) -> Output {
        let (args, env) = self.builder.args_and_env();
        let node = std::env::var_os(NODE_VAR).unwrap_or_else(|| "node".into());
        let mut cmd = Command::new(node);
        // A first start in a debug build compiles the components (tens of
        // seconds on a busy machine); later ones load them from the cache.
        cmd.arg(&self.cli)
            .args(["--format", "json", "--connect-timeout", "180000"]);
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.args(method).arg("--").arg(BIN).args(args);
        cmd.stdin(Stdio::null())
            .output()
            .expect("node runs: scripts/test installs it")
    }

    /// `tools/list` with `--strict`: the Inspector's schema portability
    /// check fails the run on any error-severity problem.
    fn list_tools(&self) -> Vec<Value> {
        let out = self.output(&["--strict", "--method", "tools/list"].map(String::from));
        assert!(
            out.status.success(),
            "the Inspector found tool schemas clients cannot use ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let answer = parse_answer(&out);
        answer["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools: {answer}"))
            .clone()
    }

    /// `tools/call` with `--tool-arg key=value` pairs, as a user types them.
    fn call(&self, tool: &str, args: &[(&str, String)]) -> Value {
        let mut method: Vec<String> = ["--method", "tools/call", "--tool-name", tool]
            .map(String::from)
            .to_vec();
        for (k, v) in args {
            method.push("--tool-arg".into());
            method.push(format!("{k}={v}"));
        }
        let answer = self.run(&method);
        answer
            .get("result")
            .unwrap_or_else(|| panic!("{tool}: no result: {answer}"))
            .clone()
    }
}

fn parse_answer(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    [&stdout, &stderr]
        .iter()
        .flat_map(|s| s.lines().rev())
        .find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        })
        .or_else(|| serde_json::from_str(stdout.trim()).ok())
        .unwrap_or_else(|| {
            panic!(
                "the Inspector printed no JSON answer ({}):\n{stdout}\n{stderr}",
                out.status
            )
        })
}

fn result_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn target(sshd: &Sshd) -> Vec<(&'static str, String)> {
    vec![
        ("host", "127.0.0.1".into()),
        ("port", sshd.port().to_string()),
        ("username", TEST_USER.into()),
    ]
}

fn with(
    mut args: Vec<(&'static str, String)>,
    more: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    args.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    args
}

#[test]
fn the_inspector_cli_lists_every_tool_with_a_title() {
    let sshd = Sshd::start();
    let inspector = Inspector::new(with_third_party(&sshd));
    let tools = inspector.list_tools();
    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort();
    let mut expected = BUILT_IN.to_vec();
    expected.push(THIRD_PARTY);
    expected.sort();
    assert_eq!(names, expected);
    for tool in tools
        .iter()
        .filter(|t| BUILT_IN.contains(&t["name"].as_str().unwrap()))
    {
        let title = tool["title"].as_str().unwrap_or_default();
        assert!(
            !title.is_empty() && title != tool["name"],
            "no human-readable title: {tool}"
        );
    }
}

/// The command line of issue 11, which failed with "port: the value is not
/// of types null, integer" before schemas were plain.
#[test]
fn the_inspector_cli_runs_execute_command_with_port_timeout_and_output_limit_as_tool_args() {
    let sshd = Sshd::start();
    let inspector = Inspector::new(Server::builder());
    let marker = format!("mcpssh-inspector-{}", sshd.port());
    let args = with(
        target(&sshd),
        &[
            ("password", TEST_PASSWORD),
            ("timeout", "20"),
            ("max_output_bytes", "1000"),
            ("command", &format!("echo {marker}; exit 3")),
        ],
    );
    let result = inspector.call("execute_command", &args);
    assert_eq!(result["isError"], false, "{result}");
    let out = &result["structuredContent"];
    assert_eq!(out["exit_status"], 3, "{result}");
    assert_eq!(out["stdout"], format!("{marker}\n"), "{result}");
    assert_eq!(out["timed_out"], false, "{result}");
    assert!(result_text(&result).contains(&marker), "{result}");

    // The output limit really is the number the Inspector sent.
    let args = with(
        target(&sshd),
        &[
            ("password", TEST_PASSWORD),
            ("max_output_bytes", "4"),
            ("command", "printf 1234567890"),
        ],
    );
    let out = inspector.call("execute_command", &args)["structuredContent"].clone();
    assert_eq!(out["stdout_bytes"], 10, "{out}");
    assert_eq!(out["stdout_truncated"], true, "{out}");
}

/// Each Inspector call is a new server: a job or session from one call is
/// unknown to the next, and the tools say so as tool results.
#[test]
fn the_inspector_cli_calls_every_built_in_tool_and_a_third_party_one() {
    let sshd = Sshd::start();
    let builder = with_third_party(&sshd);
    // Calls without credentials (disk_usage has none) log in with the
    // server's default key, as they would for a user with ~/.ssh/id_ed25519.
    let key = builder.home().join(".ssh").join("id_ed25519");
    std::fs::copy(sshd.client_key(), &key).unwrap();
    let inspector = Inspector::new(builder);
    let marker = format!("mcpssh-inspector-job-{}", sshd.port());
    let mut called = Vec::new();
    let mut call = |tool: &'static str, args: &[(&'static str, String)]| {
        called.push(tool);
        inspector.call(tool, args)
    };

    let started = call(
        "start_command",
        &with(
            target(&sshd),
            &[
                ("password", TEST_PASSWORD),
                ("command", &format!("echo {marker}")),
            ],
        ),
    );
    assert_eq!(started["isError"], false, "{started}");
    let job = started["structuredContent"]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(result_text(&started).contains(&job), "{started}");
    for tool in [
        "get_command_status",
        "get_command_output",
        "interrupt_command",
    ] {
        let res = call(tool, &[("job_id", job.clone())]);
        assert_eq!(res["isError"], true, "{tool}: {res}");
        assert!(result_text(&res).contains(&job), "{tool}: {res}");
    }
    let jobs = call("list_commands", &[]);
    assert_eq!(jobs["structuredContent"], json!({"jobs": []}), "{jobs}");

    let exec = call(
        "execute_command",
        &with(target(&sshd), &[("command", "echo via-key")]),
    );
    assert_eq!(exec["structuredContent"]["stdout"], "via-key\n", "{exec}");
    let sessions = call("list_sessions", &[]);
    assert_eq!(
        sessions["structuredContent"],
        json!({"sessions": []}),
        "{sessions}"
    );
    let reset = call("reset_session", &target(&sshd));
    assert_eq!(reset["structuredContent"]["reset"], false, "{reset}");
    let closed = call("close_session", &target(&sshd));
    assert_eq!(closed["structuredContent"]["closed"], false, "{closed}");
    let all = call("close_all_sessions", &[]);
    assert_eq!(all["structuredContent"]["closed"], 0, "{all}");

    let df = call(THIRD_PARTY, &with(target(&sshd), &[("path", "/")]));
    assert_eq!(df["isError"], false, "{df}");
    assert!(result_text(&df).starts_with("Filesystem"), "{df}");

    // The file tools, each on a server of its own, with strings for every
    // argument as a user types them (`create_parents=true` included).
    let remote = RemoteDir::new(&format!("mcpssh-inspector-files-{}", sshd.port()));
    let notes = format!("{}/notes.txt", remote.path());
    let file_call = |call: &mut dyn FnMut(&'static str, &Args) -> Value,
                     tool: &'static str,
                     more: &[(&'static str, &str)]| {
        let args = with(with(target(&sshd), &[("password", TEST_PASSWORD)]), more);
        let res = call(tool, &args);
        assert_eq!(res["isError"], false, "{tool}: {res}");
        res["structuredContent"].clone()
    };
    let written = file_call(
        &mut call,
        "write_file",
        &[
            ("path", &notes),
            ("content", &format!("one {marker}\n")),
            ("create_parents", "true"),
            ("mode", "0640"),
        ],
    );
    assert_eq!(written["created"], true, "{written}");
    let edited = file_call(
        &mut call,
        "edit_file",
        &[("path", &notes), ("old_text", "one"), ("new_text", "two")],
    );
    assert_eq!(edited["replacements"], 1, "{edited}");
    let read = file_call(
        &mut call,
        "read_file",
        &[("path", &notes), ("offset", "0"), ("length", "100")],
    );
    assert_eq!(read["content"], format!("two {marker}\n"), "{read}");
    let listed = file_call(&mut call, "list_directory", &[("path", &remote.path())]);
    assert_eq!(listed["entries"][0]["name"], "notes.txt", "{listed}");
    let root = transfer_root(&inspector.builder);
    std::fs::write(root.join("up.txt"), format!("up {marker}\n")).unwrap();
    let up = format!("{}/up.txt", remote.path());
    let local_up = root.join("up.txt").display().to_string();
    let local_down = root.join("down.txt").display().to_string();
    let uploaded = file_call(
        &mut call,
        "upload_file",
        &[("local_path", &local_up), ("remote_path", &up)],
    );
    assert_eq!(uploaded["remote_verified"], true, "{uploaded}");
    file_call(
        &mut call,
        "download_file",
        &[("remote_path", &up), ("local_path", &local_down)],
    );
    assert_eq!(
        std::fs::read_to_string(root.join("down.txt")).unwrap(),
        format!("up {marker}\n")
    );

    for tool in BUILT_IN {
        assert!(called.contains(&tool), "{tool} was not called");
    }
}

/// One line of `python_client.py`'s report.
fn line_for<'a>(lines: &'a [Value], tool: &str, label: Option<&str>) -> &'a Value {
    lines
        .iter()
        .rev()
        .find(|l| l["tool"] == tool && l["label"].as_str() == label)
        .unwrap_or_else(|| panic!("no call of {tool} ({label:?}) in the report"))
}

#[test]
fn the_python_sdk_calls_every_tool_and_each_result_matches_its_output_schema() {
    let python = installed(PYTHON_VAR);
    let sshd = Sshd::start();
    let builder = with_third_party(&sshd);
    let (args, env) = builder.args_and_env();
    let marker = format!("mcpssh-python-{}", sshd.port());
    let remote = RemoteDir::new(&format!("mcpssh-python-files-{}", sshd.port()));
    let root = transfer_root(&builder);
    let config = json!({
        "command": BIN,
        "args": args,
        "env": env.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(),
        "port": sshd.port(),
        "username": TEST_USER,
        "password": TEST_PASSWORD,
        "marker": marker,
        "third_party": THIRD_PARTY,
        "remote_dir": remote.path(),
        "transfer_root": root,
    });
    std::fs::write(root.join("up.txt"), format!("up {marker}\n")).unwrap();
    // The job it interrupts, should the test fail before that.
    let _sleeper = Leftovers::new(TEST_USER, &format!("sleep 300.{}", sshd.port()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/python_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("MCP_SSH_CLIENT_CONFIG", config.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("{stdout}\n{stderr}");
    assert!(out.status.success(), "python_client.py failed:\n{report}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}\n{report}")))
        .collect();
    let step = |name: &str| {
        lines
            .iter()
            .find(|l| l["step"] == name)
            .unwrap_or_else(|| panic!("no {name} step:\n{report}"))
    };
    assert_eq!(step("initialize")["protocolVersion"], "2025-11-25");
    assert_eq!(step("initialize")["name"], "mcp-ssh-session");
    assert_eq!(step("self-check")["catches_mismatch"], true);
    for tool in step("tools/list")["tools"].as_array().unwrap() {
        if BUILT_IN.contains(&tool["name"].as_str().unwrap()) {
            assert!(tool["title"].is_string(), "no title: {tool}");
            assert!(tool["hasOutputSchema"] == true, "no output schema: {tool}");
        }
    }
    step("done");

    for line in lines.iter().filter(|l| l.get("tool").is_some()) {
        assert_eq!(line["schemaError"], Value::Null, "{line}");
        if line["hasOutputSchema"] == true && line["isError"] == false {
            assert!(line["structured"].is_object(), "{line}");
        }
    }
    for tool in BUILT_IN.iter().chain([&THIRD_PARTY]) {
        assert!(
            lines.iter().any(|l| l["tool"] == *tool),
            "{tool} was not called:\n{report}"
        );
    }

    let exec = line_for(&lines, "execute_command", None);
    assert_eq!(exec["isError"], false, "{exec}");
    assert_eq!(exec["structured"]["exit_status"], 3, "{exec}");
    assert_eq!(
        exec["structured"]["stdout"],
        format!("{marker}\n"),
        "{exec}"
    );
    assert_eq!(
        exec["structured"]["stderr"],
        format!("err-{marker}\n"),
        "{exec}"
    );
    let session = format!("{TEST_USER}@127.0.0.1:{}", sshd.port());
    assert_eq!(exec["structured"]["session"], session, "{exec}");
    let sessions = line_for(&lines, "list_sessions", None);
    assert_eq!(
        sessions["structured"]["sessions"][0]["session"], session,
        "{sessions}"
    );

    let output = line_for(&lines, "get_command_output", Some("poll"));
    assert_eq!(output["structured"]["complete"], true, "{output}");
    assert_eq!(
        output["structured"]["data"],
        format!("job-{marker}\n"),
        "{output}"
    );
    let status = line_for(&lines, "get_command_status", None);
    assert_eq!(status["isError"], false, "{status}");
    let interrupted = line_for(&lines, "interrupt_command", None);
    assert_eq!(
        interrupted["structured"]["state"], "killed",
        "{interrupted}"
    );
    assert_eq!(
        interrupted["structured"]["remote_stopped"], true,
        "{interrupted}"
    );
    let jobs = line_for(&lines, "list_commands", None);
    assert_eq!(
        jobs["structured"]["jobs"].as_array().map(Vec::len),
        Some(2),
        "{jobs}"
    );

    let df = line_for(&lines, THIRD_PARTY, None);
    assert_eq!(df["isError"], false, "{df}");
    assert!(
        df["text"].as_str().unwrap().starts_with("Filesystem"),
        "{df}"
    );

    let read = line_for(&lines, "read_file", None);
    assert_eq!(
        read["structured"]["content"],
        format!("two {marker}\n"),
        "{read}"
    );
    let edit = line_for(&lines, "edit_file", None);
    assert_eq!(edit["structured"]["replacements"], 1, "{edit}");
    let listed = line_for(&lines, "list_directory", None);
    assert_eq!(
        listed["structured"]["entries"][0]["name"], "notes.txt",
        "{listed}"
    );
    for tool in ["write_file", "upload_file", "download_file"] {
        assert_eq!(line_for(&lines, tool, None)["isError"], false);
    }
    assert_eq!(
        std::fs::read_to_string(root.join("down.txt")).unwrap(),
        format!("up {marker}\n")
    );

    let reset = line_for(&lines, "reset_session", None);
    assert_eq!(
        reset["structured"],
        json!({"session": session, "reset": false})
    );
    let closed = line_for(&lines, "close_session", None);
    assert_eq!(
        closed["structured"],
        json!({"session": session, "closed": true})
    );
    let all = line_for(&lines, "close_all_sessions", None);
    assert_eq!(all["structured"]["closed"], 1, "{all}");
    // No session is left to serve a call without credentials.
    let after = line_for(&lines, "execute_command", Some("closed"));
    assert_eq!(after["isError"], true, "{after}");
}
