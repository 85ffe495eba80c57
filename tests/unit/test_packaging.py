"""mlcicd as a package a team installs into its own Airflow 3: its dependencies (agreed with the
reference lock), its plugin through the ``airflow.plugins`` entry point, and the files a wheel carries."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def pinned(path: Path) -> dict[str, str]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return {canonicalize_name(ln.split("==")[0]): ln.split("==")[1] for ln in lines if "==" in ln}


def test_the_declared_dependencies_agree_with_the_reference_lock():
    declared = [
        Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    lock, direct = pinned(ROOT / "constraints.txt"), pinned(ROOT / "requirements.txt")
    for req in declared:
        version = lock[canonicalize_name(req.name)]
        assert req.specifier.contains(Version(version)), f"{req} excludes the locked {req.name}=={version}"
        if not req.name.startswith("apache-airflow-") or req.name == "apache-airflow-client":
            assert str(req.specifier) == f"=={version}", f"{req}: the ML stack is pinned exactly"
    names = {canonicalize_name(r.name) for r in declared}
    # Every direct requirement but the apache-airflow meta-package (the team's Airflow is its own).
    assert set(direct) - {"apache-airflow"} == names


PROBE = """
import json
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
print(json.dumps({"plugins": [(p.name, type(p).__module__ if not isinstance(p, type) else p.__module__) for p in plugins],
                  "errors": {k: str(v) for k, v in errors.items()},
                  "links": sorted(type(link).__name__ for link in plugins_manager.get_operator_extra_links())}))
"""


def test_airflow_finds_the_plugin_through_the_entry_point_with_the_plugins_folder_empty(tmp_path):
    env = {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert [name for name, _ in found["plugins"]].count("mlcicd") == 1  # beside the providers' own
    assert {"MlflowRunLink", "DataDocsLink", "ShiftReportLink", "ScanReportLink"} <= set(found["links"])
    assert [p.name for p in (ROOT / "plugins").iterdir()] == ["README.md"]  # registered once, not twice


def test_the_wheel_carries_the_package_its_data_and_the_entry_points(tmp_path):
    uv = Path(sys.executable).parent / "uv"
    out = subprocess.run(
        [str(uv), "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("mlcicd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "mlcicd/plugin/registration.py",
        "mlcicd/plugin/webassets/bootstrap.min.css",
        "mlcicd/project/templates/mlcicd.toml",
        "mlcicd/project/templates/github-workflow.yml",
        "mlcicd/serving/server.py",
    ):
        assert needed in names, needed
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[airflow.plugins]\nmlcicd = mlcicd.plugin.registration:MlcicdPlugin" in text
    assert "[console_scripts]\nmlcicd = mlcicd.cli:main" in text
