"""One monitoring window: what was served in it, tested against the champion's training reference,
and the guarded retrain policy applied to the model's history of windows."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from mlcicd.monitoring import DriftResult, RetrainDecision, RetrainPolicy
    from mlcicd.registry import ChampionRef

log = logging.getLogger("mlcicd")


@dataclass
class Window:
    """What was observed in a window, before the retrain policy is applied."""

    note: str
    predictions: int = 0
    malformed: int = 0
    hostile: dict[str, int] = field(default_factory=dict)
    tested_rows: int = 0
    counts: bool = True  # whether the window counts towards the policy's consecutive windows
    drift: DriftResult | None = None
    decay: dict[str, Any] | None = None
    reference: pd.DataFrame | None = None
    current: pd.DataFrame | None = None


def observe(
    settings: Settings,
    c: Any,
    champ: ChampionRef | None,
    name: str,
    start: datetime,
    end: datetime,
    min_predictions: int,
) -> Window:
    """Read the window's prediction log and test it against the champion's training reference."""
    from mlcicd import monitoring
    from mlcicd.errors import UntrustedArtifact
    from mlcicd.serving import predlog
    from mlcicd.training import load_reference

    if champ is None:
        return Window(f"no champion for {name}: nothing is served, nothing to monitor", counts=False)
    logged = predlog.read_window(settings.predictions_for(name), start, end, seed=int(end.timestamp()))
    malformed = logged.malformed
    if malformed or logged.oversized:
        log.warning(
            "prediction log: %s malformed and %s oversized lines skipped", malformed, logged.oversized
        )
    if not logged.lines:
        return Window(
            "empty window: no prediction logged",
            malformed=malformed,
            hostile={"oversized_lines": logged.oversized},
        )
    n, records = logged.lines, logged.records
    try:
        reference = load_reference(c, settings.signing_key(), name, champ.version)
    except UntrustedArtifact:
        raise  # the window is not judged against a reference the installation did not sign
    except Exception as exc:  # an older champion may lack it: say so, do not guess
        log.warning("champion v%s has no recorded training reference (%s)", champ.version, exc)
        return Window(
            f"champion v{champ.version} has no recorded reference; retrain it with this version of mlcicd",
            n,
            malformed,
            counts=False,
        )
    if n < min_predictions:
        return Window(f"{n} predictions: too few to test for drift", n, malformed)
    if not records:  # every line parsed was malformed
        return Window(f"{n} lines in the window, none of those read is a prediction record", n, malformed)
    current, hostile = monitoring.window_frame(records, reference)
    hostile = {"oversized_lines": logged.oversized, **hostile}
    if logged.parsed < n:
        log.info("%s predictions in the window: tested on a uniform sample of %s", n, len(records))
    drift = monitoring.detect_drift(reference, current)
    promoted = c.get_run(champ.run_id).data.metrics.get("holdout_accuracy")
    decay = monitoring.live_decay(
        records, monitoring.labels_for(records, settings.labels_for(name)), promoted
    )
    note = f"drifted: {', '.join(drift.drifted_features) or 'none'}"
    return Window(
        note,
        n,
        malformed,
        hostile,
        len(records),
        drift=drift,
        decay=decay,
        reference=reference,
        current=current,
    )


def apply_policy(history_path: Path, end: datetime, window: Window, policy: RetrainPolicy) -> RetrainDecision:
    """Add the window to the model's history (if it counts) and apply the guarded retrain policy."""
    from mlcicd import monitoring

    if not window.counts:
        return monitoring.RetrainDecision(False, window.note)
    history, last_retrain = monitoring.load_history(history_path)
    drifted = bool(window.drift and window.drift.dataset_drift)
    decayed = bool(window.decay and window.decay["decayed"])
    history = monitoring.upsert(
        history, monitoring.WindowOutcome(end, window.predictions, drifted, decayed, window.note)
    )
    decision = monitoring.decide_retrain(history, end, last_retrain, policy)
    monitoring.save_history(history_path, history, end if decision.retrain else last_retrain)
    return decision
