"""The small checks ``ablang.run`` makes around a run (issue 11): NaN images named, emit paths
confined after symbolic links, variant identities distinct."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

from ablang.errors import AblangError
from ablang.execute import Samples
from ablang.plan import Emit, Intervention, ModelSpec, Plan, Variant, Window
from ablang.run import emit_path, variant_identity, warn_nonfinite


def test_nan_images_are_named_in_a_warning():
    """Defect 10: `scale skip[0] by 1e308` gave -/null metrics with no word why."""
    bad = torch.zeros(2, 1, 4, 4)
    bad[0, 0, 0, 0] = float("nan")
    bad[1, 0, 0, 0] = float("inf")
    done = {
        "baseline": Samples("baseline", torch.zeros(2, 1, 4, 4), 0, 1.0, 1),
        "scale skip[0] by 1e308": Samples("scale skip[0] by 1e308", bad, 0, 1.0, 1),
    }
    buf = io.StringIO()
    assert warn_nonfinite(done, Console(file=buf, width=200)) == ["scale skip[0] by 1e308"]
    text = buf.getvalue()
    assert "warning:" in text and "'scale skip[0] by 1e308'" in text and "NaN or inf" in text


def test_emit_path_is_relative_to_the_study(tmp_path):
    plan = Plan(ModelSpec("tiny"), source=str(tmp_path / "s.abl"))
    assert (
        emit_path(plan, Emit("build/fast.py", "v"), tmp_path / "out")
        == tmp_path / "build" / "fast.py"
    )


def test_emit_path_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "study" / "build").symlink_to(tmp_path / "elsewhere")
    plan = Plan(ModelSpec("tiny"), source=str(tmp_path / "study" / "s.abl"))
    with pytest.raises(AblangError) as info:
        emit_path(plan, Emit("build/fast.py", "v"), tmp_path / "out")
    assert info.value.code == "emit-path" and "outside the study's folder" in info.value.message
    # into the run's --out is allowed
    (tmp_path / "study" / "out").symlink_to(tmp_path / "run")
    assert emit_path(plan, Emit("out/fast.py", "v"), tmp_path / "run")


def test_variant_identities_differ_by_name_and_by_window():
    a = Variant("a", (Intervention("drop", "mid", Window("t", 0, 500)),))
    assert variant_identity(a) != variant_identity(Variant("b", a.interventions))
    assert variant_identity(a) != variant_identity(
        Variant("a", (Intervention("drop", "mid", Window("t", 0, 600)),))
    )
    assert variant_identity(a) == variant_identity(
        Variant("a", (Intervention("drop", "mid", Window("t", 0, 500)),))
    )
