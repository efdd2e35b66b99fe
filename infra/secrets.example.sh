#!/usr/bin/env bash
# Creates the Secret the Kubernetes manifests read (infra/k8s/): the Redis password and two API keys, random. Not kept in
# the repository: run once per cluster, keep the printed keys (the operator key starts runs, the viewer key only reads).
set -euo pipefail
ns="${1:-refalign}"
rand() { head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40; }
redis=$(rand); operator=$(rand); viewer=$(rand)
kubectl -n "$ns" create secret generic refalign-secrets \
  --from-literal=redis-password="$redis" --from-literal=api-key-operator="$operator" --from-literal=api-key-viewer="$viewer"
echo "operator key: $operator"
echo "viewer key:   $viewer"
