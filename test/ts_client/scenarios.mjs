// The official MCP TypeScript SDK client (what Claude Desktop, Claude Code, Cursor and the
// MCP Inspector are built on) driving a skill_lanes gateway through every answer shape.
//
// Usage: node scenarios.mjs '<json>' where json is
//   {"transport": "stdio", "command": "...", "args": [...], "cwd": "..."}  or
//   {"transport": "http", "url": "http://127.0.0.1:PORT/mcp"}
// Prints one JSON array on stdout: a record per step, judged by test/test_ts_client.py.
// The SDK validates every structuredContent against the tool's outputSchema (error results
// included) and throws when it does not match: such a throw shows up as a step's `thrown`.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import Ajv2020 from 'ajv/dist/2020.js';
import { answer, describe, sleep, stepRecorder } from './steps.mjs';

const options = JSON.parse(process.argv[2]);
const records = [];
const step = stepRecorder(records);

// Calls a tool; `accepted` resolves once its progress names the accepted goal, `running`
// once the driver's own feedback arrives (the goal runs at the driver).
function callUntilAccepted(client, name, args, extra = {}) {
  let accept;
  let run;
  const accepted = new Promise((resolve) => { accept = resolve; });
  const running = new Promise((resolve) => { run = resolve; });
  const progress = [];
  const done = client.callTool({ name, arguments: args }, undefined, {
    timeout: 120000,
    ...extra,
    onprogress: (p) => {
      progress.push(p);
      const message = String(p.message ?? '');
      if (message.includes('accepted')) accept(message);
      if (message.startsWith(`${name}: {`)) run(message);
    },
  });
  done.catch(() => { accept(null); run(null); });
  return { accepted, running, done, progress };
}

const transport = options.transport === 'stdio'
  ? new StdioClientTransport({ command: options.command, args: options.args,
                               cwd: options.cwd, env: process.env, stderr: 'inherit' })
  : new StreamableHTTPClientTransport(new URL(options.url));
const client = new Client({ name: 'skill-lanes-ts-test', version: '1.0.0' });
await client.connect(transport);

await step('list_tools', async () => {
  const { tools } = await client.listTools();
  return { tools: tools.map((t) => ({ name: t.name, hasOutputSchema: Boolean(t.outputSchema),
                                     bytes: JSON.stringify(t).length })) };
});

await step('success', async () => {
  const progress = [];
  const result = await client.callTool({ name: 'navigate', arguments: { order: 3 } },
    undefined, { onprogress: (p) => progress.push(p.progress) });
  return { ...answer(result), progress };
});

// grasp runs 2 s; the request timeout is 0.8 s: only progress resetting it lets it finish.
await step('progress_resets_timeout', async () => {
  let count = 0;
  const result = await client.callTool({ name: 'grasp', arguments: {} }, undefined, {
    timeout: 800, resetTimeoutOnProgress: true, maxTotalTimeout: 60000,
    onprogress: () => { count += 1; } });
  return { ...answer(result), progress: count };
});

await step('busy', async () => {
  const first = callUntilAccepted(client, 'grasp', {});
  await first.accepted;
  const second = await client.callTool({ name: 'grasp', arguments: {} });
  const firstResult = await first.done;
  return { first: answer(firstResult), second: answer(second) };
});

await step('invalid_arguments', async () => answer(
  await client.callTool({ name: 'navigate', arguments: { order: 'fast' } })));

await step('unknown_field', async () => answer(
  await client.callTool({ name: 'navigate', arguments: { order: 1, bogus: 'NaN' } })));

await step('aborted', async () => answer(
  await client.callTool({ name: 'fail', arguments: {} })));

await step('lane_stop', async () => {
  const running = callUntilAccepted(client, 'patrol', {});
  await running.running;
  const stop = await client.callTool({ name: 'lane_stop', arguments: { lane: 'motion' } });
  return { stop: answer(stop), stopped: answer(await running.done) };
});

await step('abort_controller', async () => {
  const controller = new AbortController();
  const running = callUntilAccepted(client, 'arm_move', {}, { signal: controller.signal });
  const acceptedMessage = await running.accepted;
  await running.running;  // the driver runs it: the cancel must reach the driver
  controller.abort('the user pressed stop');
  try {
    await running.done;
    return { acceptedMessage, aborted: false };
  } catch (error) {
    return { acceptedMessage, aborted: true, error: describe(error) };
  }
});

await step('jobs', async () => {
  const started = await client.callTool({ name: 'skill_start',
                                          arguments: { skill: 'arm_home' } });
  const goalId = started.structuredContent?.goal_id;
  let status = null;
  for (let i = 0; i < 300; i += 1) {
    status = await client.callTool({ name: 'skill_status', arguments: { goal_id: goalId } });
    if (!['sending', 'accepted'].includes(status.structuredContent?.state)) break;
    await sleep(100);
  }
  const unknown = await client.callTool({ name: 'skill_cancel',
                                          arguments: { goal_id: 'no-such-goal' } });
  return { started: answer(started), status: answer(status), unknown: answer(unknown) };
});

await step('lanes_status', async () => answer(
  await client.callTool({ name: 'lanes_status', arguments: {} })));

await step('lane_release', async () => answer(
  await client.callTool({ name: 'lane_release', arguments: { lane: 'arm', force: true } })));

await step('unknown_tool', async () => answer(
  await client.callTool({ name: 'teleport', arguments: {} })));

await step('resource_unknown', async () => {
  await client.readResource({ uri: 'skill-lanes://nope' });
  return { read: true };
});

await step('resource_lane_state', async () => {
  const { contents } = await client.readResource({ uri: 'skill-lanes://lane-state' });
  return { lanes: Object.keys(JSON.parse(contents[0].text).lanes) };
});

// The lane state's JSON Schema, served as a resource the lane-state entry points to: it
// compiles in Ajv's draft 2020-12 mode (strict; Ajv is the validator the SDK itself uses
// for outputSchema) and the lane state read now conforms to it.
await step('resource_lane_state_schema', async () => {
  const { resources } = await client.listResources();
  const entry = resources.find((r) => r.uri === 'skill-lanes://lane-state');
  const schemaRead = await client.readResource({ uri: 'skill-lanes://lane-state/schema' });
  const { contents } = await client.readResource({ uri: 'skill-lanes://lane-state' });
  const validate = new Ajv2020({ strict: true, allErrors: true }).compile(
    JSON.parse(schemaRead.contents[0].text));
  const conforms = validate(JSON.parse(contents[0].text));
  return {
    listed: resources.map((r) => ({ uri: r.uri, mimeType: r.mimeType, meta: r._meta ?? null })),
    pointer: entry?._meta?.['skill-lanes/schema'] ?? null,
    schemaMimeType: schemaRead.contents[0].mimeType,
    conforms,
    errors: (validate.errors ?? []).slice(0, 3),
  };
});

await client.close();
process.stdout.write(JSON.stringify(records) + '\n');
