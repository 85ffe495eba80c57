"""What the scan's detectors find: issues, results, thresholds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAJOR, MINOR = "major", "minor"


@dataclass(frozen=True)
class Thresholds:
    slice_drop: float = 0.05
    major_slice_drop: float = 0.10
    fdr: float = 0.05
    fragile_rate: float = 0.05
    major_fragile_rate: float = 0.10
    confidence_excess: float = 0.10
    spurious_u: float = 0.5
    min_rows: int = 100
    max_rows: int = 20_000
    perturb_rows: int = 1_000
    determinism_rows: int = 100
    unbalanced_share: float = 0.2  # a minority class below this share: balanced accuracy


@dataclass(frozen=True)
class Issue:
    detector: str
    severity: str
    message: str
    slice: str | None = None
    metric: str | None = None
    value: float | None = None
    reference: float | None = None
    rows: int | None = None
    p_value: float | None = None

    @property
    def key(self) -> str:
        """What makes two models' issues the same issue."""
        return f"{self.detector}|{self.slice or ''}|{self.metric or ''}"


@dataclass
class ScanResult:
    rows: int
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    slices: list[dict[str, Any]] = field(default_factory=list)  # every slice tested, for the report
    sampled_from: int | None = None
    seconds: float = 0.0

    @property
    def major(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == MAJOR]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["issues"] = [{**asdict(i), "key": i.key} for i in self.issues]
        return out


def new_major(
    candidate: ScanResult | dict[str, Any], champion: ScanResult | dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The candidate's MAJOR issues that the champion does not have (at any severity)."""
    cand = candidate.to_dict() if isinstance(candidate, ScanResult) else candidate
    champ = champion.to_dict() if isinstance(champion, ScanResult) else champion
    known = {i["key"] for i in (champ or {}).get("issues", [])}
    return [i for i in cand["issues"] if i["severity"] == MAJOR and i["key"] not in known]
