"""AFM page answer time: one shipped example stack -> descriptors, composition and nearest materials.

Prints one table: median wall time of each step the AFM page runs after a person picks an
example (models and latent index already loaded, as ``st.cache_resource`` keeps them), and of
the whole. Goal (issue 4): <= 0.5 s per example on this CPU. The baseline row is the encoder +
decoder alone, so the table shows what composition (the regressor's reading of the stack's eight
orientations, seven more encodings: battgen/afm/orientations.py) and neighbour search add.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_afm_translate.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from battgen.afm.examples import load_examples
from battgen.afm.translate import LatentIndex, translate_stack
from battgen.data.neighbors import nearest_by_composition
from battgen.data.table import load_table
from battgen.models.atom_regressor import AtomRegressor
from battgen.models.translator import AFMTranslator
from benchmarks.timing import median_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.root)
    translator = AFMTranslator.from_pretrained(root / "checkpoints" / "translator").eval()
    regressor = AtomRegressor.from_pretrained(root / "checkpoints" / "atom_regressor").eval()
    table = load_table(root / "assets" / "electrodes")
    index = LatentIndex.load(root / "checkpoints" / "translator", list(table["id"]))
    examples = load_examples(root / "assets" / "afm" / "examples.npz")
    if not examples:
        raise SystemExit("no shipped examples; run python -m battgen afm export-examples")

    rows = []
    for example in examples:
        stack = example.stack

        def descriptors_only():
            translate_stack(translator, stack)

        def with_composition():
            return translate_stack(translator, stack, regressor)

        result = with_composition()

        def neighbours():
            index.nearest(result.mu, k=5)
            nearest_by_composition(table, result.composition, k=5)

        def whole():
            t = translate_stack(translator, stack, regressor)
            index.nearest(t.mu, k=5)
            nearest_by_composition(table, t.composition, k=5)

        rows.append((example.label, median_time(descriptors_only, args.repeats),
                     median_time(with_composition, args.repeats), median_time(neighbours, args.repeats),
                     median_time(whole, args.repeats)))

    print(f"\nAFM example translation, {translator.config.sample_size}x{translator.config.sample_size} grid, "
          f"{torch.get_num_threads()} torch threads, median of {args.repeats} (seconds)")
    header = f"{'example':<34} {'VAE only':>9} {'+ atoms x8':>11} {'neighbours':>11} {'whole':>7} {'<=0.5 s':>8}"
    print(header)
    print("-" * len(header))
    for label, vae, atoms, near, whole in rows:
        print(f"{label[:34]:<34} {vae:>9.3f} {atoms:>11.3f} {near:>11.3f} {whole:>7.3f} {'yes' if whole <= 0.5 else 'NO':>8}")
    wholes = [r[4] for r in rows]
    print(f"{'median over examples':<34} {'':>9} {'':>11} {'':>11} {statistics.median(wholes):>7.3f}")


if __name__ == "__main__":
    main()
