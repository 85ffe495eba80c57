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

# What serves now: the version in the pod template (rollout undo restores the template, not the
# Deployment's own annotations) and the revision to go back to.
exists=false previous="" revision=""
if kubectl -n "$NAMESPACE" get deployment "$DEPLOYMENT" >/dev/null 2>&1; then
    exists=true
    previous=$(kubectl -n "$NAMESPACE" get deployment "$DEPLOYMENT" \
        -o jsonpath='{.spec.template.metadata.annotations.mlcicd\.io/model-version}')
    revision=$(kubectl -n "$NAMESPACE" get deployment "$DEPLOYMENT" \
        -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')
fi

fail() {
    echo "mlcicd: v$MODEL_VERSION failed: $1" >&2
    if $exists && [[ -n "$revision" ]]; then
        echo "mlcicd: rolling back to the previous ReplicaSet (revision $revision, v${previous:-unknown})" >&2
        kubectl -n "$NAMESPACE" rollout undo "deployment/$DEPLOYMENT" --to-revision="$revision" >&2
        kubectl -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout="$ROLLOUT_TIMEOUT" >&2 || true
    elif $exists; then
        echo "mlcicd: the Deployment existed without a revision: left for you to inspect" >&2
    else
        echo "mlcicd: no previous version: removing the new Deployment and Service" >&2
        kubectl delete -f "$work/manifests.yaml" --ignore-not-found >&2 || true
    fi
    exit 1
}

kubectl apply -f "$work/manifests.yaml" || fail "kubectl apply was refused"
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
