#!/usr/bin/env bash
# Validates deploy/ against the Kubernetes API schemas, offline, with kubernetes-models
# (npm; tools/setup.sh installs it from tools/k8s/package-lock.json into
# /opt/apruntime/k8s-validate). Also checks that the validator rejects known mistakes.
set -euo pipefail
dir="${APR_K8S_VALIDATE_DIR:-/opt/apruntime/k8s-validate}"
if ! command -v node >/dev/null || [ ! -d "$dir/node_modules/kubernetes-models" ]; then
  echo "k8s_manifests_test: node or $dir/node_modules missing; run tools/setup.sh" >&2
  exit 1
fi
export NODE_PATH="$dir/node_modules"
node tools/k8s/validate.js deploy/kustomization.yaml deploy/models-pvc.yaml \
  deploy/storage.yaml deploy/workers.yaml deploy/frontend.yaml

out="$(node tools/k8s/validate.js tests/cluster/testdata/bad_manifests.yaml || true)"
echo "$out"
for want in "Deployment/bad-replicas: data/spec/replicas must be integer" \
            "StatefulSet/no-selector: data/spec must have required property selector" \
            "data/spec/template/spec/containers/0 must have required property name" \
            "Service/bad-port: data/spec/ports/0/port must be integer" \
            "0 objects valid, 3 problems"; do
  if ! grep -qF "$want" <<<"$out"; then
    echo "k8s_manifests_test: the validator missed: $want" >&2
    exit 1
  fi
done
echo "k8s_manifests_test: deploy/ is valid; the validator catches the known mistakes"
