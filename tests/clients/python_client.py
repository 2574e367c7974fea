"""Drives mcp-ssh-session with the official Python MCP SDK over stdio, or
over streamable HTTP when the config names a `url` (and a bearer `token`).

Run by tests/all/clients.rs with the venv scripts/test makes. The test
passes everything in MCP_SSH_CLIENT_CONFIG (JSON): the server's command,
args and env, and the sshd port, user and password. This script calls every
built-in tool (the file tools too) and one third-party tool, checks each result's
structuredContent against the tool's outputSchema (the SDK checks results
that are not errors; this checks every result that has one, with
jsonschema), and prints
one JSON line per step for the Rust test to assert on. Exit status 0 means
only that the script ran to the end: the assertions are the test's.
"""

import asyncio
import contextlib
import json
import os
import sys
import time

import jsonschema
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


def emit(line):
    print(json.dumps(line), flush=True)


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def schema_error(schema, instance, is_error=False):
    """The first way `instance` breaks `schema`, or None. A tool error may
    come with text alone (the SDK does not check errors at all)."""
    if schema is None or (is_error and instance is None):
        return None
    if instance is None:
        return "no structuredContent"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    error = jsonschema.exceptions.best_match(cls(schema).iter_errors(instance))
    return None if error is None else error.message


@contextlib.asynccontextmanager
async def transport(cfg):
    """The SDK's stdio client spawning the server, or its streamable HTTP
    client on a running one."""
    if "url" in cfg:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        headers = {"Authorization": f"Bearer {cfg['token']}"} if cfg.get("token") else None
        client = create_mcp_http_client(headers=headers)
        if cfg.get("ca"):
            # HTTPS with the test's own CA: the SDK takes any configured client.
            import ssl

            import httpx2

            client = httpx2.AsyncClient(
                headers=headers,
                verify=ssl.create_default_context(cafile=cfg["ca"]),
                timeout=httpx2.Timeout(30, read=300),
            )
        async with client:
            async with streamable_http_client(cfg["url"], http_client=client) as streams:
                yield streams[0], streams[1]
    else:
        params = StdioServerParameters(command=cfg["command"], args=cfg["args"], env=cfg["env"])
        async with stdio_client(params, errlog=sys.stderr) as (read, write):
            yield read, write


async def run(cfg):
    target = {"host": "127.0.0.1", "port": cfg["port"], "username": cfg["username"]}
    marker = cfg["marker"]
    async with transport(cfg) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            emit({
                "step": "initialize",
                "protocolVersion": init.protocol_version,
                "name": init.server_info.name,
                "title": init.server_info.title,
                "instructions": init.instructions,
            })
            tools = (await session.list_tools()).tools
            schemas = {t.name: t.output_schema for t in tools}
            emit({
                "step": "tools/list",
                "tools": [
                    {
                        "name": t.name,
                        "title": t.title,
                        "annotationsTitle": t.annotations.title if t.annotations else None,
                        "description": t.description,
                        "hasOutputSchema": t.output_schema is not None,
                    }
                    for t in tools
                ],
            })
            # A check that can fail: a result that breaks its schema must be
            # caught by the same function that checks the real ones.
            broken = {"session": "s", "exit_status": "three"}
            emit({
                "step": "self-check",
                "catches_mismatch": schema_error(schemas["execute_command"], broken) is not None,
            })

            async def call(tool, args, label=None):
                try:
                    result = await session.call_tool(tool, args)
                except RuntimeError as e:
                    # The SDK's own output-schema check.
                    emit({"tool": tool, "label": label, "sdkError": str(e)})
                    raise
                line = {
                    "tool": tool,
                    "label": label,
                    "isError": bool(result.is_error),
                    "text": text_of(result),
                    "structured": result.structured_content,
                    "hasOutputSchema": schemas.get(tool) is not None,
                    "schemaError": schema_error(
                        schemas.get(tool), result.structured_content, bool(result.is_error)),
                }
                emit(line)
                return line

            creds = dict(target, password=cfg["password"])
            await call("execute_command", dict(
                creds, timeout=20, max_output_bytes=1000,
                command=f"echo {marker}; echo err-{marker} >&2; exit 3"))
            await call("list_sessions", {})
            started = await call("start_command", dict(
                target, command=f"sleep 0.2; echo job-{marker}", timeout=60))
            job = started["structured"]["job_id"]
            await call("get_command_status", {"job_id": job})
            deadline = time.monotonic() + 30
            while True:
                out = await call("get_command_output", {"job_id": job, "offset": 0}, "poll")
                if out["isError"] or out["structured"]["complete"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            await call("get_command_output", {"job_id": job, "stream": "stderr"})
            sleeper = await call("start_command", dict(
                target, command=f"echo started; sleep 300.{cfg['port']}"))
            sleeper_id = sleeper["structured"]["job_id"]
            # Stopped once it runs: a stop in its first milliseconds may not
            # find the process yet, and says so (remote_stopped null).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                early = await call("get_command_output", {"job_id": sleeper_id}, "sleeper")
                if early["isError"] or early["structured"]["data"]:
                    break
                await asyncio.sleep(0.1)
            await call("interrupt_command", {"job_id": sleeper_id})
            await call("list_commands", {})
            await call(cfg["third_party"], dict(target, path="/"))
            # The file tools, on the session the calls above opened.
            remote = cfg["remote_dir"]
            notes = f"{remote}/notes.txt"
            await call("write_file", dict(
                target, path=notes, content=f"one {marker}\n", create_parents=True))
            await call("edit_file", dict(target, path=notes, old_text="one", new_text="two"))
            await call("read_file", dict(target, path=notes))
            await call("list_directory", dict(target, path=remote))
            root = cfg["transfer_root"]
            await call("upload_file", dict(
                target, local_path=f"{root}/up.txt", remote_path=f"{remote}/up.txt"))
            await call("download_file", dict(
                target, remote_path=f"{remote}/up.txt", local_path=f"{root}/down.txt"))
            await call("reset_session", target)
            await call("close_session", target)
            await call("execute_command", dict(creds, command="true"), "reopen")
            await call("close_all_sessions", {})
            await call("execute_command", dict(target, command="true", port=str(cfg["port"])), "closed")
    emit({"step": "done"})


def main():
    asyncio.run(run(json.loads(os.environ["MCP_SSH_CLIENT_CONFIG"])))


if __name__ == "__main__":
    main()
