"""``automl once-eval``: ONCE's official 3-D detection AP (:mod:`automl.tasks.once_eval`, OpenPCDet's
evaluation) of a predictions file against a ground-truth file.

Both files are JSON, either a list of frames ``{"frame_id": ..., "name": [...], "boxes_3d": [[cx, cy, cz,
l, w, h, θ], ...], "score": [...]}`` (``score`` in predictions only) or an object mapping frame ids to
frames. When every frame on both sides has a frame id (a mapping, or a list whose frames all carry
``frame_id``), frames are matched by id: a ground-truth frame without predictions has none (its objects
are missed), a prediction frame whose id is not in the ground truth is an error. Otherwise the two lists
are matched by position, as OpenPCDet does, and must be equally long.

Registered in the ``automl.commands`` entry-point group like ``automl shift``; numpy and shapely are
imported inside the command. Bad input raises :class:`~automl.errors.ConfigError` (a
:class:`~automl.errors.DatasetError` for a bad frame), which the CLI prints as one line and exits with
status 2.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from automl.errors import ConfigError, DatasetError


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``once-eval`` to automl's subcommands."""
    p = sub.add_parser("once-eval", help="ONCE's official 3-D detection AP (OpenPCDet's evaluation: Vehicle, "
                       "Pedestrian, Cyclist; overall and by distance) of predictions against ground truth")
    p.add_argument("--gt", required=True, type=Path, metavar="GT.json",
                   help="ground truth: a list of frames {frame_id, name, boxes_3d} or an object frame_id -> frame")
    p.add_argument("--pred", required=True, type=Path, metavar="PRED.json",
                   help="predictions, in the same layout, each frame with a score per box")
    p.add_argument("--json", type=Path, metavar="OUT.json", dest="json_out",
                   help="also write the results (the official keys AP_Vehicle/overall, ...) to this file")
    p.set_defaults(handler=cmd_once_eval)


Frames = list[tuple[str | None, Any]]


def _load(path: Path, what: str) -> tuple[Frames, bool]:
    """The frames of ``path`` as ``(frame_id, frame)`` and whether the file is a mapping by frame id."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"cannot read the {what} file: no such file", source=str(path)) from None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 (UnicodeDecodeError) or a NUL in the path
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise ConfigError(f"cannot read the {what} file: {reason}", source=str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg} (column {exc.colno})", source=str(path),
                          line=exc.lineno) from None
    if isinstance(data, list):
        return [(None if not isinstance(f, dict) or f.get("frame_id") is None else str(f["frame_id"]), f)
                for f in data], False
    if isinstance(data, dict):
        return [(str(key), frame) for key, frame in data.items()], True
    raise DatasetError(f"expected a list of frames or an object mapping frame ids to frames, got "
                       f"{type(data).__name__}", source=str(path))


def _checked(frames: Frames, path: Path, what: str, predictions: bool) -> list[dict[str, Any]]:
    from automl.tasks.once_eval import check_frame

    out = []
    for index, (frame_id, frame) in enumerate(frames):
        where = f"{what} frame {index}" + (f" (frame_id {frame_id!r})" if frame_id is not None else "")
        out.append(check_frame(frame, predictions=predictions, where=where, source=str(path)))
    return out


def _aligned(gt: Frames, gt_keyed: bool, pred: Frames, pred_keyed: bool, args: argparse.Namespace
             ) -> tuple[list[Any], list[Any]]:
    by_id = all(frame_id is not None for frame_id, _ in gt) and all(frame_id is not None for frame_id, _ in pred)
    if not by_id:
        if gt_keyed or pred_keyed:
            side, path = ("ground truth", args.gt) if not all(f is not None for f, _ in gt) else ("predictions",
                                                                                                  args.pred)
            raise DatasetError(f"the other file maps frame ids to frames, but the {side} has frames without a "
                               "frame_id (expected a frame_id on every frame to match them by)", source=str(path))
        if len(gt) != len(pred):
            raise DatasetError(f"{len(gt)} ground-truth frames but {len(pred)} prediction frames; without a "
                               "frame_id on every frame they are matched by position and must be as many",
                               source=str(args.pred))
        return [f for _, f in gt], [f for _, f in pred]
    for frames, path in ((gt, args.gt), (pred, args.pred)):
        seen: set[str] = set()
        for frame_id, _ in frames:
            if frame_id in seen:
                raise DatasetError(f"frame_id {frame_id!r} appears twice (expected one frame per id)",
                                   source=str(path))
            seen.add(str(frame_id))
    known = {frame_id for frame_id, _ in gt}
    unknown = [frame_id for frame_id, _ in pred if frame_id not in known]
    if unknown:
        more = f" ({len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
        raise DatasetError(f"prediction frame_id {unknown[0]!r} is not in the ground truth {args.gt}{more}",
                           source=str(args.pred))
    predicted = {frame_id: frame for frame_id, frame in pred}
    empty: dict[str, list[Any]] = {"name": [], "boxes_3d": [], "score": []}
    return [f for _, f in gt], [predicted.get(str(frame_id), empty) for frame_id, _ in gt]


def cmd_once_eval(args: argparse.Namespace) -> int:
    from automl.tasks.once_eval import evaluate, result_table

    gt, gt_keyed = _load(args.gt, "ground-truth")
    pred, pred_keyed = _load(args.pred, "predictions")
    gt_frames = _checked(gt, args.gt, "ground-truth", predictions=False)
    pred_frames = _checked(pred, args.pred, "predictions", predictions=True)
    gt_by_position = [(frame_id, frame) for (frame_id, _), frame in zip(gt, gt_frames)]
    pred_by_position = [(frame_id, frame) for (frame_id, _), frame in zip(pred, pred_frames)]
    gt_list, pred_list = _aligned(gt_by_position, gt_keyed, pred_by_position, pred_keyed, args)
    matched = sum(1 for f in pred_list if len(f["name"]))
    result = evaluate(gt_list, pred_list)
    print(f"ONCE 3-D detection AP (OpenPCDet's evaluation, {len(gt_list)} frames, {matched} with predictions)")
    print(result_table(result))
    if args.json_out is not None:
        out = {key: (value if math.isfinite(value) else None) for key, value in result.items()}
        try:
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(out, indent=2) + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write the results: {exc.strerror or exc}", source=str(args.json_out),
                              field="--json") from None
        print(f"wrote {args.json_out}")
    return 0
