"""Training settings, one dataclass per trainer: every default and help text lives here, once.

The ``python -m battgen train ...`` options are generated from these fields
(:mod:`battgen.train.options`), each trainer takes one of these objects, and its
``metadata.json`` records :func:`~battgen.train.options.command_line` of it. Torch-free.

Settings are frozen and checked when made. An ``out`` left at None is filled in then from the
kind (SEI) or ``adversarial`` (translator), so ``dataclasses.replace`` of those fields keeps the
old ``out``: pass ``out=None`` with them to get the new default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from battgen import paths
from battgen.models.atom_regressor_options import AUGMENTATIONS, OUTPUTS, POOLINGS
from battgen.models.screening_options import CONDITION_NORMS, EMBEDDINGS, PREDICTION_TYPES, SELECT_BY, TARGETS
from battgen.train.options import normalise, option, override

# SEI model kind -> its checkpoint folder (battgen.models.prvae.MODEL_KINDS; that module imports torch).
SEI_CHECKPOINTS = {"vae": paths.SEI_VAE, "prvae": paths.SEI_PRVAE, "cprvae": paths.SEI_CPRVAE}
# battgen.eval.sei_latent.LATENTS_FILENAME, spelled here because that module imports torch;
# tests/unit/test_train_options.py keeps the two equal.
LATENTS_FILENAME = "latents.npz"


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """What every trainer shares. Each trainer's class gives the fields without a default here
    their defaults with :func:`~battgen.train.options.override`."""

    COMMAND: ClassVar[str] = ""

    epochs: int = option(help="maximum number of epochs", minimum=1)
    batch_size: int = option(help="training batch size", minimum=1)
    lr: float = option(help="learning rate", above=0)
    seed: int = option(0, "seed of python, numpy and torch (weights, batch order, noise)")
    patience: int = option(help="epochs without validation improvement before stopping; 0 never stops early",
                           minimum=0)
    max_minutes: float | None = option(None, "wall-clock budget of the training loop; the best weights so far "
                                             "are kept", above=0)
    device: str | None = option(None, "cpu, cuda, cuda:N (default: BATTGEN_DEVICE, else CUDA when present)")
    threads: int | None = option(None, "torch CPU threads (default: torch's choice)", minimum=1)
    progress: bool = option(True, "no tqdm progress bars")

    def __post_init__(self) -> None:
        normalise(self)

    def command_name(self) -> str:
        """The ``python -m battgen train`` sub-command that runs this config."""
        return self.COMMAND


@dataclass(frozen=True, kw_only=True)
class SEITrainingConfig(TrainingConfig):
    """SEI VAE / prVAE / conditional prVAE (:func:`battgen.train.sei_prvae.train_sei_model`)."""

    kind: str = option("prvae", "SEI model kind", choices=tuple(SEI_CHECKPOINTS), cli=False)
    epochs: int = override(TrainingConfig, "epochs", 25)
    batch_size: int = override(TrainingConfig, "batch_size", 128)
    lr: float = override(TrainingConfig, "lr", 1e-3)
    patience: int = override(TrainingConfig, "patience", 6)
    data: Path = option(help="directory holding dataset.npz", default_factory=lambda: paths.data_dir(paths.SEI))
    out: Path | None = option(None, "checkpoint directory (default checkpoints/sei_<kind>)")
    beta: float = option(1.0, "KL weight after warm-up", minimum=0)
    lam: float = option(1000.0, "property-loss weight (min-max scaled MSE; ignored by sei-vae)", minimum=0)
    kl_warmup_epochs: int | None = option(None, "epochs of linear KL ramp (default: a fifth of the epochs)",
                                          minimum=0)
    weight_decay: float = option(1e-4, "AdamW weight decay", minimum=0)
    class_weights: bool = option(True, "unweighted reconstruction cross-entropy")
    runs: str = option("all", "which dataset runs to train and test on: all, or only those that passivated "
                       "(runs stopped at the event bound are truncated SEIs)", choices=("all", "passivated"))

    def __post_init__(self) -> None:
        if self.out is None and self.kind in SEI_CHECKPOINTS:
            object.__setattr__(self, "out", paths.checkpoint_dir(SEI_CHECKPOINTS[self.kind]))
        super().__post_init__()

    def command_name(self) -> str:
        return f"sei-{self.kind}"


@dataclass(frozen=True, kw_only=True)
class TranslatorTrainingConfig(TrainingConfig):
    """AFM translator, adversarial or the no-GAN ablation (:func:`battgen.train.translator.train_translator`)."""

    COMMAND: ClassVar[str] = "translator"

    epochs: int = override(TrainingConfig, "epochs", 30)
    batch_size: int = override(TrainingConfig, "batch_size", 16)
    lr: float = override(TrainingConfig, "lr", 5e-4)
    patience: int = override(TrainingConfig, "patience", 6)
    data: Path = option(help="AFM dataset.npz or the directory holding it",
                        default_factory=lambda: paths.data_dir(paths.AFM))
    out: Path | None = option(None, "checkpoint directory (default checkpoints/translator, or "
                                    "checkpoints/translator_noadv without the adversarial term)")
    adversarial: bool = option(True, "ablation: same network and schedule, no discriminator")
    beta: float = option(1e-4, "weight of the per-element KL term", minimum=0)
    channels: tuple[int, ...] = option((32, 64, 128), "encoder/decoder block widths; each block after the "
                                                      "first halves the grid (three blocks: latent H/4)")
    layers_per_block: int = option(1, minimum=1)
    norm_num_groups: int | None = option(None, "GroupNorm groups (default: the largest of 32, 16, 8, 4, 2, 1 "
                                               "dividing every block width)", minimum=1)
    adv_weight: float = option(0.01, "weight of the generator's adversarial term (pix2pix: 0.01 of L1)", above=0)
    adv_warmup_epochs: int | None = option(None, "L1 + KL only before this epoch (default: a quarter of the "
                                                 "epochs)", minimum=0)
    disc_lr: float | None = option(None, "discriminator learning rate (default: the learning rate)", above=0)
    disc_layers: int = option(2, "stride-2 layers per discriminator branch (2: 34-pixel patches)", minimum=1)
    disc_channels: int = option(32, "width of the discriminator's first layer (doubles per layer)", minimum=1)
    gan_loss: str = option("hinge", choices=("hinge", "bce"))
    disc_norm: str = option("spectral", choices=("spectral", "instance"))
    augment: float = option(0.0, "probability that a training view is replaced by a randomly distorted one "
                                 "(noise, drift, offset, rotation, tip height: battgen/afm/augment.py)",
                            minimum=0, maximum=1)
    type_map_weighting: float = option(0.0, "exponent of the inverse-class-frequency weights on the type "
                                            "map's L1 (0: unweighted; 0.5: square root; 1: inverse frequency)",
                                       minimum=0)
    output_activation: str = option("tanh", "bound of the descriptor outputs: tanh, or a clamp with a "
                                            "straight-through gradient (keeps rare type-map classes alive), "
                                            "or that clamp on the type map only (clamp-type-map)",
                                    choices=("tanh", "clamp", "clamp-type-map"))
    init_from: Path | None = option(None, "start from this translator checkpoint's weights (same block widths; "
                                          "its discriminator too when there is one)")
    freeze_encoder: bool = option(False, "with --init-from: train the decoder only, so the latents (and every "
                                         "model trained on them) stay exactly as they were")

    reinit_output: bool = option(False, "with --init-from: start the decoder's last convolution afresh, only the "
                                        "rows of channels whose activation changed if any did (a tanh-trained "
                                        "one leaves a dead channel's pre-activation far outside a clamp's "
                                        "range, where Adam needs ~10^5 steps to climb back)")

    def __post_init__(self) -> None:
        if self.freeze_encoder and self.init_from is None:
            raise ValueError("--freeze-encoder needs --init-from: a fresh encoder would stay random")
        if self.reinit_output and self.init_from is None:
            raise ValueError("--reinit-output needs --init-from: a fresh model's output layer is new anyway")
        if self.out is None:
            name = paths.TRANSLATOR if self.adversarial else paths.TRANSLATOR_NOADV
            object.__setattr__(self, "out", paths.checkpoint_dir(name))
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class RobustEncoderTrainingConfig(TrainingConfig):
    """The translator's encoder taught to read distorted stacks as their clean references, decoder and
    latent space kept (:func:`battgen.train.robust_encoder.train_robust_encoder`)."""

    COMMAND: ClassVar[str] = "robust-encoder"

    epochs: int = override(TrainingConfig, "epochs", 12)
    batch_size: int = override(TrainingConfig, "batch_size", 16)
    lr: float = override(TrainingConfig, "lr", 1e-4)
    patience: int = override(TrainingConfig, "patience", 3)
    data: Path = override(TranslatorTrainingConfig, "data")
    teacher: Path = option(help="the translator whose latents the student must reproduce (the shipped translator "
                                "before its robust encoder)",
                           default_factory=lambda: paths.checkpoint_dir(paths.TRANSLATOR_TEACHER))
    out: Path = option(help="checkpoint directory of the student (a whole translator)",
                       default_factory=lambda: paths.checkpoint_dir(paths.TRANSLATOR))
    eval_data: Path | None = option(None, "an AFM dataset whose test views score the student's descriptors "
                                          "(e.g. one built with build-dataset --split test)")
    clean_weight: float = option(1.0, "weight of the clean-stack term that keeps the latent space where it was",
                                 minimum=0)
    holdout: float = option(0.1, "share of the training materials held out to pick the best epoch when the "
                                 "data has no val split", above=0, below=1)
    init_from: Path | None = option(None, "start the student from this translator (an earlier student of the same "
                                          "teacher) instead of the teacher's weights")
    instrument_data: Path | None = option(None, "a folder of campaigns of DATA's views imaged with other instruments "
                                                "(one subfolder each, built with build-dataset --probe, --tip-closer "
                                                "or --df-steps): the student also reads those as the clean stacks")
    pink_weight: float = option(1.0, "draw 1/f noise this many times as often as each other distortion kind in "
                                     "training (the held-out pairs that pick the epoch stay evenly drawn)", minimum=0)


@dataclass(frozen=True, kw_only=True)
class AtomRegressorTrainingConfig(TrainingConfig):
    """Atom regressor on the frozen translator's latents (:func:`battgen.train.atom_regressor.train_atom_regressor`)."""

    COMMAND: ClassVar[str] = "atom-regressor"

    epochs: int = override(TrainingConfig, "epochs", 400)
    batch_size: int = override(TrainingConfig, "batch_size", 64)
    lr: float = override(TrainingConfig, "lr", 1e-3)
    patience: int = override(TrainingConfig, "patience", 40)
    data: Path = override(TranslatorTrainingConfig, "data")
    translator: Path = option(help="AFMTranslator checkpoint directory",
                              default_factory=lambda: paths.checkpoint_dir(paths.TRANSLATOR))
    latents: Path | None = option(None, "train on the translator's stored latents.npz (atom counts from the "
                                        "electrode table) instead of encoding the dataset's stacks")
    out: Path = option(help="checkpoint directory",
                       default_factory=lambda: paths.checkpoint_dir(paths.ATOM_REGRESSOR))
    weight_decay: float = option(1e-4, "AdamW weight decay", minimum=0)
    views: str = option("all", "with --latents: every view is a sample, or one per material, its mean latent "
                               "(what a screening model trained with --targets mean generates), or both",
                        choices=("all", "mean", "all+mean"))
    pooling: str = option("flatten", "before the dense head: a 4x4 map flattened, or the mean over the latent map "
                                     "(insensitive to where the sample sits)", choices=POOLINGS)
    output: str = option("counts", "112 atom counts, or element fractions times a total atom count",
                         choices=OUTPUTS)
    augment: str = option("none", "random rolls of the latent map by up to 3 latent pixels (a 12-pixel scan "
                                  "offset), optionally with quarter turns and mirror images", choices=AUGMENTATIONS)
    distorted_data: Path | None = option(None, "an AFM dataset whose training views, randomly distorted as a "
                                               "microscope would (battgen/afm/augment.py) and encoded with the "
                                               "translator, join the training set")
    distorted_copies: int = option(2, "distorted copies of each of those views", minimum=1)
    instrument_data: Path | None = option(None, "a folder of campaigns of training materials simulated with other "
                                                "instruments (afm build-dataset --split train --probe/--tip-closer, "
                                                "one subfolder each): their views, encoded with the translator, "
                                                "join the training set")
    ablation_epochs: int = option(0, "first train every ablation variant for this many epochs and record the "
                                     "table in metrics.json; 0 skips it", minimum=0)
    latent_noise: float = option(0.0, "standard deviation of Gaussian noise added to every training latent "
                                      "(scaled units; 0 adds none)", minimum=0)
    pink_weight: float = option(1.0, "in the distorted copies, 1/f noise is drawn this many times as often as each "
                                     "other distortion kind", minimum=0)
    turned_copies: int = option(0, "with --distorted-data: also this many clean copies of each of its training views, "
                                   "each turned or mirrored into a random one of the seven orientations the campaign "
                                   "never images (the page reads the composition over all eight)", minimum=0)

    def __post_init__(self) -> None:
        if self.turned_copies and self.distorted_data is None:
            raise ValueError("--turned-copies needs --distorted-data: the views to turn")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class ScreeningTrainingConfig(TrainingConfig):
    """Property-conditioned latent diffusion U-Net (:func:`battgen.train.screening.train_screening`)."""

    COMMAND: ClassVar[str] = "screening"

    epochs: int = override(TrainingConfig, "epochs", 100)
    batch_size: int = override(TrainingConfig, "batch_size", 64)
    lr: float = override(TrainingConfig, "lr", 2e-4)
    patience: int = override(TrainingConfig, "patience", 15)
    latents: Path = option(help="latents.npz written by the translator's training",
                           default_factory=lambda: paths.checkpoint_dir(paths.TRANSLATOR) / LATENTS_FILENAME)
    table: Path = option(help="electrode table directory",
                         default_factory=lambda: paths.asset_dir(paths.ELECTRODES))
    translator: Path = override(AtomRegressorTrainingConfig, "translator")
    atom_regressor: Path = option(help="AtomRegressor checkpoint directory",
                                  default_factory=lambda: paths.checkpoint_dir(paths.ATOM_REGRESSOR))
    out: Path = option(help="pipeline directory", default_factory=lambda: paths.checkpoint_dir(paths.SCREENING))
    channels: tuple[int, ...] | None = option(None, "U-Net block widths, e.g. 32,64,64 for a faster CPU run "
                                                    "(default 64,128,128)")
    cond_dropout: float = option(0.1, "probability of training on the null condition (classifier-free guidance)",
                                 minimum=0, below=1)
    ema_decay: float = option(0.999, "weight EMA decay; 0 disables the EMA", minimum=0, below=1)
    weight_decay: float = option(1e-2, "AdamW weight decay", minimum=0)
    lr_warmup_steps: int = option(200, "steps of linear learning-rate warm-up", minimum=0)
    grad_clip: float = option(1.0, "gradient-norm clip; 0 disables it", minimum=0)
    prediction_type: str = option("epsilon", "what the U-Net predicts: the noise, v or the clean latent (sample)",
                                  choices=PREDICTION_TYPES)
    zero_terminal_snr: bool = option(False, "rescale the betas to zero terminal SNR (not with epsilon)")
    min_snr_gamma: float = option(0.0, "min-SNR loss weighting with this cap; 0 trains unweighted", minimum=0)
    condition_norm: str = option("minmax", "properties as min-max scaled, or z-scored on the training materials",
                                 choices=CONDITION_NORMS)
    targets: str = option("all", "train on every view, one canonical view per material, or its mean latent",
                          choices=TARGETS)
    embedding: str = option("projection", "condition added to the time embedding, or per-property tokens "
                                          "through cross-attention", choices=EMBEDDINGS)
    select_by: str = option("val_loss", "metric that picks the shipped epoch", choices=SELECT_BY)
    select_every: int = option(1, "with val_composition_r2: generate every this many epochs", minimum=1)
    x0_quantile: float = option(99.9, "sampler's clean-latent bound: this percentile of |training target|",
                                minimum=50, below=100.0001)

