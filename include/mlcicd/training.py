"""Training: a scikit-learn Pipeline (preprocessing + estimator) tracked in MLflow."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd import trust
from mlcicd.choices import ESTIMATORS, RETRAIN_DEFAULTS
from mlcicd.errors import ConfigError
from mlcicd.project.code import TAG_PREFIX as CODE_TAG_PREFIX
from mlcicd.serving.modelfile import TRUSTED_METADATA
from mlcicd.settings import PROJECT_ROOT

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from mlcicd.data import BatchRef
    from mlcicd.project import Project

TRAIN_METRIC_ROWS = 200_000  # the train metrics' rows, at most
REFERENCE_ROWS = 5000
REFERENCE_ARTIFACT = "reference/reference.parquet"
HYPERPARAMETERS_ARTIFACT = (
    "training/hyperparameters.json"  # a model project's, as given (typed): for a rebuild
)


@dataclass(frozen=True)
class TrainParams:
    estimator: str = RETRAIN_DEFAULTS["estimator"]
    n_estimators: int = RETRAIN_DEFAULTS["n_estimators"]
    max_depth: int | None = RETRAIN_DEFAULTS["max_depth"]
    learning_rate: float = RETRAIN_DEFAULTS["learning_rate"]
    regularization_c: float = RETRAIN_DEFAULTS["regularization_c"]
    test_size: float = RETRAIN_DEFAULTS["test_size"]
    random_seed: int = RETRAIN_DEFAULTS["random_seed"]

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"unknown estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        if not 0.05 <= self.test_size <= 0.5:
            raise ConfigError(f"test_size must be between 0.05 and 0.5, got {self.test_size}")


@dataclass(frozen=True)
class TrainResult:
    """References to the trained candidate (passed through XCom)."""

    mlflow_run_id: str
    model_uri: str
    model_id: str
    holdout_path: str
    train_rows: int
    holdout_rows: int
    train_metrics: dict[str, float]
    model_digest: str  # of the logged model's files (serving.modelfile), checked before each load
    train_rows_available: int = 0  # the train split's rows; above MLCICD_TRAIN_MAX_ROWS, a sample is fitted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        return cls(**data)


def load_reference(c: Any, key: bytes, model_name: str, version: str) -> Any:
    """The version's training sample (features and ``__prediction__``), checked against its signed
    digest; UntrustedArtifact otherwise, FileNotFoundError when the version logged none."""
    import tempfile

    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="mlcicd-reference-") as tmp:
        path = trust.trusted_artifact(c, key, model_name, version, REFERENCE_ARTIFACT, Path(tmp))
        if path is None:
            raise FileNotFoundError(
                f"{model_name} v{version} logged no training sample ({REFERENCE_ARTIFACT})"
            )
        return pd.read_parquet(path)


def split_positions(y: Any, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of a stratified (train, holdout) split of labels ``y``, deterministic for a seed."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    train, holdout = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y)
    return train, holdout


def split(df: pd.DataFrame, target: str, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/holdout split, deterministic for a seed (the rows of :func:`split_positions`)."""
    train, holdout = split_positions(df[target], test_size, seed)
    return df.iloc[train].reset_index(drop=True), df.iloc[holdout].reset_index(drop=True)


def build_pipeline(features: pd.DataFrame, params: TrainParams) -> Pipeline:
    """Imputation, scaling and one-hot encoding by column type, then the chosen estimator."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            ),
        ]
    )
    if params.estimator == "logistic_regression":
        model = LogisticRegression(C=params.regularization_c, max_iter=1000, random_state=params.random_seed)
    elif params.estimator == "random_forest":
        model = RandomForestClassifier(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            random_state=params.random_seed,
            n_jobs=1,
        )
    else:
        model = HistGradientBoostingClassifier(
            max_iter=params.n_estimators,
            max_depth=params.max_depth,
            learning_rate=params.learning_rate,
            random_state=params.random_seed,
        )
    return Pipeline([("preprocess", preprocess), ("model", model)])


def code_version() -> dict[str, str]:
    """The git commit of the pipeline code (``unknown`` outside a checkout), and whether it is dirty."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown"}
    return {"commit": commit, "dirty": str(dirty).lower()}


def trusted_types(pipeline: Pipeline) -> list[str]:
    """Types skops must be told to trust when loading this pipeline.

    The object was built by this process a moment ago, so the types it holds are ours to vouch
    for; loading still refuses any other type a tampered file might add.
    """
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))


def dataset_schema(df: pd.DataFrame, rows: int = 10_000) -> Any:
    """The MLflow schema of ``df``, inferred on its first ``rows`` rows plus, for each column with a
    null, one row holding it (so that ``required`` is right). MLflow infers a dataset's schema value
    by value in Python: 88 s of a 2,000,000-row run's training, minutes at 10 million."""
    import pandas as pd
    from mlflow.models import infer_signature

    nulls = [int(df.index.get_loc(df[c].isna().idxmax())) for c in df.columns if df[c].isna().any()]
    sample = pd.concat([df.head(rows), df.iloc[sorted(set(nulls))]]) if nulls else df.head(rows)
    return infer_signature(sample).inputs


def sample_rows(df: pd.DataFrame, target: str, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` of ``df``, stratified on ``target`` (a class too small to stratify: a plain sample)."""
    from sklearn.model_selection import train_test_split

    try:
        kept, _ = train_test_split(df, train_size=rows, stratify=df[target], random_state=seed)
    except ValueError:
        kept = df.sample(n=rows, random_state=seed)
    return kept


def model_options(pipeline: Any, example: pd.DataFrame, trusted: list[str]) -> dict[str, Any]:
    """How a fitted model is written (``mlflow.sklearn.log_model`` / ``save_model``): skops, its input
    signature and example, exact requirements, and a model project's own ``trusted`` classes in the
    ``MLmodel`` metadata, inside the folder whose digest is signed (what the server's loader trusts)."""
    from mlflow.models import infer_signature

    return {
        "serialization_format": "skops",
        "skops_trusted_types": trusted_types(pipeline),  # for MLflow's loader; ours has its own list
        "signature": infer_signature(example, pipeline.predict(example)),
        "input_example": example,
        "pip_requirements": pip_requirements(),
        "metadata": {TRUSTED_METADATA: trusted} if trusted else None,
    }


def pip_requirements() -> list[str]:
    """Exact requirements of the logged model (given explicitly: inference costs seconds)."""
    import importlib.metadata as md

    pkgs = ["mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops"]
    return [f"{p}=={md.version(p)}" for p in pkgs]


def train_and_log(
    batch: BatchRef,
    df: pd.DataFrame,
    params: TrainParams,
    *,
    run_dir: Path,
    tracking_uri: str,
    experiment_id: str,
    run_name: str,
    tags: dict[str, str],
    parent_run_id: str | None = None,
    max_rows: int | None = None,
    project: Project | None = None,
    hyperparameters: dict[str, Any] | None = None,
    code: dict[str, str] | None = None,
    timeout_s: float | None = None,
) -> TrainResult:
    """Fit the pipeline on the train split and log everything the run needs to be reproduced.

    The holdout split is written to ``run_dir/holdout.parquet`` for the evaluation stage. With
    ``parent_run_id`` (a search's parent run, its candidates as children) the model is logged there.
    A train split above ``max_rows`` is fitted on a stratified sample of that many rows (the holdout
    stays whole); MLflow gets ``train_rows`` (fitted on) and ``train_rows_available``.

    With a model ``project``, its entry point builds the estimator (with ``hyperparameters``), the
    build and fit must end within ``timeout_s``, the fitted model must predict the right shapes and hold
    no class the project did not declare (:mod:`mlcicd.project.entry`), and ``code`` (the project's
    commit, digest and dirty flag) tags the run.

    Raises:
        ProjectError: the project's code breaks its contract; nothing is logged.
    """
    import mlflow
    from sklearn.metrics import accuracy_score, roc_auc_score

    train, holdout = split(df, batch.target, params.test_size, params.random_seed)
    holdout_path = run_dir / "holdout.parquet"
    holdout.to_parquet(holdout_path, index=False)
    available = len(train)
    if max_rows is not None and available > max_rows:
        train = sample_rows(train, batch.target, max_rows, params.random_seed)
    x_train, y_train = train.drop(columns=[batch.target]), train[batch.target]

    trusted: list[str] = []
    if project is None:
        pipeline = build_pipeline(x_train, params)
        pipeline.fit(x_train, y_train)
    else:
        from mlcicd.project import entry

        pipeline, trusted = entry.fit(
            project, x_train, y_train, hyperparameters or {}, params.random_seed, timeout_s
        )
    # On at most TRAIN_METRIC_ROWS of the fitted rows, in one pass: diagnostics, not the gate's figures.
    x_m, y_m = x_train, y_train
    if len(x_train) > TRAIN_METRIC_ROWS:
        x_m = x_train.sample(n=TRAIN_METRIC_ROWS, random_state=params.random_seed)
        y_m = y_train.loc[x_m.index]
    proba = pipeline.predict_proba(x_m)
    train_metrics = {
        "train_roc_auc": float(roc_auc_score(y_m, proba[:, 1])),
        "train_accuracy": float(accuracy_score(y_m, pipeline.classes_[proba.argmax(axis=1)])),
    }

    mlflow.set_tracking_uri(tracking_uri)
    version = code_version() if code is None else {"commit": code["commit"], "dirty": code["dirty"]}
    # The source is the run-scoped copy: MLflow resolves local paths, not every URI scheme we read.
    dataset = mlflow.data.from_pandas(
        df, source=batch.path, name=batch.dataset_name, targets=batch.target, digest=batch.digest
    )
    dataset.__dict__["schema"] = dataset_schema(df)  # MLflow's cached_property, filled in ahead
    run_tags = {
        **tags,
        "mlflow.source.git.commit": version["commit"],
        "mlcicd.code_version": version["commit"],
        "mlcicd.code_dirty": version["dirty"],
        "mlcicd.dataset_digest": batch.digest,
        "mlcicd.dataset_uri": batch.source_uri,
        "mlcicd.target": batch.target,
        **{f"{CODE_TAG_PREFIX}{k}": v for k, v in (code or {}).items()},
    }
    where = (
        {"run_id": parent_run_id} if parent_run_id else {"experiment_id": experiment_id, "run_name": run_name}
    )
    with mlflow.start_run(**where, tags=run_tags) as run:
        fitted: dict[str, Any] = asdict(params)
        if project is not None:  # the project's own hyperparameters, not the built-in families' knobs
            fitted = {
                "entry_point": project.spec.training.entry_point,
                "test_size": params.test_size,
                "random_seed": params.random_seed,
                **{f"hp.{k}": v for k, v in (hyperparameters or {}).items()},
            }
        mlflow.log_params(
            {
                **fitted,
                "train_rows": len(train),
                "train_rows_available": available,
                "holdout_rows": len(holdout),
            }
        )
        mlflow.log_input(dataset, context="training")
        if project is not None:
            mlflow.log_dict(hyperparameters or {}, HYPERPARAMETERS_ARTIFACT)
        mlflow.log_metrics(train_metrics)
        example = x_train.head(5)
        # The monitoring reference: what the model saw in training and what it predicted for it.
        reference = x_train.sample(n=min(REFERENCE_ROWS, len(x_train)), random_state=params.random_seed)
        reference = reference.assign(__prediction__=pipeline.predict(reference))
        ref_path = run_dir / "reference.parquet"
        reference.to_parquet(ref_path, index=False)
        mlflow.log_artifact(str(ref_path), artifact_path="reference")
        info = mlflow.sklearn.log_model(pipeline, name="model", **model_options(pipeline, example, trusted))
    from mlcicd import registry
    from mlcicd.serving.modelfile import DIGEST_TAG

    # Read back from the store the moment it was written: every later load checks this digest.
    model_digest = registry.model_digest(info.model_uri, tracking_uri)
    mlflow.set_logged_model_tags(info.model_id, {DIGEST_TAG: model_digest})
    return TrainResult(
        model_digest=model_digest,
        mlflow_run_id=run.info.run_id,
        model_uri=info.model_uri,
        model_id=info.model_id,
        holdout_path=str(holdout_path),
        train_rows=len(train),
        train_rows_available=available,
        holdout_rows=len(holdout),
        train_metrics=train_metrics,
    )
