"""``python -m battgen train ...``: one sub-command per shipped model.

Training code is imported inside each command's handler, so ``--help`` and the other
command groups never pay for importing torch and diffusers.
"""

from __future__ import annotations

import argparse
import shlex

# sub-command -> (model kind for train_sei_model, default checkpoint directory, help)
SEI_COMMANDS = {
    "sei-vae": ("vae", "checkpoints/sei_vae", "SEI lattice VAE (no property regressor)"),
    "sei-prvae": ("prvae", "checkpoints/sei_prvae", "SEI property-regularised VAE"),
    "sei-cprvae": ("cprvae", "checkpoints/sei_cprvae", "SEI prVAE whose decoder is conditioned on barriers"),
}
DEFAULT_SEI_DATA = "data/sei"


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _run_sei(args: argparse.Namespace) -> int:
    from battgen.train.sei_prvae import train_sei_model

    # The canonical command (every option spelled out) goes into metadata.json, so the run
    # can be repeated exactly even if defaults change later.
    parts = ["python", "-m", "battgen", "train", args.command, "--data", args.data, "--out", args.out,
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
             "--beta", str(args.beta), "--lam", str(args.lam), "--seed", str(args.seed),
             "--patience", str(args.patience)]
    if args.kl_warmup_epochs is not None:
        parts += ["--kl-warmup-epochs", str(args.kl_warmup_epochs)]
    if args.max_minutes is not None:
        parts += ["--max-minutes", str(args.max_minutes)]
    if args.device is not None:
        parts += ["--device", args.device]
    if args.threads is not None:
        parts += ["--threads", str(args.threads)]
    if args.no_class_weights:
        parts += ["--no-class-weights"]

    metrics = train_sei_model(
        args.kind, args.data, args.out,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta, lam=args.lam,
        seed=args.seed, device=args.device, max_minutes=args.max_minutes,
        progress=not args.no_progress, kl_warmup_epochs=args.kl_warmup_epochs,
        patience=args.patience, class_weighting=not args.no_class_weights,
        num_threads=args.threads, command=shlex.join(parts),
    )
    test = metrics["test"]
    rec = test["reconstruction"]
    print(f"saved {args.out}: best epoch {metrics['best_epoch']}/{metrics['epochs_run']} "
          f"({metrics['stopped']}), {metrics['seconds_per_epoch']:.1f} s/epoch")
    print(f"test reconstruction accuracy {rec['accuracy']:.4f}, balanced {rec['balanced_accuracy']:.4f}")
    for name, m in test.get("properties", {}).items():
        r2 = "n/a" if m["r2"] is None else f"{m['r2']:.3f}"
        print(f"  {name}: R2 {r2}, MAE {m['mae']:.4g}")
    return 0


def _register_sei(subparsers) -> None:
    for name, (kind, default_out, help_text) in SEI_COMMANDS.items():
        p = subparsers.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", default=DEFAULT_SEI_DATA, help="directory holding dataset.npz (default %(default)s)")
        p.add_argument("--out", default=default_out, help="checkpoint directory (default %(default)s)")
        p.add_argument("--epochs", type=_positive_int, default=25)
        p.add_argument("--batch-size", type=_positive_int, default=128)
        p.add_argument("--lr", type=_positive_float, default=1e-3)
        p.add_argument("--beta", type=float, default=1.0, help="KL weight after warm-up")
        p.add_argument("--lam", type=float, default=1000.0,
                       help="property-loss weight (min-max scaled MSE; ignored by sei-vae)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--kl-warmup-epochs", type=int, default=None,
                       help="epochs of linear KL ramp (default: a fifth of --epochs)")
        p.add_argument("--patience", type=_positive_int, default=6,
                       help="epochs without validation improvement before stopping")
        p.add_argument("--max-minutes", type=_positive_float, default=None,
                       help="wall-clock budget for the training loop")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
        p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
        p.add_argument("--no-class-weights", action="store_true",
                       help="unweighted reconstruction cross-entropy")
        p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
        p.set_defaults(func=_run_sei, kind=kind)


def register(subparsers) -> None:
    """Add the ``train`` sub-commands to ``subparsers`` (from ``battgen.cli``)."""
    _register_sei(subparsers)
