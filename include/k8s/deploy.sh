#!/usr/bin/env bash
# Runs in the deploy pod that the KubernetesPodOperator starts (image: kubectl, curl, jq, bash):
# apply the Deployment and Service, wait for the rollout, smoke-test through the Service, and
# roll back to the previous ReplicaSet (or remove a first deployment) when anything fails.
# Input (environment): NAMESPACE, DEPLOYMENT, SERVICE_URL, MODEL_VERSION, MANIFESTS (YAML),
# SMOKE_PAYLOAD (MLflow scoring JSON), SMOKE_EXPECTED (JSON list), ROLLOUT_TIMEOUT.
set -euo pipefail
: "${NAMESPACE:?}" "${DEPLOYMENT:?}" "${SERVICE_URL:?}" "${MODEL_VERSION:?}" "${MANIFESTS:?}"
: "${SMOKE_PAYLOAD:?}" "${SMOKE_EXPECTED:?}" "${ROLLOUT_TIMEOUT:=300s}"
work=$(mktemp -d)
printf '%s\n' "$MANIFESTS" >"$work/manifests.yaml"

previous=""
if kubectl -n "$NAMESPACE" get deployment "$DEPLOYMENT" >/dev/null 2>&1; then
    previous=$(kubectl -n "$NAMESPACE" get deployment "$DEPLOYMENT" \
        -o jsonpath='{.metadata.annotations.mlcicd\.io/model-version}')
fi

fail() {
    echo "mlcicd: v$MODEL_VERSION failed: $1" >&2
    if [[ -n "$previous" ]]; then
        echo "mlcicd: rolling back to the previous ReplicaSet (v$previous)" >&2
        kubectl -n "$NAMESPACE" rollout undo "deployment/$DEPLOYMENT"
        kubectl -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout="$ROLLOUT_TIMEOUT" >&2 || true
    else
        echo "mlcicd: no previous version: removing the new Deployment and Service" >&2
        kubectl delete -f "$work/manifests.yaml" --ignore-not-found >&2
    fi
    exit 1
}

kubectl apply -f "$work/manifests.yaml"
kubectl -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout="$ROLLOUT_TIMEOUT" \
    || fail "the rollout did not complete within $ROLLOUT_TIMEOUT"

got=""
for _ in $(seq 1 30); do
    if got=$(curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' \
        --data "$SMOKE_PAYLOAD" "$SERVICE_URL/invocations"); then
        break
    fi
    got=""
    sleep 2
done
[[ -n "$got" ]] || fail "the Service $SERVICE_URL did not answer POST /invocations"
served=$(curl -fsS --max-time 10 "$SERVICE_URL/version" | jq -r .version) || served="?"
[[ "$served" == "$MODEL_VERSION" ]] || fail "the Service answers as v$served"
jq -e --argjson expected "$SMOKE_EXPECTED" '.predictions == $expected' <<<"$got" >/dev/null \
    || fail "the predictions through the Service differ from the offline ones: $got"

echo "mlcicd: v$MODEL_VERSION serves through $SERVICE_URL (previous: ${previous:-none})"
if [[ -d /airflow/xcom ]]; then
    jq -n --arg v "$MODEL_VERSION" --arg p "$previous" '{version: $v, previous_version: $p}' \
        >/airflow/xcom/return.json
fi
