// The official MCP TypeScript SDK client waiting for an operator's approval: a skill call
// whose goal awaits approval stays alive only through its progress (a request timeout far
// shorter than the wait, reset by each keep-alive: resetTimeoutOnProgress), then ends as the
// operator decides with goal_approve / goal_deny (called from a second client, the
// operator's). The SDK validates every structuredContent against the tool's outputSchema and
// throws when it does not match: such a throw shows up as a step's `thrown`.
//
// Usage: node approval.mjs '<json>' with
//   {"command": "...", "args": [...], "cwd": "...", "skill": "grip", "waitMs": 2500}
// Prints one JSON array on stdout: a record per step, judged by test/test_gateway_approval.py.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { answer, describe, sleep, stepRecorder } from './steps.mjs';

const options = JSON.parse(process.argv[2]);
const records = [];
const AWAITING = /awaiting approval \(goal ([0-9a-f-]{36}), (\d+) s left\)/;

const step = stepRecorder(records);

async function connect(name) {
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(new StdioClientTransport({
    command: options.command, args: options.args, cwd: options.cwd, env: process.env,
    stderr: 'inherit' }));
  return client;
}

const agent = await connect('skill-lanes-ts-agent');
const operator = await connect('skill-lanes-ts-operator');

// The call waits far longer than its 800 ms request timeout: only the keep-alive progress
// ("awaiting approval ...") keeps it alive; then the operator decides.
async function waitThenDecide(tool) {
  const messages = [];
  let goalId = null;
  const started = Date.now();
  const done = agent.callTool({ name: options.skill, arguments: { order: 2 } }, undefined, {
    timeout: 800, resetTimeoutOnProgress: true, maxTotalTimeout: 60000,
    onprogress: (p) => {
      const message = String(p.message ?? '');
      messages.push(message);
      const found = AWAITING.exec(message);
      if (found) goalId = found[1];
    },
  });
  let failed = null;
  done.catch((error) => { failed = error; });
  while ((!goalId || Date.now() - started < options.waitMs) && !failed) await sleep(50);
  if (failed) throw failed;
  const waitedMs = Date.now() - started;
  const decision = await operator.callTool({ name: tool, arguments: { goal_id: goalId } });
  const result = await done;
  return { goalId, waitedMs, messages, decision: answer(decision), call: answer(result) };
}

await step('list_tools', async () => {
  const { tools } = await agent.listTools();
  return { tools: tools.map((t) => ({ name: t.name, hasOutputSchema: Boolean(t.outputSchema),
                                     description: t.description })) };
});

await step('approved', () => waitThenDecide('goal_approve'));
await step('denied', () => waitThenDecide('goal_deny'));

await step('job', async () => {
  const started = await agent.callTool({ name: 'skill_start',
                                         arguments: { skill: options.skill } });
  const goalId = started.structuredContent?.goal_id;
  let waiting = null;
  for (let i = 0; i < 300 && !waiting; i += 1) {
    const status = await agent.callTool({ name: 'skill_status', arguments: { goal_id: goalId } });
    if (status.structuredContent?.state === 'awaiting_approval') waiting = answer(status);
    else await sleep(100);
  }
  const denied = await operator.callTool({ name: 'goal_deny', arguments: { goal_id: goalId } });
  const again = await operator.callTool({ name: 'goal_deny', arguments: { goal_id: goalId } });
  return { waiting, denied: answer(denied), again: answer(again) };
});

await agent.close();
await operator.close();
process.stdout.write(JSON.stringify(records) + '\n');
