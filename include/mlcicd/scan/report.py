"""The scan's HTML page: issues by severity, and each slice's metric against the whole holdout's."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

WORST_SLICES = 30


def render(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    new_major: list[dict[str, Any]],
    title: str,
    champion_version: str | None,
) -> str:
    """A self-contained page (the plot inline, no script)."""
    new = {i["key"] for i in new_major}
    rows = []
    for i in candidate["issues"]:
        mark = "new" if i["key"] in new else ""
        rows.append(
            f"<tr class='{i['severity']}'><td>{i['severity'].upper()}</td><td>{html.escape(i['detector'])}</td>"
            f"<td>{html.escape(i['message'])}</td><td>{mark}</td></tr>"
        )
    table = (
        (
            "<table><tr><th>severity</th><th>detector</th><th>finding</th><th>not in the champion</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        if rows
        else "<p>No issue found.</p>"
    )
    champ = ""
    if champion is not None:
        found = ", ".join(
            f"{sum(i['severity'] == s for i in champion['issues'])} {s}" for s in ("major", "minor")
        )
        champ = f"<p>The champion v{html.escape(str(champion_version))}, scanned on the same holdout: {found}.</p>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in candidate.get("notes", []))
    plot = _plot(candidate.get("slices", []))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}} tr.major td:first-child{{color:#b00;font-weight:bold}}
tr.minor td:first-child{{color:#a60}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{candidate["rows"]:,} holdout rows, scanned in {candidate["seconds"]:.1f} s. A MAJOR issue the champion does not
have rejects the candidate (the <code>scan_major</code> param can make it a warning).</p>
{champ}{f"<ul>{notes}</ul>" if notes else ""}
<h2>Issues</h2>{table}
<h2>Slices: the accuracy of each against the whole holdout's (the {WORST_SLICES} worst)</h2>{plot}
</body></html>"""


def _plot(slices: list[dict[str, Any]]) -> str:
    primary = [s for s in slices if s["metric"] in ("accuracy", "balanced_accuracy")]
    if not primary:
        return "<p>No slice was tested (see the notes).</p>"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = sorted(primary, key=lambda s: s["value"])[:WORST_SLICES][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(worst) + 1.2))
    colours = [
        "#b00"
        if s["drop"] > 0.10 and s["p_adjusted"] <= 0.05
        else "#a60"
        if s["drop"] > 0.05 and s["p_adjusted"] <= 0.05
        else "#4a7"
        for s in worst
    ]
    ax.barh([s["slice"] for s in worst], [s["value"] for s in worst], color=colours)
    ax.axvline(
        worst[0]["overall"], color="black", linestyle="--", label=f"whole holdout {worst[0]['overall']:.2f}"
    )
    ax.set_xlabel(worst[0]["metric"])
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return (
        f"<img alt='slice accuracy' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"
    )
