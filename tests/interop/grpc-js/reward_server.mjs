// A RewardService on another toolchain, as a trainer might serve a reward next to its own code: the service comes from
// refalign_reward.proto through @grpc/proto-loader, the transport is @grpc/grpc-js over TLS, and every call must carry
// the API key. It scores like the project's rule reward: 1 when the last number of a response equals the sample's
// answer (as numbers), else 0; a sample without an answer gets −|length − 20|/20. It prints "listening <port>" once
// it is bound; the .NET test that starts it ends it.
//
// node reward_server.mjs <port> <certificate.pem> <key.pem> <proto> <api key>
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';

const [port, certPath, keyPath, protoPath, apiKey] = process.argv.slice(2);
const reward = grpc.loadPackageDefinition(loader.loadSync(protoPath, { keepCase: true, defaults: true })).refalign.reward.v1;
const lastNumber = (text) => { const m = text.match(/-?[0-9]+(?:\.[0-9]+)?/g); return m ? Number(m[m.length - 1]) : null; };

const server = new grpc.Server();
server.addService(reward.RewardService.service, {
  Score: (call, callback) => {
    if (call.metadata.get('x-api-key')[0] !== apiKey)
      return callback({ code: grpc.status.UNAUTHENTICATED, details: 'a valid x-api-key is required.' });
    const { prompts, responses, references, answers } = call.request;
    const n = responses.length;
    if (prompts.length !== n || references.length !== n || answers.length !== n)
      return callback({ code: grpc.status.INVALID_ARGUMENT, details: 'prompts, responses, references and answers must have one entry per sample.' });
    const scores = responses.map((r, i) => answers[i].length > 0
      ? (lastNumber(r) !== null && lastNumber(r) === Number(answers[i].trim()) ? 1 : 0)
      : -Math.abs(r.length - 20) / 20);
    callback(null, { scores });
  },
});
const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(certPath), private_key: readFileSync(keyPath) }], false);
server.bindAsync(`127.0.0.1:${port}`, credentials, (error, bound) => {
  if (error) { process.stderr.write(`${error.message}\n`); process.exit(1); }
  process.stdout.write(`listening ${bound}\n`);
});
