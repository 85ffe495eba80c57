#!/usr/bin/env bash
# Runs in the deploy pod that the KubernetesPodOperator starts (image: kubectl, curl, jq, bash).
# ACTION (default switch):
#   switch  apply the Deployment and Service, wait for the rollout, smoke-test through the Service,
#           and roll back to the previous ReplicaSet (or remove a first deployment) when anything
#           fails; then remove the canary (CANARY, if set) either way: the stable pods serve alone.
#   stage   replace any canary with this version's (CANARY, its own Service, no traffic yet), wait
#           for it, smoke-test it through its own Service; remove it when anything fails.
#   shift   scale the canary to REPLICAS pods that join the stable Service (the instance label
#           becomes DEPLOYMENT's); remove it when it does not become ready.
#   abort   remove the canary's Deployment and Service.
# Input (environment): NAMESPACE, DEPLOYMENT, SERVICE_URL, MODEL_VERSION, MANIFESTS (YAML),
# SMOKE_PAYLOAD (MLflow scoring JSON), SMOKE_EXPECTED (JSON list), ROLLOUT_TIMEOUT; CANARY, REPLICAS.
set -euo pipefail
ACTION=${ACTION:-switch}
: "${NAMESPACE:?}" "${DEPLOYMENT:?}" "${ROLLOUT_TIMEOUT:=300s}"
work=$(mktemp -d)

remove_canary() {
    [[ -n "${CANARY:-}" ]] || return 0
    echo "mlcicd: removing the canary $CANARY" >&2
    kubectl -n "$NAMESPACE" delete deployment,service "$CANARY" --ignore-not-found --wait=true >&2 || true
}

smoke_test() {  # $1: the URL to test through
    local got="" served auth=()
    # The servers' token, when its Secret exists; in a header curl reads from stdin, not argv.
    [[ -n "${MLCICD_SERVER_TOKEN:-}" ]] && auth=(-H @-)
    for _ in $(seq 1 30); do
        if got=$(curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' "${auth[@]}" \
            --data "$SMOKE_PAYLOAD" "$1/invocations" <<<"Authorization: Bearer ${MLCICD_SERVER_TOKEN:-}"); then
            break
        fi
        got=""
        sleep 2
    done
    [[ -n "$got" ]] || fail "the Service $1 did not answer POST /invocations"
    served=$(curl -fsS --max-time 10 "${auth[@]}" "$1/version" <<<"Authorization: Bearer ${MLCICD_SERVER_TOKEN:-}" \
        | jq -r .version) || served="?"
    [[ "$served" == "$MODEL_VERSION" ]] || fail "the Service answers as v$served"
    jq -e --argjson expected "$SMOKE_EXPECTED" '.predictions == $expected' <<<"$got" >/dev/null \
        || fail "the predictions through the Service differ from the offline ones: $got"
}

xcom() {  # the pod's result, for the operator's XCom sidecar
    if [[ -d /airflow/xcom ]]; then
        jq -n --arg v "${MODEL_VERSION:-}" --arg p "${previous:-}" --arg a "$ACTION" \
            '{action: $a, version: $v, previous_version: $p}' >/airflow/xcom/return.json
    fi
}

case "$ACTION" in
abort)
    CANARY=${CANARY:?}
    remove_canary
    echo "mlcicd: the canary is out; the stable pods serve everything"
    xcom
    exit 0
    ;;
shift)
    : "${CANARY:?}" "${REPLICAS:?}"
    fail() {
        echo "mlcicd: the canary failed: $1" >&2
        remove_canary
        exit 1
    }
    patch=$(jq -cn --arg instance "$DEPLOYMENT" --argjson replicas "$REPLICAS" \
        '{spec: {replicas: $replicas, template: {metadata: {labels: {"app.kubernetes.io/instance": $instance}}}}}')
    kubectl -n "$NAMESPACE" patch deployment "$CANARY" --type=merge -p "$patch" \
        || fail "kubectl patch was refused"
    kubectl -n "$NAMESPACE" rollout status "deployment/$CANARY" --timeout="$ROLLOUT_TIMEOUT" \
        || fail "its $REPLICAS pods did not become ready within $ROLLOUT_TIMEOUT"
    echo "mlcicd: $REPLICAS canary pods take traffic through the Service"
    xcom
    exit 0
    ;;
stage | switch) ;;
*)
    echo "mlcicd: unknown ACTION=$ACTION (switch, stage, shift or abort)" >&2
    exit 2
    ;;
esac

: "${SERVICE_URL:?}" "${MODEL_VERSION:?}" "${MANIFESTS:?}" "${SMOKE_PAYLOAD:?}" "${SMOKE_EXPECTED:?}"
printf '%s\n' "$MANIFESTS" >"$work/manifests.yaml"

if [[ "$ACTION" == stage ]]; then
    : "${CANARY:?}"
    fail() {
        echo "mlcicd: v$MODEL_VERSION failed as a canary: $1" >&2
        remove_canary
        exit 1
    }
    remove_canary  # an earlier canary that was never promoted or taken out
    kubectl apply -f "$work/manifests.yaml" || fail "kubectl apply was refused"
    kubectl -n "$NAMESPACE" rollout status "deployment/$CANARY" --timeout="$ROLLOUT_TIMEOUT" \
        || fail "the canary did not become ready within $ROLLOUT_TIMEOUT"
    smoke_test "$SERVICE_URL"
    echo "mlcicd: v$MODEL_VERSION is staged as $CANARY, tested through $SERVICE_URL, no traffic yet"
    xcom
    exit 0
fi

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
    remove_canary
    exit 1
}

kubectl apply -f "$work/manifests.yaml" || fail "kubectl apply was refused"
kubectl -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout="$ROLLOUT_TIMEOUT" \
    || fail "the rollout did not complete within $ROLLOUT_TIMEOUT"
smoke_test "$SERVICE_URL"
remove_canary
echo "mlcicd: v$MODEL_VERSION serves through $SERVICE_URL (previous: ${previous:-none})"
xcom
