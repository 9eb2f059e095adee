#!/usr/bin/env node
// Receives COUNT messages with the built SDK and prints them as JSON lines.
//   node example/node-receive.mjs TRANSPORT ADDR APP UID TOKEN COUNT
// TRANSPORT tcp|ws; ADDR host:port (tcp) or ws://host:port/v1/ws (ws).
import { Client, fromUtf8 } from '../dist/node.js';

const [transport, addr, app, uid, token, count] = process.argv.slice(2);
if (!count || !['tcp', 'ws'].includes(transport)) {
  console.error('usage: node example/node-receive.mjs tcp|ws ADDR APP UID TOKEN COUNT');
  process.exit(64);
}
const print = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
const want = Number(count);
let got = 0;

const client = new Client({ transport, addrs: [addr], app: Number(app), uid, token });
client.on('state', (s) => {
  if (s.state === 'connected') print({ event: 'connected' });
  else console.error(`state ${s.state} ${s.code ?? ''} ${s.reason ?? ''}`);
});
client.on('error', (e) => console.error(`error ${e.code}: ${e.message}`));
client.on('message', async (m) => {
  // Automatic mode: the SDK ACKs the message (batched, ~10 ms) after this returns.
  print({ event: 'message', id: m.id.toString(), payload: fromUtf8(m.payload) });
  if (++got === want) {
    setTimeout(async () => {
      await client.close(); // flushes the last ACKs
      process.exit(0);
    }, 50);
  }
});
setTimeout(() => {
  console.error(`timeout: ${got} of ${want} messages`);
  process.exit(1);
}, 30_000).unref();
client.connect().catch((e) => {
  console.error(`gave up: ${e.code}: ${e.message}`);
  process.exit(1);
});
