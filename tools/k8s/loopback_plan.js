// Turns the containers of deploy/'s manifests into processes on this host, for
// tests/cluster:k8s_processes_test. Every command line is the manifest's own (command +
// args, $(VAR) expanded from the container's env as the kubelet does), for every pod the
// workload makes (StatefulSet replicas: name-0, name-1, ...; a Deployment: one). Only
// these rewrites, each one because a CPU machine's loopback is not a cluster:
//   1. listen / advertise addresses (0.0.0.0, the pod IP) -> 127.0.0.1
//   2. ports (--grpc_port, --metrics_port, and the config's) -> free ports, one set per pod
//   3. the model path (/models/apr-tiny) -> this checkout's models/apr-tiny
//   4. the binary (/opt/apruntime/bin/X) -> the Bazel output X
//   5. --config=/etc/apr/cluster.textproto -> a copy of deploy/cluster.textproto with the
//      rewrites 1-3 applied to its endpoints and model path (pod DNS names -> 127.0.0.1)
//   6. device cuda:0 -> cpu (no GPU in CI), and so the storage nodes' --dtype=bf16 (the
//      CUDA workers' KV type) -> f32 (the CPU worker's)
//   7. the storage nodes' --capacity_bytes (8 GiB each, faulted in at start) -> 64 MiB
//   node loopback_plan.js DEPLOY_DIR MODEL_DIR BIN_DIR OUT_DIR
// Writes OUT_DIR/cluster.textproto and OUT_DIR/plan.json: [{pod, kind, argv}] in start
// order (storage nodes, workers, front end), and the front end's gRPC port.
"use strict";
const fs = require("fs");
const net = require("net");
const path = require("path");
const YAML = require("yaml");

const [deployDir, modelDir, binDir, outDir] = process.argv.slice(2);
const BINARIES = {frontend: "cluster/frontend", worker: "cluster/worker",
                  storage_node: "kvstore/storage_node"};

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

// Pods of every Deployment / StatefulSet: {pod, container}.
function pods() {
  const out = [];
  for (const file of ["storage.yaml", "workers.yaml", "frontend.yaml"]) {
    for (const doc of YAML.parseAllDocuments(fs.readFileSync(path.join(deployDir, file), "utf8"))) {
      const o = doc.toJS();
      if (!o || (o.kind !== "StatefulSet" && o.kind !== "Deployment")) continue;
      const n = o.kind === "StatefulSet" ? o.spec.replicas : 1;
      if (o.kind === "Deployment" && o.spec.replicas !== 1) throw new Error(`${o.metadata.name}: replicas`);
      for (const c of o.spec.template.spec.containers) {
        for (let i = 0; i < n; ++i) {
          out.push({pod: o.kind === "StatefulSet" ? `${o.metadata.name}-${i}` : o.metadata.name,
                    service: o.spec.serviceName, container: c});
        }
      }
    }
  }
  return out;
}

// $(VAR) from the container's env: values, metadata.name, status.podIP (rewrite 1).
function expand(arg, container, pod) {
  const env = {};
  for (const e of container.env || []) {
    if (e.value !== undefined) env[e.name] = e.value;
    const f = e.valueFrom && e.valueFrom.fieldRef && e.valueFrom.fieldRef.fieldPath;
    if (f === "metadata.name") env[e.name] = pod;
    if (f === "status.podIP") env[e.name] = "127.0.0.1";
  }
  return arg.replace(/\$\((\w+)\)/g, (m, v) => {
    if (!(v in env)) throw new Error(`${pod}: ${arg} names $(${v}), not in the env`);
    return env[v];
  });
}

function rewrite(arg, ports, configPath) {
  let m;
  if ((m = /^--(grpc_host|host|advertise_host)=(.*)$/.exec(arg))) return `--${m[1]}=127.0.0.1`;
  if ((m = /^--(grpc_port|metrics_port)=\d+$/.exec(arg))) return `--${m[1]}=${ports[m[1]]}`;
  if ((m = /^--model=\/models\/apr-tiny$/.exec(arg))) return `--model=${modelDir}`;
  if (/^--model=/.test(arg)) throw new Error(`${arg}: not the bundled model`);
  if (arg === "--config=/etc/apr/cluster.textproto") return `--config=${configPath}`;
  if (arg === "--device=cuda:0") return "--device=cpu";
  if (arg === "--dtype=bf16") return "--dtype=f32";
  if (/^--capacity_bytes=\d+$/.test(arg)) return "--capacity_bytes=67108864";
  return arg;
}

// Rewrites 1-3 and 6 on the config: each pod's DNS name and port -> 127.0.0.1 and its port.
function rewriteConfig(text, portsOf, frontendPorts) {
  let t = text.replace(/host: "([\w-]+)\.([\w-]+)" port: (\d+)/g, (m, pod) => {
    if (!portsOf[pod]) throw new Error(`cluster.textproto names ${pod}, no manifest makes it`);
    return `host: "127.0.0.1" port: ${portsOf[pod].grpc_port}`;
  });
  t = t.replace(/host: "0\.0\.0\.0" port: 50051/, `host: "127.0.0.1" port: ${frontendPorts.grpc_port}`);
  t = t.replace(/metrics_port: 9090/, `metrics_port: ${frontendPorts.metrics_port}`);
  t = t.replace(/metrics_port: 9091/g, "metrics_port: 0");
  t = t.replace(/path: "\/models\/apr-tiny"/, `path: "${modelDir}"`);
  return t.replace(/device: "cuda:0"/g, 'device: "cpu"');
}

async function main() {
  const all = pods();
  const portsOf = {};
  for (const p of all) portsOf[p.pod] = {grpc_port: await freePort(), metrics_port: await freePort()};
  const configPath = path.join(outDir, "cluster.textproto");
  const fe = all.find((p) => p.pod === "apr-frontend");
  fs.writeFileSync(configPath, rewriteConfig(
      fs.readFileSync(path.join(deployDir, "cluster.textproto"), "utf8"), portsOf, portsOf[fe.pod]));
  const plan = all.map((p) => {
    const bin = path.basename(p.container.command[0]);
    if (!BINARIES[bin] || p.container.command[0] !== `/opt/apruntime/bin/${bin}`) {
      throw new Error(`${p.pod}: unknown binary ${p.container.command[0]}`);
    }
    const args = p.container.command.slice(1).concat(p.container.args || [])
        .map((a) => rewrite(expand(a, p.container, p.pod), portsOf[p.pod], configPath));
    return {pod: p.pod, kind: bin, argv: [path.join(binDir, BINARIES[bin])].concat(args)};
  });
  fs.writeFileSync(path.join(outDir, "plan.json"), JSON.stringify(
      {processes: plan, frontend_port: portsOf[fe.pod].grpc_port}, null, 1));
}

main().catch((e) => { console.error(`loopback_plan: ${e.message}`); process.exit(1); });
