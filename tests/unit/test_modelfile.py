"""Only verified models load: the digest recorded at training, skops with the project's own trusted
types, never a pickle, never extra code; a tampered bundle does not start a server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlcicd import choices, synthetic, training
from mlcicd.serving import modelfile
from mlcicd.serving.modelfile import UntrustedModel
from tests.helpers import bundle_digest, make_model_dir


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    model, x = make_model_dir(root, rows=400, seed=2)
    return root, model, x


def copy_of(bundle, tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(bundle[0], dest)
    return dest


@pytest.mark.parametrize("estimator", choices.ESTIMATORS)
def test_every_family_trained_loads_with_the_fixed_types(estimator):
    df = synthetic.generate(400, 5)
    df.loc[::7, "contract"] = None  # missing values take other paths through the encoders
    df.loc[::5, "tenure_months"] = np.nan
    x, y = df.drop(columns="churned"), df.churned
    pipeline = training.build_pipeline(x, training.TrainParams(estimator=estimator, n_estimators=5)).fit(x, y)
    assert set(training.trusted_types(pipeline)) <= set(modelfile.TRUSTED_TYPES), estimator


def test_a_verified_bundle_loads_and_predicts_as_trained(bundle):
    root, model, x = bundle
    release = json.loads((root / "release.json").read_text())
    loaded = modelfile.load(root / "model", release["model_digest"], "m v7")
    assert loaded.predict(x.head(50)).tolist() == model.predict(x.head(50)).tolist()


def test_a_changed_model_file_is_refused_naming_the_version(bundle, tmp_path):
    root = copy_of(bundle, tmp_path)
    recorded = bundle_digest(root)
    skops_file = root / "model" / "model.skops"
    data = bytearray(skops_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    skops_file.write_bytes(bytes(data))
    with pytest.raises(
        UntrustedModel, match="mlcicd_churn v3: the model's files changed after it was logged"
    ):
        modelfile.load(root / "model", recorded, "mlcicd_churn v3")


def test_an_added_file_changes_the_digest_but_registered_model_meta_does_not(bundle, tmp_path):
    root = copy_of(bundle, tmp_path)
    before = bundle_digest(root)
    (root / "model" / "registered_model_meta").write_text("model_name: m\nmodel_version: '7'\n")
    assert bundle_digest(root) == before  # MLflow writes it when the version is registered
    (root / "model" / "extra.py").write_text("print('hi')\n")
    assert bundle_digest(root) != before


def test_no_recorded_digest_is_refused(bundle):
    with pytest.raises(UntrustedModel, match="has no recorded digest"):
        modelfile.load(bundle[0] / "model", None, "mlcicd_churn v1")


class Boom:
    """Unpickling this writes a file: the proof that a pickle ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pickle ran",))


def test_an_mlmodel_switched_to_pickle_is_refused_and_never_unpickled(bundle, tmp_path):
    """The attacker rewrote the artifact and the digest: the format alone must stop the load."""
    import cloudpickle

    root = copy_of(bundle, tmp_path)
    marker = tmp_path / "pwned"
    (root / "model" / "model.pkl").write_bytes(cloudpickle.dumps(Boom(str(marker))))
    meta_path = root / "model" / "MLmodel"
    meta = yaml.safe_load(meta_path.read_text())
    meta["flavors"]["sklearn"].update(serialization_format="cloudpickle", pickled_model="model.pkl")
    meta["flavors"]["python_function"]["model_path"] = "model.pkl"
    meta_path.write_text(yaml.safe_dump(meta))
    with pytest.raises(UntrustedModel, match="serialized as 'cloudpickle'.*only skops"):
        modelfile.load(root / "model", bundle_digest(root), "mlcicd_churn v4")
    assert not marker.exists()
    # MLflow's own loader, which the project used before, does run it: the test would catch a return to it.
    import mlflow.sklearn

    mlflow.sklearn.load_model(str(root / "model"))
    assert marker.read_text() == "pickle ran"


def test_extra_code_paths_are_refused(bundle, tmp_path):
    root = copy_of(bundle, tmp_path)
    meta_path = root / "model" / "MLmodel"
    meta = yaml.safe_load(meta_path.read_text())
    meta["flavors"]["python_function"]["code"] = "code"
    meta_path.write_text(yaml.safe_dump(meta))
    with pytest.raises(UntrustedModel, match="extra code paths"):
        modelfile.load(root / "model", bundle_digest(root), "m v7")


def test_the_input_signature_is_read_from_the_verified_mlmodel_as_mlflow_reads_it(bundle, tmp_path):
    from mlflow.models import Model

    pipeline, specs = modelfile.load_with_signature(bundle[0] / "model", bundle_digest(bundle[0]), "m v7")
    assert hasattr(pipeline, "predict")
    schema = Model.load(str(bundle[0] / "model")).get_input_schema()
    assert [(c["name"], c["type"], c["required"]) for c in specs] == [
        (c.name, c.type.name, c.required) for c in schema.inputs
    ]
    root = copy_of(bundle, tmp_path)
    meta_path = root / "model" / "MLmodel"
    meta = yaml.safe_load(meta_path.read_text())
    del meta["signature"]
    meta_path.write_text(yaml.safe_dump(meta))
    with pytest.raises(ValueError, match="no input signature of named columns"):
        modelfile.load_with_signature(root / "model", bundle_digest(root), "m v7")


def test_a_type_outside_the_trusted_list_is_refused(tmp_path):
    """The MLmodel's own skops_trusted_types list is ignored: a type we do not train is refused."""
    import mlflow.sklearn
    from sklearn.neighbors import KNeighborsClassifier

    x = np.arange(20, dtype=float).reshape(10, 2)
    pipeline = KNeighborsClassifier(n_neighbors=3).fit(x, [0, 1] * 5)  # holds a KDTree
    trusted = training.trusted_types(pipeline)  # what MLflow would record and obey
    mlflow.sklearn.save_model(pipeline, str(tmp_path / "model"), skops_trusted_types=trusted)
    with pytest.raises(UntrustedModel, match="types this project does not train"):
        modelfile.load(tmp_path / "model", modelfile.digest(tmp_path / "model"), "m v9")


def serve(root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    from mlcicd.ports import free_port

    port = str(free_port("127.0.0.1"))
    return subprocess.run(
        [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(root), "--port", port],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_server_does_not_start_on_a_tampered_bundle(bundle, tmp_path):
    root = copy_of(bundle, tmp_path)
    (root / "model" / "model.skops").write_bytes(b"not the model")
    done = serve(root)
    assert done.returncode != 0
    assert "not starting: m v7: the model's files changed after it was logged" in done.stderr


def test_the_server_does_not_start_when_release_json_is_rewritten(bundle, tmp_path):
    """The target pins the registry's digest: rewriting release.json to match new files is caught."""
    root = copy_of(bundle, tmp_path)
    registered = bundle_digest(root)
    (root / "model" / "input_example.json").write_text("{}")
    release = json.loads((root / "release.json").read_text())
    (root / "release.json").write_text(json.dumps({**release, "model_digest": bundle_digest(root)}))
    done = serve(root, {modelfile.DIGEST_ENV: registered})
    assert done.returncode != 0
    assert "the deploy target expects" in done.stderr


def test_bundle_preparation_refuses_files_that_are_not_the_registered_ones(bundle, tmp_path):
    """A bundle left on disk by an earlier deploy is verified again before it is served."""
    from mlcicd.release import Release, prepare_bundle
    from mlcicd.settings import load

    version_dir = copy_of(bundle, tmp_path)
    good = Release("m", "7", "models:/m/7", "-", "r", model_digest=bundle_digest(version_dir))
    prepared = json.loads((prepare_bundle(load(), good, version_dir) / "release.json").read_text())
    assert prepared["model_digest"] == good.model_digest
    (version_dir / "release.json").unlink()
    (version_dir / "model" / "conda.yaml").write_text("dependencies: [evil]\n")
    with pytest.raises(UntrustedModel, match="m v7: the model's files changed"):
        prepare_bundle(load(), good, version_dir)
    assert not (version_dir / "release.json").exists()  # nothing a server would start from
