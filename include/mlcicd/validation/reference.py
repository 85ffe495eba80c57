"""The suite a batch is judged against: the serving champion's (signed, then held to its schema),
else the dataset's first accepted batch's, else one inferred from the batch itself."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcicd import trust
from mlcicd.suite_schema import check_suite
from mlcicd.training import REFERENCE_ARTIFACT
from mlcicd.validation import is_current
from mlcicd.validation.infer import infer_suite

log = logging.getLogger("mlcicd")

# Logged with each model, signed with its version.
REFERENCE_SUITE_ARTIFACT = "validation/reference_suite.json"


@dataclass(frozen=True)
class Contract:
    """What a batch is held to, and where each part comes from."""

    suite: dict[str, Any]  # the reference, or the dataset's declared suite composed with it
    path: str
    origin: str
    declared: bool
    reference: dict[str, Any]
    reference_origin: str
    reference_source: str  # the reference's path or URI (a first batch's is saved there once it passes)


def contract(
    c: Any, key: bytes, suites_dir: Path, inferred_dir: Path, ref: Any, model_name: str, df: Any
) -> Contract:
    """The batch's contract: the reference suite (:func:`reference_suite`), composed with the dataset's
    declared suite (``<suites_dir>/<dataset>.json``, held to the schema) when there is one."""
    from mlcicd import validation

    reference, reference_origin, source = reference_suite(c, key, inferred_dir, ref, model_name, df)
    declared = validation.find_suite(ref.dataset_name, suites_dir, inferred_dir)
    if declared is None or declared.origin != "declared":
        return Contract(reference, source, reference_origin, False, reference, reference_origin, source)
    mine = check_suite(json.loads(Path(declared.path).read_text()), origin=declared.path, declared=True)
    origin = f"declared, profile of {reference_origin}"
    suite = validation.compose(mine, reference)
    return Contract(suite, declared.path, origin, True, reference, reference_origin, source)


def reference_suite(
    c: Any, key: bytes, inferred_dir: Path, ref: Any, model_name: str, df: Any
) -> tuple[dict[str, Any], str, str]:
    """The suite a batch is judged against: (suite, where it comes from in words, its path or URI).

    The serving champion's, inferred from the batch that trained it and logged with it; without a
    champion (or with one trained on another dataset, or before suites were logged), the dataset's
    first accepted batch; with neither, this batch itself.
    """
    champ = trust.trusted_champion(c, key, model_name)
    if champ is not None and champ.run_id:
        uri = f"runs:/{champ.run_id}/{REFERENCE_SUITE_ARTIFACT}"
        with tempfile.TemporaryDirectory(prefix="mlcicd-suite-") as tmp:  # signed, then held to the schema
            path = trust.trusted_artifact(
                c, key, model_name, champ.version, REFERENCE_SUITE_ARTIFACT, Path(tmp)
            )
            suite = None if path is None else json.loads(path.read_text())
        if suite is not None:
            check_suite(suite, origin=f"{uri} (champion v{champ.version})")
        if suite is not None and suite.get("name") == ref.dataset_name and is_current(suite):
            return suite, f"champion v{champ.version}", uri
        sample = _champion_sample(c, key, champ, ref, df)
        if sample is not None:  # a champion from before suites were logged: its training sample
            log.warning(
                "champion v%s logged no reference suite: inferring one from its training sample",
                champ.version,
            )
            suite = infer_suite(sample, ref.dataset_name, ref.target)
            return (
                suite,
                f"champion v{champ.version} (its training sample)",
                f"runs:/{champ.run_id}/{REFERENCE_ARTIFACT}",
            )
        log.warning(
            "champion v%s logged no reference for %s: judging against the dataset's first batch",
            champ.version,
            ref.dataset_name,
        )
    saved = inferred_dir / f"{ref.dataset_name}.json"
    if saved.exists():
        suite = check_suite(json.loads(saved.read_text()), origin=str(saved))
        if is_current(suite):
            return suite, "first accepted batch", str(saved)
        log.warning(
            "%s predates the contract/profile split: inferring a new reference from this batch", saved
        )
    return infer_suite(df, ref.dataset_name, ref.target), "first batch", str(saved)


def _champion_sample(c: Any, key: bytes, champ: Any, ref: Any, df: Any) -> Any:
    """The champion's logged training sample with this batch's columns (its target classes drawn
    from this batch, which ingest checked); None when it has none or it is of another dataset."""
    from mlcicd.monitoring import PREDICTION
    from mlcicd.training import load_reference

    try:
        sample = load_reference(c, key, champ.name, champ.version)
    except FileNotFoundError as exc:
        log.info("no training sample logged with champion v%s: %s", champ.version, exc)
        return None
    sample = sample.drop(columns=[PREDICTION], errors="ignore")
    if set(sample.columns) != set(df.columns) - {ref.target}:
        return None
    sample[ref.target] = df[ref.target].sample(len(sample), replace=True, random_state=0).to_numpy()
    return sample[list(df.columns)]
