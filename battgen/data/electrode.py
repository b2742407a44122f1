"""From relaxed energies to the six electrode properties, with pymatgen's electrode code.

The same function serves the offline builder, the "evaluate my electrode" upload and the
textbook validation, so the numbers the app shows for a user's structure are computed exactly
like the shipped dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

from battgen.data.properties import PROPERTY_NAMES

# Results outside these bounds come from a relaxation gone wrong, not from chemistry.
MAX_VOLTAGE = 6.0  # V vs the ion metal
MAX_DELTA_VOLUME = 1.0  # the host more than doubles its volume: not an insertion electrode


class RejectedElectrode(ValueError):
    """A candidate that yields no physical electrode; the message says why."""


def computed_entry(structure, energy: float, material_id: str):
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    return ComputedStructureEntry(structure, energy, data={"material_id": material_id})


def ion_entry(ion: str, energy_per_atom: float):
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedEntry

    return ComputedEntry(Composition(ion), energy_per_atom, data={"material_id": f"{ion}-metal"})


def insertion_electrode(entries, working_ion_entry):
    """pymatgen ``InsertionElectrode`` from entries of one host at several ion contents."""
    from pymatgen.apps.battery.insertion_battery import InsertionElectrode

    ion = working_ion_entry.composition.elements[0]
    fractions = {round(e.composition.get_atomic_fraction(ion), 6) for e in entries}
    if len(fractions) < 2:
        raise RejectedElectrode("need entries at two or more ion contents")
    try:
        electrode = InsertionElectrode.from_entries(entries, working_ion_entry, strip_structures=False)
    except (ValueError, IndexError, KeyError) as err:
        raise RejectedElectrode(f"pymatgen found no insertion electrode: {err}") from err
    if not electrode.voltage_pairs:
        raise RejectedElectrode("the ion-rich phase is not stable against ion metal + host "
                                "(negative voltage)")
    return electrode


def electrode_properties(electrode) -> dict[str, float]:
    """The six MP-style properties of a pymatgen ``InsertionElectrode``."""
    return {
        "average_voltage": float(electrode.get_average_voltage()),
        "capacity_grav": float(electrode.get_capacity_grav()),
        "capacity_vol": float(electrode.get_capacity_vol()),
        "energy_grav": float(electrode.get_specific_energy()),
        "energy_vol": float(electrode.get_energy_density()),
        "max_delta_volume": float(electrode.max_delta_volume),
    }


def check_physical(props: dict[str, float]) -> None:
    import math

    bad = [k for k in PROPERTY_NAMES if not math.isfinite(props[k])]
    if bad:
        raise RejectedElectrode(f"non-finite {', '.join(bad)}")
    v = props["average_voltage"]
    if v <= 0:
        raise RejectedElectrode(f"negative average voltage {v:.2f} V")
    if v > MAX_VOLTAGE:
        raise RejectedElectrode(f"average voltage {v:.2f} V above {MAX_VOLTAGE} V")
    if props["max_delta_volume"] > MAX_DELTA_VOLUME:
        raise RejectedElectrode(f"volume change {props['max_delta_volume']:.0%} above "
                                f"{MAX_DELTA_VOLUME:.0%}")


@dataclass
class ElectrodeResult:
    electrode: object  # pymatgen InsertionElectrode
    properties: dict[str, float]

    @property
    def discharged(self):
        return self.electrode.fully_discharged_entry.structure

    @property
    def charged(self):
        return self.electrode.fully_charged_entry.structure


def evaluate_electrode(entries, working_ion_entry) -> ElectrodeResult:
    """Properties of the electrode the entries form; raises ``RejectedElectrode`` if unphysical."""
    electrode = insertion_electrode(entries, working_ion_entry)
    props = electrode_properties(electrode)
    check_physical(props)
    return ElectrodeResult(electrode, props)
