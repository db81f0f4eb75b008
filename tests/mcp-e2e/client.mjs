// Drives `pyro mcp serve` with the official TypeScript MCP SDK: lists each profile's tools and
// runs a workspace flow. Prints one JSON object per step on stdout; exits 1 on any mismatch.
// Usage: node client.mjs <pyro-cli.dll> <seed-dir>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import path from "node:path";

const [cli, seedDir] = process.argv.slice(2);
// A chat host starts the server in the project it opened; host paths the model names must lie there.
const projectDir = path.dirname(seedDir);
if (!cli || !seedDir) {
  console.error("usage: node client.mjs <pyro-cli> <seed-dir>");
  process.exit(2);
}

const expected = {
  "vm-run": ["vm_list_environments", "vm_run"],
  "workspace-core": [
    "vm_run", "workspace_create", "workspace_delete", "workspace_diff", "workspace_exec", "workspace_export",
    "workspace_file_list", "workspace_file_read", "workspace_file_write", "workspace_list", "workspace_logs",
    "workspace_patch_apply", "workspace_reset", "workspace_status", "workspace_sync_push",
  ],
  "workspace-full": [
    "service_list", "service_logs", "service_start", "service_status", "service_stop",
    "shell_close", "shell_open", "shell_read", "shell_signal", "shell_write",
    "snapshot_create", "snapshot_delete", "snapshot_list", "vm_create", "vm_delete", "vm_exec",
    "vm_list_environments", "vm_network_info", "vm_reap_expired", "vm_run", "vm_start", "vm_status", "vm_stop",
    "workspace_create", "workspace_delete", "workspace_diff", "workspace_disk_export", "workspace_disk_list", "workspace_disk_read",
    "workspace_exec", "workspace_export",
    "workspace_file_list", "workspace_file_read", "workspace_file_write", "workspace_fork", "workspace_list", "workspace_logs",
    "workspace_patch_apply", "workspace_reset", "workspace_start", "workspace_status", "workspace_stop",
    "workspace_sync_push",
  ],
};

function fail(message, detail) {
  console.log(JSON.stringify({ ok: false, message, detail }));
  process.exit(1);
}

function check(condition, message, detail) {
  if (!condition) fail(message, detail);
}

async function connect(profile) {
  const transport = new StdioClientTransport({
    command: cli,
    args: ["mcp", "serve", "--profile", profile],
    cwd: projectDir,
    // The SDK passes only a few safe variables by default; pyro needs PYRO_STATE_DIR and friends.
    env: { ...process.env },
    stderr: "inherit",
  });
  const client = new Client({ name: "pyro-e2e", version: "0.0.0" });
  await client.connect(transport);
  return client;
}

async function call(client, name, args, options) {
  const result = await client.callTool({ name, arguments: args }, undefined, options);
  return result;
}

async function ok(client, name, args, options) {
  const result = await call(client, name, args, options);
  check(!result.isError, `${name} failed`, result.content);
  check(result.structuredContent && typeof result.structuredContent === "object", `${name} has no structured content`, result);
  check(result.content?.[0]?.type === "text" && result.content[0].text.length > 0, `${name} has no text content`, result);
  console.log(JSON.stringify({ step: name, structured: result.structuredContent }));
  return result.structuredContent;
}

const summary = { ok: true, profiles: {} };

for (const profile of Object.keys(expected)) {
  const client = await connect(profile);
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  check(JSON.stringify(names) === JSON.stringify(expected[profile]), `tools of ${profile}`, names);
  for (const tool of tools) {
    check(tool.description && tool.description.length > 20, `${tool.name} has no description`);
    check(tool.inputSchema?.type === "object", `${tool.name} has no input schema`);
  }
  summary.profiles[profile] = names.length;
  await client.close();
}

const client = await connect("workspace-core");
try {
  const progress = [];
  const created = await ok(client, "workspace_create", { environment: "debian:12", seed_path: seedDir, ttl_seconds: 600 },
    { onprogress: (p) => progress.push(p), timeout: 600000, resetTimeoutOnProgress: true });
  const id = created.workspace_id;
  check(/^[0-9a-f]{12}$/.test(id) && created.state === "running", "workspace_create result", created);
  check(progress.length > 0 && progress.every((p, i) => p.progress === i + 1), "progress values increase one by one, in order", progress);
  check(progress.some((p) => p.message?.startsWith("[workspace-create] phase=seed")), "progress notifications for workspace_create", progress);
  summary.progress = progress.length;

  const exec = await ok(client, "workspace_exec", { workspace_id: id, command: "cat note.txt && echo \"cwd=$(pwd)\"" });
  check(exec.exit_code === 0 && exec.stdout === "hello from the seed\ncwd=/workspace\n", "workspace_exec output", exec);

  await ok(client, "workspace_file_write", { workspace_id: id, path: "src/new.txt", text: "written by the TypeScript client\n" });

  const patch = [
    "--- a/note.txt",
    "+++ b/note.txt",
    "@@ -1 +1 @@",
    "-hello from the seed",
    "+hello from the patch",
    "",
  ].join("\n");
  const patched = await ok(client, "workspace_patch_apply", { workspace_id: id, patch });
  check(patched.modified === 1 && patched.files.includes("note.txt"), "workspace_patch_apply result", patched);

  const diff = await ok(client, "workspace_diff", { workspace_id: id });
  const changes = Object.fromEntries(diff.changes.map((c) => [c.path, c.change]));
  check(changes["note.txt"] === "modified" && changes["src/new.txt"] === "added", "workspace_diff changes", diff.changes);
  check(diff.patch.includes("+hello from the patch"), "workspace_diff patch", diff.patch);

  const failed = await call(client, "workspace_status", { workspace_id: "000000000000" });
  check(failed.isError === true && failed.content[0].text.includes("workspace_not_found"), "unknown workspace is an error result", failed);

  const reset = await ok(client, "workspace_reset", { workspace_id: id }, { timeout: 600000 });
  check(reset.state === "running" && reset.reset_count === 1, "workspace_reset result", reset);
  const after = await ok(client, "workspace_exec", { workspace_id: id, command: "cat note.txt; ls src" });
  check(after.stdout === "hello from the seed\napp.py\n", "reset restored the baseline", after);

  const deleted = await ok(client, "workspace_delete", { workspace_id: id });
  check(deleted.deleted === true, "workspace_delete result", deleted);
  summary.workspace_id = id;
} finally {
  await client.close();
}

console.log(JSON.stringify(summary));
