"""``python -m battgen train ...``: one sub-command per shipped model.

The options are generated from the settings dataclasses (:mod:`battgen.train.configs`).
Training code is imported inside each command's handler, so ``--help`` and the other command
groups never pay for importing torch and diffusers.
"""

from __future__ import annotations

import argparse

from battgen.paths import for_display
from battgen.train.configs import (
    AtomRegressorTrainingConfig,
    RobustEncoderTrainingConfig,
    ScreeningTrainingConfig,
    SEITrainingConfig,
    TranslatorTrainingConfig,
)
from battgen.train.options import add_options, config_from_args

# SEI model kind -> sub-command help
SEI_HELP = {
    "vae": "SEI lattice VAE (no property regressor)",
    "prvae": "SEI property-regularised VAE",
    "cprvae": "SEI prVAE whose decoder is conditioned on barriers",
}


def parse_config(args: argparse.Namespace):
    """The settings object of a parsed ``train`` sub-command."""
    return config_from_args(args.config_cls, args, **args.fixed)


def _run_sei(args: argparse.Namespace) -> int:
    from battgen.train.sei_prvae import train_sei_model

    config = parse_config(args)
    metrics = train_sei_model(config)
    test = metrics["test"]
    rec = test["reconstruction"]
    print(f"saved {for_display(config.out)}: best epoch {metrics['best_epoch']}/{metrics['epochs_run']} "
          f"({metrics['stopped']}), {metrics['seconds_per_epoch']:.1f} s/epoch")
    print(f"test reconstruction accuracy {rec['accuracy']:.4f}, balanced {rec['balanced_accuracy']:.4f}")
    for name, m in test.get("properties", {}).items():
        r2 = "n/a" if m["r2"] is None else f"{m['r2']:.3f}"
        print(f"  {name}: R2 {r2}, MAE {m['mae']:.4g}")
    return 0


def _run_translator(args: argparse.Namespace) -> int:
    from battgen.train.translator import train_translator

    config = parse_config(args)
    metrics = train_translator(config)
    if not metrics:  # a non-main process of a multi-GPU run: the main process reports
        return 0
    test = metrics["test"]
    print(f"saved {for_display(config.out)}: best epoch {metrics['best_epoch']}/{metrics['epochs_run']} "
          f"({metrics['stopped']}), {metrics['seconds_per_epoch']:.1f} s/epoch, "
          f"scaling factor {metrics['scaling_factor']:.4g}")
    for name, m in test["per_descriptor"].items():
        psnr = "n/a" if m["psnr"] is None else f"{m['psnr']:.2f} dB"
        print(f"  {name}: SSIM {m['ssim']:.4f}, PSNR {psnr}, MAE {m['mae']:.4f}")
    print(f"  type map: mean IoU {test['type_map']['mean_iou']:.4f}, "
          f"mean class accuracy {test['type_map']['mean_class_accuracy']:.4f}")
    if "warning" in metrics:
        print(f"warning: {metrics['warning']}")
    return 0


def _run_robust_encoder(args: argparse.Namespace) -> int:
    from battgen.train.robust_encoder import train_robust_encoder

    config = parse_config(args)
    metrics = train_robust_encoder(config)
    summary = metrics["robust_encoder"]
    print(f"saved {for_display(config.out)}: best epoch {summary['best_epoch']}/{summary['epochs_run']} "
          f"({summary['stopped']}), {summary['n_train']} training views of {summary['train_materials']} materials")
    before, after = summary["validation_before"], summary["validation"]
    print(f"  validation latent MSE, distorted vs clean reference: teacher {before['distorted_mse_teacher']:.4f} "
          f"-> student {after['distorted_mse']:.4f}; clean vs teacher {after['clean_mse']:.5f}")
    for kind, m in after["per_kind"].items():
        print(f"    {kind:>10}: teacher {m['teacher_mse']:.4f} -> student {m['student_mse']:.4f} ({m['views']} views)")
    if "test_teacher" in metrics:
        ssim = {name: (metrics["test_teacher"]["per_descriptor"][name]["ssim"], m["ssim"])
                for name, m in metrics["test"]["per_descriptor"].items()}
        print("  clean test SSIM, teacher -> student: "
              + ", ".join(f"{name} {a:.3f} -> {b:.3f}" for name, (a, b) in ssim.items()))
    return 0


def _run_atom_regressor(args: argparse.Namespace) -> int:
    from battgen.train.atom_regressor import train_atom_regressor

    config = parse_config(args)
    metrics = train_atom_regressor(config)
    print(f"saved {for_display(config.out)}: best epoch {metrics['best_epoch']}/{metrics['epochs_run']} "
          f"({metrics['stopped']})")
    rows = {**metrics["test"]["per_ion"], "overall": metrics["test"]["overall"]}
    for ion, m in rows.items():
        r2 = "n/a" if m["r2"] is None else f"{m['r2']:.4f}"
        print(f"  {ion:>7}: MAE {m['mae']:.4f}  MSE {m['mse']:.4f}  R2 {r2}  ({m['n_views']} views)")
    return 0


def _run_screening(args: argparse.Namespace) -> int:
    from battgen.train.screening import train_screening

    config = parse_config(args)
    metrics = train_screening(config)
    print(f"saved {for_display(config.out)}: best epoch {metrics['best_epoch']}/{metrics['epochs_run']} "
          f"({metrics['stopped']}), val loss {metrics['best_val_loss']:.4f}, "
          f"{metrics['seconds_per_epoch']:.1f} s/epoch, {metrics['parameters'] / 1e6:.2f} M parameters")
    test = metrics["test"]
    if test:
        print(f"test noise MSE {test['loss']:.4f} conditional, {test['loss_unconditional']:.4f} "
              f"with the null condition (gain {test['condition_gain']:.4f})")
    return 0


def _add(subparsers, help_text: str, config_cls: type, run, **fixed) -> None:
    # The sub-command is named by the config, so the recorded command always runs again.
    name = config_cls(**fixed).command_name()
    p = subparsers.add_parser(name, help=help_text, description=help_text)
    add_options(p, config_cls)
    p.set_defaults(func=run, config_cls=config_cls, fixed=fixed)


def register(subparsers) -> None:
    """Add the ``train`` sub-commands to ``subparsers`` (from ``battgen.cli``)."""
    for kind, help_text in SEI_HELP.items():
        _add(subparsers, help_text, SEITrainingConfig, _run_sei, kind=kind)
    _add(subparsers,
         "AFM translator: stack -> descriptors VAE with a two-branch PatchGAN (or --no-adversarial)",
         TranslatorTrainingConfig, _run_translator)
    _add(subparsers, "the translator's encoder fine-tuned to read distorted stacks (noise, drift, offset, "
                     "rotation, tip height) as the clean ones; decoder and latent space kept",
         RobustEncoderTrainingConfig, _run_robust_encoder)
    _add(subparsers, "atom regressor: frozen translator latent -> 112 atom counts",
         AtomRegressorTrainingConfig, _run_atom_regressor)
    _add(subparsers,
         "screening model: property-conditioned latent diffusion U-Net (saves the whole pipeline)",
         ScreeningTrainingConfig, _run_screening)
