"""SEI explorer: live kinetic Monte Carlo, and the latent space of the (conditional) prVAE."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from battgen import paths
from battgen.artifacts import read_metrics
from battgen.eval.sei_report import PUBLISHED_NOTE, regressor_r2, sei_baseline_table, sei_quality_table
from battgen.jobs import DONE
from battgen.jobs.tasks import kmc_job, kmc_runs_inline
from battgen.sei.barriers import (
    BARRIER_RANGES,
    DEFAULT_BARRIERS,
    EVENT_DESCRIPTIONS,
    N_FREE,
)
from battgen.sei.observables import PROPERTY_NAMES
from battgen.sei.run_status import describe_result
from battgen.ui.jobs import follow as follow_job
from battgen.ui.jobs import start as start_job
from battgen.viz import sei as viz

DATASET = paths.asset_dir(paths.SEI) / "dataset.npz"
CHECKPOINTS = {
    "vae": paths.checkpoint_dir(paths.SEI_VAE),
    "prvae": paths.checkpoint_dir(paths.SEI_PRVAE),
    "cprvae": paths.checkpoint_dir(paths.SEI_CPRVAE),
}
MODEL_LABELS = {"vae": "vanilla VAE", "prvae": "prVAE", "cprvae": "conditional prVAE"}


@st.cache_resource(show_spinner="Loading model…")
def load_model(kind: str):
    from battgen.device import get_device
    from battgen.models.prvae import SEIPRVAE

    model = SEIPRVAE.from_pretrained(CHECKPOINTS[kind])
    return model.to(get_device()).eval()


@st.cache_data(show_spinner=False)
def load_latent_set(kind: str):
    from battgen.eval.sei_latent import load_latents

    return load_latents(CHECKPOINTS[kind])


@st.cache_data(show_spinner="Loading dataset…")
def load_sei_dataset():
    from battgen.sei.dataset import load_dataset

    return load_dataset(DATASET)


@st.cache_resource(show_spinner="Loading the simulator…")
def simulator_ready() -> float:
    from battgen.sei.kmc import warm_up

    return warm_up()


def available(kind: str) -> bool:
    return (CHECKPOINTS[kind] / "config.json").exists() and (CHECKPOINTS[kind] / "latents.npz").exists()


def missing_model(kind: str) -> None:
    st.warning(
        f"The {MODEL_LABELS[kind]} checkpoint is missing in `{paths.for_display(CHECKPOINTS[kind])}`. "
        f"Train it with `python -m battgen train sei-{kind}`."
    )


# Also set here: Streamlit serves this file on its own at /sei_explorer (the router uses
# /sei-explorer); that view should be wide too.
st.set_page_config(page_title="SEI explorer · BattGen", layout="wide", page_icon=str(paths.FAVICON))
st.title("SEI explorer")
st.caption(
    "Solid-electrolyte interphase growth on a graphite anode in ethylene carbonate: a 2-D kinetic "
    "Monte Carlo model with 19 reactions and diffusion events (Esmaeilpour et al. 2023), and a "
    "property-regularised VAE trained on our own simulations (Rajagopal et al. 2023)."
)
st.markdown(viz.legend_html(), unsafe_allow_html=True)

tab_sim, tab_latent, tab_walk, tab_cond, tab_quality = st.tabs(
    ["Simulate", "Latent space", "PC walks", "Barrier-conditioned generation", "Model quality"]
)

# --------------------------------------------------------------------------- simulate
with tab_sim:
    with st.form("kmc"):
        st.markdown("**Activation barriers (eV)** — defaults from the reference model; "
                    "the slider ranges are those of the training dataset.")
        barrier_values = []
        columns = st.columns(3)
        for i in range(N_FREE):
            low, high = BARRIER_RANGES[i]
            default = float(DEFAULT_BARRIERS[i])
            with columns[i % 3]:
                barrier_values.append(st.slider(
                    f"e{i + 1}: {EVENT_DESCRIPTIONS[i]}",
                    min_value=float(min(low, default)), max_value=float(max(high, default)),
                    value=default, step=0.01, key=f"barrier_{i}",
                ))
        c1, c2, c3 = st.columns(3)
        size = c1.slider("Lattice size (sites ≈ nm)", 20, 100, 50, step=5, key="kmc_size")
        seed = c2.number_input("Seed", min_value=0, max_value=2**31 - 2, value=0, step=1, key="kmc_seed")
        max_million = c3.number_input("Event bound (millions)", min_value=1, max_value=200, value=50,
                                      help="A run stops here if the SEI never passivates the electrode.",
                                      key="kmc_max_steps")
        submitted = st.form_submit_button("Run simulation", type="primary")

    # Small runs stay in this session (they end in a second or two, lattice shown live); larger
    # ones queue in the server's job runner.
    max_steps = int(max_million) * 1_000_000
    run_here = submitted and kmc_runs_inline(size, size, max_steps)
    if submitted and not run_here:
        st.session_state.pop("kmc_result", None)
        start_job("kmc_job", "kmc", kmc_job, np.array(barrier_values), nx=int(size), ny=int(size),
                  seed=int(seed), max_steps=max_steps, n_snapshots=60)

    def show_live_lattice(progress: dict) -> None:
        if "lattice" in progress:
            lattice = np.frombuffer(progress["lattice"], np.uint8).reshape(progress["shape"])
            st.image(viz.lattice_rgb(lattice, scale=max(1, 300 // lattice.shape[1])), caption="live lattice")

    ended = follow_job("kmc_job", show_progress=show_live_lattice)
    if ended is not None:
        if ended.status == DONE:
            st.session_state["kmc_result"] = ended.result
            st.status(f"Done in {ended.running_s:.2f} s ({ended.result.steps:,} events, {ended.result.status})",
                      state="complete")
        else:
            st.error(ended.explanation)

    if run_here:
        from battgen.sei.kmc import simulate

        with st.status("Simulating SEI growth…", expanded=False) as status:
            status.write("Loading the compiled kernel…")
            simulator_ready()
            status.write(f"Running {size}×{size} sites to completion…")
            counter = st.empty()
            live = st.empty()

            def show_progress(steps: int, sim_time: float, lattice: np.ndarray) -> None:
                counter.write(f"{steps / 1e6:.2f} M events · simulated {sim_time:.3g} s")
                live.image(viz.lattice_rgb(lattice, scale=max(1, 300 // int(size))),
                           caption="live lattice")

            start = time.perf_counter()
            try:
                result = simulate(
                    np.array(barrier_values), nx=int(size), ny=int(size), seed=int(seed),
                    max_steps=max_steps, n_snapshots=60,
                    on_progress=show_progress,
                )
            except ValueError as exc:
                status.update(label="Simulation rejected", state="error")
                st.error(str(exc))
                result = None
            counter.empty()
            live.empty()
            if result is not None:
                status.update(label=f"Done in {time.perf_counter() - start:.2f} s "
                                    f"({result.steps:,} events, {result.status})", state="complete")
                st.session_state["kmc_result"] = result

    result = st.session_state.get("kmc_result")
    if result is None:
        st.info("Set the barriers and press **Run simulation**. A default 50×50 run takes about a second.")
    else:
        obs = result.observables
        m = st.columns(5)
        m[0].metric("Thickness (nm)", f"{obs['thickness']:.1f}")
        m[1].metric("Porosity (layer)", f"{obs['porosity']:.3f}",
                    help="Non-SEI share of the sites from the electrode up to each column's top SEI site.")
        m[2].metric("Porosity (half-thickness)", f"{obs['porosity_half']:.3f}",
                    help="The reference implementation's definition: non-SEI sites below half the thickness "
                         "over (thickness/2)·width. Its published 0.025 is this one.")
        m[3].metric("Li2CO3 fraction", f"{obs['inorganic_fraction']:.3f}")
        m[4].metric("Organic fraction", f"{obs['organic_fraction']:.3f}")
        m = st.columns(6)
        m[0].metric("Density (µg/cm²)", f"{obs['density']:.3f}")
        m[1].metric("Electrode coverage", f"{obs['coverage']:.2f}")
        m[2].metric("KMC events (M)", f"{result.steps / 1e6:.2f}")
        m[3].metric("Simulated time (s)", f"{result.sim_time_s:.3g}")
        m[4].metric("Wall time (s)", f"{result.wall_time_s:.2f}")
        m[5].metric("Locked in pores", f"{result.locked_sites}",
                    help="Species alone in closed pores where nothing can react; locked in place.")
        run_status = describe_result(result)
        (st.success if run_status.passivated else st.warning)(f"**{run_status.headline}** {run_status.detail}")

        left, right = st.columns([1, 1])
        with left:
            frames = result.snapshots
            frame = st.slider("Snapshot", 0, len(frames) - 1, len(frames) - 1, key="kmc_frame",
                              help="Evenly spaced in KMC events; the last is the final state.")
            st.plotly_chart(
                viz.lattice_figure(frames[frame], title=f"after {result.snapshot_steps[frame]:,} events, "
                                   f"t = {result.snapshot_times[frame]:.3g} s"),
                key="kmc_lattice",
            )
        with right:
            st.markdown("**Events executed per type**")
            st.plotly_chart(viz.event_count_figure(result.event_counts, EVENT_DESCRIPTIONS),
                            key="kmc_events")
        d1, d2 = st.columns(2)
        d1.download_button(
            "Final lattice (CSV, top row first)", result.to_csv(), file_name=f"sei_seed{result.seed}.csv",
            mime="text/csv", key="dl_csv",
        )
        d2.download_button(
            "Lattice, snapshots and barriers (NPZ)",
            result.to_npz(),
            file_name=f"sei_seed{result.seed}.npz", mime="application/octet-stream", key="dl_npz",
        )
        st.caption("Figures download as PNG from the camera icon of their toolbar.")

# --------------------------------------------------------------------------- latent space
with tab_latent:
    st.markdown("Test-set latents projected on the first two principal components of the training "
                "latents. The prVAE's regressor pulls the latent space into property order; the "
                "vanilla VAE has no such pressure.")
    prop = st.selectbox("Colour by", PROPERTY_NAMES, format_func=viz.property_label, key="latent_prop")
    cols = st.columns(2)
    for col, kind in zip(cols, ("vae", "prvae")):
        with col:
            if not available(kind):
                missing_model(kind)
                continue
            latents = load_latent_set(kind)
            j = latents.property_names.index(prop)
            st.plotly_chart(
                viz.latent_scatter(latents.pcs, latents.properties_true[:, j], prop,
                                   MODEL_LABELS[kind], latents.explained),
                key=f"latent_{kind}",
            )
            r2 = (read_metrics(CHECKPOINTS[kind]) or {}).get("test", {}).get("latent_pc12_r2", {})
            if r2.get(prop) is not None:
                st.caption(f"R² of a linear fit of {viz.property_label(prop)} on PC1–PC2: "
                           f"**{r2[prop]:.3f}**")

# --------------------------------------------------------------------------- PC walks
with tab_walk:
    walk_kinds = [k for k in ("prvae", "cprvae", "vae") if available(k)]
    if not walk_kinds:
        missing_model("prvae")
    else:
        from battgen.eval.sei_latent import decode_latents, pc_walk

        c1, c2 = st.columns(2)
        kind = c1.selectbox("Model", walk_kinds, format_func=MODEL_LABELS.get, key="walk_model")
        pc = c2.radio("Principal component", [0, 1, 2], format_func=lambda i: f"PC{i + 1}",
                      horizontal=True, key="walk_pc")
        model = load_model(kind)
        latents = load_latent_set(kind)
        lo, mean, hi = latents.pc_range(pc)
        barriers = DEFAULT_BARRIERS[:N_FREE]  # used by the conditional model only
        decoded = decode_latents(model, latents.along_pc(pc, [lo, mean, hi]), barriers)
        st.plotly_chart(
            viz.lattice_strip(decoded.lattices, [f"PC{pc + 1} min", f"PC{pc + 1} mean", f"PC{pc + 1} max"]),
            key="walk_anchors",
        )
        position = st.slider(f"Position along PC{pc + 1}", float(lo), float(hi), float(mean),
                             key="walk_pos")
        one = decode_latents(model, latents.along_pc(pc, position), barriers)
        left, right = st.columns([3, 2])
        left.plotly_chart(viz.lattice_figure(one.lattices[0], title=f"PC{pc + 1} = {position:.2f}"),
                          key="walk_lattice")
        with right:
            if one.properties is not None:
                st.markdown("**Regressor's prediction at this latent**")
                for name, value in zip(PROPERTY_NAMES, one.properties[0]):
                    st.metric(viz.property_label(name), f"{value:.3f}")
            walk = decode_latents(model, pc_walk(latents, pc, 7)[1], barriers)
            if walk.properties is not None:
                st.markdown("**Along the walk**")
                st.dataframe(
                    {viz.property_label(n): walk.properties[:, j] for j, n in enumerate(PROPERTY_NAMES)},
                    hide_index=True,
                )
                st.caption("Raw regressor output from PC minimum to maximum; at the ends of the "
                           "walk it extrapolates and can leave the physical range.")

# --------------------------------------------------------------------------- conditional
with tab_cond:
    if not available("cprvae"):
        missing_model("cprvae")
    else:
        from battgen.eval.sei_latent import barrier_sweep, decode_latents, interpolate, pc_walk

        model = load_model("cprvae")
        latents = load_latent_set("cprvae")
        mean_latent = latents.mu.mean(axis=0)
        mode = st.radio(
            "Generate",
            ["Barrier varies, latent at its mean", "Latent varies, barriers fixed",
             "Interpolate between two test configurations"],
            key="cond_mode",
        )
        if mode.startswith("Barrier varies"):
            c1, c2 = st.columns([2, 3])
            index = c1.selectbox("Barrier", range(N_FREE),
                                 format_func=lambda i: f"e{i + 1}: {EVENT_DESCRIPTIONS[i]}", key="cond_barrier")
            low, high = map(float, BARRIER_RANGES[index])
            value = c2.slider(f"e{index + 1} (eV)", low, high, float(DEFAULT_BARRIERS[index]),
                              step=0.01, key="cond_value")
            base = DEFAULT_BARRIERS[:N_FREE]
            values = np.linspace(low, high, 5)
            strip = decode_latents(model, np.repeat(mean_latent[None], 5, 0), barrier_sweep(base, index, values))
            st.plotly_chart(viz.lattice_strip(strip.lattices, [f"e{index + 1} = {v:.2f} eV" for v in values]),
                            key="cond_strip")
            one = decode_latents(model, mean_latent, barrier_sweep(base, index, [value]))
            st.plotly_chart(viz.lattice_figure(one.lattices[0], title=f"e{index + 1} = {value:.2f} eV"),
                            key="cond_one")
            st.caption("Other barriers at the reference defaults (all inside the dataset ranges). "
                       "At the mean latent the decoder changes little with a single barrier: "
                       "most of what decides the lattice is carried by the latent.")
        elif mode.startswith("Latent varies"):
            c1, c2 = st.columns(2)
            pc = c1.radio("Along", [0, 1, 2], format_func=lambda i: f"PC{i + 1}", horizontal=True, key="cond_pc")
            c2.caption("Barriers fixed at the reference defaults.")
            values, walk_latents = pc_walk(latents, pc, 5)
            strip = decode_latents(model, walk_latents, DEFAULT_BARRIERS[:N_FREE])
            st.plotly_chart(viz.lattice_strip(strip.lattices, [f"PC{pc + 1} = {v:.1f}" for v in values]),
                            key="cond_latent_strip")
        else:
            n_test = len(latents.indices)
            c1, c2, c3 = st.columns(3)
            a = c1.number_input("Configuration A (test index)", 0, n_test - 1, 0, key="interp_a")
            b = c2.number_input("Configuration B (test index)", 0, n_test - 1, min(1, n_test - 1), key="interp_b")
            steps = c3.slider("Steps", 3, 9, 5, key="interp_steps")
            path_z = interpolate(latents.mu[a], latents.mu[b], steps)
            path_b = interpolate(latents.barriers[a], latents.barriers[b], steps)
            strip = decode_latents(model, path_z, path_b)
            st.plotly_chart(viz.lattice_strip(strip.lattices, [f"t = {t:.2f}" for t in np.linspace(0, 1, steps)]),
                            key="interp_strip")
            if DATASET.exists():
                data = load_sei_dataset()
                st.plotly_chart(
                    viz.lattice_strip([data.lattices[latents.indices[a]], data.lattices[latents.indices[b]]],
                                      ["simulated A", "simulated B"]),
                    key="interp_truth",
                )

# --------------------------------------------------------------------------- quality
with tab_quality:
    for kind in ("prvae", "cprvae"):
        if not available(kind):
            missing_model(kind)
            continue
        latents = load_latent_set(kind)
        r2 = regressor_r2(read_metrics(CHECKPOINTS[kind]), latents.property_names)
        st.subheader(f"{MODEL_LABELS[kind]}: regressor on the test split")
        st.plotly_chart(viz.parity_figure(latents.properties_true, latents.properties_pred,
                                          latents.property_names, r2), key=f"parity_{kind}")
    table = sei_quality_table({MODEL_LABELS[kind]: CHECKPOINTS[kind] for kind in ("vae", "prvae", "cprvae")})
    if table is not None:
        st.subheader("Test metrics")
        st.dataframe(table, hide_index=True)
        st.caption(PUBLISHED_NOTE)
    baselines = sei_baseline_table({MODEL_LABELS[kind]: CHECKPOINTS[kind] for kind in ("prvae", "cprvae")})
    if baselines is not None:
        st.subheader("Regressors beside trivial baselines")
        st.dataframe(baselines, hide_index=True)
        st.caption("Same train and test runs for every row. The properties are exact functions of the "
                   "lattice, so a forest on each row's species fractions is the bar a latent regressor "
                   "must reach; the barrier-only forest shows what the conditions alone predict.")
    if DATASET.exists():
        from battgen.eval.sei_metrics import passivated_runs, property_correlation

        data = load_sei_dataset()
        names = list(PROPERTY_NAMES) + ["organic_fraction"]
        finished = passivated_runs(data)  # runs stopped at the event bound are unfinished SEIs
        corr = property_correlation(data.observables[finished], data.observable_names, names)
        st.subheader(f"Property correlations over the {int(finished.sum()):,} passivated simulations")
        if not finished.all():
            st.caption(f"{int((~finished).sum()):,} of the dataset's {len(data):,} runs stopped at the event "
                       "bound before passivating; they are left out here, as in the models' training.")
        st.plotly_chart(viz.correlation_figure(np.array(corr["matrix"], dtype=float), corr["names"]),
                        key="corr")
    else:
        st.info(f"The dataset `{paths.for_display(DATASET)}` is missing: build it with "
                "`python -m battgen sei build-dataset` and copy `dataset.npz` there.")
