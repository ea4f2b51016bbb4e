#!/usr/bin/env node
// An independent AI server for SmartStream's interop tests, on @grpc/grpc-js
// and @grpc/proto-loader (not grpcio, not nghttp2-from-Python): it loads
// proto/smartstream/v1/smartstream.proto itself and implements
// smartstream.v1.AIStream/Stream.
//
// Every event is one JSON line on stdout (or --out FILE):
//   {"event":"listening","port":P}
//   {"event":"message","uuid":U,"stream":N,"msg":{...}}   a GatewayMessage, as
//        proto-loader decodes it (oneof name in "msg", bytes base64, 64-bit ints as strings)
//   {"event":"end","uuid":U,"stream":N}                   the gateway half-closed
//   {"event":"cancelled"|"error",...}
// N counts the streams of one call uuid (0, then 1 for a resumed stream, ...).
//
// Scripted answer: with --tts FILE (raw PCM16 LE) it sends Audio{pcm, sample_rate:
// --tts-rate} right after each StreamStart.
//
// usage: node server.js --port P [--host 127.0.0.1] [--cert CERT --key KEY]
//                       [--tts FILE --tts-rate HZ] [--out FILE]
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: null, ttsRate: 16000 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const val = argv[i + 1];
    if (!key.startsWith('--') || val === undefined) usage(`bad argument ${key}`);
    i++;
    switch (key) {
      case '--port': opts.port = Number(val); break;
      case '--host': opts.host = val; break;
      case '--cert': opts.cert = val; break;
      case '--key': opts.key = val; break;
      case '--tts': opts.tts = val; break;
      case '--tts-rate': opts.ttsRate = Number(val); break;
      case '--out': opts.out = val; break;
      case '--proto': opts.proto = val; break;
      default: usage(`unknown option ${key}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage('--port: expected 0..65535');
  if (!!opts.cert !== !!opts.key) usage('--cert and --key go together');
  return opts;
}

function usage(msg) {
  process.stderr.write(`server.js: ${msg}\nusage: node server.js --port P [--host H] ` +
    '[--cert CERT --key KEY] [--tts FILE --tts-rate HZ] [--out FILE]\n');
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const repo = path.resolve(__dirname, '..', '..');
const protoFile = opts.proto || path.join(repo, 'proto', 'smartstream', 'v1', 'smartstream.proto');
const def = protoLoader.loadSync(protoFile, {
  includeDirs: [path.dirname(path.dirname(path.dirname(protoFile)))],
  keepCase: true, longs: String, enums: String, bytes: String, defaults: true, oneofs: true,
});
const pkg = grpc.loadPackageDefinition(def);
const tts = opts.tts ? fs.readFileSync(opts.tts) : null;

const out = opts.out ? fs.createWriteStream(opts.out, { flags: 'a' }) : process.stdout;
function emit(obj) { out.write(JSON.stringify(obj) + '\n'); }

const streamsPerCall = new Map();

function stream(call) {
  let uuid = null;
  let index = -1;
  let first = true;
  call.on('data', (msg) => {
    if (first) {
      first = false;
      if (msg.msg !== 'start') {
        emit({ event: 'error', detail: `first message is ${msg.msg}, not start` });
        call.destroy(new Error('StreamStart must come first'));
        return;
      }
      uuid = msg.start.call_uuid;
      index = streamsPerCall.get(uuid) || 0;
      streamsPerCall.set(uuid, index + 1);
      emit({ event: 'message', uuid, stream: index, msg });
      if (tts) call.write({ audio: { pcm: tts, sample_rate: opts.ttsRate } });
      return;
    }
    emit({ event: 'message', uuid, stream: index, msg });
  });
  call.on('end', () => {
    emit({ event: 'end', uuid, stream: index });
    call.end();
  });
  call.on('cancelled', () => emit({ event: 'cancelled', uuid, stream: index }));
  call.on('error', (e) => emit({ event: 'error', uuid, stream: index, detail: String(e) }));
}

const server = new grpc.Server();
server.addService(pkg.smartstream.v1.AIStream.service, { Stream: stream });
const creds = opts.cert
  ? grpc.ServerCredentials.createSsl(null, [{
    cert_chain: fs.readFileSync(opts.cert), private_key: fs.readFileSync(opts.key) }], false)
  : grpc.ServerCredentials.createInsecure();
server.bindAsync(`${opts.host}:${opts.port}`, creds, (err, port) => {
  if (err) {
    process.stderr.write(`server.js: cannot listen on ${opts.host}:${opts.port}: ${err.message}\n`);
    process.exit(1);
  }
  emit({ event: 'listening', port });
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.tryShutdown(() => process.exit(0)));
}
