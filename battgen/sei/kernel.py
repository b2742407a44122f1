"""Compiled core of the SEI kinetic Monte Carlo (numba).

Rejection-free BKL with incremental bookkeeping. Every event instance is a *slot*: a site and a
direction (site events) or a molecule and a direction (rigid moves of dimers and free clusters).
A slot holds at most one event type, because the type follows from the two species it joins, so
a slot table gives O(1) insert/remove and each step only re-classifies the slots around the
sites it changed. Rates depend on the type only, so an event is drawn by choosing a type with
probability rate·count / R and then a uniform instance of that type.

Site index ``i = r * nx + x``; row ``r = 0`` touches the electrode, ``r = ny - 1`` the
absorbing boundary. Directions: 0 = +x, 1 = up (away from the electrode), 2 = −x, 3 = down.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from battgen.sei.species import (
    ATTACHED,
    DIMER,
    FREE_CLUSTER,
    INORGANIC,
    MONOMER,
    RADICAL,
    SOLVENT,
)

WALL = -1
ELECTRODE = -2
ABSORBER = -3

# 0-based event types (event number - 1)
E1, E2, E3, E4, E5, E6, E7, E8, E9, E10 = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
E11, E12, E13, E14, E15, E16, E17, E18, E19 = 10, 11, 12, 13, 14, 15, 16, 17, 18
N_TYPES = 19

OPPOSITE = np.array([2, 3, 0, 1], np.int64)

STATUS_COMPLETE = 0  # no event possible
STATUS_MAX_STEPS = 2
STATUS_MAX_TIME = 3


@njit(cache=True, error_model="numpy")
def neighbor(i, d, nx, ny):
    x = i % nx
    r = i // nx
    if d == 0:
        return i + 1 if x + 1 < nx else WALL
    if d == 1:
        return i + nx if r + 1 < ny else ABSORBER
    if d == 2:
        return i - 1 if x > 0 else WALL
    return i - nx if r > 0 else ELECTRODE


# Neighbour classes beyond the species codes 0-6.
N_ELECTRODE, N_ABSORBER, N_WALL = 7, 8, 9


def _build_pair_table() -> np.ndarray:
    """PAIR[species of the slot's site, class of its neighbour, direction] -> event type.

    The event table of the model in one place. Symmetric pairs (P+P, O+O, OO+OO, C+C) belong to
    the slot of directions 0 and 1 only, so each pair is counted once. Conditions that need more
    than the two species (tunnelling rows, two sites of one molecule) are applied afterwards.
    """
    table = np.full((7, 10, 4), -1, np.int8)

    def both(c, n, t):
        table[c, n, :] = t

    both(SOLVENT, N_ELECTRODE, E1)
    both(SOLVENT, INORGANIC, E2)
    both(SOLVENT, ATTACHED, E2)
    both(RADICAL, N_ELECTRODE, E3)
    both(RADICAL, N_ABSORBER, E16)
    table[RADICAL, RADICAL, :2] = E4
    both(RADICAL, INORGANIC, E7)
    both(RADICAL, ATTACHED, E7)
    both(RADICAL, SOLVENT, E14)
    both(MONOMER, N_ABSORBER, E17)
    table[MONOMER, MONOMER, :2] = E5
    both(MONOMER, DIMER, E6)
    both(MONOMER, FREE_CLUSTER, E8)
    both(MONOMER, ATTACHED, E8)
    both(MONOMER, SOLVENT, E13)
    both(DIMER, N_ABSORBER, E18)
    table[DIMER, DIMER, :2] = E10
    both(DIMER, FREE_CLUSTER, E9)
    both(DIMER, ATTACHED, E9)
    both(FREE_CLUSTER, N_ABSORBER, E19)
    table[FREE_CLUSTER, FREE_CLUSTER, :2] = E11
    return table


PAIR = _build_pair_table()
NEEDS_CHECK = np.zeros(N_TYPES, np.bool_)
NEEDS_CHECK[[E2, E7, E10, E11]] = True


@njit(cache=True, error_model="numpy")
def classify_mol_slot(m, d, code, mol, mol_kind, mol_head, mol_next, nbr, locked):
    """Rigid one-site move of molecule m in direction d: allowed when every target is solvent
    or the molecule's own site (leaving through the top is events 18/19, not a move)."""
    kind = mol_kind[m]
    if kind == 0 or locked[mol_head[m]]:
        return -1
    s = mol_head[m]
    while s >= 0:
        t = nbr[4 * s + d]
        if t < 0:
            return -1
        if code[t] != SOLVENT and mol[t] != m:
            return -1
        s = mol_next[s]
    return E12 if kind == DIMER else E15


@njit(cache=True, error_model="numpy")
def _add(t, key, ev_list, ev_count, pos):
    idx = ev_count[t]
    ev_list[t, idx] = key
    pos[key] = idx
    ev_count[t] = idx + 1


@njit(cache=True, error_model="numpy")
def _remove(t, key, ev_list, ev_count, pos):
    idx = pos[key]
    last = ev_count[t] - 1
    moved = ev_list[t, last]
    ev_list[t, idx] = moved
    pos[moved] = idx
    ev_count[t] = last


@njit(cache=True, error_model="numpy")
def _is_mol_type(t):
    return t == E12 or t == E15


@njit(cache=True, error_model="numpy", nogil=True)
def run_kmc(
    code,
    rates,
    nx,
    ny,
    tunnel_rows,
    seed,
    max_steps,
    max_time,
    snapshots,
    snapshot_steps,
    snapshot_times,
    snapshot_every,
    event_counts,
    progress,
    hop_ratio=0.0,
    accelerate_after=0,
):
    """Run to completion or to a bound. ``code`` holds the nx·ny lattice plus three entries for
    the boundary classes; it is mutated, as are the snapshot and event-count arrays.
    ``progress`` (float64, 2) receives (steps, simulated time) every 65,536 events, so another
    thread can follow a run (the kernel releases the GIL).
    ``hop_ratio`` > 0 slows the diffusion moves (events 12-15) together, whenever their total
    rate exceeds ``hop_ratio`` times that of the reactions (events 1-11), to exactly that ratio:
    an approximation (temporal acceleration), see :func:`battgen.sei.kmc.simulate`. 0 = exact.
    It applies from event ``accelerate_after`` on.
    Returns (status, steps, time, n_snapshots, snapshot_every, n_locked_sites, n_scaled), the
    last the number of events drawn with the diffusion moves slowed."""
    np.random.seed(seed)
    n = nx * ny
    nslots = 4 * n
    mol = np.full(n, -1, np.int32)
    mol_next = np.full(n, -1, np.int32)
    mol_head = np.full(n, -1, np.int32)
    mol_size = np.zeros(n, np.int32)
    mol_kind = np.zeros(n, np.int8)
    free_ids = np.arange(n - 1, -1, -1).astype(np.int32)
    n_free = n

    slot_type = np.full(nslots, -1, np.int8)
    slot_pos = np.zeros(nslots, np.int32)
    mslot_type = np.full(nslots, -1, np.int8)
    mslot_pos = np.zeros(nslots, np.int32)
    ev_list = np.zeros((N_TYPES, nslots), np.int32)
    ev_count = np.zeros(N_TYPES, np.int64)

    changed = np.zeros(n, np.int32)
    mark = np.zeros(n, np.int64)
    mark_mol = np.zeros(n, np.int64)
    members = np.zeros(n, np.int32)
    stamp = 0

    nbr = np.empty(nslots, np.int32)
    nbr_class = np.empty(nslots, np.int32)
    code[n] = N_ELECTRODE
    code[n + 1] = N_ABSORBER
    code[n + 2] = N_WALL
    for i in range(n):
        for d in range(4):
            q = neighbor(i, d, nx, ny)
            nbr[4 * i + d] = q
            if q >= 0:
                nbr_class[4 * i + d] = q
            elif q == ELECTRODE:
                nbr_class[4 * i + d] = n
            elif q == ABSORBER:
                nbr_class[4 * i + d] = n + 1
            else:
                nbr_class[4 * i + d] = n + 2
    # slots to re-classify before the next draw: all of them at the start
    # a changed site queues at most 8 slots, a newly locked one 4 more
    pending = np.zeros(3 * nslots, np.int32)
    pending[:nslots] = np.arange(nslots)
    locked = np.zeros(n, np.bool_)
    n_locked = 0
    n_pending = nslots

    steps = 0
    time = 0.0
    n_snap = 0
    max_snap = snapshots.shape[0]
    last_lock_check = 0
    n_scaled = 0
    status = STATUS_COMPLETE

    while True:
        # Re-classify pending slots. Written out here rather than called: this loop is the hot
        # path, and a call passing the state arrays costs more than the work itself.
        for k in range(n_pending):
            slot = pending[k]
            q = slot >> 2
            nc = nbr_class[slot]
            new_t = -1 if locked[q] else PAIR[code[q], code[nc], slot & 3]
            if new_t >= 0 and NEEDS_CHECK[new_t]:
                if new_t == E2:  # first reduction next to SEI: S within tunnel_rows + 1
                    if q // nx + 1 > tunnel_rows + 1:
                        new_t = -1
                elif new_t == E7:  # second reduction next to SEI: P within tunnel_rows
                    if q // nx + 1 > tunnel_rows:
                        new_t = -1
                elif mol[nc] == mol[q]:  # E10/E11: sites of one molecule do not react
                    new_t = -1
            old_t = slot_type[slot]
            if new_t != old_t:
                if old_t >= 0:
                    idx = slot_pos[slot]
                    last = ev_count[old_t] - 1
                    moved = ev_list[old_t, last]
                    ev_list[old_t, idx] = moved
                    slot_pos[moved] = idx
                    ev_count[old_t] = last
                if new_t >= 0:
                    idx = ev_count[new_t]
                    ev_list[new_t, idx] = slot
                    slot_pos[slot] = idx
                    ev_count[new_t] = idx + 1
                slot_type[slot] = new_t
        n_pending = 0

        total = 0.0
        hop_total = 0.0
        slow_total = 0.0
        reactive = 0
        for t in range(N_TYPES):
            part = rates[t] * ev_count[t]
            if t >= E12 and t <= E15:
                hop_total += part
            else:
                total += part
                reactive += ev_count[t]
                if t <= E11:
                    slow_total += part
        hop_scale = 1.0
        if (hop_ratio > 0.0 and steps >= accelerate_after and slow_total > 0.0
                and hop_total > hop_ratio * slow_total):
            hop_scale = hop_ratio * slow_total / hop_total
        total += hop_total * hop_scale
        if total <= 0.0:
            status = STATUS_COMPLETE
            break
        if steps >= max_steps:
            status = STATUS_MAX_STEPS
            break
        # Species alone in closed pores where nothing can react hop forever at high rates
        # without changing anything: lock them in place. Checked often once nothing else can
        # react (the run is ending), and every 20 sweeps otherwise; a check is one O(n) pass.
        if steps - last_lock_check >= (n if reactive == 0 else 20 * n):
            last_lock_check = steps
            n_pending, newly = _lock_inert_pores(
                code, mol, mol_kind, mol_head, mol_next, nbr, nx, ny, tunnel_rows, members,
                locked, pending, n_pending, mslot_type, mslot_pos, ev_list, ev_count,
            )
            if newly:
                n_locked += newly
                continue

        dt = -np.log(1.0 - np.random.random()) / total
        if time + dt > max_time:
            status = STATUS_MAX_TIME
            break
        time += dt
        if hop_scale < 1.0:
            n_scaled += 1

        target = np.random.random() * total
        t = 0
        acc = rates[0] * ev_count[0]
        while acc <= target and t < N_TYPES - 1:
            t += 1
            if t >= E12 and t <= E15:
                acc += rates[t] * ev_count[t] * hop_scale
            else:
                acc += rates[t] * ev_count[t]
        while ev_count[t] == 0:  # float round-off at the top end
            t -= 1
        pick = int(np.random.random() * ev_count[t])
        key = ev_list[t, min(pick, ev_count[t] - 1)]

        stamp += 1
        nch = 0
        if _is_mol_type(t):
            m = key // 4
            d = key % 4
            cnt = 0
            s = mol_head[m]
            while s >= 0:
                members[cnt] = s
                cnt += 1
                s = mol_next[s]
            kind = mol_kind[m]
            for k in range(cnt):
                s = members[k]
                code[s] = SOLVENT
                mol[s] = -1
                if mark[s] != stamp:
                    mark[s] = stamp
                    changed[nch] = s
                    nch += 1
            head = -1
            for k in range(cnt):
                s2 = nbr[4 * members[k] + d]
                code[s2] = kind
                mol[s2] = m
                mol_next[s2] = head
                head = s2
                if mark[s2] != stamp:
                    mark[s2] = stamp
                    changed[nch] = s2
                    nch += 1
            mol_head[m] = head
        else:
            i = key // 4
            d = key % 4
            j = nbr[key]
            if t == E1 or t == E2:
                code[i] = RADICAL
            elif t == E3 or t == E7:
                code[i] = INORGANIC
            elif t == E4:
                if np.random.random() < 0.5:
                    code[i] = MONOMER
                    code[j] = SOLVENT
                else:
                    code[j] = MONOMER
                    code[i] = SOLVENT
                mark[j] = stamp
                changed[nch] = j
                nch += 1
            elif t == E5:
                m = free_ids[n_free - 1]
                n_free -= 1
                mol_kind[m] = DIMER
                code[i] = DIMER
                code[j] = DIMER
                mol[i] = m
                mol[j] = m
                mol_head[m] = i
                mol_next[i] = j
                mol_next[j] = -1
                mol_size[m] = 2
                mark[j] = stamp
                changed[nch] = j
                nch += 1
            elif t == E6:
                m = mol[j]
                mol_kind[m] = FREE_CLUSTER
                code[i] = FREE_CLUSTER
                mol[i] = m
                mol_next[i] = mol_head[m]
                mol_head[m] = i
                mol_size[m] += 1
                s = mol_next[i]
                while s >= 0:
                    code[s] = FREE_CLUSTER
                    mark[s] = stamp
                    changed[nch] = s
                    nch += 1
                    s = mol_next[s]
            elif t == E8:
                if code[j] == ATTACHED:
                    code[i] = ATTACHED
                else:
                    m = mol[j]
                    code[i] = FREE_CLUSTER
                    mol[i] = m
                    mol_next[i] = mol_head[m]
                    mol_head[m] = i
                    mol_size[m] += 1
            elif t == E9 or t == E10 or t == E11:
                gone = mol[i]
                if t == E9 and code[j] == ATTACHED:
                    keep = -1
                else:
                    keep = mol[j]
                    if t == E11 and mol_size[gone] > mol_size[keep]:
                        gone, keep = keep, gone
                s = mol_head[gone]
                while s >= 0:
                    nxt = mol_next[s]
                    if keep < 0:
                        code[s] = ATTACHED
                        mol[s] = -1
                    else:
                        code[s] = FREE_CLUSTER
                        mol[s] = keep
                        mol_next[s] = mol_head[keep]
                        mol_head[keep] = s
                        mol_size[keep] += 1
                    if mark[s] != stamp:
                        mark[s] = stamp
                        changed[nch] = s
                        nch += 1
                    s = nxt
                if keep >= 0 and mol_kind[keep] != FREE_CLUSTER:
                    # a dimer absorbing another dimer becomes a cluster: recode its own sites
                    mol_kind[keep] = FREE_CLUSTER
                    s = mol_head[keep]
                    while s >= 0:
                        code[s] = FREE_CLUSTER
                        if mark[s] != stamp:
                            mark[s] = stamp
                            changed[nch] = s
                            nch += 1
                        s = mol_next[s]
                n_free = _delete_mol(
                    gone, mol_kind, mol_head, mol_size, free_ids, n_free,
                    mslot_type, mslot_pos, ev_list, ev_count,
                )
            elif t == E13 or t == E14:
                code[j] = code[i]
                code[i] = SOLVENT
                mark[j] = stamp
                changed[nch] = j
                nch += 1
            elif t == E16 or t == E17:
                code[i] = SOLVENT
            else:  # E18, E19: the whole molecule leaves through the top
                m = mol[i]
                s = mol_head[m]
                while s >= 0:
                    code[s] = SOLVENT
                    mol[s] = -1
                    if mark[s] != stamp:
                        mark[s] = stamp
                        changed[nch] = s
                        nch += 1
                    s = mol_next[s]
                n_free = _delete_mol(
                    m, mol_kind, mol_head, mol_size, free_ids, n_free,
                    mslot_type, mslot_pos, ev_list, ev_count,
                )
            if mark[i] != stamp:
                mark[i] = stamp
                changed[nch] = i
                nch += 1

        # Free clusters touching the electrode, Li2CO3 or attached organic SEI attach at once;
        # attaching can make further clusters touch, so walk the growing list.
        k = 0
        while k < nch:
            s = changed[k]
            k += 1
            c = code[s]
            if c == FREE_CLUSTER:
                if _touches_sei(s, code, nbr):
                    nch, n_free = _attach(
                        mol[s], code, mol, mol_kind, mol_head, mol_next, mol_size, free_ids,
                        n_free, mslot_type, mslot_pos, ev_list, ev_count, mark, stamp,
                        changed, nch,
                    )
            elif c == INORGANIC or c == ATTACHED:
                for dd in range(4):
                    q = nbr[4 * s + dd]
                    if q >= 0 and code[q] == FREE_CLUSTER:
                        nch, n_free = _attach(
                            mol[q], code, mol, mol_kind, mol_head, mol_next, mol_size,
                            free_ids, n_free, mslot_type, mslot_pos, ev_list, ev_count,
                            mark, stamp, changed, nch,
                        )

        # A site slot depends only on its two sites: queue the slots of changed sites and, of
        # their unchanged neighbours, the slot pointing back at the change.
        for k in range(nch):
            s = changed[k]
            for dd in range(4):
                pending[n_pending] = 4 * s + dd
                n_pending += 1
                q = nbr[4 * s + dd]
                if q >= 0:
                    if mark[q] != stamp:
                        pending[n_pending] = 4 * q + OPPOSITE[dd]
                        n_pending += 1
                    mq = mol[q]
                    if mq >= 0 and mark_mol[mq] != stamp:
                        mark_mol[mq] = stamp
                        _update_mol_slots(mq, code, mol, mol_kind, mol_head, mol_next, nbr, locked,
                                          mslot_type, mslot_pos, ev_list, ev_count)
            ms = mol[s]
            if ms >= 0 and mark_mol[ms] != stamp:
                mark_mol[ms] = stamp
                _update_mol_slots(ms, code, mol, mol_kind, mol_head, mol_next, nbr, locked,
                                  mslot_type, mslot_pos, ev_list, ev_count)

        event_counts[t] += 1
        steps += 1
        if steps & 65535 == 0:
            progress[0] = steps
            progress[1] = time
        if snapshot_every > 0 and steps % snapshot_every == 0:
            if n_snap == max_snap:
                # keep every other frame and halve the frame rate: uniform spacing, bounded memory
                half = max_snap // 2
                for k2 in range(half):
                    snapshots[k2, :] = snapshots[2 * k2 + 1, :]
                    snapshot_steps[k2] = snapshot_steps[2 * k2 + 1]
                    snapshot_times[k2] = snapshot_times[2 * k2 + 1]
                n_snap = half
                snapshot_every *= 2
            if steps % snapshot_every == 0:
                snapshots[n_snap, :] = code[:n]
                snapshot_steps[n_snap] = steps
                snapshot_times[n_snap] = time
                n_snap += 1

    return status, steps, time, n_snap, snapshot_every, n_locked, n_scaled


@njit(cache=True, error_model="numpy")
def _touches_sei(s, code, nbr):
    for d in range(4):
        q = nbr[4 * s + d]
        if q == ELECTRODE:
            return True
        if q >= 0 and (code[q] == INORGANIC or code[q] == ATTACHED):
            return True
    return False


@njit(cache=True, inline="always", error_model="numpy")
def _update_mol_slots(m, code, mol, mol_kind, mol_head, mol_next, nbr, locked, mslot_type,
                      mslot_pos, ev_list, ev_count):
    for d in range(4):
        slot = 4 * m + d
        new_t = classify_mol_slot(m, d, code, mol, mol_kind, mol_head, mol_next, nbr, locked)
        old_t = mslot_type[slot]
        if new_t != old_t:
            if old_t >= 0:
                _remove(old_t, slot, ev_list, ev_count, mslot_pos)
            if new_t >= 0:
                _add(new_t, slot, ev_list, ev_count, mslot_pos)
            mslot_type[slot] = new_t


@njit(cache=True, error_model="numpy")
def _delete_mol(m, mol_kind, mol_head, mol_size, free_ids, n_free, mslot_type, mslot_pos,
                ev_list, ev_count):
    for d in range(4):
        slot = 4 * m + d
        old_t = mslot_type[slot]
        if old_t >= 0:
            _remove(old_t, slot, ev_list, ev_count, mslot_pos)
            mslot_type[slot] = -1
    mol_kind[m] = 0
    mol_head[m] = -1
    mol_size[m] = 0
    free_ids[n_free] = m
    return n_free + 1


@njit(cache=True, error_model="numpy")
def _attach(m, code, mol, mol_kind, mol_head, mol_next, mol_size, free_ids, n_free, mslot_type,
            mslot_pos, ev_list, ev_count, mark, stamp, changed, nch):
    s = mol_head[m]
    while s >= 0:
        code[s] = ATTACHED
        mol[s] = -1
        if mark[s] != stamp:
            mark[s] = stamp
            changed[nch] = s
            nch += 1
        s = mol_next[s]
    n_free = _delete_mol(m, mol_kind, mol_head, mol_size, free_ids, n_free, mslot_type, mslot_pos,
                         ev_list, ev_count)
    return nch, n_free


@njit(cache=True, error_model="numpy")
def _lock_inert_pores(code, mol, mol_kind, mol_head, mol_next, nbr, nx, ny, tunnel_rows, queue,
                      locked, pending, n_pending, mslot_type, mslot_pos, ev_list, ev_count):
    """Lock the mobile species of every closed pore in which nothing can ever react again.

    A pore is a connected set of non-SEI sites that does not reach the absorbing top; its walls
    are permanent SEI, so nothing enters or leaves it. Nothing can react in it when it lies
    wholly above the tunnelling rows (no reduction there), holds at most one radical (radicals
    react only with radicals) and at most one organic entity (O, OO, C react with each other),
    a lone monomer or dimer has no organic wall to join, and a lone free cluster cannot move.
    Its species would hop forever; their position in the pore is then as good as any.
    Returns (n_pending, number of sites locked now).
    """
    n = nx * ny
    comp = np.full(n, -1, np.int32)
    seen_mol = np.full(n, -1, np.int32)
    head = 0
    tail = 0
    for x in range(nx):
        s = (ny - 1) * nx + x
        if code[s] != INORGANIC and code[s] != ATTACHED:
            comp[s] = 0
            queue[tail] = s
            tail += 1
    while head < tail:  # the open region connected to the electrolyte bulk: never locked
        s = queue[head]
        head += 1
        for d in range(4):
            q = nbr[4 * s + d]
            if q >= 0 and comp[q] < 0 and code[q] != INORGANIC and code[q] != ATTACHED:
                comp[q] = 0
                queue[tail] = q
                tail += 1
    newly = 0
    label = 0
    for start in range(n):
        if comp[start] >= 0 or code[start] == INORGANIC or code[start] == ATTACHED:
            continue
        label += 1
        comp[start] = label
        head = 0
        tail = 1
        queue[0] = start
        # Radicals react only with radicals (and SEI in the tunnelling rows); the organic
        # species (O, OO, C) react with each other: the two families are judged apart.
        radicals = 0
        organics = 0
        organic_kind = SOLVENT
        organic_site = -1
        reaches_tunnel_rows = False
        wall_has_organic = False
        while head < tail:
            s = queue[head]
            head += 1
            c = code[s]
            if c == RADICAL:
                radicals += 1
            elif c == MONOMER:
                organics += 1
                organic_kind = c
                organic_site = s
            elif c == DIMER or c == FREE_CLUSTER:
                if seen_mol[mol[s]] != label:  # a molecule spans several sites: count it once
                    seen_mol[mol[s]] = label
                    organics += 1
                organic_kind = c
                organic_site = s
            if s // nx + 1 <= tunnel_rows:
                reaches_tunnel_rows = True
            for d in range(4):
                q = nbr[4 * s + d]
                if q < 0:
                    continue
                if code[q] == ATTACHED:
                    wall_has_organic = True
                elif comp[q] < 0 and code[q] != INORGANIC:
                    comp[q] = label
                    queue[tail] = q
                    tail += 1
        if radicals + organics == 0 or reaches_tunnel_rows or radicals > 1 or organics > 1:
            continue
        if (organic_kind == MONOMER or organic_kind == DIMER) and wall_has_organic:
            continue
        if organic_kind == FREE_CLUSTER:
            m = mol[organic_site]
            if (mslot_type[4 * m] >= 0 or mslot_type[4 * m + 1] >= 0
                    or mslot_type[4 * m + 2] >= 0 or mslot_type[4 * m + 3] >= 0):
                continue
        for k in range(tail):
            s = queue[k]
            c = code[s]
            if c == SOLVENT or locked[s]:
                continue
            locked[s] = True
            newly += 1
            for d in range(4):
                pending[n_pending] = 4 * s + d
                n_pending += 1
            if mol[s] >= 0:
                _update_mol_slots(mol[s], code, mol, mol_kind, mol_head, mol_next, nbr, locked,
                                  mslot_type, mslot_pos, ev_list, ev_count)
    return n_pending, newly

