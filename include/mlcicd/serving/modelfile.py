"""Loading a model version's files: only when their digest matches, only through skops, only the
types this project trains.

MLflow's own loader lets the artifact decide how it is loaded: the serialization format, the
types skops may build and extra code paths all come from the artifact's ``MLmodel``. Anyone who
can write to the artifact store could swap in a pickle and run code wherever a model is loaded.
Here nothing in the artifact chooses: the digest is recorded when the model is logged (and kept on
the registered version), the types are fixed below, and a pickle is refused.

The digest covers every file of the model folder except ``registered_model_meta``, which MLflow
writes into the artifacts when the model is registered.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mlcicd.serving import config

DIGEST_TAG = "mlcicd.model_digest"
DIGEST_ENV = config.name_of("model_digest")  # a server refuses a bundle whose digest is not this one
MODEL_FILE = "model.skops"
UNDIGESTED = frozenset({"registered_model_meta"})
# Types skops does not trust by default, which the pipelines of ``training.build_pipeline`` hold
# (one estimator family each: hist_gradient_boosting, random_forest, logistic_regression). A test
# fits every family and fails if one needs a type that is not here.
TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


# A model project's own classes, which its model file holds: listed in the MLmodel's metadata under
# this key (inside the folder whose digest is checked first), at training, from the project file.
TRUSTED_METADATA = "mlcicd_trusted_types"
# Never a project's own: a "declared" type from these would widen what skops builds to arbitrary code.
NOT_DECLARABLE = frozenset(
    {"numpy", "scipy", "sklearn", "pandas", "skops", "mlflow", "joblib", "cloudpickle", "dill"}
)


def declared_types(meta: dict[str, Any], what: str) -> list[str]:
    """The project's own types the verified ``MLmodel`` declares; :class:`UntrustedModel` for one that is
    not a dotted path into a package of the project's (the standard library or a library)."""
    import sys

    declared = ((meta.get("metadata") or {}).get(TRUSTED_METADATA)) or []
    if not isinstance(declared, list):
        raise UntrustedModel(f"{what} declares its trusted types as {type(declared).__name__}, not a list")
    for name in declared:
        top = name.split(".")[0] if isinstance(name, str) else ""
        if "." not in str(name) or top in sys.stdlib_module_names or top in NOT_DECLARABLE or top == "mlcicd":
            raise UntrustedModel(
                f"{what} declares {str(name)[:80]!r} as a type of its own; only a model project's own "
                "classes may be declared, never the standard library's or a library's"
            )
    return list(declared)


class UntrustedModel(Exception):
    """The model's files are not the ones recorded, or ask to be loaded in a way we refuse."""


def read_files(model_dir: Path) -> dict[str, bytes]:
    """Every file of the model folder, by relative path, read once: what is hashed is what is loaded."""
    files = {}
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir).as_posix()
        if path.is_symlink():
            raise UntrustedModel(f"{model_dir}: {rel} is a symbolic link; a model folder holds files only")
        if path.is_file() and rel not in UNDIGESTED:
            files[rel] = path.read_bytes()
    return files


def digest_of(files: dict[str, bytes]) -> str:
    """``sha256:<hex>`` over the files' names, lengths and contents, in name order."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + str(len(files[rel])).encode() + b"\0")
        h.update(files[rel])
    return f"sha256:{h.hexdigest()}"


def digest(model_dir: Path) -> str:
    """The digest of a model folder (:func:`digest_of` its :func:`read_files`)."""
    return digest_of(read_files(model_dir))


def verify(model_dir: Path, expected: str | None, what: str) -> dict[str, bytes]:
    """The folder's files, once they have digest ``expected``; :class:`UntrustedModel` naming ``what``
    otherwise."""
    if not expected:
        raise UntrustedModel(
            f"{what} has no recorded digest ({DIGEST_TAG}): it was not registered by mlcicd's "
            "training, so it is not loaded. Retrain it, or register it through the ml_retrain DAG."
        )
    files = read_files(model_dir)
    actual = digest_of(files)
    if actual != expected:
        raise UntrustedModel(
            f"{what}: the model's files changed after it was logged (digest {actual}, recorded "
            f"{expected}). It is not loaded; find who wrote to the artifact store."
        )
    return files


def load(model_dir: Path, expected: str | None, what: str) -> Any:
    """The scikit-learn pipeline in the MLflow model folder ``model_dir``, once verified; loaded from
    the very bytes that were hashed (no second read a writer could race).

    Raises:
        UntrustedModel: wrong digest, a pickle, extra code paths, or a type outside ``TRUSTED_TYPES``.
    """
    return load_with_signature(model_dir, expected, what)[0]


def load_with_signature(model_dir: Path, expected: str | None, what: str) -> tuple[Any, list[dict[str, Any]]]:
    """:func:`load`, and the input signature from the same verified ``MLmodel``: MLflow's column
    specs (``{"name", "type", "required"}``), read as data rather than through ``mlflow.models``,
    whose import costs every server process about 2 s of start-up.

    Raises:
        UntrustedModel: as :func:`load`.
        ValueError: the model has no column-based input signature.
    """
    import skops.io
    import yaml
    from skops.io.exceptions import UntrustedTypesFoundException

    files = verify(model_dir, expected, what)
    meta = yaml.safe_load(files.get("MLmodel", b"").decode()) or {}
    flavor = (meta.get("flavors") or {}).get("sklearn") or {}
    pyfunc = (meta.get("flavors") or {}).get("python_function") or {}
    fmt = flavor.get("serialization_format")
    if fmt != "skops" or flavor.get("pickled_model") != MODEL_FILE or MODEL_FILE not in files:
        raise UntrustedModel(
            f"{what} is serialized as {fmt!r} ({flavor.get('pickled_model')!r}); only skops "
            f"({MODEL_FILE}) is loaded, since a pickle runs code when it is read"
        )
    if flavor.get("code") or pyfunc.get("code"):
        raise UntrustedModel(f"{what} asks for extra code paths; models with code are not loaded")
    try:
        pipeline = skops.io.loads(files[MODEL_FILE], trusted=[*TRUSTED_TYPES, *declared_types(meta, what)])
    except UntrustedTypesFoundException as exc:
        raise UntrustedModel(f"{what} holds types this project does not train: {exc}") from None
    except ImportError as exc:  # a declared class of a model project whose code is not on the path
        raise UntrustedModel(
            f"{what} holds a class of its model project's code, which cannot be imported here ({exc}): "
            "serve it with the project's code at the version's digest (the image, or the bundle's code/)"
        ) from None
    return pipeline, _input_specs(meta, what)


def _input_specs(meta: dict[str, Any], what: str) -> list[dict[str, Any]]:
    raw = (meta.get("signature") or {}).get("inputs")
    try:
        specs = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        specs = None
    if (
        not isinstance(specs, list)
        or not specs
        or not all(isinstance(c, dict) and "name" in c for c in specs)
    ):
        raise ValueError(f"{what} has no input signature of named columns in its MLmodel; log it with one")
    return specs


def release_digest(release: dict[str, Any]) -> str | None:
    """The digest a bundle's model must have: its ``release.json``'s, which must also be the one
    the deploy target pinned in ``MLCICD_MODEL_DIGEST`` (read from the registry, so a rewritten
    release.json is caught too).

    Raises:
        UntrustedModel: the two differ.
        config.SettingError: ``MLCICD_MODEL_DIGEST`` is not a digest.
    """
    pinned = config.value("model_digest")
    if pinned and pinned != release.get("model_digest"):
        raise UntrustedModel(
            f"{release.get('model_name')} v{release.get('version')}: release.json names digest "
            f"{release.get('model_digest')}, the deploy target expects {pinned}; the bundle is not the one registered"
        )
    return release.get("model_digest")


def verified_release(bundle: Path) -> dict[str, Any]:
    """A bundle's ``release.json``, once ``bundle/model`` matches :func:`release_digest`.

    Raises:
        UntrustedModel: the bundle is not the one registered.
    """
    release = json.loads((bundle / "release.json").read_text())
    verify(
        bundle / "model", release_digest(release), f"{release.get('model_name')} v{release.get('version')}"
    )
    return release
