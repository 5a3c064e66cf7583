"""``ltag model info``: what the model bundle is, knows and how well it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

MODEL_HELP = "Model bundle folder (default: the shipped bundle)."


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(ci) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def info(
    model: Annotated[Path | None, typer.Option("--model", help=MODEL_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """Show the model bundle: id, landmarks, threshold, preprocessing, provenance and validation figures.

    Example:
        ltag model info
        ltag model info --model runs/holdout5/bundle --json
    """
    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.console import out

    bundle = load_bundle(model)
    emb, _ = bundle.gallery()
    prov = bundle.provenance
    metrics = prov.get("metrics", {}).get("report", {})
    if as_json:
        data = {
            "path": str(bundle.path), "model_id": bundle.model_id,
            "labels": [{"id": lab.id, "name": lab.name, "lat": lab.lat, "lon": lab.lon, "radius_km": lab.radius_km}
                       for lab in bundle.labels],
            "threshold": bundle.threshold, "scoring": bundle.scoring.to_dict(),
            "preprocess": bundle.preprocess.to_dict(), "embedding_dim": bundle.embedding_dim,
            "generic_dim": bundle.generic_dim, "gallery_size": int(emb.shape[0]), "provenance": prov,
        }
        out.print_json(json.dumps(data, default=str))
        return
    from rich.table import Table

    pp = bundle.preprocess
    out.print(f"[bold]{bundle.model_id}[/bold]  ({bundle.path})")
    out.print(f"backbone {prov.get('backbone', '?')}, pooling {prov.get('pooling', '?')}, "
              f"embedding {bundle.embedding_dim}-d, generic {bundle.generic_dim}-d, gallery {emb.shape[0]} photos")
    out.print(f"preprocess: {pp.size} px, {pp.resize}, {pp.interpolation}, views {', '.join(pp.views)}")
    out.print(f"scoring: rule {bundle.scoring.rule} (k={bundle.scoring.k}), threshold {bundle.threshold} "
              f"on the confidence scale (>= {100 * bundle.raw['scoring'].get('target_precision', 0.99):.0f}% "
              "precision on held-out photos)")
    if prov.get("training_data"):
        out.print(f"training data: {prov['training_data']}")
    if prov.get("date") or prov.get("git_sha"):
        out.print(f"built {prov.get('date', '?')} from revision {prov.get('git_sha') or '?'}")
    if metrics:
        at = metrics.get("at_threshold", {})
        out.print(f"validation ({metrics.get('n', '?')} held-out photos): top-1 {_pct(metrics.get('top1'))}"
                  f"{_ci(metrics.get('top1_ci'))}, GAP {metrics.get('gap', 0):.3f}, precision at threshold "
                  f"{_pct(at.get('precision'))}{_ci(at.get('precision_ci'))}, tagged {_pct(at.get('coverage'))}"
                  f"{_ci(at.get('coverage_ci'))}")
        for key, text in (("open_set_stand_in", "photos with their landmark's site removed from the gallery"),
                          ("holdout_classes", "photos of landmarks left out of training")):
            if key in metrics:
                m = metrics[key]
                out.print(f"  {text}: {_pct(m['untagged_rate'])}{_ci(m.get('untagged_ci'))} left untagged "
                          f"({m['untagged']}/{m['n']})")
    osv = prov.get("open_set_validation")
    if osv and "holdout_classes" in osv:
        m = osv["holdout_classes"]
        out.print(f"  photos of landmarks a model of this recipe was not trained on: {_pct(m['untagged_rate'])}"
                  f"{_ci(m.get('untagged_ci'))} left untagged ({m['untagged']}/{m['n']}; {osv.get('holdout_model_id')})")
    table = Table("id", "name", "location", "radius km", box=None, pad_edge=False)
    for lab in bundle.labels:
        loc = f"{lab.lat:.4f}, {lab.lon:.4f}" if lab.lat is not None else "-"
        table.add_row(lab.id, lab.name, loc, "-" if lab.radius_km is None else f"{lab.radius_km:g}")
    out.print(table)


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(help="Inspect the model bundle.", no_args_is_help=True)
    model_app.command("info")(info)
    app.add_typer(model_app, name="model")
