"""``automl distill``: G-DetKD detection distillation of a chosen (teacher, student) pair.

Registered in the ``automl.commands`` entry-point group: :func:`add_command` adds the subcommand and
sets ``handler`` (the function to run) on the parsed namespace; torch and mmdet are imported inside the
command, so ``automl --help`` stays fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from automl.cli_types import int_at_least, key_value
from estimators.regimes.gdetkd_config import FEATURE_MODES

DEFAULT_OUT = Path("automl-runs/distill")


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``distill`` to automl's subcommands."""
    p = sub.add_parser("distill", help="G-DetKD: distil a teacher detector into a student (homogeneous or "
                       "heterogeneous pair)")
    p.add_argument("--teacher", required=True, help="KIND (faster-rcnn, retinanet, fcos), "
                   "KIND:STEM:D,D,D:W,W,W[:P,P,P], or a saved model (.pt, e.g. a previous teacher.pt)")
    p.add_argument("--student", required=True, help="same forms as --teacher (e.g. best_model.pt of a detnas search)")
    p.add_argument("--task", default="shapes-detection", help="a registered detection task (default "
                   "shapes-detection; coco reads any COCO-format dataset given by --task-option)")
    p.add_argument("--task-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a task option, e.g. val_annotations=/data/val.json (repeatable)")
    p.add_argument("--feature", choices=FEATURE_MODES, default="sgfi",
                   help="feature imitation: sgfi (semantic-guided, all student levels; default), fixed "
                   "(same-level MSE) or none")
    p.add_argument("--no-ckd", action="store_true", help="leave out contrastive distillation")
    p.add_argument("--rois", choices=("gt", "predicted"), default="gt",
                   help="RoIs of the distillation terms: ground-truth boxes (default) or the student's "
                   "predictions matched to them, 1:3 positive:negative")
    steps = int_at_least(0, "number of steps")
    p.add_argument("--teacher-steps", type=steps, default=600,
                   help="steps to train a teacher given without weights (default 600)")
    p.add_argument("--steps", type=steps, default=400, help="student training steps (default 400)")
    p.add_argument("--batch-size", type=int_at_least(1, "batch size"), default=8)
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (default 3e-3)")
    p.add_argument("--compare", action="store_true", help="also train the student without a teacher and show both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where teacher.pt, student.pt and "
                   f"report.json go (default {DEFAULT_OUT})")
    p.set_defaults(handler=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from automl.components import construct
    from automl.errors import ConfigError
    from automl.tasks.base import tasks
    from automl.tasks.detection import DetectionTask
    from estimators.detection_training import detection_recipe
    from estimators.distill import distill, parse_spec
    from estimators.regimes.gdetkd_config import GDetKDConfig

    console = Console()
    task_cls = tasks.get(args.task)
    if not issubclass(task_cls, DetectionTask):
        raise ConfigError(f"--task: {args.task!r} is not a detection task (shapes-detection, coco)")
    try:
        task = construct(task_cls, dict(args.task_option), kind="task", name=args.task)
    except ConfigError as exc:
        raise ConfigError(f"--task-option: {exc}") from None
    if args.lr <= 0:
        raise ConfigError(f"--lr must be > 0, got {args.lr}")
    info = task.info
    teacher = parse_spec(args.teacher, "teacher", info)
    student = parse_spec(args.student, "student", info)
    data = task.load()
    console.print(f"[bold]automl distill[/] teacher [cyan]{args.teacher}[/] -> student [cyan]{args.student}[/] "
                  f"on {args.task} ({len(data.train.images)} train / {len(data.val.images)} val images)")
    report = distill(teacher, student, data, info,
                     teacher_recipe=detection_recipe(args.teacher_steps, args.batch_size, args.lr),
                     student_recipe=detection_recipe(args.steps, args.batch_size, args.lr),
                     kd=GDetKDConfig(feature=args.feature, ckd=not args.no_ckd), rois=args.rois, seed=args.seed,
                     compare=args.compare, out_dir=args.out, on_phase=lambda text: console.print(f"· {text}"))
    pair = "homogeneous (feature + CKD + class KL + localisation)" if report.homogeneous else \
        "heterogeneous (feature + CKD)"
    table = Table(title=f"G-DetKD {report.teacher_kind} -> {report.student_kind}: {pair}")
    for column in ("model", "mAP", "AP50", "AP75", "train s"):
        table.add_column(column, justify="right" if column != "model" else "left")
    rows = [("teacher", report.teacher, report.seconds.get("teacher")),
            (f"student + G-DetKD ({args.feature}{'' if args.no_ckd else ' + ckd'})", report.student,
             report.seconds.get("student"))]
    if report.baseline is not None:
        rows.append(("student, no KD", report.baseline, report.seconds.get("baseline")))
    for name, scores, seconds in rows:
        table.add_row(name, *(f"{scores[k]:.4f}" for k in ("mAP", "AP50", "AP75")),
                      f"{seconds:.0f}" if seconds is not None else "loaded")
    console.print(table)
    console.print(f"wrote {args.out / 'student.pt'}, {args.out / 'teacher.pt'} and {args.out / 'report.json'}")
    return 0
