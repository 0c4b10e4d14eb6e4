"""Command line of the starter kit.

python -m baselines recipes
python -m baselines train --data DIR --recipe human_xeno_kidney --out model.onnx
python -m baselines export --weights weights.pt --out model.pt2
python -m baselines learn-transforms --data DIR --recipe human_xeno_icg --out xeno.npz

Recipes cover pig, rat and human data (``python -m baselines recipes``). Run as
``python -m baselines``, a data problem (e.g. no rat images for a rat recipe) ends with a
one-line error and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "run"]


def _read_names(path: Path | None) -> tuple[str, ...] | None:
    if path is None:
        return None
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return tuple(n for n in names if n and not n.startswith("#"))


def _split_names(data: Path, fold: str | None) -> tuple[str, ...] | None:
    if fold is None:
        return None
    from datasets.splits import read_data_spec

    folds = read_data_spec(data / "splits.json")
    for f in folds:
        if f.fold_name == fold:
            return tuple(f.names("train"))
    raise SystemExit(f"fold {fold!r} not in {data / 'splits.json'}: {[f.fold_name for f in folds]}")


def _settings(args: argparse.Namespace):
    from baselines.recipes import RecipeSettings

    names = _read_names(args.image_names)
    split = _split_names(args.data, args.split)
    if names is not None and split is not None:
        names = tuple(n for n in names if n in set(split))
    return RecipeSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        crop_size=args.crop_size or None,
        width=args.width,
        image_names=names if names is not None else split,
        device=args.device,
        num_threads=args.threads,
    )


def _progress_bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)

    def update(step: int, total: int, loss: float) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}")

    return bar, update


def cmd_recipes(_args: argparse.Namespace) -> int:
    from baselines.recipes import RECIPES

    for r in RECIPES.values():
        print(f"{r.name:22s} {r.title}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from baselines.export import export_model, format_from_path
    from baselines.recipes import train_recipe

    format_from_path(args.out)  # fail before training on a bad suffix
    settings = _settings(args)
    bar, update = _progress_bar(args.recipe)
    try:
        result = train_recipe(
            args.recipe, args.data, settings, progress=update, log=lambda m: bar.write(m)
        )
    finally:
        bar.close()
    path = export_model(result.model, args.out)
    print(f"trained {args.recipe} on {result.n_images} images in {result.seconds:.1f}s")
    print(f"exported and checked {path}")
    if args.weights:
        import torch

        torch.save(result.model.state_dict(), args.weights)
        Path(str(args.weights) + ".json").write_text(
            json.dumps(result.model.config.to_dict()), encoding="utf-8"
        )
        print(f"weights in {args.weights} (config {args.weights}.json)")
    if args.transforms and result.transforms:
        from baselines.augment import save_transforms

        save_transforms(args.transforms, result.transforms)
        print(f"transforms in {args.transforms}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from baselines.export import export_model
    from baselines.model import MiniUNet, ModelConfig

    config = json.loads(Path(str(args.weights) + ".json").read_text(encoding="utf-8"))
    model = MiniUNet(ModelConfig.from_dict(config))
    model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    print(f"exported and checked {export_model(model.eval(), args.out)}")
    return 0


def cmd_learn_transforms(args: argparse.Namespace) -> int:
    from baselines.augment import save_transforms
    from baselines.recipes import RECIPES, learn_xeno_transforms
    from datasets.manifest import load_manifest

    settings = _settings(args)
    transforms, n_pairs = learn_xeno_transforms(
        load_manifest(args.data), RECIPES[args.recipe], settings
    )
    save_transforms(args.out, transforms)
    shapes = {k: list(v.shape) for k, v in transforms.items()}
    print(f"{n_pairs} pairs -> {shapes} in {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from baselines.recipes import RECIPES, RecipeSettings

    d = RecipeSettings()
    parser = argparse.ArgumentParser(prog="python -m baselines", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("recipes", help="list the baselines").set_defaults(func=cmd_recipes)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, required=True, help="dataset folder (manifest.csv)")
        p.add_argument("--image-names", type=Path, help="text file: train only on these images")
        p.add_argument("--split", metavar="FOLD", help="train on this fold's train split")
        p.add_argument("--epochs", type=int, default=d.epochs)
        p.add_argument("--batch-size", type=int, default=d.batch_size)
        p.add_argument("--lr", type=float, default=d.lr)
        p.add_argument("--seed", type=int, default=d.seed)
        p.add_argument("--crop-size", type=int, default=d.crop_size, help="0: whole images")
        p.add_argument("--width", type=int, default=d.width, help="network width")
        p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads")

    t = sub.add_parser("train", help="train a baseline and export it")
    t.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    t.add_argument("--out", type=Path, required=True, help="model.onnx, model.pt or model.pt2")
    t.add_argument("--weights", type=Path, help="also save the state dict here")
    t.add_argument("--transforms", type=Path, help="also save learned transforms (.npz)")
    data_args(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="export weights saved by train --weights")
    e.add_argument("--weights", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.set_defaults(func=cmd_export)

    lt = sub.add_parser("learn-transforms", help="learn a xeno recipe's affine transforms")
    lt.add_argument("--out", type=Path, required=True)
    lt.add_argument(
        "--recipe",
        default="human_xeno_kidney",
        choices=sorted(n for n, r in RECIPES.items() if r.xeno_source),
        help="which pathology and source species (default: pig kidney malperfusion)",
    )
    data_args(lt)
    lt.set_defaults(func=cmd_learn_transforms)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


def run(argv: Sequence[str] | None = None) -> int:
    """``python -m baselines``: :func:`main`, with data errors as one line on stderr."""
    try:
        return main(argv)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
