"""``python -m battgen train ...``: one sub-command per shipped model.

Training code is imported inside each command's handler, so ``--help`` and the other
command groups never pay for importing torch and diffusers.
"""

from __future__ import annotations

import argparse
import math
import shlex

from battgen.models.screening_options import CONDITION_NORMS, EMBEDDINGS, PREDICTION_TYPES, SELECT_BY, TARGETS

# sub-command -> (model kind for train_sei_model, default checkpoint directory, help)
SEI_COMMANDS = {
    "sei-vae": ("vae", "checkpoints/sei_vae", "SEI lattice VAE (no property regressor)"),
    "sei-prvae": ("prvae", "checkpoints/sei_prvae", "SEI property-regularised VAE"),
    "sei-cprvae": ("cprvae", "checkpoints/sei_cprvae", "SEI prVAE whose decoder is conditioned on barriers"),
}
DEFAULT_SEI_DATA = "data/sei"
DEFAULT_AFM_DATA = "data/afm"
DEFAULT_TRANSLATOR = "checkpoints/translator"
DEFAULT_TRANSLATOR_NOADV = "checkpoints/translator_noadv"
DEFAULT_ATOM_REGRESSOR = "checkpoints/atom_regressor"


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


def _channel_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 32,64,128, got {text!r}")
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need at least two positive block widths, got {text!r}")
    return values


def _common_options(args: argparse.Namespace) -> list[str]:
    parts = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
             "--seed", str(args.seed), "--patience", str(args.patience)]
    if args.max_minutes is not None:
        parts += ["--max-minutes", str(args.max_minutes)]
    if args.device is not None:
        parts += ["--device", args.device]
    if args.threads is not None:
        parts += ["--threads", str(args.threads)]
    return parts


def _run_translator(args: argparse.Namespace) -> int:
    from battgen.train.translator import train_translator

    adversarial = not args.no_adversarial
    out = args.out or (DEFAULT_TRANSLATOR if adversarial else DEFAULT_TRANSLATOR_NOADV)
    parts = ["python", "-m", "battgen", "train", "translator", "--data", args.data, "--out", out,
             *_common_options(args), "--beta", str(args.beta),
             "--channels", ",".join(map(str, args.channels)), "--layers-per-block", str(args.layers_per_block)]
    if adversarial:
        parts += ["--adv-weight", str(args.adv_weight), "--disc-layers", str(args.disc_layers),
                  "--disc-channels", str(args.disc_channels), "--gan-loss", args.gan_loss,
                  "--disc-norm", args.disc_norm]
        if args.adv_warmup_epochs is not None:
            parts += ["--adv-warmup-epochs", str(args.adv_warmup_epochs)]
        if args.disc_lr is not None:
            parts += ["--disc-lr", str(args.disc_lr)]
    else:
        parts += ["--no-adversarial"]

    metrics = train_translator(
        args.data, out, adversarial=adversarial, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, disc_lr=args.disc_lr, beta=args.beta, adv_weight=args.adv_weight,
        adv_warmup_epochs=args.adv_warmup_epochs, gan_loss=args.gan_loss, disc_norm=args.disc_norm,
        disc_layers=args.disc_layers, disc_channels=args.disc_channels, block_out_channels=args.channels,
        layers_per_block=args.layers_per_block, patience=args.patience, seed=args.seed,
        device=args.device, max_minutes=args.max_minutes, num_threads=args.threads,
        progress=not args.no_progress, command=shlex.join(parts),
    )
    if not metrics:  # a non-main process of a multi-GPU run: the main process reports
        return 0
    test = metrics["test"]
    print(f"saved {out}: best epoch {metrics['best_epoch']}/{metrics['epochs_run']} ({metrics['stopped']}), "
          f"{metrics['seconds_per_epoch']:.1f} s/epoch, scaling factor {metrics['scaling_factor']:.4g}")
    for name, m in test["per_descriptor"].items():
        psnr = "n/a" if m["psnr"] is None else f"{m['psnr']:.2f} dB"
        print(f"  {name}: SSIM {m['ssim']:.4f}, PSNR {psnr}, MAE {m['mae']:.4f}")
    print(f"  type map: mean IoU {test['type_map']['mean_iou']:.4f}, "
          f"mean class accuracy {test['type_map']['mean_class_accuracy']:.4f}")
    if "warning" in metrics:
        print(f"warning: {metrics['warning']}")
    return 0


def _run_atom_regressor(args: argparse.Namespace) -> int:
    from battgen.train.atom_regressor import train_atom_regressor

    parts = ["python", "-m", "battgen", "train", "atom-regressor", "--data", args.data,
             "--translator", args.translator, "--out", args.out, *_common_options(args),
             "--weight-decay", str(args.weight_decay)]
    metrics = train_atom_regressor(
        args.data, args.translator, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, patience=args.patience, seed=args.seed, device=args.device,
        max_minutes=args.max_minutes, num_threads=args.threads, progress=not args.no_progress,
        command=shlex.join(parts),
    )
    print(f"saved {args.out}: best epoch {metrics['best_epoch']}/{metrics['epochs_run']} ({metrics['stopped']})")
    rows = {**metrics["test"]["per_ion"], "overall": metrics["test"]["overall"]}
    for ion, m in rows.items():
        r2 = "n/a" if m["r2"] is None else f"{m['r2']:.4f}"
        print(f"  {ion:>7}: MAE {m['mae']:.4f}  MSE {m['mse']:.4f}  R2 {r2}  ({m['n_views']} views)")
    return 0


def _add_common(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float, patience: int) -> None:
    p.add_argument("--data", default=DEFAULT_AFM_DATA,
                   help="AFM dataset.npz or the directory holding it (default %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=epochs)
    p.add_argument("--batch-size", type=_positive_int, default=batch_size)
    p.add_argument("--lr", type=_positive_float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=_positive_int, default=patience,
                   help="epochs without validation improvement before stopping")
    p.add_argument("--max-minutes", type=_positive_float, default=None,
                   help="wall-clock budget for the training loop")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def _register_afm(subparsers) -> None:
    text = "AFM translator: stack -> descriptors VAE with a two-branch PatchGAN (or --no-adversarial)"
    p = subparsers.add_parser("translator", help=text, description=text)
    _add_common(p, epochs=30, batch_size=16, lr=5e-4, patience=6)
    p.add_argument("--out", default=None,
                   help=f"checkpoint directory (default {DEFAULT_TRANSLATOR}, "
                        f"or {DEFAULT_TRANSLATOR_NOADV} with --no-adversarial)")
    p.add_argument("--no-adversarial", action="store_true",
                   help="ablation: same network and schedule, no discriminator")
    p.add_argument("--beta", type=float, default=1e-4, help="weight of the per-element KL term")
    p.add_argument("--adv-weight", type=_positive_float, default=0.01,
                   help="weight of the generator's adversarial term (pix2pix: 0.01 of L1)")
    p.add_argument("--adv-warmup-epochs", type=int, default=None,
                   help="L1 + KL only before this epoch (default: a quarter of --epochs)")
    p.add_argument("--disc-lr", type=_positive_float, default=None, help="discriminator learning rate (default --lr)")
    p.add_argument("--disc-layers", type=_positive_int, default=2,
                   help="stride-2 layers per discriminator branch (2: 34-pixel patches)")
    p.add_argument("--disc-channels", type=_positive_int, default=32,
                   help="width of the discriminator's first layer (doubles per layer)")
    p.add_argument("--gan-loss", choices=("hinge", "bce"), default="hinge")
    p.add_argument("--disc-norm", choices=("spectral", "instance"), default="spectral")
    p.add_argument("--channels", type=_channel_list, default=(32, 64, 128),
                   help="encoder/decoder block widths; each block after the first halves the grid "
                        "(default %(default)s: latent H/4)")
    p.add_argument("--layers-per-block", type=_positive_int, default=1)
    p.set_defaults(func=_run_translator)

    text = "atom regressor: frozen translator latent -> 112 atom counts"
    p = subparsers.add_parser("atom-regressor", help=text, description=text)
    _add_common(p, epochs=400, batch_size=64, lr=1e-3, patience=40)
    p.add_argument("--translator", default=DEFAULT_TRANSLATOR, help="translator checkpoint (default %(default)s)")
    p.add_argument("--out", default=DEFAULT_ATOM_REGRESSOR, help="checkpoint directory (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.set_defaults(func=_run_atom_regressor)


SCREENING_DEFAULTS = {
    "latents": f"{DEFAULT_TRANSLATOR}/latents.npz",
    "translator": DEFAULT_TRANSLATOR,
    "atom_regressor": "checkpoints/atom_regressor",
    "out": "checkpoints/screening",
}


def _channels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need at least two positive channel counts, got {text!r}")
    return values


def _run_screening(args: argparse.Namespace) -> int:
    from battgen.train.screening import train_screening

    parts = ["python", "-m", "battgen", "train", "screening", "--latents", args.latents,
             "--translator", args.translator, "--atom-regressor", args.atom_regressor, "--out", args.out,
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
             "--cond-dropout", str(args.cond_dropout), "--ema-decay", str(args.ema_decay),
             "--patience", str(args.patience), "--seed", str(args.seed)]
    if args.table is not None:
        parts += ["--table", args.table]
    if args.channels is not None:
        parts += ["--channels", ",".join(map(str, args.channels))]
    if args.max_minutes is not None:
        parts += ["--max-minutes", str(args.max_minutes)]
    if args.device is not None:
        parts += ["--device", args.device]
    if args.threads is not None:
        parts += ["--threads", str(args.threads)]
    parts += ["--prediction-type", args.prediction_type, "--condition-norm", args.condition_norm,
              "--targets", args.targets, "--select-by", args.select_by, "--select-every", str(args.select_every)]
    if args.zero_terminal_snr:
        parts += ["--zero-terminal-snr"]
    if args.min_snr_gamma:
        parts += ["--min-snr-gamma", str(args.min_snr_gamma)]

    unet_config = None
    if args.channels is not None:
        # Attention on every level but the full-resolution one, as in the default; group norm
        # needs a group count that divides every width.
        unet_config = {"block_out_channels": args.channels,
                       "attention_levels": (False,) + (True,) * (len(args.channels) - 1),
                       "norm_num_groups": math.gcd(32, *args.channels),
                       "attention_head_dim": min(32, min(args.channels))}
    if args.embedding != "projection":
        unet_config = {**(unet_config or {}), "embedding": args.embedding}
        parts += ["--embedding", args.embedding]
    metrics = train_screening(
        args.latents, args.table, args.out,
        translator=args.translator, atom_regressor=args.atom_regressor,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, cond_dropout=args.cond_dropout,
        max_minutes=args.max_minutes, seed=args.seed, ema_decay=args.ema_decay or None,
        patience=args.patience or None, unet_config=unet_config, device=args.device,
        num_threads=args.threads, progress=not args.no_progress, command=shlex.join(parts),
        prediction_type=args.prediction_type, zero_terminal_snr=args.zero_terminal_snr,
        min_snr_gamma=args.min_snr_gamma or None, condition_norm=args.condition_norm, targets=args.targets,
        select_by=args.select_by, select_every=args.select_every,
    )
    print(f"saved {args.out}: best epoch {metrics['best_epoch']}/{metrics['epochs_run']} "
          f"({metrics['stopped']}), val loss {metrics['best_val_loss']:.4f}, "
          f"{metrics['seconds_per_epoch']:.1f} s/epoch, {metrics['parameters'] / 1e6:.2f} M parameters")
    test = metrics["test"]
    if test:
        print(f"test noise MSE {test['loss']:.4f} conditional, {test['loss_unconditional']:.4f} "
              f"with the null condition (gain {test['condition_gain']:.4f})")
    return 0


def _register_screening(subparsers) -> None:
    help_text = "screening model: property-conditioned latent diffusion U-Net (saves the whole pipeline)"
    p = subparsers.add_parser("screening", help=help_text, description=help_text)
    p.add_argument("--latents", default=SCREENING_DEFAULTS["latents"],
                   help="latents.npz written by the translator's training (default %(default)s)")
    p.add_argument("--table", default=None,
                   help="electrode table directory (default: the shipped assets/electrodes)")
    p.add_argument("--translator", default=SCREENING_DEFAULTS["translator"],
                   help="AFMTranslator checkpoint directory (default %(default)s)")
    p.add_argument("--atom-regressor", default=SCREENING_DEFAULTS["atom_regressor"],
                   help="AtomRegressor checkpoint directory (default %(default)s)")
    p.add_argument("--out", default=SCREENING_DEFAULTS["out"], help="pipeline directory (default %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=100)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--lr", type=_positive_float, default=2e-4)
    p.add_argument("--cond-dropout", type=float, default=0.1,
                   help="probability of training on the null condition (classifier-free guidance)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="weight EMA decay; 0 disables the EMA")
    p.add_argument("--patience", type=int, default=15,
                   help="epochs without validation improvement before stopping; 0 never stops early")
    p.add_argument("--channels", type=_channels, default=None,
                   help="U-Net block widths, e.g. 32,64,64 for a faster CPU run (default 64,128,128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=_positive_float, default=None,
                   help="wall-clock budget for the training loop")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.add_argument("--prediction-type", choices=PREDICTION_TYPES, default="epsilon",
                   help="U-Net output: noise, velocity or clean latent (default %(default)s)")
    p.add_argument("--zero-terminal-snr", action="store_true",
                   help="rescale the betas so t = T is pure noise (needs v_prediction or sample)")
    p.add_argument("--min-snr-gamma", type=float, default=0.0, help="min-SNR loss weighting cap; 0 = off")
    p.add_argument("--condition-norm", choices=CONDITION_NORMS, default="minmax",
                   help="properties as min-max scaled, or z-scored over the training materials")
    p.add_argument("--embedding", choices=EMBEDDINGS, default="projection",
                   help="condition as a projection added to the time embedding, or as per-property "
                        "tokens through cross-attention")
    p.add_argument("--targets", choices=TARGETS, default="all",
                   help="train on all views, one canonical view per material, or the mean latent")
    p.add_argument("--select-by", choices=SELECT_BY, default="val_loss",
                   help="checkpoint selection: validation loss or validation composition R2 of samples")
    p.add_argument("--select-every", type=_positive_int, default=1,
                   help="with --select-by val_composition_r2: sample the validation set every N epochs")
    p.set_defaults(func=_run_screening)



def register(subparsers) -> None:
    """Add the ``train`` sub-commands to ``subparsers`` (from ``battgen.cli``)."""
    _register_sei(subparsers)
    _register_afm(subparsers)
    _register_screening(subparsers)
