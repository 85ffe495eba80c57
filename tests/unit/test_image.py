from __future__ import annotations

import pytest

from mlcicd import image
from mlcicd.errors import ConfigError
from mlcicd.image import Registry


@pytest.mark.parametrize(
    ("model", "registry", "expected"),
    [
        ("mlcicd_churn", None, "mlcicd_churn"),
        ("Churn.Model-2", None, "churn.model-2"),
        ("a b/c", None, "a-b-c"),
        ("churn", Registry("localhost:5001", login=False), "localhost:5001/churn"),
    ],
)
def test_repository_is_a_valid_lower_case_name(model, registry, expected):
    assert image.repository(model, registry) == expected


@pytest.mark.parametrize(
    ("setting", "target", "builder"),
    [
        ("auto", "local", "none"),
        ("auto", "docker", "docker"),
        ("auto", "kubernetes", "docker"),
        ("kaniko", "kubernetes", "kaniko"),
        ("docker", "local", "docker"),
    ],
)
def test_builder_follows_the_target(setting, target, builder):
    assert image.resolve_builder(setting, target) == builder


@pytest.mark.parametrize(
    ("setting", "target", "message"),
    [
        ("none", "docker", "runs the model-server image"),
        ("podman", "docker", "MLCICD_IMAGE_BUILDER='podman'"),
    ],
)
def test_impossible_builder_settings_say_what_to_set(setting, target, message):
    with pytest.raises(ConfigError, match=message):
        image.resolve_builder(setting, target)


def test_context_digest_covers_every_byte_path_and_the_base_image(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"1")
    first = image.context_digest(tmp_path, "base:1")
    assert image.context_digest(tmp_path, "base:1") == first
    assert image.context_digest(tmp_path, "base:2") != first
    (tmp_path / "a" / "f").write_bytes(b"2")
    changed = image.context_digest(tmp_path, "base:1")
    assert changed != first
    (tmp_path / "a" / "f").rename(tmp_path / "a" / "g")
    assert image.context_digest(tmp_path, "base:1") != changed
