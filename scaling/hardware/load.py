"""A hardware profile by name or path: a published preset, a saved profile JSON, or a measured
profile fitted from result records (`scaling.hardware.calibration`).

This module sits above both the profile types and the calibration that builds them, so
neither of those imports the other's caller.
"""

from __future__ import annotations

import json
from pathlib import Path

from scaling.errors import DataError, UnknownNameError
from scaling.hardware import datasheets
from scaling.hardware.calibration import build_profile
from scaling.hardware.profile import HardwareProfile, preset_names, published_profile


def load_profile(name_or_path=None, results=None, *, device: str | None = None
                 ) -> HardwareProfile:
    """A profile by preset name, from a saved profile JSON, or built from results.

    ``results`` (a DataFrame, or paths for `scaling.records.load.load_results`) builds a measured
    profile; ``name_or_path`` then may name the preset whose datasheet figures to attach.
    A path to a results file or folder (rather than a saved profile) is built the same way.
    """
    if results is not None:
        df = _load_results(results) if isinstance(results, (str, Path, list, tuple)) else results
        preset = name_or_path if name_or_path in datasheets.DEVICES else None
        return build_profile(df, device=device, preset=preset)
    if name_or_path is None:
        raise DataError("name a hardware preset (" + ", ".join(preset_names()) +
                        "), a profile JSON file, or results to build one from")
    text = str(name_or_path)
    if text in datasheets.DEVICES:
        return published_profile(text)
    path = Path(text)
    if path.is_dir():
        return build_profile(_load_results([path]), device=device)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read a hardware profile ({exc})") from None
        if isinstance(data, dict) and "flopcast" in data and "flopcast_profile" not in data:
            return build_profile(_load_results([path]), device=device)
        return HardwareProfile.from_dict(data, where=str(path))
    raise UnknownNameError("hardware profile (preset, profile JSON or results path)", text,
                           datasheets.DEVICES)


def _load_results(paths):
    # The loader brings pandas; it is imported when results are read, not when a command
    # module imports this one, so `flopcast --help` stays fast (tests/test_scaling/cli/test_cli_startup.py).
    from scaling.records.load import load_results

    if isinstance(paths, (str, Path)):
        paths = [paths]
    return load_results(list(paths))
