// An outside client of the RefAlign control API, as a trainer on another toolchain would write it: the service comes
// from refalign_control.proto through @grpc/proto-loader, the transport is @grpc/grpc-js over TLS with an API key.
// It walks the API (health, keys and roles, bad configs, a run from start to its last event) and prints one JSON
// object of what it saw; the .NET test that starts it against a real silo asserts on that.
//
// It also pushes an artifact (a tar stream the test made) in chunks with their SHA-256s and pulls it back as the viewer.
//
// node client.mjs <host:port> <ca.pem> <proto> <operator key> <viewer key> <run config file> <artifact tar file>
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';

const [target, caPath, protoPath, operatorKey, viewerKey, configPath, artifactPath] = process.argv.slice(2);
const load = (file) => grpc.loadPackageDefinition(loader.loadSync(file, { keepCase: true, longs: Number, enums: String, defaults: true }));
const control = load(protoPath).refalign.control.v1;
const health = load(join(dirname(fileURLToPath(import.meta.url)), 'health.proto')).grpc.health.v1;

const credentials = grpc.credentials.createSsl(readFileSync(caPath));
const options = { 'grpc.max_receive_message_length': 16 << 20 };
const client = new control.RunControl(target, credentials, options);
const artifacts = new control.Artifacts(target, credentials, options);
const healthClient = new health.Health(target, credentials, options);

const keyed = (key) => { const m = new grpc.Metadata(); if (key) m.set('x-api-key', key); return m; };
const deadline = (seconds) => ({ deadline: new Date(Date.now() + seconds * 1000) });

// Resolves to { ok, reply } or { code, name, details }: what a caller sees of one unary call.
const call = (service, method, request, key, seconds = 30) => new Promise((resolve) =>
  service[method](request, keyed(key), deadline(seconds), (error, reply) => resolve(error
    ? { code: error.code, name: grpc.status[error.code], details: error.details }
    : { ok: true, reply })));

const watch = (runId, key) => new Promise((resolve) => {
  const events = [];
  const stream = client.WatchRun({ run_id: runId, after_sequence: 0 }, keyed(key), deadline(240));
  stream.on('data', (e) => events.push({ sequence: e.sequence, kind: e.kind, step: e.step, status: e.status, metrics: e.metrics }));
  stream.on('error', (error) => resolve({ events, code: error.code, name: grpc.status[error.code], details: error.details }));
  stream.on('end', () => resolve({ events, code: 0, name: 'OK' }));
});

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

// Client streaming: the header, then 64 KiB chunks each with its hash.
const push = (name, bytes, key) => new Promise((resolve) => {
  const stream = artifacts.PushArtifact(keyed(key), deadline(60), (error, reply) => resolve(error
    ? { code: error.code, name: grpc.status[error.code], details: error.details }
    : { ok: true, reply }));
  stream.write({ header: { name, kind: 'report', size: bytes.length, sha256: sha256(bytes), offset: 0 } });
  for (let o = 0; o < bytes.length; o += 65536) {
    const data = bytes.subarray(o, Math.min(o + 65536, bytes.length));
    stream.write({ chunk: { offset: o, data, sha256: sha256(data) } });
  }
  stream.end();
});

// Server streaming: the chunks in order; the last carries the whole stream's hash.
const pull = (name, key) => new Promise((resolve) => {
  const parts = [];
  let last = '';
  const stream = artifacts.PullArtifact({ name, offset: 0 }, keyed(key), deadline(60));
  stream.on('data', (c) => { parts.push(c.data); if (c.sha256) last = c.sha256; });
  stream.on('error', (error) => resolve({ code: error.code, name: grpc.status[error.code], details: error.details }));
  stream.on('end', () => { const bytes = Buffer.concat(parts); resolve({ ok: true, size: bytes.length, sha256: sha256(bytes), announced: last }); });
});

const config = readFileSync(configPath, 'utf8');
const withField = (patch) => JSON.stringify({ ...JSON.parse(config), ...patch });
const seen = {};

seen.health = await call(healthClient, 'Check', { service: '' });
seen.listWithoutKey = await call(client, 'ListRuns', {}, undefined);
seen.listWithWrongKey = await call(client, 'ListRuns', {}, 'not-a-key-of-this-silo');
seen.startAsViewer = await call(client, 'StartRun', { config_json: config }, viewerKey);
seen.hugeBatch = await call(client, 'StartRun', { config_json: withField({ batch_size: 1e9 }) }, operatorKey);
seen.outputOutsideRoot = await call(client, 'StartRun', { config_json: withField({ output_dir: '/etc/refalign' }) }, operatorKey);
seen.deviceAsData = await call(client, 'StartRun', { config_json: withField({ data: { path: '/dev/zero' } }) }, operatorKey);
seen.notJson = await call(client, 'StartRun', { config_json: '{ "name": ' }, operatorKey);
seen.unknownRun = await call(client, 'GetRun', { run_id: 'no-such-run' }, viewerKey);
seen.cluster = await call(client, 'GetCluster', {}, viewerKey);

seen.start = await call(client, 'StartRun', { config_json: config }, operatorKey);
if (seen.start.ok) {
  const runId = seen.start.reply.run_id;
  seen.watch = await watch(runId, viewerKey);
  seen.finished = await call(client, 'GetRun', { run_id: runId }, viewerKey);
  seen.list = await call(client, 'ListRuns', {}, viewerKey);
}
if (artifactPath) {
  const tar = readFileSync(artifactPath);
  seen.artifactTar = { size: tar.length, sha256: sha256(tar) };
  seen.pushAsViewer = await push('reports/grpc-js', tar, viewerKey);
  seen.push = await push('reports/grpc-js', tar, operatorKey);
  seen.artifactList = await call(artifacts, 'ListArtifacts', { prefix: 'reports/' }, viewerKey);
  seen.pull = await pull('reports/grpc-js', viewerKey);
  seen.deleteAsViewer = await call(artifacts, 'DeleteArtifact', { name: 'reports/grpc-js' }, viewerKey);
}
seen.healthAfter = await call(healthClient, 'Check', { service: '' });

client.close();
artifacts.close();
healthClient.close();
process.stdout.write(JSON.stringify(seen) + '\n');
