#!/usr/bin/env node
// A misbehaving AI server for SmartStream's fault tests, on Node's own HTTP/2
// (node:http2, no gRPC library): it speaks gRPC framing by hand so that it can
// do what a gRPC library would not, on purpose, to chosen calls.
//
//   --rst UUID:AFTER:CODE     after AFTER messages on UUID's first stream, reset it
//                             (RST_STREAM with HTTP/2 error CODE, e.g. 8 CANCEL, 7 REFUSED_STREAM)
//   --stall UUID:AFTER:MS     after AFTER messages on UUID's first stream, stop reading it
//                             for MS milliseconds (its flow-control window runs out)
//   --goaway UUID:AFTER:LAST  after AFTER messages on UUID's first stream, send GOAWAY
//                             (NO_ERROR) on its connection; LAST "all": last-stream-id is
//                             the highest stream so far (graceful: open streams go on),
//                             "first": last-stream-id 1 (the connection's first stream
//                             was handled, every later one refused: the client retries them)
//   --bad UUID:AFTER:KIND     after AFTER messages on UUID's first stream, answer with a
//                             broken gRPC message: KIND "compressed" (compressed flag, no
//                             grpc-encoding), "undecodable" (not a ServerMessage) or "huge"
//                             (a length prefix of 64 MiB)
//   --initial-window BYTES    SETTINGS_INITIAL_WINDOW_SIZE it announces (default 65535)
//
// Every other stream is served normally: headers, then at the gateway's
// half-close grpc-status 0. Events are JSON lines on stdout:
//   {"event":"listening","port":P}
//   {"event":"message","uuid":U,"stream":N,"conn":C,"data":BASE64}   one gRPC message, raw
//                             (C numbers the HTTP/2 connections: 0, 1, ...)
//   {"event":"end","uuid":U,"stream":N}  {"event":"rst",...}  {"event":"stall",...}
//   {"event":"resume",...,"window":W}  (W: the stream's receive window when reading resumed)
'use strict';
const http2 = require('http2');

// gRPC length-prefixed messages that break the framing or the contract.
const BAD = {
  compressed: Buffer.from([1, 0, 0, 0, 2, 0x0a, 0x00]),
  undecodable: Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff]),
  huge: Buffer.concat([Buffer.from([0, 4, 0, 0, 0]), Buffer.alloc(1024)]),
};

const opts = {
  port: 0, host: '127.0.0.1', rst: new Map(), stall: new Map(), goaway: new Map(), bad: new Map(),
  window: 65535,
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const [key, val] = [argv[i], argv[i + 1]];
  if (val === undefined) fail(`${key}: missing value`);
  if (key === '--port') opts.port = Number(val);
  else if (key === '--host') opts.host = val;
  else if (key === '--initial-window') opts.window = Number(val);
  else if (key === '--bad') {
    const parts = val.split(':');
    if (parts.length !== 3 || !BAD[parts[2]]) fail('--bad: expected UUID:AFTER:compressed|undecodable|huge');
    opts.bad.set(parts[0], [Number(parts[1]), parts[2]]);
  } else if (key === '--rst' || key === '--stall' || key === '--goaway') {
    const parts = val.split(':');
    if (parts.length !== 3) fail(`${key}: expected UUID:AFTER:N`);
    if (key === '--goaway' && !['all', 'first'].includes(parts[2])) fail('--goaway: LAST is all or first');
    opts[key.slice(2)].set(parts[0], [Number(parts[1]), key === '--goaway' ? parts[2] : Number(parts[2])]);
  } else fail(`unknown option ${key}`);
}

function fail(msg) {
  process.stderr.write(`fault_server.js: ${msg}\n`);
  process.exit(2);
}

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

// The call uuid of a serialized GatewayMessage{start: StreamStart{call_uuid}}: field 1
// (length-delimited) holding field 1 (a string). null if it is not a StreamStart.
function varint(buf, pos) {
  let v = 0; let shift = 0;
  for (;;) {
    const b = buf[pos++];
    v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) return [v, pos];
  }
}
function startUuid(msg) {
  if (msg.length < 2 || msg[0] !== 0x0a) return null;
  let [len, pos] = varint(msg, 1);
  const end = pos + len;
  while (pos < end) {
    const [tag, p] = varint(msg, pos);
    pos = p;
    if ((tag & 7) === 2) {
      const [n, q] = varint(msg, pos);
      if (tag >> 3 === 1) return msg.subarray(q, q + n).toString('utf8');
      pos = q + n;
    } else if ((tag & 7) === 0) pos = varint(msg, pos)[1];
    else return null;
  }
  return null;
}

const streamsPerCall = new Map();
let sessions = 0;

function serve(stream) {
  let uuid = null; let index = -1; let count = 0;
  let buf = Buffer.alloc(0);
  let rstAt = null; let stallAt = null; let goawayAt = null; let badAt = null;
  const session = stream.session;
  if (session.conn === undefined) {
    session.conn = sessions++;
    session.maxId = 0;
  }
  session.maxId = Math.max(session.maxId, stream.id);
  const conn = session.conn;
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.on('error', (e) => emit({ event: 'error', uuid, stream: index, detail: String(e) }));
  stream.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      const msg = buf.subarray(5, 5 + len);
      buf = buf.subarray(5 + len);
      if (uuid === null) {
        uuid = startUuid(msg);
        index = streamsPerCall.get(uuid) || 0;
        streamsPerCall.set(uuid, index + 1);
        if (index === 0) {
          rstAt = opts.rst.get(uuid) || null;
          stallAt = opts.stall.get(uuid) || null;
          goawayAt = opts.goaway.get(uuid) || null;
          badAt = opts.bad.get(uuid) || null;
        }
      }
      emit({ event: 'message', uuid, stream: index, conn, data: msg.toString('base64') });
      count++;
      if (badAt && count === badAt[0]) {
        emit({ event: 'bad', uuid, stream: index, conn, kind: badAt[1] });
        stream.write(BAD[badAt[1]]);
      }
      if (goawayAt && count === goawayAt[0]) {
        // (not 0: Node takes 0 to mean the last stream it processed)
        const last = goawayAt[1] === 'all' ? session.maxId : 1;
        emit({ event: 'goaway', uuid, stream: index, conn, last });
        session.goaway(http2.constants.NGHTTP2_NO_ERROR, last);
      }
      if (rstAt && count === rstAt[0]) {
        emit({ event: 'rst', uuid, stream: index, code: rstAt[1] });
        stream.close(rstAt[1]);
        return;
      }
      if (stallAt && count === stallAt[0]) {
        emit({ event: 'stall', uuid, stream: index });
        stream.pause();
        setTimeout(() => {
          emit({ event: 'resume', uuid, stream: index, window: stream.state.localWindowSize });
          stream.resume();
        }, stallAt[1]);
      }
    }
  });
  stream.on('end', () => {
    if (stream.destroyed || stream.closed) return;
    emit({ event: 'end', uuid, stream: index, conn });
    stream.end();
  });
}

const server = http2.createServer({ settings: { initialWindowSize: opts.window } });
server.on('stream', serve);
server.on('sessionError', (e) => emit({ event: 'error', detail: String(e) }));
server.listen(opts.port, opts.host, () => emit({ event: 'listening', port: server.address().port }));
process.on('SIGTERM', () => process.exit(0));
