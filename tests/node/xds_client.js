#!/usr/bin/env node
// A proxyless grpc-js client for tests: reads one JSON command per stdin line, prints one JSON line per call.
//
// Command: {"target": "xds:///vip", "calls": 20, "timeout_ms": 10000}. Each call is the unary method
// /meshtest.Echo/Say with the raw bytes "hello" (no protobuf schema: the test server echoes bytes). Output,
// one line per call: {"ok": true, "reply": "...", "ms": 1.2} or {"ok": false, "code": 14,
// "code_name": "UNAVAILABLE", "details": "...", "ms": 3.4}; then {"done": true, "calls": n} for the command.
// Channels are kept per target across commands, so a later command sees what the live channel learned
// from xDS pushes (not a fresh resolution). The bootstrap comes from GRPC_XDS_BOOTSTRAP, as in production.
'use strict';

const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const xds = require('@grpc/grpc-js-xds');

xds.register();

const METHOD = '/meshtest.Echo/Say';
const identity = (b) => b;
const clients = new Map();
const codeNames = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

function clientFor(target) {
  let client = clients.get(target);
  if (client === undefined) {
    client = new grpc.Client(target, grpc.credentials.createInsecure());
    clients.set(target, client);
  }
  return client;
}

function callOnce(client, timeoutMs) {
  const started = process.hrtime.bigint();
  const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      METHOD, identity, identity, Buffer.from('hello'), new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, reply) => {
        if (err) {
          resolve({ ok: false, code: err.code, code_name: codeNames[err.code] ?? String(err.code), details: err.details, ms: ms() });
        } else {
          resolve({ ok: true, reply: reply.toString(), ms: ms() });
        }
      },
    );
  });
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function run(command) {
  const client = clientFor(command.target);
  const calls = command.calls ?? 1;
  for (let i = 0; i < calls; i++) {
    emit(await callOnce(client, command.timeout_ms ?? 10000));
  }
  emit({ done: true, calls });
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    try {
      await run(JSON.parse(line));
    } catch (e) {
      emit({ done: true, error: String(e && e.stack ? e.stack : e) });
    }
  }
  for (const client of clients.values()) client.close();
}

// stdin closed: done. grpc-js keeps its global xDS client (and so the event loop) alive after every channel is
// closed, so exit instead of waiting for the test to kill the process
main().then(() => process.exit(0), (e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
