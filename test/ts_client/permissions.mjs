// Two official TypeScript SDK clients on one HTTP gateway, each with its own named token
// (gateway.clients): what each lists, what each may call, and what it is refused.
//
// Usage: node permissions.mjs '<json>' where json is
//   {"url": "http://127.0.0.1:PORT/mcp",
//    "clients": {"<name>": {"token": "...", "software": "<clientInfo name it declares>",
//                            "own": "<skill>", "other": "<skill>", "otherLane": "<lane>"}},
//    "jobSkill": {"<name>": "<a long skill of that client, started as a job>"}}
// Prints one JSON object on stdout: {clientName: {step: record}}, judged by
// test/test_permissions_processes.py. The SDK validates every structuredContent against the
// listed tool's outputSchema (error results included): a mismatch shows up as `thrown`.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { answer, describe } from './steps.mjs';

const options = JSON.parse(process.argv[2]);


async function step(records, name, body) {
  try {
    records[name] = await body();
  } catch (error) {
    records[name] = { thrown: describe(error) };
  }
}

async function connect(name, token, software = `ts-${name}`) {
  const transport = new StreamableHTTPClientTransport(new URL(options.url), {
    requestInit: { headers: token === null ? {} : { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: software, version: '3.1.4' });
  await client.connect(transport);
  return client;
}

const out = {};
const clients = {};
for (const [name, spec] of Object.entries(options.clients)) {
  clients[name] = await connect(name, spec.token, spec.software);
  out[name] = {};
}

for (const [name, spec] of Object.entries(options.clients)) {
  const client = clients[name];
  const records = out[name];
  await step(records, 'list_tools', async () => {
    const { tools } = await client.listTools();
    return { tools: tools.map((t) => t.name).sort(),
             skillEnum: tools.find((t) => t.name === 'skill_start')
               ?.inputSchema?.properties?.skill?.enum ?? null,
             laneEnum: tools.find((t) => t.name === 'lane_stop')
               ?.inputSchema?.properties?.lane?.enum ?? null };
  });
  await step(records, 'own_skill', async () => answer(
    await client.callTool({ name: spec.own, arguments: { order: 2 } })));
}

// Each client starts a long job of its own skill, so the other can try to cancel it.
const jobs = {};
for (const [name, skill] of Object.entries(options.jobSkill ?? {})) {
  await step(out[name], 'job_started', async () => {
    const started = await clients[name].callTool({ name: 'skill_start', arguments: { skill } });
    jobs[name] = started.structuredContent?.goal_id;
    return answer(started);
  });
}

for (const [name, spec] of Object.entries(options.clients)) {
  const client = clients[name];
  const records = out[name];
  await step(records, 'other_skill', async () => answer(
    await client.callTool({ name: spec.other, arguments: { order: 2 } })));
  await step(records, 'skill_start_other', async () => answer(
    await client.callTool({ name: 'skill_start', arguments: { skill: spec.other } })));
  await step(records, 'lane_stop_other', async () => answer(
    await client.callTool({ name: 'lane_stop', arguments: { lane: spec.otherLane } })));
  const otherJob = Object.entries(jobs).find(([owner]) => owner !== name)?.[1];
  if (otherJob) {
    await step(records, 'cancel_other_job', async () => answer(
      await client.callTool({ name: 'skill_cancel', arguments: { goal_id: otherJob } })));
  }
}

// The jobs' owners cancel their own jobs (allowed), so the lanes end free.
for (const [name, goalId] of Object.entries(jobs)) {
  await step(out[name], 'cancel_own_job', async () => answer(
    await clients[name].callTool({ name: 'skill_cancel', arguments: { goal_id: goalId } })));
}

const unauthenticated = {};
await step(unauthenticated, 'no_token', async () => {
  await connect('nobody', null);
  return { connected: true };
});
await step(unauthenticated, 'wrong_token', async () => {
  await connect('nobody', 'not-a-token');
  return { connected: true };
});
out[''] = unauthenticated;

for (const client of Object.values(clients)) await client.close();
process.stdout.write(JSON.stringify(out) + '\n');
