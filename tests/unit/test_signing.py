"""The installation's signature on a version's record: what write access to MLflow cannot change.

A real MLflow store (SQLite and local artifacts) and a model trained and registered as a run does it.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mlcicd import data, registry, signing, synthetic, training, trust
from mlcicd.errors import ConfigError, UntrustedArtifact
from mlcicd.training import load_reference

KEY = b"k" * 40  # pragma: allowlist secret
OTHER = b"o" * 40  # pragma: allowlist secret


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    c = registry.client(uri)
    exp = registry.ensure_experiment(c, "unit", root / "artifacts")
    df = synthetic.generate(600, 5)
    ref = data.store_batch(df, root / "run", source_uri="s", dataset_name="churn", target="churned")
    result = training.train_and_log(
        ref,
        df,
        training.TrainParams(estimator="logistic_regression"),
        run_dir=root / "run",
        tracking_uri=uri,
        experiment_id=exp,
        run_name="unit",
        tags={},
    )
    signed = {training.REFERENCE_ARTIFACT: signing.file_digest(root / "run" / "reference.parquet")}
    v = registry.register(
        c,
        "signed_model",
        result.model_uri,
        result.mlflow_run_id,
        "run-1",
        result.model_digest,
        model_id=result.model_id,
    )
    trust.sign_version(c, KEY, "signed_model", v, signed)
    artifacts = Path(c.get_run(result.mlflow_run_id).info.artifact_uri.removeprefix("file://"))
    return c, v, artifacts


def test_a_signed_record_is_vouched_for_and_its_reference_reads(version):
    c, v, _ = version
    assert str(trust.trusted_version(c, KEY, "signed_model", v).version) == v
    assert len(load_reference(c, KEY, "signed_model", v)) > 0
    assert trust.release_of(c, "signed_model", v, KEY).version == v


def test_another_key_is_named_and_nothing_is_trusted(version):
    c, v, _ = version
    with pytest.raises(UntrustedArtifact) as refused:
        trust.release_of(c, "signed_model", v, OTHER)
    message = str(refused.value)
    assert f"signed with another key (id '{signing.fingerprint(KEY)}'" in message
    assert f"python -m mlcicd resign signed_model {v}" in message


@pytest.mark.parametrize(
    ("tag", "value"),
    [("mlcicd.model_digest", "0" * 64), (trust.IMAGE_TAG, "evil.example/model:1"), (trust.SIGNATURE_TAG, "")],
)
def test_a_tampered_record_stops_every_reader(version, tag, value):
    c, v, _ = version
    before = registry.version_tags(c, "signed_model", v)
    c.set_model_version_tag("signed_model", v, tag, value)
    try:
        for read in (
            lambda: trust.release_of(c, "signed_model", v, KEY),
            lambda: load_reference(c, KEY, "signed_model", v),
            lambda: trust.record_tags(c, KEY, "signed_model", v, {trust.IMAGE_TAG: "x"}),
        ):
            with pytest.raises(UntrustedArtifact, match="has no signature|changed after it was signed"):
                read()
    finally:
        for t, val in before.items():
            c.set_model_version_tag("signed_model", v, t, val)
        if tag not in before:
            c.delete_model_version_tag("signed_model", v, tag)
    assert trust.trusted_version(c, KEY, "signed_model", v)


def test_a_tampered_artifact_is_not_read_until_it_is_re_signed(version):
    c, v, artifacts = version
    path = artifacts / training.REFERENCE_ARTIFACT
    original = path.read_bytes()
    import pandas as pd

    swapped = pd.read_parquet(path).head(3)
    swapped.to_parquet(path, index=False)
    try:
        with pytest.raises(
            UntrustedArtifact, match="reference/reference.parquet .* changed after it was signed"
        ):
            load_reference(c, KEY, "signed_model", v)
        trust.sign_version(
            c, KEY, "signed_model", v, {training.REFERENCE_ARTIFACT: signing.file_digest(path)}
        )
        assert len(load_reference(c, KEY, "signed_model", v)) == 3  # deliberately re-signed
    finally:
        path.write_bytes(original)
        trust.sign_version(
            c, KEY, "signed_model", v, {training.REFERENCE_ARTIFACT: signing.file_digest(path)}
        )


def test_an_artifact_added_outside_the_record_is_refused(version, tmp_path):
    c, v, artifacts = version
    extra = artifacts / "validation" / "reference_suite.json"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_text(json.dumps({"name": "churn", "expectations": []}))
    try:
        with pytest.raises(UntrustedArtifact, match="is not in the signed record"):
            trust.trusted_artifact(c, KEY, "signed_model", v, "validation/reference_suite.json", tmp_path)
    finally:
        extra.unlink()
    assert (
        trust.trusted_artifact(c, KEY, "signed_model", v, "validation/reference_suite.json", tmp_path) is None
    )


def test_the_key_is_made_once_private_and_a_short_configured_key_is_refused(tmp_path):
    key = signing.installation_key(None, tmp_path)
    path = signing.key_file(tmp_path)
    assert len(key) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing.installation_key(None, tmp_path) == key
    assert signing.installation_key("c" * 32, tmp_path) == b"c" * 32
    with pytest.raises(ConfigError, match="MLCICD_SIGNING_KEY has 8 characters; use at least 32"):
        signing.installation_key("short-ky", tmp_path)


def test_the_settings_never_print_the_key(monkeypatch):
    from mlcicd.settings import load

    monkeypatch.setenv("MLCICD_SIGNING_KEY", "s" * 40)
    settings = load()
    assert settings.signing_key() == b"s" * 40 and "s" * 40 not in repr(settings)


def test_a_signed_version_made_champion_outside_mlcicd_is_not_trusted_until_its_promotion_is_signed(version):
    """Every version is signed when registered, rejected ones too: registry write access could point
    @champion at one the gate or a human turned down. Only a promotion this installation signed counts."""
    c, v, _ = version
    c.set_registered_model_alias("signed_model", registry.CHAMPION, v)
    try:
        with pytest.raises(UntrustedArtifact, match="is @champion, but its promotion has no signature"):
            trust.trusted_champion(c, KEY, "signed_model")
        trust.sign_promotion(c, OTHER, "signed_model", v)
        with pytest.raises(UntrustedArtifact, match="its promotion was signed with another key"):
            trust.trusted_champion(c, KEY, "signed_model")
        trust.sign_promotion(c, KEY, "signed_model", v)
        assert trust.trusted_champion(c, KEY, "signed_model").version == v
    finally:
        c.delete_registered_model_alias("signed_model", registry.CHAMPION)


def test_a_version_other_than_the_signer_expects_is_not_signed(version):
    """What is signed is what the signer knows (the run's trained model, the record resign showed), not
    whatever MLflow holds by then."""
    c, v, _ = version
    with pytest.raises(UntrustedArtifact, match="MLflow holds model_digest other than expected"):
        trust.sign_version(c, KEY, "signed_model", v, expect={"model_digest": "sha256:" + "0" * 64})
    assert str(trust.trusted_version(c, KEY, "signed_model", v).version) == v  # signed as before
