"""The serving champion as the gate and the scan need it: loaded and verified, or a clear failure.

The gate fails closed: a champion that exists but cannot be loaded or compared stops the run
(:class:`~mlcicd.errors.ChampionUnusable`); it never lets the thresholds alone decide.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mlcicd.errors import ChampionUnusable

log = logging.getLogger("mlcicd")


def load(champ: Any, model_name: str, tracking_uri: str, attempts: int = 3) -> Any:
    """The champion's model, tried ``attempts`` times; ChampionUnusable (the gate fails closed) after."""
    from mlcicd import registry
    from mlcicd.serving.modelfile import UntrustedModel

    what = f"champion v{champ.version} of {model_name} ({champ.model_uri})"
    for attempt in range(1, attempts + 1):
        try:
            return registry.load_verified(champ.model_uri, champ.digest, tracking_uri, what)
        except UntrustedModel as exc:  # no retry: the files will not change back
            raise ChampionUnusable(f"{exc}. {_fail_closed(champ, model_name)}") from exc
        except Exception as exc:  # any failure to load: MLflow away, artifact missing or corrupt
            if attempt == attempts:
                raise ChampionUnusable(
                    f"{what} could not be loaded after {attempts} attempts ({type(exc).__name__}: {exc}). "
                    f"{_fail_closed(champ, model_name)}"
                ) from exc
            log.warning("loading %s failed (%s); retrying", what, exc)
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def _fail_closed(champ: Any, model_name: str) -> str:
    return (
        f"The gate fails closed: nothing was promoted and v{champ.version} keeps serving. Repair or "
        f"re-register that version's model, or, to let the thresholds alone decide, remove the alias: "
        f"MlflowClient().delete_registered_model_alias({model_name!r}, 'champion')"
    )


def scores(champ: Any, model_name: str, x: Any, tracking_uri: str, attempts: int = 3) -> Any:
    """The serving champion's scores on the holdout; ChampionUnusable when it cannot give them.

    The gate fails closed: a champion that exists but cannot be compared stops the run, it never
    lets the thresholds alone decide. Loading is tried ``attempts`` times (the tracking server or
    the artifact store may be briefly away); scoring is deterministic and tried once.
    """
    from mlcicd import evaluation

    model = load(champ, model_name, tracking_uri, attempts)
    try:
        return evaluation.score(model, x)
    except Exception as exc:  # e.g. the batch's columns no longer fit the champion
        raise ChampionUnusable(
            f"champion v{champ.version} of {model_name} ({champ.model_uri}) could not score this holdout "
            f"({type(exc).__name__}: {exc}). {_fail_closed(champ, model_name)}"
        ) from exc
