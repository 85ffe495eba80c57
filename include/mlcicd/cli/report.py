"""The run summary as ``mlcicd run`` and ``mlcicd trigger --wait`` print it."""

from __future__ import annotations

from typing import Any


def render(summary: dict[str, Any]) -> str:
    s = summary
    took = f" in {s['seconds']} s" if s.get("seconds") is not None else ""
    lines = [
        f"\n{s.get('dag_id') or 'ml_retrain'} {s['run_id']}: {s['state'].upper()} ({s['outcome']}){took}"
    ]
    code = s.get("code")
    if code:
        state = {"true": "with uncommitted changes", "false": "clean"}.get(
            code["dirty"], "not a git checkout"
        )
        lines.append(
            f"  code        {code['project']} at {code['commit'][:12]} ({state}), digest {code['digest'][:19]}"
        )
    if s.get("batch"):
        b = s["batch"]
        lines.append(
            f"  data        {b['rows']} rows x {len(b['columns'])} columns from {b['source_uri']} (digest {b['digest']})"
        )
    v = s.get("validation")
    if v:
        verdict = "contract held" if v["success"] else f"FAILED {len(v['failures'])} contract expectation(s)"
        lines.append(f"  validation  {verdict} (suite {v['suite']}, {v['suite_origin']})")
        lines += [f"                - {f}" for f in v.get("failures", [])]
        if v.get("shift"):
            lines.append(
                f"              shift from {v.get('reference') or 'the reference'} (reported, not blocking):"
            )
            lines += [f"                ~ {s}" for s in v["shift"]]
        if v.get("report_path"):
            lines.append(f"              report: {v['report_path']}")
    lines += _search(s.get("search"))
    cand = s.get("candidate")
    if cand and cand.get("metrics"):
        m = ", ".join(f"{k} {v:.3f}" for k, v in cand["metrics"].items())
        version = f" v{cand['model_version']}" if cand.get("model_version") else ""
        lines.append(f"  candidate  {version} {cand.get('estimator') or ''}: {m}")
        lines.append(f"              MLflow run {cand.get('mlflow_run_id')}")
    sc = s.get("scan")
    if sc:
        lines.append(
            f"  scan        {len(sc['major'])} MAJOR, {sc['minor']} minor issue(s)"
            + (
                f"; new against champion v{sc['champion_version']}: {len(sc['new_major'])}"
                if sc.get("champion_version")
                else ""
            )
            + f" ({sc.get('seconds')} s)"
        )
        lines += [f"                ! {m}" for m in sc["major"]]
        lines += [f"                ({n})" for n in sc.get("notes", [])]
        if sc.get("report"):
            lines.append(f"              report: {sc['report']}")
    g = s.get("gate")
    if g:
        lines.append(f"  gate        {g['decision'].upper()}")
        lines += [f"                {r}" for r in g["reasons"]]
    im = s.get("image")
    if im and im.get("reference"):
        size = f", {im['size_bytes'] / 1e6:.0f} MB" if im.get("size_bytes") else ""
        how = "reused" if im.get("reused") else f"built by {im['builder']} in {im.get('seconds')} s"
        lines.append(f"  image       {im['reference']} ({how}{size})")
    d = s.get("deployment")
    if d:
        lines.append(
            f"  deployment  {d['target']}: {d['state']}, v{d.get('serving_version')} at {d.get('endpoint')}"
        )
    r = s.get("rollout")
    if r and r.get("steps"):
        lines.append(f"  rollout     {r['mode']}: {r['state']}")
        for i, step in enumerate(r["steps"], 1):
            share = step.get("share")
            got = (
                f" ({share} % given)" if share is not None and float(share) != float(step["percent"]) else ""
            )
            lines.append(f"                step {i}: {step['percent']} % of traffic{got}, {step['verdict']}")
            for m in step["measurements"]:
                cand, stable = m["candidate"], m["stable"]
                lines.append(
                    f"                  {m['verdict']}: candidate {cand['requests']} req, {cand['errors']} err, "
                    f"p99 {cand['p99_ms']} ms; stable {stable['requests']} req, p99 {stable['p99_ms']} ms"
                    f"{_accuracy(m.get('accuracy'))} ({m['note']})"
                )
    if r and r.get("approval"):
        a = r["approval"]
        lines.append(
            f"  approval    {a.get('decision')} by {a.get('by') or 'nobody (timed out)'} at {a.get('at')}"
        )
    lines.append(
        f"  champion    {s['model_name']} "
        + (f"v{s['champion_version']}" if s["champion_version"] else "(none)")
    )
    if s.get("error"):
        lines.append(f"  error       [{s['error']['stage']}] {s['error']['message']}")
    lines.append("Where to look:")
    if s.get("airflow_url"):
        lines.append(f"  Airflow     {s['airflow_url']}")
    if s.get("mlflow_url"):
        lines.append(f"  MLflow      {s['mlflow_url']}")
    if s.get("mlflow_tracking_uri"):
        lines.append(f"  MLflow UI   make mlflow-ui  (store {s['mlflow_tracking_uri']})")
    if s.get("log_path"):
        lines.append(f"  task logs   {s['log_path']}")
    if d and d.get("state") == "serving":
        stop = "make stop  (stops the local server)"
        if d["target"] == "docker":
            stop = "python -m mlcicd stop --target docker  (removes the container)"
        if d["target"] == "kubernetes":
            stop = "(a ClusterIP Service: kubectl port-forward svc/<name> to reach it from outside)"
        lines.append(f"  try it      curl -s {d['endpoint']}/version ; {stop}")
    return "\n".join(lines)


def _accuracy(accuracy: dict[str, Any] | None) -> str:
    """Live accuracy of both versions on the labelled rows of the step, where labels arrived."""
    if not accuracy:
        return ""
    parts = [
        f"{role} {a['accuracy']:.3f} on {a['labelled']}"
        for role, a in accuracy.items()
        if a and a.get("accuracy") is not None
    ]
    return f"; live accuracy {', '.join(parts)} labelled" if parts else ""


def _search(se: dict[str, Any] | None) -> list[str]:
    """The candidates, best first: the chosen one starred, the failed ones with their error."""
    if not se:
        return []
    rows = sorted(
        se["candidates"], key=lambda r: (r["validation_metric"] is None, -(r["validation_metric"] or 0))
    )
    failed = sum(r["error"] is not None for r in rows)
    lines = [
        f"  search      {se['name']}: {len(rows)} candidates ({failed} failed), fitted on {se.get('fit_rows')} rows, "
        f"compared by {se['metric']} on {se.get('validation_rows')} validation rows; chosen #{se['chosen']}",
        f"                 {'#':>3}  {'estimator':<23} {se['metric']:>8} {'fit s':>7}  hyperparameters",
    ]
    for r in rows:
        value = "FAILED" if r["error"] else f"{r['validation_metric']:.4f}"
        mark = "*" if r["chosen"] else " "
        fit = f"{r['fit_seconds']:.2f}" if r.get("fit_seconds") is not None else "-"
        lines.append(
            f"              {mark}  {r['index']:>3}  {r['estimator']:<23} {value:>8} {fit:>7}  {r['params']}"
        )
        if r["error"]:
            lines.append(f"                     {r['error']}")
    return lines
